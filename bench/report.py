"""Turns bench/run.sh's JSON lines into the BENCHMARKS.md section between the bench markers."""
import datetime
import json
import platform
import statistics
import subprocess
import sys

results_path, rate, connections, seconds, rounds, target = sys.argv[1:7]
runs = {}
rows = {}
for line in open(results_path):
    row = json.loads(line)
    runs.setdefault(row["label"], []).append(row)
    rows[row["label"]] = row


def median(label, key):
    return statistics.median(r[key] for r in runs[label])


def ratio(numerator, denominator):
    """numerator / denominator, or None when the denominator was not measured (0): a stale or
    missing process must show up as "not measured", never as a crash or a made-up figure."""
    if not denominator:
        return None
    return numerator / denominator


def fmt(value, pattern="%.2fx"):
    return "not measured" if value is None else pattern % value


def per_request_us(label, key):
    """CPU microseconds per completed request, median over the rounds."""
    return statistics.median(r[key] / max(r["requests"] - r["errors"], 1) * 1e6 for r in runs[label])


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
names = {
    "a": "(a) client -> backend",
    "b": "(b) client -> nginx -> backend",
    "c": "(c) client -> node A -> QUIC -> node B -> executor -> backend",
    "c2": "(c') client -> node A -> executor -> backend",
    "f": "(f) client -> minimal tokio + hyper proxy -> backend (saturation only)",
}
out = []
out.append("Produced by `bench/run.sh` (do not edit by hand) on %s, %s cores, %s, %s; %s UTC." % (
    cpu, cores, platform.platform(), nginx, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")))
out.append("Load generator, backends, nginx and nodes share the machine's cores; all traffic on loopback.")
out.append("Every figure is the median of %s interleaved runs of %s s, each after 2 s of unrecorded warm-up (saturation: %s connections, closed loop;" % (rounds, seconds, connections))
out.append("latency: open loop at %s requests/s, half the lowest median saturation rate of (b), (c), (c'))." % rate)
out.append("")
out.append("| path | rps at saturation (min-max) | p50 ms | p99 ms | p99.9 ms | errors | proxy CPU us/request | machine CPU us/request | proxy peak RSS MB |")
out.append("|---|---|---|---|---|---|---|---|---|")
for key in ["a", "b", "c", "c2", "f"]:
    sat, fixed = "sat_" + key, "fixed_" + key
    rps = [r["rps"] for r in runs[sat]]
    errors = sum(r["errors"] for r in runs[sat] + runs.get(fixed, []))
    latency = ("%.2f | %.2f | %.2f" % (median(fixed, "p50_ms"), median(fixed, "p99_ms"), median(fixed, "p999_ms"))
               if fixed in runs else "- | - | -")
    out.append("| %s | %.0f (%.0f-%.0f) | %s | %d | %.1f | %.1f | %.1f |" % (
        names[key], median(sat, "rps"), min(rps), max(rps), latency, errors, per_request_us(sat, "proxy_cpu_s"),
        per_request_us(sat, "machine_cpu_s"), max(r["proxy_rss_kb"] for r in runs[sat]) / 1024))
out.append("")
tb = ratio(median("sat_c", "rps"), median("sat_b", "rps"))
lb = ratio(median("fixed_c", "p99_ms"), median("fixed_b", "p99_ms"))
out.append("Ratios (c)/(b): throughput %s (target at least 0.8x), p99 at the fixed rate %s (target at most 2x)." % (fmt(tb), fmt(lb)))
tb2 = ratio(median("sat_c2", "rps"), median("sat_b", "rps"))
lb2 = ratio(median("fixed_c2", "p99_ms"), median("fixed_b", "p99_ms"))
out.append("Ratios (c')/(b): throughput %s, p99 %s." % (fmt(tb2), fmt(lb2)))
machine_b, nginx_b = per_request_us("sat_b", "machine_cpu_s"), per_request_us("sat_b", "proxy_cpu_s")
node_c, node_c2 = per_request_us("sat_c", "proxy_cpu_s"), per_request_us("sat_c2", "proxy_cpu_s")
out.append("")
out.append(("Ceiling for (c) on this machine: the cores are saturated, so throughput is 1 / (machine CPU per request). "
            "(b) spends %.1f us per request, %.1f of them in nginx. A path with two proxies, each as cheap as nginx, "
            "would spend %.1f us: at most %s of (b)'s throughput. (c)'s two nodes spend %.1f us per request "
            "(%s nginx's; target at most 3.0x); (c')'s one node %.1f us (%s; target at most 1.5x).") % (
    machine_b, nginx_b, machine_b + nginx_b, fmt(ratio(machine_b, machine_b + nginx_b)),
    node_c, fmt(ratio(node_c, nginx_b), "%.1fx"), node_c2, fmt(ratio(node_c2, nginx_b), "%.1fx")))
floor = per_request_us("sat_f", "proxy_cpu_s")
out.append("")
out.append(("The stack's floor (f), one thread of tokio and hyper proxying as nginx does, spends %.1f us per request "
            "(%s nginx's). What (c')'s node spends beyond it, %.1f us, is the federation's own work per task: "
            "the signature, the replay cache, the ledger, selection, the runner and the answer's envelope.") % (
    floor, fmt(ratio(floor, nginx_b), "%.1fx"), node_c2 - floor))
if not nginx_b:
    out.append("")
    out.append("nginx used no CPU in (b): it was not the nginx this run started (a stale one held the port?); "
               "the ratios against it are left out.")
out.append("")
out.append("Failover race (open loop at %s rps, 20 s measured after the 2 s warm-up, `kill -9` of a backend host 3 s in):" % rate)
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
