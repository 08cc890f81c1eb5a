//! Starting one `redis-server` process and waiting until it answers.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::conn::{tls_of, Target};
use crate::scratch::ScratchDir;
use crate::{ServerOptions, TestPki};

/// The server's log file, inside its directory.
pub(crate) const LOG_FILE: &str = "redis.log";
/// Whatever the server prints before its log file is open.
const STDERR_FILE: &str = "stderr.log";
/// How long a server may take to answer PING after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The shared server: never ours.
const SHARED_PORT: u16 = 6379;
/// A cluster node also listens on its port plus this (the cluster bus).
const CLUSTER_BUS_OFFSET: u16 = 10000;
/// `cluster-node-timeout` of a cluster node, in ms: how long a node may be
/// unreachable before it is suspected to have failed. Short, so a killed
/// master is replaced within a few seconds; not shorter, so a node that a
/// loaded two-core machine schedules late is not failed over by mistake.
pub(crate) const CLUSTER_NODE_TIMEOUT_MS: u64 = 1500;

/// Why a launch failed.
pub(crate) enum LaunchError {
    /// Someone took the port between picking it and the server binding it:
    /// worth retrying.
    PortInUse,
    /// Anything else, with the server's log: retrying will not help.
    Failed(String),
}

/// A loopback port that was free a moment ago (the OS picks it).
pub(crate) fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read a bound port: {e}"))
            .port();
        if port != SHARED_PORT {
            return port;
        }
    }
}

/// A loopback port for a cluster node: free a moment ago, below 55536, and
/// with its cluster bus port (port + 10000) free too.
pub(crate) fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
            continue;
        };
        if bus != SHARED_PORT && TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
}

/// Spawns `redis-server` on `port` with `dir` as its directory and waits
/// until it answers PING (as itself, not some other process on the port).
/// A TLS server (`opts.tls`) uses the certificates of `pki`.
pub(crate) fn launch(
    dir: &ScratchDir,
    opts: &ServerOptions,
    pki: Option<&TestPki>,
    port: u16,
) -> Result<Child, LaunchError> {
    // Only the log written by this launch tells whether *it* lost the port.
    let log_start = dir.read(LOG_FILE).len();
    let mut child = spawn(dir, opts, pki, port);
    let Err(why) = wait_ready(&mut child, &Target::new(port, opts, pki)) else {
        return Ok(child);
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = dir.read(LOG_FILE);
    if log
        .get(log_start..)
        .unwrap_or(&log)
        .contains("Address already in use")
    {
        return Err(LaunchError::PortInUse);
    }
    Err(LaunchError::Failed(format!(
        "redis-server on port {port} {why}\n--- {LOG_FILE} ---\n{log}\n--- {STDERR_FILE} ---\n{}",
        dir.read(STDERR_FILE)
    )))
}

fn spawn(dir: &ScratchDir, opts: &ServerOptions, pki: Option<&TestPki>, port: u16) -> Child {
    let bin =
        std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| OsString::from("redis-server"));
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join(STDERR_FILE))
        .unwrap_or_else(|e| {
            panic!(
                "cannot create {STDERR_FILE} in {}: {e}",
                dir.path().display()
            )
        });
    let mut cmd = Command::new(&bin);
    match tls_of(opts, pki) {
        // TLS only: no plain port at all.
        Some((mode, pki)) => {
            cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(pki.server_cert_path(mode.server_cert))
                .arg("--tls-key-file")
                .arg(pki.server_key_path(mode.server_cert))
                .arg("--tls-ca-cert-file")
                .arg(pki.ca_path())
                .args(["--tls-auth-clients", mode.client_auth.redis_arg()]);
            // A replica reaches its master over TLS too (a TLS-only node
            // has no plain port), and any node may become a replica (a
            // Sentinel turns a former master into one).
            cmd.args(["--tls-replication", "yes"]);
            // Outgoing connections (replication, the cluster bus, which
            // always asks for a client certificate) offer the client one.
            cmd.arg("--tls-client-cert-file")
                .arg(pki.client_cert_path())
                .arg("--tls-client-key-file")
                .arg(pki.client_key_path());
            if opts.cluster {
                cmd.args(["--tls-cluster", "yes"]);
            }
        }
        None => {
            cmd.args(["--port", &port.to_string()]);
        }
    }
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
    ])
    .arg("--dir")
    .arg(dir.path())
    .arg("--logfile")
    .arg(dir.path().join(LOG_FILE))
    // No RDB snapshots: durability, when wanted, comes from the AOF alone.
    .args(["--save", ""])
    // A replica's first sync starts at once, not after the default 5 s
    // wait for more replicas.
    .args(["--repl-diskless-sync-delay", "0"]);
    if opts.persistence {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    if let Some(password) = &opts.password {
        cmd.arg("--requirepass").arg(password);
    }
    if opts.cluster {
        // Relative to `--dir`, so each node has its own and a restart
        // rejoins the cluster as the same node.
        cmd.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .arg("--cluster-node-timeout")
        .arg(CLUSTER_NODE_TIMEOUT_MS.to_string());
    }
    if let Some(master) = opts.replica_of {
        cmd.args(["--replicaof", "127.0.0.1", &master.to_string()]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "redis-server not found as {bin:?} (set REDIS_SERVER_BIN or install it: \
             `apt-get install -y redis-server`)"
        ),
        Err(e) => panic!(
            "cannot run redis-server as {bin:?}: {e} (set REDIS_SERVER_BIN or install it: \
             `apt-get install -y redis-server`)"
        ),
    }
}

