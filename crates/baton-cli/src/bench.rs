//! `baton bench`: this library's acquire+release rate and latency against
//! given Redis servers, beside the same server's raw `SET NX PX` + `DEL`.
//!
//! The workloads are those of `shared/BENCHMARKS.md`:
//! - `sequential` (W1): one task, distinct keys, TTL 10 s;
//! - `concurrent` (W2): C tasks (default 64), distinct keys;
//! - `contended` (W3): C workers (default 8) on one key, waiting acquire,
//!   tiny critical section; wait percentiles, per-worker counts, Jain index;
//!   on a fair lock with `fair`;
//! - `redlock` (W4): one client over every given server, sequential;
//! - `baseline`: raw `SET NX PX` + `DEL` through one redis-rs multiplexed
//!   connection, sequential and at C (default 64) — the ceiling to compare with.
//!
//! `sequential`, `concurrent` and `redlock` also run the raw client on the same shape
//! of work just before, and report the ratio (`vs_raw`): a ratio in one run
//! does not depend on the machine's speed. Every run reports the client's
//! CPU per cycle (`cpu_us_per_op`, user + system from `getrusage`) beside
//! its wall time.
//!
//! Every key a run creates (fence counters included) is deleted afterwards.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::Client;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The servers: the first for single-server workloads, all for `redlock`.
    pub urls: Vec<String>,
    /// One of `sequential`, `concurrent`, `contended`, `redlock`, `baseline`, `all`.
    pub workload: String,
    /// Cycles (or acquisitions) per workload, instead of the standard counts.
    pub ops: Option<usize>,
    /// Tasks for `concurrent` and `baseline`, workers for `contended`.
    pub concurrency: Option<usize>,
    /// A short profile: a twentieth of the standard counts.
    pub quick: bool,
    /// Show progress on stderr (meant for when it is a terminal).
    pub progress: bool,
    /// Replica acknowledgement for `sequential` (`min_replicas` of the
    /// client): what confirming each lease on replicas costs.
    pub min_replicas: Option<(usize, Duration)>,
    /// AOF acknowledgement for `sequential` (`wait_aof` of the client):
    /// what waiting for each lease's fsync costs.
    pub wait_aof: bool,
    /// `contended` on a fair lock ([`baton::Lock::fair`]).
    pub fair: bool,
    /// `held`: how many leases, their TTL and how long they are held
    /// (default 100,000 for 60 s at a 30 s TTL; 3 s with `quick`).
    pub held: Held,
    /// `contended` with its workers in separate processes: how many, and
    /// the `baton` executable to start them with (each runs
    /// [`worker`] through `baton bench --worker`).
    pub processes: Option<(usize, std::path::PathBuf)>,
}

/// The `held` workload's shape.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// Leases held at once on one client.
    pub leases: usize,
    /// Their TTL (renewed at a third of it).
    pub ttl: Duration,
    /// How long they are held after all are acquired (`None`: 60 s, or 3 s
    /// with `quick`).
    pub hold: Option<Duration>,
}

impl Default for Held {
    fn default() -> Held {
        Held {
            leases: 100_000,
            ttl: Duration::from_secs(30),
            hold: None,
        }
    }
}

/// The most leases `held` may hold.
pub const MAX_HELD: usize = 2_000_000;

/// How long each process of a multi-process `contended` run takes locks
/// (a twentieth with `quick`).
const PROCESS_RUN: Duration = Duration::from_secs(2);

/// One worker of a multi-process `contended` run: takes and releases lock
/// `name` on `url` for `run`, and says how many times and how long each
/// wait was, as one line: `N W1 W2 …` (µs).
pub async fn worker(url: &str, name: &str, run: Duration, fair: bool) -> Result<String, String> {
    let client = Client::connect(url).await.map_err(|e| e.to_string())?;
    let lock = client.lock(name).ttl(Duration::from_secs(10)).fair(fair);
    let mut waits = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run {
        waits.push(take_turn(&lock).await?.as_micros());
    }
    let mut line = waits.len().to_string();
    for w in waits {
        line.push(' ');
        line.push_str(&w.to_string());
    }
    Ok(line)
}

