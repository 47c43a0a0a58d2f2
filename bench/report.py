"""Turns bench/run.sh's JSON lines into the BENCHMARKS.md section between the bench markers."""
import datetime
import json
import platform
import subprocess
import sys

results_path, rate, connections, seconds, target = sys.argv[1:6]
rows = {}
for line in open(results_path):
    row = json.loads(line)
    rows[row["label"]] = row

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
names = {
    "a": "(a) client -> backend",
    "b": "(b) client -> nginx -> backend",
    "c": "(c) client -> node A -> QUIC -> node B -> executor -> backend",
    "c2": "(c') client -> node A -> executor -> backend",
}
out = []
out.append("Produced by `bench/run.sh` (do not edit by hand) on %s, %s cores, %s, %s; %s UTC." % (
    cpu, cores, platform.platform(), nginx, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")))
out.append("Load generator, backends, nginx and nodes share the machine's cores; all traffic on loopback.")
out.append("")
out.append("| path | rps at saturation (%s conns, %s s) | p50 ms at %s rps | p99 ms | p99.9 ms | errors | proxy CPU s (saturation run) | proxy peak RSS MB |" % (connections, seconds, rate))
out.append("|---|---|---|---|---|---|---|---|")
for key in ["a", "b", "c", "c2"]:
    sat, fixed = rows["sat_" + key], rows["fixed_" + key]
    out.append("| %s | %.0f | %.2f | %.2f | %.2f | %d | %.1f | %.1f |" % (
        names[key], sat["rps"], fixed["p50_ms"], fixed["p99_ms"], fixed["p999_ms"],
        sat["errors"] + fixed["errors"], sat["proxy_cpu_s"], sat["proxy_rss_kb"] / 1024))
out.append("")
tb = rows["sat_c"]["rps"] / rows["sat_b"]["rps"]
lb = rows["fixed_c"]["p99_ms"] / rows["fixed_b"]["p99_ms"]
out.append("Ratios (c)/(b): throughput %.2fx (target at least 0.8x), p99 at the fixed rate %.2fx (target at most 2x)." % (tb, lb))
tb2 = rows["sat_c2"]["rps"] / rows["sat_b"]["rps"]
lb2 = rows["fixed_c2"]["p99_ms"] / rows["fixed_b"]["p99_ms"]
out.append("Ratios (c')/(b): throughput %.2fx, p99 %.2fx." % (tb2, lb2))
out.append("")
out.append("Failover race (open loop at %s rps for 20 s, `kill -9` of a backend host at 5 s):" % rate)
out.append("")
out.append("| | requests | client-visible errors | p99 ms | worst 100 ms window ms |")
out.append("|---|---|---|---|---|")
for key, name in [("race_nginx", "nginx (kill -9 of backend b2)"), ("race_federation", "federation (kill -9 of node B and its backend)")]:
    r = rows[key]
    out.append("| %s | %d | %d | %.2f | %.1f |" % (name, r["requests"], r["errors"], r["p99_ms"], r["worst_window_ms"]))
out.append("")
idle = rows["idle"]
out.append("Idle cost of one node of a 3-node federation (heartbeats only, 10 s interval, 60 s): %.2f s CPU (%.3f%% of a core), %.1f MB RSS." % (
    idle["cpu_s"], idle["cpu_s"] / 60 * 100, idle["rss_kb"] / 1024))
section = "\n".join(out)

text = open(target).read()
start, end = "<!-- bench:start -->", "<!-- bench:end -->"
if start in text:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    text = head + start + "\n" + section + "\n" + end + tail
else:
    text += "\n## Against nginx (`bench/run.sh`)\n\n" + start + "\n" + section + "\n" + end + "\n"
open(target, "w").write(text)
