//! `baton-check`: runs client processes against private Redis nodes under
//! injected faults, then checks the recorded history. Exit 0 when every
//! check passes, 1 on any violation, 2 when it cannot run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use baton_check::client::ClientArgs;
use baton_check::history::Primitive;
use baton_check::nemesis::{Fault, Rng, Topology};
use baton_check::run::RunArgs;
use clap::{Args, Parser, Subcommand};

/// Checks Baton's locks under faults: several client processes contend for
/// one lock and update a fenced store while a nemesis kills, pauses and
/// cuts off Redis nodes and clients; the history is then checked.
///
/// Example: baton-check --nodes 5 --clients 8 --duration 60s --nemesis all
///
/// Example: baton-check --topology sentinel --min-replicas 2 --ttl 1s --duration 60s
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: Run,
}

#[derive(Subcommand)]
enum Sub {
    /// One client process (started by the checker itself).
    #[command(hide = true)]
    Client(Client),
}

#[derive(Args)]
struct Run {
    /// What the clients lock on: `servers` (`--nodes` independent servers),
    /// `sentinel` (a master, two replicas and three Sentinels, reached with
    /// redis+sentinel://; its faults are failover, kill-master and
    /// lose-writes) or `cluster` (three masters with a replica each, reached
    /// with redis+cluster://; the same faults on the lock slot's master,
    /// and migrate).
    #[arg(long, default_value = "servers", value_parser = parse_topology)]
    topology: Topology,
    /// Replica acknowledgement: the clients' `min_replicas` (WAIT N, with a
    /// replica timeout of min(100ms, node timeout / 2)). 0 = off.
    #[arg(long, default_value_t = 0)]
    min_replicas: u16,
    /// Redis nodes: 1 = single server, 3 or more = Redlock.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=15))]
    nodes: u16,
    /// Client processes contending for the lock.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    clients: u16,
    /// How long the clients contend, e.g. 30s, 5m.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Faults: all, none, or a list of kill, kill-volatile, pause, blackhole,
    /// delay, drop-replies, reset, script-flush, pause-client, kill-client.
    #[arg(long, default_value = "all", value_parser = Fault::parse_list)]
    nemesis: std::vec::Vec<Fault>,
    /// The lock's TTL.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Nodes that run without persistence (restarted empty, a TTL after a
    /// kill). Fences can repeat after such a restart (see the README):
    /// fence-order violations are then reported, not counted.
    #[arg(long, default_value_t = 0)]
    volatile: u16,
    /// The clients' per-node request timeout [default: TTL/5].
    #[arg(long, value_parser = humantime::parse_duration)]
    node_timeout: Option<Duration>,
    /// Where the history goes [default: a new directory under the temp dir].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The nemesis schedule's seed [default: random].
    #[arg(long)]
    seed: Option<u64>,
    /// Let the store accept stale fences: shows what fencing buys (with
    /// pause-client faults, lost updates appear and the run fails).
    #[arg(long)]
    unfenced: bool,
    /// What the clients contend for: lock, fair (a fair lock: also checks
    /// that live waiters are served in queue order), semaphore (checks that
    /// at most --permits are valid at once) or rwlock (checks that a writer
    /// never overlaps anyone). All but lock run on one server, Sentinel or
    /// Cluster, not on a Redlock.
    #[arg(long, default_value = "lock", value_parser = Primitive::parse)]
    primitive: Primitive,
    /// A semaphore's permits (with --primitive semaphore).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    permits: u32,
}

#[derive(Args)]
struct Client {
    #[arg(long)]
    process: String,
    #[arg(long, value_delimiter = ',')]
    urls: Vec<String>,
    #[arg(long)]
    store: std::net::SocketAddr,
    #[arg(long)]
    history: PathBuf,
    #[arg(long)]
    lock: String,
    #[arg(long)]
    ttl_ms: u64,
    #[arg(long)]
    node_timeout_ms: u64,
    #[arg(long, default_value_t = 0)]
    min_replicas: usize,
    #[arg(long, value_parser = Primitive::parse)]
    primitive: Primitive,
    #[arg(long)]
    permits: u32,
}

fn parse_topology(text: &str) -> Result<Topology, String> {
    match text {
        "servers" => Ok(Topology::Servers),
        "sentinel" => Ok(Topology::Sentinel),
        "cluster" => Ok(Topology::Cluster),
        other => Err(format!(
            "unknown topology {other:?}; known: servers, sentinel, cluster"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Client(c)) => client(c),
        None => run(cli.run),
    }
}

fn client(c: Client) -> ExitCode {
    let args = ClientArgs {
        process: c.process,
        urls: c.urls,
        store: c.store,
        history: c.history,
        lock: c.lock,
        ttl: Duration::from_millis(c.ttl_ms),
        node_timeout: Duration::from_millis(c.node_timeout_ms),
        min_replicas: c.min_replicas,
        primitive: c.primitive,
        permits: c.permits,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(baton_check::client::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton-check client: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(r: Run) -> ExitCode {
    if r.volatile > r.nodes {
        eprintln!(
            "baton-check: --volatile {} > --nodes {}",
            r.volatile, r.nodes
        );
        return ExitCode::from(2);
    }
    if r.ttl < Duration::from_millis(100) || r.ttl > Duration::from_secs(60) {
        eprintln!("baton-check: --ttl must be between 100ms and 60s");
        return ExitCode::from(2);
    }
    if r.topology != Topology::Servers && (r.nodes != 1 || r.volatile != 0) {
        eprintln!("baton-check: --topology sentinel and cluster have their own nodes: no --nodes or --volatile");
        return ExitCode::from(2);
    }
    if r.primitive != Primitive::Lock && r.nodes > 1 {
        eprintln!(
            "baton-check: --primitive {} is not offered over a Redlock: use --nodes 1, --topology sentinel or cluster",
            r.primitive.name()
        );
        return ExitCode::from(2);
    }
    let seed = r.seed.unwrap_or_else(Rng::os_seed);
    let args = RunArgs {
        topology: r.topology,
        min_replicas: r.min_replicas.into(),
        nodes: r.nodes.into(),
        clients: r.clients.into(),
        duration: r.duration,
        nemesis: r.nemesis,
        ttl: r.ttl,
        volatile: r.volatile.into(),
        node_timeout: r.node_timeout.unwrap_or(r.ttl / 5),
        out: r
            .out
            .unwrap_or_else(|| std::env::temp_dir().join(format!("baton-check-{seed}"))),
        seed,
        fenced: !r.unfenced,
        primitive: r.primitive,
        permits: r.permits,
    };
    eprintln!(
        "baton-check: {} on {}, {} clients, {:?}, ttl {:?}, min replicas {}, seed {seed}",
        args.primitive.name(),
        match args.topology {
            Topology::Servers => format!("{} node(s)", args.nodes),
            Topology::Sentinel => "a Sentinel set".to_owned(),
            Topology::Cluster => "a cluster of 3 masters + 3 replicas".to_owned(),
        },
        args.clients,
        args.duration,
        args.ttl,
        args.min_replicas
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(baton_check::run::run(args)) {
        Ok(outcome) => {
            println!("{}", outcome.report.table());
            for failed in outcome.report.checks.iter().filter(|c| !c.ok()) {
                for example in &failed.examples {
                    println!("  {}: {example}", failed.name);
                }
            }
            println!("history: {}", outcome.history.display());
            if outcome.report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("baton-check: {e}");
            ExitCode::from(2)
        }
    }
}
