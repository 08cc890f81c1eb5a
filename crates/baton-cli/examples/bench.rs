//! The project's benchmark on private servers: starts five `redis-server`
//! processes, then runs `baton bench`'s workloads — single-server ones on the
//! first, Redlock over 3 and over 5 — and stops the servers.
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
    };
    let mut runs = Vec::new();
    for workload in ["sequential", "concurrent", "contended"] {
        runs.extend(run(&options(workload, &urls[..1])).await?);
    }
    runs.extend(run(&options("redlock", &urls[..3])).await?);
    runs.extend(run(&options("redlock", &urls)).await?);
    runs.extend(run(&options("baseline", &urls[..1])).await?);
    for r in runs {
        r.report(json);
    }
    Ok(())
}
