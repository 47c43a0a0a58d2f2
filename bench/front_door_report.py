"""Turns bench/front_door.sh's JSON lines into the BENCHMARKS.md section between the
front-door markers (appended when the file has none)."""
import datetime
import json
import statistics
import sys

results_path, seconds, rounds, slow_streams, target = sys.argv[1:6]
runs = {}
for line in open(results_path):
    row = json.loads(line)
    runs.setdefault(row["label"], []).append(row)


def median(label, key):
    if label not in runs:
        return None
    return statistics.median(r[key] for r in runs[label])


def fmt(value, pattern):
    return "not measured" if value is None else pattern % value


def ratio(a, b):
    return None if a is None or not b else a / b


def cpu_us(label):
    if label not in runs:
        return None
    return statistics.median(r["proxy_cpu_s"] / max(r["requests"] - r["errors"], 1) * 1e6 for r in runs[label])


lines = [
    f"Measured {datetime.date.today()} by `bench/front_door.sh` ({rounds} interleaved rounds of {seconds} s, medians;",
    "backend: `triforce backend --llm` answering at once; LiteLLM: `litellm[proxy]` from PyPI, one worker).",
    "",
    "| path | 1 connection p50 | p99 | added p50 over direct | 64 connections req/s | proxy CPU per request |",
    "|---|---|---|---|---|---|",
]
direct = median("one_direct", "p50_ms")
for name, one, sat in [
    ("direct", "one_direct", "sat_direct"),
    ("nginx", "one_nginx", "sat_nginx"),
    ("federation (2 nodes, QUIC)", "one_fed", "sat_fed"),
    ("federation (1 node)", "one_fed1", "sat_fed1"),
    ("Portkey gateway", "one_portkey", "sat_portkey"),
    ("LiteLLM proxy", "one_litellm", "sat_litellm"),
]:
    p50 = median(one, "p50_ms")
    added = None if p50 is None or direct is None else p50 - direct
    lines.append(
        f"| {name} | {fmt(p50, '%.2f ms')} | {fmt(median(one, 'p99_ms'), '%.2f ms')} | "
        f"{fmt(added, '%+.2f ms') if name != 'direct' else '-'} | {fmt(median(sat, 'rps'), '%.0f')} | "
        f"{fmt(cpu_us(sat), '%.0f µs') if name != 'direct' else '-'} |"
    )
fed_rps, litellm_rps = median("sat_fed", "rps"), median("sat_litellm", "rps")
lines += [
    "",
    f"- Federation throughput against LiteLLM's: {fmt(ratio(fed_rps, litellm_rps), '%.0fx')} (target: at least 100x).",
    f"- Added median latency through two nodes: {fmt(None if median('one_fed', 'p50_ms') is None else median('one_fed', 'p50_ms') - direct, '%.2f ms')} (target: at most 0.5 ms).",
]
added = lambda label: None if median(label, "p50_ms") is None or direct is None else median(label, "p50_ms") - direct
fed32, fed1_32, portkey32 = median("sat32_fed", "rps"), median("sat32_fed1", "rps"), median("sat32_portkey", "rps")
lines += [
    f"- Against the fast gateways (issue #31): one node adds {fmt(added('one_fed1'), '%.2f ms')} at p50 (target at most 0.12 ms), "
    f"two nodes {fmt(added('one_fed'), '%.2f ms')} (target at most 0.25 ms), Portkey {fmt(added('one_portkey'), '%.2f ms')}.",
    f"- At 32 connections: one node {fmt(fed1_32, '%.0f')} req/s, two nodes {fmt(fed32, '%.0f')}, Portkey "
    f"{fmt(portkey32, '%.0f')}; two nodes against Portkey {fmt(ratio(fed32, portkey32), '%.1fx')} (target at least 10x), "
    f"one node {fmt(ratio(fed1_32, portkey32), '%.1fx')}.",
]
ttft_direct, ttft_fed = median("ttft_direct", "p50_ms"), median("ttft_fed", "p50_ms")
lines.append(
    f"- Streams, time to first token at one connection: direct {fmt(ttft_direct, '%.2f ms')}, through the federation "
    f"{fmt(ttft_fed, '%.2f ms')} (p50; +{fmt(None if ttft_fed is None else ttft_fed - ttft_direct, '%.2f ms')}, target at most 1 ms), "
    f"p99 {fmt(median('ttft_fed', 'p99_ms'), '%.2f ms')}."
)
for n in (1, 20):
    direct_label, fed_label = f"chunks{n}_direct", f"chunks{n}_fed"
    chunk_direct, chunk_fed = median(direct_label, "chunk_p99_ms"), median(fed_label, "chunk_p99_ms")
    lines.append(
        f"- Each streamed chunk from the backend's write to the client's read, {n} stream{'s' if n > 1 else ''} of 50 "
        f"stamped tokens 100 ms apart{' (in phase: 20 chunks arrive at once)' if n > 1 else ''}: direct p50 "
        f"{fmt(median(direct_label, 'chunk_p50_ms'), '%.2f ms')}, p99 {fmt(chunk_direct, '%.2f ms')}; through the "
        f"federation p50 {fmt(median(fed_label, 'chunk_p50_ms'), '%.2f ms')}, p99 {fmt(chunk_fed, '%.2f ms')} "
        f"(added at p99: {fmt(None if chunk_fed is None or chunk_direct is None else chunk_fed - chunk_direct, '%+.2f ms')}; "
        f"target: within 1 ms p99)."
    )
slow = runs.get("slow_streams", [None])[0]
rss = runs.get("slow_rss", [None])[0]
if slow and rss:
    lines.append(
        f"- {slow_streams} concurrent slow streams (50 tokens 100 ms apart, 5 s each) through the door and one relay: "
        f"{slow['requests']} streams started in the measured 8 s, {slow['errors']} errors, time to first token p50 "
        f"{slow['p50_ms']:.1f} ms, p99 {slow['p99_ms']:.1f} ms; peak RSS: door {rss['door_kb'] / 1024:.0f} MB, "
        f"relay {rss['relay_kb'] / 1024:.0f} MB (target: at most 100 MB per node); each chunk from the backend to "
        f"the client {fmt(slow.get('chunk_p50_ms'), '%.2f ms')} p50, {fmt(slow.get('chunk_p99_ms'), '%.2f ms')} p99."
    )
section = "\n".join(lines) + "\n"

text = open(target).read()
start, end = "<!-- front-door:start -->", "<!-- front-door:end -->"
if start not in text:
    text += f"\n## The AI front door\n\n{start}\n{end}\n"
before, rest = text.split(start, 1)
_, after = rest.split(end, 1)
open(target, "w").write(f"{before}{start}\n{section}{end}{after}")
print(section)
