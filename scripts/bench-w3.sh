#!/usr/bin/env bash
# W3 (8 workers, one key) on an unfair and a fair lock, both tokio flavours
# and 8 separate processes: five runs of each, medians and ranges. Starts
# its own redis-server pinned to CPU 0 and pins the benchmark to CPU 1, as
# the README's figures were measured.
#   scripts/bench-w3.sh [ACQUISITIONS]      (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
ops=${1:-2000}
cargo build --release -q -p baton-cli
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 redis-server --port "$port" --save '' --appendonly no --daemonize yes >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
printf '%-34s %-22s %-30s %s\n' "W3, $ops acquisitions" "acquisitions/s" "wait p99 µs (median; runs)" "Jain"
for cfg in "current" "current --fair" "multi" "multi --fair" "current --processes 8" "current --fair --processes 8"; do
  read -r -a args <<< "--runtime $cfg"
  for _ in 1 2 3 4 5; do
    taskset -c 1 target/release/baton bench --url "redis://127.0.0.1:$port" \
      --workload contended --ops "$ops" "${args[@]}" --json
  done | python3 -c '
import json, statistics, sys
runs = [json.loads(line) for line in sys.stdin if line.strip()]
med = lambda k: statistics.median(r[k] for r in runs)
p99 = sorted(r["wait_p99_us"] for r in runs)
print("%-34s %-22s %-30s %.2f" % (sys.argv[1], "%d (%d-%d)" % (med("ops_per_s"), min(r["ops_per_s"] for r in runs), max(r["ops_per_s"] for r in runs)), "%d; %s" % (med("wait_p99_us"), p99), med("jain")))
' "$cfg"
done
