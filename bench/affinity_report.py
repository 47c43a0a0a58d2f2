"""Turns bench/affinity.sh's per-turn lines into BENCHMARKS.md's affinity table."""

import json
import statistics
import subprocess
import sys

results, conversations, turns, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
stagger = sys.argv[5] if len(sys.argv) > 5 else "0"
rows = [json.loads(line) for line in open(results)]


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def figures(affinity, hot):
    ttft = [r["ttft_ms"] for r in rows if r["affinity"] == affinity and r["hot"] == hot and r["turn"] >= 2]
    first = [r["ttft_ms"] for r in rows if r["affinity"] == affinity and r["hot"] == hot and r["turn"] == 1]
    return {"n": len(ttft), "mean": statistics.mean(ttft), "p50": quantile(ttft, 0.5),
            "p90": quantile(ttft, 0.9), "p99": quantile(ttft, 0.99),
            "first": statistics.mean(first)}


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [
    f"Run at commit {commit}: {conversations} conversations x {turns} turns (joining {stagger} s apart), ~800-token system prompts,",
    "two llama.cpp servers (llama-cpp-python `--cache true`, SmolLM2-135M, one thread each) behind two",
    "nodes, the door on a third; time to first token in ms over turns 2 and later (turn 1 is cold",
    "everywhere; its mean is in the last column). \"hot\": one conversation sends 10x the others' turns.",
    "",
    "| traffic | affinity | turns | mean | p50 | p90 | p99 | turn 1 mean |",
    "|---|---|---|---|---|---|---|---|",
]
table = {}
for hot in (1, 10):
    for affinity in (True, False):
        if not any(r["affinity"] == affinity and r["hot"] == hot for r in rows):
            continue
        f = figures(affinity, hot)
        table[(hot, affinity)] = f
        lines.append(f"| {'even' if hot == 1 else 'hot x10'} | {'on' if affinity else 'off'} | {f['n']} "
                     f"| {f['mean']:.0f} | {f['p50']:.0f} | {f['p90']:.0f} | {f['p99']:.0f} | {f['first']:.0f} |")
if (1, True) in table and (1, False) in table:
    on, off = table[(1, True)], table[(1, False)]
    lines += ["", f"Even traffic: p90 {off['p90'] / on['p90']:.1f}x lower with affinity (target 3x), "
                  f"mean {off['mean'] / on['mean']:.1f}x lower (target 1.5x)."]
if (10, True) in table and (10, False) in table:
    on, off = table[(10, True)], table[(10, False)]
    lines += [f"Hot conversation: p99 with affinity {on['p99'] / off['p99']:.2f}x the p99 without "
              f"(target at most 1.10x)."]
text = open(out).read()
begin, finish = "<!-- affinity:begin -->", "<!-- affinity:end -->"
block = begin + "\n" + "\n".join(lines) + "\n" + finish
if begin in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(finish, 1)[1]
else:
    text = text.rstrip() + "\n\n## Session affinity on real servers (bench/affinity.sh)\n\n" + block + "\n"
open(out, "w").write(text)
print("\n".join(lines))
