//! The command line, as clap sees it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Run commands under a lock held in Redis, across machines.
///
/// Like flock(1), but the lock lives in Redis, so it excludes across
/// hosts; several --url values make a Redlock over independent servers.
#[derive(Debug, Parser)]
#[command(name = "baton", version, propagate_version = true)]
pub struct Cli {
    /// More output on stderr (-v: debug, -vv: trace); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run COMMAND while holding lock NAME; the lease is renewed while it runs.
    ///
    /// Example: baton exec nightly-report -n --ttl 30s -- ./report.sh
    ///
    /// Exit status: the command's own; 128+N if it died of signal N; 75 if
    /// the lock was busy (-n) or the wait ran out; 76 if the lease was lost
    /// while it ran; 64 for usage errors; 69 if Redis cannot be reached.
    Exec(ExecArgs),
    /// Show whether lock NAME is held: exit 0 if free, 1 if held.
    ///
    /// Example: baton status nightly-report --json
    Status(StatusArgs),
    /// Watch the lock at work for a few seconds, with nothing to set up.
    ///
    /// Example: baton demo
    ///
    /// Starts a private redis-server if one is installed (otherwise uses the
    /// embedded in-memory backend), shows workers handing the lock over with
    /// increasing fences, then a stalled holder whose late write is refused.
    Demo,
    /// Measure this library against the given Redis (and raw redis-rs beside it).
    ///
    /// Example: baton bench --url redis://127.0.0.1:6379 --workload contended --json
    ///
    /// Several --url values add the redlock workload over all of them.
    Bench(BenchArgs),
    /// Break lock NAME whoever holds it (an operator's tool): needs --force.
    ///
    /// Example: baton release nightly-report --force
    Release(ReleaseArgs),
}

/// Where the locks live.
#[derive(Debug, Args)]
pub struct Backend {
    /// Redis URL; repeat it or separate with commas for a Redlock over
    /// several servers (e.g. --url redis://h1:6379 --url redis://h2:6379).
    /// A password goes in the URL (redis://:PASSWORD@host:6379), written
    /// %2C for a comma; it is never shown.
    #[arg(
        long = "url",
        env = "BATON_URL",
        hide_env_values = true,
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379"
    )]
    pub urls: Vec<String>,

    /// Key prefix of the locks (e.g. --prefix myapp:locks:).
    #[arg(long, env = "BATON_PREFIX", default_value = "baton:")]
    pub prefix: String,

    /// For rediss:// URLs: verify servers against this CA (PEM file)
    /// instead of the system roots (e.g. --tls-ca /etc/redis/ca.pem).
    #[arg(long, env = "BATON_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// For rediss:// URLs: present this client certificate (PEM file;
    /// mutual TLS), with --tls-key.
    #[arg(
        long,
        env = "BATON_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM file; never shown).
    #[arg(
        long,
        env = "BATON_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    /// Count an acquire or renewal only once N replicas confirm it (WAIT),
    /// against losing the lock in a failover (e.g. --min-replicas 1).
    #[arg(
        long,
        env = "BATON_MIN_REPLICAS",
        value_name = "N",
        default_value_t = 0
    )]
    pub min_replicas: usize,

    /// How long the replicas of --min-replicas may take to confirm (e.g. 100ms).
    #[arg(long, env = "BATON_REPLICA_TIMEOUT", value_parser = duration, default_value = "100ms")]
    pub replica_timeout: Duration,

    /// Count an acquire or renewal only once the master's append-only file,
    /// and the --min-replicas replicas' files, have it on disk (WAITAOF,
    /// Redis >= 7.2 or Valkey, appendonly yes), against losing the lock when
    /// every server restarts (e.g. --wait-aof --min-replicas 1).
    #[arg(long, env = "BATON_WAIT_AOF")]
    pub wait_aof: bool,
}

/// `baton exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The lock's name (e.g. nightly-report).
    #[arg(value_parser = lock_name)]
    pub name: String,

    #[command(flatten)]
    pub backend: Backend,

    /// Lease length, renewed automatically while the command runs (e.g. 500ms, 30s, 2m;
    /// from 50ms to 24h).
    #[arg(long, default_value = "10s", value_parser = ttl)]
    pub ttl: Duration,

    /// Wait at most this long for the lock (e.g. 30s); the default is to wait until acquired.
    #[arg(long, value_parser = duration, conflicts_with = "no_wait")]
    pub wait: Option<Duration>,

    /// Try once and give up if the lock is busy ("skip if busy", e.g. for cron).
    #[arg(short = 'n', long)]
    pub no_wait: bool,

    /// Exit status when the lock is busy or the wait runs out (e.g. 0 for cron).
    #[arg(long, default_value_t = 75)]
    pub conflict_exit_code: u8,

    /// Take one of N permits of a semaphore of this name instead of the lock: at most N commands run at once (e.g. 3).
    #[arg(long, value_name = "N", conflicts_with = "also")]
    pub permits: Option<u32>,

    /// Also take the lock of NAME, all or none with the first (a multi-lock; repeatable). On a Cluster every name needs the same hash tag, e.g. {job}a and {job}b.
    #[arg(long, value_name = "NAME")]
    pub also: Vec<String>,

    /// After the lease is lost, how long the command's process group gets between SIGTERM and SIGKILL (e.g. 5s).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub kill_after: Duration,

    /// The command and its arguments (after --).
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