/// One turn of a contended worker: waits for the lock, lets the others
/// run once (the tiny critical section), releases; how long it waited.
async fn take_turn(lock: &baton::Lock) -> Result<Duration, String> {
    let t = Instant::now();
    let guard = lock.acquire().await.map_err(|e| e.to_string())?;
    let waited = t.elapsed();
    tokio::task::yield_now().await;
    guard.release().await.map_err(|e| e.to_string())?;
    Ok(waited)
}

/// `contended` with each worker a process of its own (see [`worker`]).
async fn contended_processes(
    url: &str,
    processes: usize,
    exe: &std::path::Path,
    run: Duration,
    fair: bool,
) -> Result<Run, String> {
    let name = format!("bench:{}:contended-processes", std::process::id());
    let start = Clock::start();
    let mut children = Vec::new();
    for _ in 0..processes {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["bench", "--url", url, "--worker", &name])
            .args(["--worker-ms", &run.as_millis().to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if fair {
            cmd.arg("--fair");
        }
        children.push(
            cmd.spawn()
                .map_err(|e| format!("cannot start a worker: {e}"))?,
        );
    }
    let (mut counts, mut waits) = (Vec::new(), Vec::new());
    for child in children {
        let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut numbers = text.split_whitespace().map(str::parse::<u64>);
        let n = match numbers.next() {
            Some(Ok(n)) if out.status.success() => n as usize,
            _ => return Err(format!("a worker failed: {}", text.trim())),
        };
        counts.push(n);
        for w in numbers {
            waits.push(Duration::from_micros(w.map_err(|e| e.to_string())?));
        }
    }
    let extra = fairness(&counts, &waits, fair);
    let mut run = Run::new("contended", "baton", start, waits, extra);
    run.extra.push_str(&format!(",\"processes\":{processes}"));
    Ok(run)
}

/// The contended workload's report fields: per-worker counts, their Jain
/// index and the wait p99.
fn fairness(counts: &[usize], waits: &[Duration], fair: bool) -> String {
    let sum: f64 = counts.iter().map(|&c| c as f64).sum();
    let squares: f64 = counts.iter().map(|&c| (c * c) as f64).sum();
    let jain = sum * sum / (counts.len() as f64 * squares);
    let mut sorted = waits.to_vec();
    sorted.sort();
    let wait_p99 = sorted
        .get(((sorted.len() as f64 * 0.99) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0, Duration::as_micros);
    let per_worker = counts
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    format!(",\"fair\":{fair},\"wait_p99_us\":{wait_p99},\"per_worker\":[{per_worker}],\"jain\":{jain:.2}")
}

/// The workload names `Options::workload` accepts.
pub const WORKLOADS: [&str; 7] = [
    "held",
    "sequential",
    "concurrent",
    "contended",
    "redlock",
    "baseline",
    "all",
];

/// The most tasks (or workers) [`Options::concurrency`] may ask for.
pub const MAX_CONCURRENCY: usize = 10_000;

/// The most cycles [`Options::ops`] may ask for (each one's latency is kept).
pub const MAX_OPS: usize = 10_000_000;

/// Runs the chosen workloads and returns one report each. `redlock` needs
/// at least two URLs (with one, `all` leaves it out).
///
/// An error, before anything is measured, for an unknown workload, or a
/// concurrency or ops count of 0 (there would be nothing to measure) or
/// above [`MAX_CONCURRENCY`] or [`MAX_OPS`].
pub async fn run(o: &Options) -> Result<Vec<Run>, String> {
    if !WORKLOADS.contains(&o.workload.as_str()) {
        return Err(format!(
            "unknown workload {:?} (one of {})",
            o.workload,
            WORKLOADS.join(", ")
        ));
    }
    for (what, value, max) in [
        ("concurrency", o.concurrency, MAX_CONCURRENCY),
        ("ops", o.ops, MAX_OPS),
    ] {
        if value.is_some_and(|n| !(1..=max).contains(&n)) {
            return Err(format!("the {what} must be from 1 to {max}"));
        }
    }
    let url = o.urls.first().ok_or("no --url given")?.clone();
    let scale = |full: usize| {
        o.ops
            .unwrap_or(if o.quick { full / 20 } else { full })
            .max(1)
    };
    let wants = |w: &str| o.workload == w || o.workload == "all";
    let mut runs = Vec::new();
    let check = |client: Result<Client, baton::Error>| client.map_err(|e| e.to_string());
    if o.workload == "redlock" && o.urls.len() < 2 {
        return Err("redlock needs several servers: give --url more than once".into());
    }
    if o.workload == "held" {
        if !(1..=MAX_HELD).contains(&o.held.leases) {
            return Err(format!("the leases must be from 1 to {MAX_HELD}"));
        }
        let hold = o.held.hold.unwrap_or(if o.quick {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(60)
        });
        runs.push(held(&url, o.held.leases, o.held.ttl, hold).await?);
    }
    if wants("sequential") {
        let done = Progress::show(o.progress, "sequential", scale(5_000));
        let mut builder = Client::builder().node(&url);
        if let Some((replicas, timeout)) = o.min_replicas {
            builder = builder.min_replicas(replicas, timeout);
        }
        let client = check(builder.wait_aof(o.wait_aof).build().await)?;
        let raw = baseline(&url, scale(5_000), 1, &Progress::show(false, "", 0)).await?;
        let mut run = sequential(client, scale(5_000), &done).await?.versus(&raw);
        if let Some((replicas, _)) = o.min_replicas {
            run.extra = format!(",\"min_replicas\":{replicas}");
        }
        if o.wait_aof {
            run.extra.push_str(",\"wait_aof\":true");
        }
        runs.push(run);
    }
    if wants("concurrent") {
        let done = Progress::show(o.progress, "concurrent", scale(20_000));
        let client = check(Client::connect(&url).await)?;
        let tasks = o.concurrency.unwrap_or(64);
        let raw = baseline(&url, scale(20_000), tasks, &Progress::show(false, "", 0)).await?;
        runs.push(
            concurrent(client, scale(20_000), tasks, &done)
                .await?
                .versus(&raw),
        );
    }
    if wants("contended") {
        let done = Progress::show(o.progress, "contended", scale(400));
        let workers = o.concurrency.unwrap_or(8);
        match &o.processes {
            Some((processes, exe)) => {
                let run = if o.quick {
                    PROCESS_RUN / 20
                } else {
                    PROCESS_RUN
                };
                runs.push(contended_processes(&url, *processes, exe, run, o.fair).await?);
            }
            None => runs.push(contended(&url, scale(400), workers, o.fair, &done).await?),
        }
    }
    if wants("redlock") && o.urls.len() >= 2 {
        let done = Progress::show(o.progress, "redlock", scale(2_000));
        let client = check(Client::connect(&o.urls.join(",")).await)?;
        let raw = raw_redlock(&o.urls, scale(2_000)).await?;
        runs.push(
            redlock(client, o.urls.len(), scale(2_000), &done)
                .await?
                .versus(&raw),
        );
    }
    if wants("baseline") {
        let done = Progress::show(o.progress, "baseline", scale(5_000));
        runs.push(baseline(&url, scale(5_000), 1, &done).await?);
        let done = Progress::show(o.progress, "baseline", scale(20_000));
        runs.push(baseline(&url, scale(20_000), o.concurrency.unwrap_or(64), &done).await?);
    }
    for url in &o.urls {
        cleanup(url).await?;
    }
    Ok(runs)
}

/// A workload's progress: a counter the workload bumps, and (if shown) a
/// line on stderr redrawn ten times a second until the workload is done.
struct Progress {
    done: Arc<AtomicUsize>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn show(show: bool, workload: &'static str, total: usize) -> Progress {
        let done = Arc::new(AtomicUsize::new(0));
        let ticker = show.then(|| {
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                loop {
                    let n = done.load(Ordering::Relaxed).min(total);
                    let filled = n * 30 / total.max(1);
                    // Not `eprint!`: a broken stderr must not panic.
                    let _ = write!(
                        std::io::stderr(),
                        "\r  {workload:<11} [{}{}] {n}/{total}",
                        "#".repeat(filled),
                        " ".repeat(30 - filled)
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        Progress { done, ticker }
    }

    fn counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.done)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// Wall time and this process's CPU time (user + system, from
/// `getrusage`) at the start of a run.
#[derive(Clone, Copy)]
struct Clock {
    wall: Instant,
    cpu: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: cpu_time(),
        }
    }
}

/// The CPU this process has used so far.
fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |usage| {
        let micros = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
        };
        micros(usage.user_time()) + micros(usage.system_time())
    })
}

/// One workload's result: latencies, how long it took, and the CPU it
/// cost this process.
pub struct Run {
    workload: &'static str,
    lib: &'static str,
    secs: f64,
    cpu: Duration,
    latencies: Vec<Duration>,
    extra: String,
    /// The raw client's rate and CPU per cycle on the same shape of work,
    /// measured in the same run.
    raw: Option<(f64, f64)>,
}

impl Run {
    fn new(
        workload: &'static str,
        lib: &'static str,
        start: Clock,
        latencies: Vec<Duration>,
        extra: String,
    ) -> Run {
        Run {
            workload,
            lib,
            secs: start.wall.elapsed().as_secs_f64(),
            cpu: cpu_time().saturating_sub(start.cpu),
            latencies,
            extra,
            raw: None,
        }
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.secs
    }

    /// Client CPU per cycle, in µs.
    fn cpu_per_op_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }

    /// Records the raw client's run of the same work beside this one.
    fn versus(mut self, raw: &Run) -> Run {
        self.raw = Some((raw.rate(), raw.cpu_per_op_us()));
        self
    }

    /// Prints it: one JSON line, or one aligned line for people.
    pub fn report(mut self, json: bool) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| self.latencies[((n as f64 * p) as usize).min(n - 1)].as_micros();
        let (rate, cpu) = (self.rate(), self.cpu_per_op_us());
        if json {
            let raw = self.raw.map_or(String::new(), |(raw_rate, raw_cpu)| {
                format!(
                    ",\"raw_ops_per_s\":{raw_rate:.0},\"vs_raw\":{:.2},\"raw_cpu_us_per_op\":{raw_cpu:.1}",
                    rate / raw_rate
                )
            });
            crate::out!(
                "{{\"lib\":\"{}\",\"workload\":\"{}\",\"n\":{n},\"secs\":{:.3},\"ops_per_s\":{rate:.0},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"cpu_us_per_op\":{cpu:.1}{raw}{}}}",
                self.lib, self.workload, self.secs, pct(0.50), pct(0.99), self.latencies[n - 1].as_micros(), self.extra
            );
        } else {
            let raw = self.raw.map_or(String::new(), |(raw_rate, raw_cpu)| {
                format!(
                    "  {:.2}× raw ({raw_rate:.0}/s, cpu {raw_cpu:.1} µs/op)",
                    rate / raw_rate
                )
            });
            crate::out!(
                "{:<8} {:<22} {n:>7} cycles  {rate:>9.0}/s  p50 {:>6} µs  p99 {:>7} µs  max {:>7} µs  cpu {cpu:>5.1} µs/op{raw}{}",
                self.lib, self.workload, pct(0.50), pct(0.99), self.latencies[n - 1].as_micros(),
                if self.extra.is_empty() { String::new() } else { format!("  {}", self.extra.trim_start_matches(',')) }
            );
        }
    }
}

