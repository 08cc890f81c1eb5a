// W4 for npm's redlock (5.0 beta, on ioredis), for the README's side-by-side
// with `baton bench --workload redlock`: sequential acquire + release cycles
// over the given servers, as one JSON line. Run by scripts/bench-redlock.sh,
// which installs the pinned packages into a scratch directory.
//   node scripts/redlock-npm.js CYCLES PORT...
const Redlock = require("redlock").default;
const Redis = require("ioredis");

async function main() {
  const [cycles, ...ports] = process.argv.slice(2).map(Number);
  const clients = ports.map((port) => new Redis({ port, host: "127.0.0.1" }));
  const redlock = new Redlock(clients, { retryCount: 0 });
  const latencies = [];
  const start = process.hrtime.bigint();
  for (let i = 0; i < cycles; i++) {
    const t0 = process.hrtime.bigint();
    const lock = await redlock.acquire([`bench:npm:${process.pid}:${i}`], 10000);
    await lock.release();
    latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  latencies.sort((a, b) => a - b);
  const p50 = latencies[Math.floor(latencies.length / 2)];
  console.log(JSON.stringify({ lib: "npm-redlock", workload: "redlock", n: cycles, ops_per_s: Math.round(cycles / secs), p50_us: Math.round(p50), nodes: ports.length }));
  clients.forEach((c) => c.disconnect());
}
main().catch((e) => { console.error(e); process.exit(1); });
