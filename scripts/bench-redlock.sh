#!/usr/bin/env bash
# W4 (Redlock, 5 servers, 2,000 sequential cycles): Baton on both tokio
# flavours beside npm's redlock 5.0 beta and the plain parallel redis-rs loop,
# five interleaved rounds, medians. Starts five redis-servers pinned to CPU 0
# and pins every client to CPU 1. Needs node and npm (Debian: nodejs, npm);
# the npm packages go to a scratch directory, never into the repository.
#   scripts/bench-redlock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "bench-redlock: needs node and npm (apt-get install nodejs npm)" >&2; exit 1; }
cargo build --release -q -p baton-cli
scratch=$(mktemp -d)
ports=()
cleanup() {
  for port in "${ports[@]}"; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT
(cd "$scratch" && npm install --silent --no-audit --no-fund redlock@5.0.0-beta.2 ioredis@5.4.1 >/dev/null)
urls=()
for _ in 1 2 3 4 5; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  taskset -c 0 redis-server --port "$port" --save '' --appendonly no --daemonize yes >/dev/null
  ports+=("$port"); urls+=(--url "redis://127.0.0.1:$port")
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
done
for _ in 1 2 3 4 5; do
  for runtime in current multi; do
    taskset -c 1 target/release/baton bench "${urls[@]}" --workload redlock --runtime "$runtime" --json |
      sed "s/^{/{\"runtime\":\"$runtime\",/"
  done
  NODE_PATH="$scratch/node_modules" taskset -c 1 node scripts/redlock-npm.js 2000 "${ports[@]}"
done | python3 -c '
import json, statistics, sys
runs = [json.loads(line) for line in sys.stdin if line.strip()]
npm = statistics.median(r["ops_per_s"] for r in runs if r["lib"] == "npm-redlock")
print("W4, 5 servers, 2,000 cycles: medians of five interleaved rounds")
print("npm redlock 5.0 beta        %6d cycles/s  p50 %d µs" % (npm, statistics.median(r["p50_us"] for r in runs if r["lib"] == "npm-redlock")))
for runtime in ("current", "multi"):
    b = [r for r in runs if r.get("runtime") == runtime]
    rate = statistics.median(r["ops_per_s"] for r in b)
    print("baton, %-7s              %6d cycles/s  p50 %d µs  %.2f x npm  %.2f x raw redis-rs (%d/s)" % (runtime, rate, statistics.median(r["p50_us"] for r in b), rate / npm, statistics.median(r["vs_raw"] for r in b), statistics.median(r["raw_ops_per_s"] for r in b)))
'