/// Polls until the server answers, it exits, or [`READY_TIMEOUT`] passes.
pub(crate) fn wait_ready(child: &mut Child, target: &Target) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("exited early ({status})")),
            Err(e) => return Err(format!("cannot be waited for: {e}")),
            Ok(None) => {}
        }
        let last = match answers_as(target, child.id()) {
            Ok(true) => return Ok(()),
            Ok(false) => "another process answers on the port".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "did not answer PING within {READY_TIMEOUT:?} (last: {last})"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PINGs `target` and checks that the process answering is `pid`: if
/// another test's server grabbed the port, ours is about to exit, not ready.
fn answers_as(target: &Target, pid: u32) -> redis::RedisResult<bool> {
    let timeout = Duration::from_millis(500);
    let mut conn = target.connect(timeout, timeout)?;
    redis::cmd("PING").query::<String>(&mut conn)?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
    let wanted = format!("process_id:{pid}");
    Ok(info.lines().any(|line| line.trim() == wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsMode;

    /// Launching on a port someone else holds must say so, which is what
    /// makes `start_with` and `restart` try again.
    fn a_held_port_is_in_use(opts: &ServerOptions) {
        let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = squatter.local_addr().unwrap().port();
        let dir = ScratchDir::new();
        let pki = opts.tls.map(|_| TestPki::new_in(dir.path().join("tls")));
        let result = launch(&dir, opts, pki.as_ref(), port);
        assert!(
            matches!(result, Err(LaunchError::PortInUse)),
            "{}",
            dir.read(LOG_FILE)
        );
    }

    #[test]
    fn a_held_port_is_reported_as_in_use() {
        a_held_port_is_in_use(&ServerOptions::default());
    }

    /// A cluster node also needs port + 10000: losing that one must be
    /// retried too.
    #[test]
    fn a_held_cluster_bus_port_is_reported_as_in_use() {
        let port = free_cluster_port();
        let _squatter = TcpListener::bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET)).unwrap();
        let dir = ScratchDir::new();
        let result = launch(&dir, &ServerOptions::default().cluster(true), None, port);
        assert!(
            matches!(result, Err(LaunchError::PortInUse)),
            "{}",
            dir.read(LOG_FILE)
        );
    }

    #[test]
    fn a_held_tls_port_is_reported_as_in_use() {
        a_held_port_is_in_use(&ServerOptions::default().tls(TlsMode::default()));
    }
}