/// `baton status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The lock's name.
    #[arg(value_parser = lock_name)]
    pub name: String,

    #[command(flatten)]
    pub backend: Backend,

    /// One JSON object on stdout instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// `baton release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The lock's name.
    #[arg(value_parser = lock_name)]
    pub name: String,

    #[command(flatten)]
    pub backend: Backend,

    /// Really remove the lock, whoever holds it.
    #[arg(long)]
    pub force: bool,
}

/// `baton bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub backend: Backend,

    /// Which workload: sequential, concurrent, contended, redlock, baseline or all;
    /// or held (--leases leases renewed on one client for --hold; not part of all).
    #[arg(long, default_value = "all")]
    pub workload: String,

    /// Tasks for concurrent and baseline (default 64), workers for contended (default 8);
    /// from 1 to 10000.
    #[arg(long, value_parser = count(baton_cli::bench::MAX_CONCURRENCY))]
    pub concurrency: Option<usize>,

    /// Cycles per workload, instead of the standard counts (e.g. --ops 1000; from 1 to 10000000).
    #[arg(long, value_parser = count(baton_cli::bench::MAX_OPS))]
    pub ops: Option<usize>,

    /// A short profile: a twentieth of the standard counts.
    #[arg(long)]
    pub quick: bool,

    /// The contended workload on a fair lock (waiters served in arrival order).
    #[arg(long)]
    pub fair: bool,

    /// The contended workload with each worker a process of its own, for 2 s (e.g. 8).
    #[arg(long, value_parser = count(64))]
    pub processes: Option<usize>,

    /// The held workload's leases, on one client (from 1 to 2000000).
    #[arg(long, default_value_t = 100_000, value_parser = count(baton_cli::bench::MAX_HELD))]
    pub leases: usize,

    /// The held workload's lease TTL (e.g. 3s; renewed at a third of it).
    #[arg(long, default_value = "30s", value_parser = ttl)]
    pub ttl: Duration,

    /// How long the held workload holds its leases (default 60s, 3s with --quick).
    #[arg(long, value_parser = duration)]
    pub hold: Option<Duration>,

    /// (Internal: one worker process of --processes, on this lock name.)
    #[arg(long, hide = true)]
    pub worker: Option<String>,

    /// (Internal: how long a --worker runs, in ms.)
    #[arg(long, hide = true, default_value_t = 2000)]
    pub worker_ms: u64,

    /// The tokio runtime the benchmark runs on: current (one thread, as the
    /// rest of the command) or multi (a worker per core).
    #[arg(long, default_value = "current", value_parser = ["current", "multi"])]
    pub runtime: String,

    /// One JSON object per workload on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parses a human duration: 500ms, 30s, 2m, 1h30m.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (try 500ms, 30s or 2m)"))
}

/// Parses a count from 1 to `max`: 0 would leave nothing to measure.
fn count(max: usize) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=max as u64)
}

/// Parses a lease length: a duration within the library's bounds.
fn ttl(text: &str) -> Result<Duration, String> {
    let ttl = duration(text)?;
    if ttl < baton::MIN_TTL || ttl > baton::MAX_TTL {
        return Err("a lease lasts from 50ms to 24h".to_owned());
    }
    Ok(ttl)
}

/// Checks a lock name as the library will, before anything is sent.
fn lock_name(text: &str) -> Result<String, String> {
    baton_core::name::validate_name(text).map_err(|reason| format!("the name {reason}"))?;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_and_bounds() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(ttl("30s"), Ok(Duration::from_secs(30)));
        assert!(ttl("5ms").is_err() && ttl("25h").is_err() && ttl("0s").is_err());
        assert!(lock_name("").is_err() && lock_name("a\nb").is_err());
        assert_eq!(lock_name("nightly-report").as_deref(), Ok("nightly-report"));
        // The bench's --help gives these bounds in words.
        use baton_cli::bench::{MAX_CONCURRENCY, MAX_OPS};
        assert_eq!((MAX_CONCURRENCY, MAX_OPS), (10_000, 10_000_000));
    }

    proptest! {
        /// Any text given as a duration, TTL or name: a typed answer, no panic.
        #[test]
        fn parsers_never_panic(text in "\\PC{0,40}") {
            let _ = duration(&text);
            let _ = ttl(&text);
            let _ = lock_name(&text);
        }

        /// Any command line built from the real options and values, well
        /// formed or not: parsed or a usage error, never a panic.
        #[test]
        fn command_lines_never_panic(words in proptest::collection::vec(
            prop_oneof![
                Just("exec"), Just("status"), Just("release"), Just("bench"), Just("demo"),
                Just("--ttl"), Just("--wait"), Just("--no-wait"), Just("--url"), Just("--prefix"),
                Just("--force"), Just("--json"), Just("--"), Just("-v"), Just("-vv"), Just("--help"),
                Just("job"), Just("0s"), Just("10s"), Just("25h"), Just("redis://:pw@127.0.0.1:1"),
                Just(""), Just("\u{1f}"), Just("-x"), Just("true"), Just("--concurrency"),
                Just("--ops"), Just("0"), Just("18446744073709551616"),
            ],
            0..8,
        ), extra in "\\PC{0,12}") {
            let mut argv = vec!["baton".to_owned()];
            argv.extend(words.iter().map(|w| w.to_string()));
            argv.push(extra);
            let _ = Cli::try_parse_from(argv);
        }

        /// Whatever `ttl` accepts is a lease the library accepts.
        #[test]
        fn accepted_ttls_are_in_bounds(ms in 0u64..200_000_000) {
            if let Ok(t) = ttl(&format!("{ms}ms")) {
                prop_assert!(t >= baton::MIN_TTL && t <= baton::MAX_TTL);
            }
        }
    }
}
