//! The `baton` command: run a command under a lock across machines, and
//! inspect or break locks.
//!
//! This crate is the only one that knows about processes, signals and exit
//! statuses; the lock itself is the `baton` library.
//!
//! Nothing here prints with `println!` or `eprintln!` (they panic when the
//! stream is closed, and the exit status would be 101): every line goes
//! through `baton_cli::out!` or `baton_cli::err!`.

#![deny(clippy::print_stdout, clippy::print_stderr)]
// One unsafe block, allowed where it is: exec.rs's `pre_exec` hook, which
// makes the command die with `baton` on Linux.
#![deny(unsafe_code)]

mod cli;
mod demo;
mod exec;
mod exit;
mod job;
mod status;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Backend, Cli, Command};
use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    init_tracing(cli.verbose);
    // A current-thread runtime on the main thread: `baton exec` relies on
    // spawning its command from this thread (see exec.rs, die_with_baton).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Exit::with(1, format!("cannot start: {e}")).report(),
    };
    runtime
        .block_on(async {
            match cli.command {
                Command::Exec(args) => exec::run(args).await,
                Command::Status(args) => status::status(args).await,
                Command::Release(args) => status::release(args).await,
                Command::Bench(args) => bench(args).await,
                Command::Demo => demo::run().await,
            }
        })
        .report()
}

/// Runs `baton bench`: a report line per workload.
async fn bench(args: cli::BenchArgs) -> Exit {
    if let Some(name) = &args.worker {
        let url = args.backend.urls.first().cloned().unwrap_or_default();
        let run = std::time::Duration::from_millis(args.worker_ms);
        return match baton_cli::bench::worker(&url, name, run, args.fair).await {
            Ok(line) => {
                baton_cli::out!("{line}");
                Exit::quiet(0)
            }
            Err(e) => Exit::with(exit::UNAVAILABLE, e),
        };
    }
    let processes = match args
        .processes
        .map(|n| std::env::current_exe().map(|exe| (n, exe)))
    {
        Some(Err(e)) => return Exit::with(1, format!("cannot find the baton executable: {e}")),
        Some(Ok(processes)) => Some(processes),
        None => None,
    };
    let options = baton_cli::bench::Options {
        urls: args.backend.urls,
        workload: args.workload,
        ops: args.ops,
        concurrency: args.concurrency,
        quick: args.quick,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        min_replicas: (args.backend.min_replicas > 0)
            .then_some((args.backend.min_replicas, args.backend.replica_timeout)),
        wait_aof: args.backend.wait_aof,
        fair: args.fair,
        processes,
        held: baton_cli::bench::Held {
            leases: args.leases,
            ttl: args.ttl,
            hold: args.hold,
        },
    };
    if !baton_cli::bench::WORKLOADS.contains(&options.workload.as_str()) {
        return Exit::with(
            exit::USAGE,
            format!("unknown workload {:?}", options.workload),
        );
    }
    if options.workload == "redlock" && options.urls.len() < 2 {
        return Exit::with(
            exit::USAGE,
            "the redlock workload needs several servers: give --url more than once",
        );
    }
    let measured = if args.runtime == "multi" {
        // On a runtime of its own with a worker per core, in a thread of its
        // own (a runtime cannot be started inside another's task).
        let ran = std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a multi-thread runtime: {e}"))?
                .block_on(baton_cli::bench::run(&options))
        });
        match tokio::task::spawn_blocking(move || ran.join()).await {
            Ok(Ok(result)) => result,
            _ => Err("the benchmark's runtime thread failed".to_owned()),
        }
    } else {
        baton_cli::bench::run(&options).await
    };
    match measured {
        Ok(runs) => {
            for run in runs {
                run.report(args.json);
            }
            Exit::quiet(0)
        }
        Err(e) => Exit::with(exit::UNAVAILABLE, e),
    }
}

/// A client for the backend options. A TLS file that cannot be read is bad
/// input, said as a TLS configuration error naming the file.
async fn connect(backend: &Backend) -> Result<baton::Client, baton::Error> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| baton::Error::InvalidTls {
            reason: format!("cannot read {}: {e}", path.display()),
        })
    };
    let mut builder = baton::Client::builder()
        .node(&backend.urls.join(","))
        .prefix(&backend.prefix);
    if let Some(ca) = &backend.tls_ca {
        builder = builder.tls_ca(read(ca)?);
    }
    if let (Some(cert), Some(key)) = (&backend.tls_cert, &backend.tls_key) {
        builder = builder.tls_client_cert(read(cert)?, read(key)?);
    }
    if backend.min_replicas > 0 {
        builder = builder.min_replicas(backend.min_replicas, backend.replica_timeout);
    }
    builder.wait_aof(backend.wait_aof).build().await
}

/// Library events on stderr only when asked for (-v or RUST_LOG): by
/// default every exit says what happened in one line of its own.
fn init_tracing(verbose: u8) {
    use std::io::IsTerminal as _;
    let default = match verbose {
        0 => "off",
        1 => "baton=debug,warn",
        _ => "baton=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A line that cannot be written (stderr closed) is dropped: by
        // default the subscriber reports that with `eprintln!`, which panics.
        .log_internal_errors(false)
        .init();
}
