//! The project's benchmark on private servers: starts five `redis-server`
//! processes, then runs `baton bench`'s workloads — single-server ones on the
//! first (contended on an unfair and on a fair lock; held: 100,000 leases at a 3 s TTL for 60 s),
//! Redlock over 3 and over 5, and sequential again with a replica of
//! the first and replica acknowledgement on — and stops the servers.
//!
//! ```text
//! cargo run --release -p baton-cli --example bench            # the figures in the README
//! cargo run -p baton-cli --example bench -- --quick --json    # the short profile CI runs
//! ```
//! Against servers of your own, use the command: `baton bench --url ...`.

use baton_cli::bench::{run, Options};

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (json, quick) = (
        args.iter().any(|a| a == "--json"),
        args.iter().any(|a| a == "--quick"),
    );
    let servers: Vec<_> = (0..5)
        .map(|_| baton_test_support::RedisServer::start())
        .collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let options = |workload: &str, urls: &[String]| Options {
        urls: urls.to_vec(),
        workload: workload.to_owned(),
        ops: None,
        concurrency: None,
        quick,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        min_replicas: None,
        wait_aof: false,
        fair: false,
        processes: None,
        held: Default::default(),
    };
    let mut runs = Vec::new();
    for workload in ["sequential", "concurrent", "contended"] {
        runs.extend(run(&options(workload, &urls[..1])).await?);
    }
    let mut fair = options("contended", &urls[..1]);
    fair.fair = true;
    runs.extend(run(&fair).await?);
    runs.extend(run(&options("redlock", &urls[..3])).await?);
    runs.extend(run(&options("redlock", &urls)).await?);
    runs.extend(run(&options("baseline", &urls[..1])).await?);
    // Many leases on one client's renewal task (a twentieth, 3 s, with --quick).
    let mut held = options("held", &urls[..1]);
    held.held = baton_cli::bench::Held {
        leases: if quick { 5_000 } else { 100_000 },
        ttl: std::time::Duration::from_secs(3),
        hold: None,
    };
    runs.extend(run(&held).await?);
    // The cost of confirming every lease on a replica (WAIT in the same
    // round trip): the replica lives on the same machine.
    let replica = baton_test_support::RedisServer::start_with(
        baton_test_support::ServerOptions::default().replica_of(servers[0].port()),
    );
    servers[0].wait_for_replica();
    let mut acknowledged = options("sequential", &urls[..1]);
    acknowledged.min_replicas = Some((1, std::time::Duration::from_millis(100)));
    runs.extend(run(&acknowledged).await?);
    drop(replica);
    for r in runs {
        r.report(json);
    }
    Ok(())
}
