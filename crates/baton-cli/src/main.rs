//! The `baton` command: run a command under a lock across machines, and
//! inspect or break locks.
//!
//! This crate is the only one that knows about processes, signals, exit
//! statuses and `anyhow`-style top-level reporting; the lock itself is the
//! `baton` library.

mod cli;
mod exec;
mod exit;
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
            }
        })
        .report()
}

/// A client for the backend options.
async fn connect(backend: &Backend) -> Result<baton::Client, baton::Error> {
    baton::Client::builder()
        .node(&backend.urls.join(","))
        .prefix(&backend.prefix)
        .build()
        .await
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "baton=debug,warn",
        _ => "baton=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