/// Deletes the fence counters the run left behind (they are never deleted
/// by the library: that is what keeps fences increasing), so a run against
/// a shared server leaves nothing.
async fn cleanup(url: &str) -> Result<(), String> {
    let mut conn = raw(url).await?;
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
            .map_err(|e| e.to_string())?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn raw(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    redis::Client::open(url)
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())
}

async fn sequential(client: Client, ops: usize, done: &Progress) -> Result<Run, String> {
    let start = Clock::start();
    let latencies = cycles(client, 0, ops, done.counter()).await?;
    Ok(Run::new(
        "sequential",
        "baton",
        start,
        latencies,
        String::new(),
    ))
}

async fn redlock(client: Client, nodes: usize, ops: usize, done: &Progress) -> Result<Run, String> {
    let start = Clock::start();
    let latencies = cycles(client, 0, ops, done.counter()).await?;
    Ok(Run::new(
        "redlock",
        "baton",
        start,
        latencies,
        format!(",\"nodes\":{nodes}"),
    ))
}

async fn concurrent(
    client: Client,
    ops: usize,
    tasks: usize,
    done: &Progress,
) -> Result<Run, String> {
    let start = Clock::start();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            tokio::spawn(cycles(
                client.clone(),
                t,
                share(ops, tasks, t),
                done.counter(),
            ))
        })
        .collect();
    let latencies = join(handles).await?;
    Ok(Run::new(
        "concurrent",
        "baton",
        start,
        latencies,
        format!(",\"concurrency\":{tasks}"),
    ))
}

