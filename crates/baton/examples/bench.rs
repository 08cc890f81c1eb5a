//! Acquire+release throughput and latency against a real Redis, beside the
//! same server's rate for a raw `SET NX PX` + `DEL` through redis-rs.
//!
//! The workloads are those of `shared/BENCHMARKS.md`:
//! - `sequential` (W1): one task, distinct keys, TTL 10 s;
//! - `concurrent` (W2): C tasks (default 64), distinct keys;
//! - `contended` (W3): C workers (default 8) on one key, waiting acquire,
//!   tiny critical section; wait percentiles, per-worker counts, Jain index;
//! - `redlock` (W4): one client over 3 and over 5 servers, sequential;
//! - `baseline`: raw `SET NX PX` + `DEL`, sequential and at C = 64.
//!
//! `--url` takes one URL, or several comma-separated: `redlock` then runs
//! over the first 3 and over all of them (5 private servers otherwise).
//!
//! ```text
//! cargo run --release -p baton --example bench                 # all, on a private redis-server
//! cargo run --release -p baton --example bench -- --url redis://127.0.0.1:6379 --workload contended
//! cargo run --release -p baton --example bench -- --quick --json   # a short profile (CI)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::Client;

struct Options {
    url: Option<String>,
    workload: String,
    ops: Option<usize>,
    concurrency: Option<usize>,
    json: bool,
    quick: bool,
}

fn options() -> Options {
    let mut o = Options {
        url: None,
        workload: "all".into(),
        ops: None,
        concurrency: None,
        json: false,
        quick: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--url" => o.url = Some(value()),
            "--workload" => o.workload = value(),
            "--ops" => {
                o.ops = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("--ops takes a number")),
                )
            }
            "--concurrency" => {
                o.concurrency = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("--concurrency takes a number")),
                )
            }
            "--json" => o.json = true,
            "--quick" => o.quick = true,
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    o
}

fn usage(why: &str) -> ! {
    eprintln!("bench: {why}\nusage: bench [--url URL[,URL...]] [--workload sequential|concurrent|contended|redlock|baseline|all] [--ops N] [--concurrency C] [--json] [--quick]");
    std::process::exit(64)
}

/// Latencies of one workload, and how long it took.
struct Run {
    workload: &'static str,
    lib: &'static str,
    secs: f64,
    latencies: Vec<Duration>,
    extra: String,
}

impl Run {
    fn report(mut self, json: bool) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| self.latencies[((n as f64 * p) as usize).min(n - 1)].as_micros();
        let rate = n as f64 / self.secs;
        if json {
            println!(
                "{{\"lib\":\"{}\",\"workload\":\"{}\",\"n\":{n},\"secs\":{:.3},\"ops_per_s\":{rate:.0},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}{}}}",
                self.lib, self.workload, self.secs, pct(0.50), pct(0.99), self.latencies[n - 1].as_micros(), self.extra
            );
        } else {
            println!(
                "{:<8} {:<22} {n:>7} cycles  {rate:>9.0}/s  p50 {:>6} µs  p99 {:>7} µs  max {:>7} µs{}",
                self.lib, self.workload, pct(0.50), pct(0.99), self.latencies[n - 1].as_micros(),
                if self.extra.is_empty() { String::new() } else { format!("  {}", self.extra.trim_start_matches(',')) }
            );
        }
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    let mut servers = Vec::new();
    let urls: Vec<String> = match &o.url {
        Some(urls) => urls.split(',').map(str::to_owned).collect(),
        None => {
            let needed = if o.workload == "redlock" || o.workload == "all" {
                5
            } else {
                1
            };
            servers = (0..needed)
                .map(|_| baton_test_support::RedisServer::start())
                .collect();
            servers.iter().map(|s| s.url()).collect()
        }
    };
    let url = urls[0].clone();
    let scale = |full: usize| {
        o.ops
            .unwrap_or(if o.quick { full / 20 } else { full })
            .max(1)
    };
    let all = o.workload == "all";
    let mut runs = Vec::new();
    if all || o.workload == "sequential" {
        runs.push(sequential(&url, scale(5_000)).await);
    }
    if all || o.workload == "concurrent" {
        runs.push(concurrent(&url, scale(20_000), o.concurrency.unwrap_or(64)).await);
    }
    if all || o.workload == "contended" {
        runs.push(contended(&url, scale(400), o.concurrency.unwrap_or(8)).await);
    }
    if all || o.workload == "redlock" {
        for n in [3, 5] {
            if urls.len() >= n {
                runs.push(redlock(&urls[..n], scale(2_000)).await);
            }
        }
    }
    if all || o.workload == "baseline" {
        runs.push(baseline(&url, scale(5_000), 1).await);
        runs.push(baseline(&url, scale(20_000), o.concurrency.unwrap_or(64)).await);
    }
    if runs.is_empty() {
        usage(&format!("unknown workload {}", o.workload));
    }
    for run in runs {
        run.report(o.json);
    }
    for url in &urls {
        cleanup(url).await;
    }
    drop(servers);
}

