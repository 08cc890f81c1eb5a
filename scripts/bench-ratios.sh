#!/usr/bin/env bash
# W1 (sequential) and W2 (64 tasks) against the raw redis-rs client in the
# same run, both tokio flavours: five runs each, medians and ranges of the
# ratio, the rates and the client's CPU per cycle. Starts its own
# redis-server pinned to CPU 0 and pins the benchmark to CPU 1.
#   scripts/bench-ratios.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p baton-cli
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 redis-server --port "$port" --save '' --appendonly no --daemonize yes >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
printf '%-24s %-20s %-18s %-18s %s\n' workload "baton ÷ raw" "baton cycles/s" "raw cycles/s" "client CPU µs/cycle (baton / raw)"
for workload in sequential concurrent; do
  for runtime in current multi; do
    for _ in 1 2 3 4 5; do
      taskset -c 1 target/release/baton bench --url "redis://127.0.0.1:$port" \
        --workload "$workload" --runtime "$runtime" --json
    done | python3 -c '
import json, statistics, sys
runs = [json.loads(line) for line in sys.stdin if line.strip()]
def med(k): return statistics.median(r[k] for r in runs)
def span(k, f): return "%s (%s-%s)" % (f % med(k), f % min(r[k] for r in runs), f % max(r[k] for r in runs))
print("%-24s %-20s %-18s %-18s %.1f / %.1f" % (sys.argv[1], span("vs_raw", "%.2f"), "%d" % med("ops_per_s"), "%d" % med("raw_ops_per_s"), med("cpu_us_per_op"), med("raw_cpu_us_per_op")))
' "$workload, $runtime"
  done
done