/// Task `t`'s share of `ops` spread over `tasks`.
fn share(ops: usize, tasks: usize, t: usize) -> usize {
    ops / tasks + usize::from(t < ops % tasks)
}

/// Every task's latencies, in one list.
async fn join(
    handles: Vec<tokio::task::JoinHandle<Result<Vec<Duration>, String>>>,
) -> Result<Vec<Duration>, String> {
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// Takes a lock on a key nothing else uses: busy is an error.
async fn take_fresh(lock: &baton::Lock) -> Result<baton::Guard, String> {
    lock.try_acquire()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "a fresh key was busy".to_owned())
}

/// Acquire+release cycles on distinct keys, each timed.
async fn cycles(
    client: Client,
    task: usize,
    n: usize,
    done: Arc<AtomicUsize>,
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let lock = client
            .lock(&format!("bench:{}:{task}:{i}", std::process::id()))
            .ttl(Duration::from_secs(10));
        let t = Instant::now();
        let guard = take_fresh(&lock).await?;
        guard.release().await.map_err(|e| e.to_string())?;
        latencies.push(t.elapsed());
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

async fn contended(
    url: &str,
    acquisitions: usize,
    workers: usize,
    fair: bool,
    done: &Progress,
) -> Result<Run, String> {
    let name = format!("bench:{}:contended", std::process::id());
    let remaining = Arc::new(std::sync::atomic::AtomicIsize::new(acquisitions as isize));
    // Every worker's client connects first and all start together, so the
    // run measures eight contenders from its first acquisition (not one
    // while the others are still connecting).
    let mut clients = Vec::new();
    for _ in 0..workers {
        clients.push(Client::connect(url).await.map_err(|e| e.to_string())?);
    }
    let go = Arc::new(tokio::sync::Barrier::new(workers + 1));
    let mut handles = Vec::new();
    for client in clients {
        let (name, remaining, done) = (name.clone(), remaining.clone(), done.counter());
        let go = Arc::clone(&go);
        handles.push(tokio::spawn(async move {
            let lock = client.lock(&name).ttl(Duration::from_secs(10)).fair(fair);
            go.wait().await;
            let mut waits = Vec::new();
            while remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                waits.push(take_turn(&lock).await?);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(waits)
        }));
    }
    go.wait().await;
    let start = Clock::start();
    let mut waits = Vec::new();
    let mut counts = Vec::new();
    for handle in handles {
        let w = handle.await.map_err(|e| e.to_string())??;
        counts.push(w.len());
        waits.extend(w);
    }
    let extra = fairness(&counts, &waits, fair);
    Ok(Run::new("contended", "baton", start, waits, extra))
}

/// `held`: `leases` leases with auto-renew on one client, held for `hold`.
/// The run's rate and latencies are the acquisitions'; the rest goes in
/// its extra fields: the client's CPU share while only renewing, memory
/// per lease (resident set growth), what the renewal task sent (batches,
/// renewals, the largest batch), the server's µs per renewal, and the
/// lowest PTTL seen in samples of the keys (none may lapse) and leases lost.
async fn held(url: &str, leases: usize, ttl: Duration, hold: Duration) -> Result<Run, String> {
    const TASKS: usize = 256;
    let client = Client::connect(url).await.map_err(|e| e.to_string())?;
    let mut server = raw(url).await?;
    let name = |i: usize| format!("bench:{}:held:{i}", std::process::id());
    let rss_before = resident_bytes();
    let start = Clock::start();
    let handles: Vec<_> = (0..TASKS.min(leases))
        .map(|t| {
            let client = client.clone();
            let mine: Vec<usize> = (t..leases).step_by(TASKS).collect();
            tokio::spawn(async move {
                let mut held = Vec::with_capacity(mine.len());
                for i in mine {
                    let lock = client.lock(&name(i)).ttl(ttl);
                    let t0 = Instant::now();
                    let guard = take_fresh(&lock).await?;
                    held.push((t0.elapsed(), guard));
                }
                Ok::<_, String>(held)
            })
        })
        .collect();
    let (mut latencies, mut guards) = (Vec::with_capacity(leases), Vec::with_capacity(leases));
    for handle in handles {
        for (latency, guard) in handle.await.map_err(|e| e.to_string())?? {
            latencies.push(latency);
            guards.push(guard);
        }
    }
    let mut run = Run::new("held", "baton", start, latencies, String::new());
    let per_lease = resident_bytes().saturating_sub(rss_before) as f64 / leases as f64;
    // Only renewals reach the server from here on.
    let (calls_before, usec_before) = renewal_commands(&mut server).await?;
    let stats_before = client.renewal_stats();
    let holding = Clock::start();
    let deadline = Instant::now() + hold;
    let sampled: Vec<String> = (0..64)
        .map(|k| format!("baton:{}", name(k * leases / 64)))
        .collect();
    let (mut lowest_pttl, mut lapsed) = (i64::MAX, 0usize);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500).min(deadline - Instant::now())).await;
        let mut pipe = redis::pipe();
        for key in &sampled {
            pipe.cmd("PTTL").arg(key);
        }
        let pttls: Vec<i64> = pipe
            .query_async(&mut server)
            .await
            .map_err(|e| e.to_string())?;
        lapsed += pttls.iter().filter(|&&p| p < 0).count();
        lowest_pttl = pttls.into_iter().fold(lowest_pttl, i64::min);
    }
    let wall = holding.wall.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(holding.cpu).as_secs_f64();
    let stats = client.renewal_stats();
    let (calls, usec) = renewal_commands(&mut server).await?;
    let lost = guards.iter().filter(|g| !g.is_held()).count();
    let renewals = stats.renewals - stats_before.renewals;
    let batches = stats.batches - stats_before.batches;
    let server_calls = calls.saturating_sub(calls_before).max(1);
    run.extra = format!(
        ",\"leases\":{leases},\"ttl_ms\":{},\"hold_s\":{wall:.1},\"renewals\":{renewals},\"renewals_per_s\":{:.0},\"renew_cpu_share\":{:.3},\"cpu_us_per_renewal\":{:.2},\"bytes_per_lease\":{per_lease:.0},\"batches\":{batches},\"mean_batch\":{:.0},\"largest_batch\":{},\"longest_renewer_poll_us\":{},\"renewer_polls\":{},\"renewer_polls_over_1ms\":{},\"server_us_per_renewal\":{:.2},\"lowest_pttl_ms\":{},\"samples_lapsed\":{lapsed},\"lost\":{lost}",
        ttl.as_millis(),
        renewals as f64 / wall,
        cpu / wall,
        cpu * 1e6 / renewals.max(1) as f64,
        renewals as f64 / batches.max(1) as f64,
        stats.largest_batch,
        stats.longest_poll.as_micros(),
        stats.polls,
        stats.polls_over_1ms,
        usec.saturating_sub(usec_before) as f64 / server_calls as f64,
        if lowest_pttl == i64::MAX { -1 } else { lowest_pttl },
    );
    let mut releases = Vec::new();
    let mut guards = guards.into_iter();
    for _ in 0..TASKS {
        let chunk: Vec<_> = guards.by_ref().take(leases.div_ceil(TASKS)).collect();
        releases.push(tokio::spawn(async move {
            for guard in chunk {
                guard.release().await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for release in releases {
        release.await.map_err(|e| e.to_string())??;
    }
    Ok(run)
}

/// This process's resident set, from `/proc/self/status` (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// The server's calls and µs so far of the commands a renewal is: the
/// extend script (`EVALSHA`) or, on servers that have it, `SET … IFEQ`.
async fn renewal_commands(
    server: &mut redis::aio::MultiplexedConnection,
) -> Result<(u64, u64), String> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(server)
        .await
        .map_err(|e| e.to_string())?;
    let (mut calls, mut usec) = (0, 0);
    for line in info.lines() {
        let Some(fields) = line
            .strip_prefix("cmdstat_evalsha:")
            .or_else(|| line.strip_prefix("cmdstat_set:"))
        else {
            continue;
        };
        for field in fields.split(',') {
            match field.split_once('=') {
                Some(("calls", n)) => calls += n.parse::<u64>().unwrap_or(0),
                Some(("usec", n)) => usec += n.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    Ok((calls, usec))
}

/// Redlock's raw equivalent: `SET key v NX PX 10000` on every server at
/// once, then `DEL key` on every server at once, each phase waiting for all
/// of them (a plain parallel redis-rs loop, no quorum logic, no fences).
async fn raw_redlock(urls: &[String], ops: usize) -> Result<Run, String> {
    let mut conns = Vec::new();
    for url in urls {
        conns.push(raw(url).await?);
    }
    let start = Clock::start();
    let mut latencies = Vec::with_capacity(ops);
    for i in 0..ops {
        let key = format!("bench:{}:raw-redlock:{i}", std::process::id());
        let t0 = Instant::now();
        let sets = conns.iter().map(|conn| {
            let (mut conn, key) = (conn.clone(), key.as_str());
            async move { raw_take(key).query_async::<Option<String>>(&mut conn).await }
        });
        for set in futures_util::future::join_all(sets).await {
            set.map_err(|e| e.to_string())?;
        }
        let dels = conns.iter().map(|conn| {
            let (mut conn, key) = (conn.clone(), key.as_str());
            async move { raw_give_back(key).query_async::<i64>(&mut conn).await }
        });
        for del in futures_util::future::join_all(dels).await {
            del.map_err(|e| e.to_string())?;
        }
        latencies.push(t0.elapsed());
    }
    Ok(Run::new(
        "redlock",
        "redis-rs",
        start,
        latencies,
        format!(",\"nodes\":{}", urls.len()),
    ))
}

/// The raw client's lock: `SET key v NX PX 10000`.
fn raw_take(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg("v").arg("NX").arg("PX").arg(10_000);
    cmd
}

/// The raw client's unlock: `DEL key`.
fn raw_give_back(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("DEL");
    cmd.arg(key);
    cmd
}

/// The same server, no lock library: `SET key v NX PX 10000` then `DEL key`
/// through one multiplexed redis-rs connection.
async fn baseline(url: &str, ops: usize, tasks: usize, done: &Progress) -> Result<Run, String> {
    let conn = raw(url).await?;
    let start = Clock::start();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (mut conn, done) = (conn.clone(), done.counter());
            let n = share(ops, tasks, t);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(n);
                for i in 0..n {
                    let key = format!("bench:{}:raw:{t}:{i}", std::process::id());
                    let t0 = Instant::now();
                    let _: Option<String> = raw_take(&key)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _: i64 = raw_give_back(&key)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    latencies.push(t0.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(latencies)
            })
        })
        .collect();
    let latencies = join(handles).await?;
    Ok(Run::new(
        "baseline",
        "redis-rs",
        start,
        latencies,
        format!(",\"concurrency\":{tasks}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_test_support::RedisServer;

    /// Concurrency 0 (no task would record a latency) and ops 0 are errors
    /// for every workload, before anything runs.
    #[tokio::test]
    async fn zero_concurrency_or_ops_is_an_error_for_every_workload() {
        let servers = [RedisServer::start(), RedisServer::start()];
        let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
        for workload in WORKLOADS {
            for (concurrency, ops, what) in [
                (Some(0), Some(2), "concurrency"),
                (Some(MAX_CONCURRENCY + 1), Some(2), "concurrency"),
                (Some(2), Some(0), "ops"),
                (Some(2), Some(MAX_OPS + 1), "ops"),
            ] {
                let options = Options {
                    urls: urls.clone(),
                    workload: workload.to_owned(),
                    ops,
                    concurrency,
                    quick: false,
                    progress: false,
                    min_replicas: None,
                    wait_aof: false,
                    fair: false,
                    processes: None,
                    held: Default::default(),
                };
                match run(&options).await {
                    Err(e) => assert!(e.contains(what), "{workload}: {e}"),
                    Ok(_) => panic!("{workload} ran with {concurrency:?} {ops:?}"),
                }
            }
        }
        for server in &servers {
            assert!(server.keys().is_empty(), "nothing ran");
        }
    }
}