/// Deletes the fence counters the run left behind (they are never deleted
/// by the library: that is what keeps fences increasing), so a run against
/// a shared server leaves nothing.
async fn cleanup(url: &str) {
    let mut conn = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let pattern = format!("*bench:{}:*", std::process::id());
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

async fn sequential(url: &str, ops: usize) -> Run {
    let client = Client::connect(url).await.expect("connect");
    let start = Instant::now();
    let latencies = cycles(&client, 0, ops).await;
    Run {
        workload: "sequential",
        lib: "baton",
        secs: start.elapsed().as_secs_f64(),
        latencies,
        extra: String::new(),
    }
}

async fn redlock(urls: &[String], ops: usize) -> Run {
    let client = Client::connect(&urls.join(",")).await.expect("connect");
    let start = Instant::now();
    let latencies = cycles(&client, 0, ops).await;
    Run {
        workload: if urls.len() == 3 {
            "redlock-3"
        } else {
            "redlock-5"
        },
        lib: "baton",
        secs: start.elapsed().as_secs_f64(),
        latencies,
        extra: format!(",\"nodes\":{}", urls.len()),
    }
}

async fn concurrent(url: &str, ops: usize, tasks: usize) -> Run {
    let client = Client::connect(url).await.expect("connect");
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let client = client.clone();
            let share = ops / tasks + usize::from(t < ops % tasks);
            tokio::spawn(async move { cycles(&client, t, share).await })
        })
        .collect();
    let mut latencies = Vec::with_capacity(ops);
    for h in handles {
        latencies.extend(h.await.expect("task"));
    }
    Run {
        workload: "concurrent",
        lib: "baton",
        secs: start.elapsed().as_secs_f64(),
        latencies,
        extra: format!(",\"concurrency\":{tasks}"),
    }
}

/// Acquire+release cycles on distinct keys, each timed.
async fn cycles(client: &Client, task: usize, n: usize) -> Vec<Duration> {
    let lock_names: Vec<String> = (0..n)
        .map(|i| format!("bench:{}:{task}:{i}", std::process::id()))
        .collect();
    let mut latencies = Vec::with_capacity(n);
    for name in &lock_names {
        let lock = client.lock(name).ttl(Duration::from_secs(10));
        let t = Instant::now();
        let guard = lock
            .try_acquire()
            .await
            .expect("acquire")
            .expect("distinct keys are free");
        guard.release().await.expect("release");
        latencies.push(t.elapsed());
    }
    latencies
}

async fn contended(url: &str, acquisitions: usize, workers: usize) -> Run {
    let name = format!("bench:{}:contended", std::process::id());
    let remaining = Arc::new(std::sync::atomic::AtomicIsize::new(acquisitions as isize));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let client = Client::connect(url).await.expect("connect");
        let (name, remaining) = (name.clone(), remaining.clone());
        handles.push(tokio::spawn(async move {
            let lock = client.lock(&name).ttl(Duration::from_secs(10));
            let mut waits = Vec::new();
            while remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                let t = Instant::now();
                let guard = lock.acquire().await.expect("acquire");
                waits.push(t.elapsed());
                tokio::task::yield_now().await;
                guard.release().await.expect("release");
            }
            waits
        }));
    }
    let mut waits = Vec::new();
    let mut counts = Vec::new();
    for h in handles {
        let w = h.await.expect("worker");
        counts.push(w.len());
        waits.extend(w);
    }
    let secs = start.elapsed().as_secs_f64();
    let sum: f64 = counts.iter().map(|&c| c as f64).sum();
    let squares: f64 = counts.iter().map(|&c| (c * c) as f64).sum();
    let jain = sum * sum / (counts.len() as f64 * squares);
    let mut sorted = waits.clone();
    sorted.sort();
    let wait_p99 =
        sorted[((sorted.len() as f64 * 0.99) as usize).min(sorted.len() - 1)].as_micros();
    let per_worker = counts
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    Run {
        workload: "contended",
        lib: "baton",
        secs,
        latencies: waits,
        extra: format!(
            ",\"wait_p99_us\":{wait_p99},\"per_worker\":[{per_worker}],\"jain\":{jain:.2}"
        ),
    }
}

/// The same server, no lock library: `SET key v NX PX 10000` then `DEL key`
/// through one multiplexed redis-rs connection.
async fn baseline(url: &str, ops: usize, tasks: usize) -> Run {
    let conn = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let mut conn = conn.clone();
            let share = ops / tasks + usize::from(t < ops % tasks);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(share);
                for i in 0..share {
                    let key = format!("bench:{}:raw:{t}:{i}", std::process::id());
                    let t0 = Instant::now();
                    let _: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg("v")
                        .arg("NX")
                        .arg("PX")
                        .arg(10_000)
                        .query_async(&mut conn)
                        .await
                        .expect("set");
                    let _: i64 = redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("del");
                    latencies.push(t0.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(ops);
    for h in handles {
        latencies.extend(h.await.expect("task"));
    }
    Run {
        workload: if tasks == 1 {
            "baseline-sequential"
        } else {
            "baseline-concurrent"
        },
        lib: "redis-rs",
        secs: start.elapsed().as_secs_f64(),
        latencies,
        extra: format!(",\"concurrency\":{tasks}"),
    }
}
