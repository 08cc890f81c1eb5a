//! Stop and continue signals, sent with the `kill` utility so this crate
//! needs no `unsafe` (SIGKILL goes through [`std::process::Child::kill`]).

use std::process::{Command, Stdio};

/// Sends `signal` (e.g. `"STOP"`) to `pid`; `Err` says why it failed.
pub(crate) fn send(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run `kill`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`kill -{signal} {pid}` failed: {status}"))
    }
}
