//! Starting one `redis-server` process and waiting until it answers.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::conn::connect;
use crate::scratch::ScratchDir;
use crate::url::redis_url;
use crate::ServerOptions;

/// The server's log file, inside its directory.
pub(crate) const LOG_FILE: &str = "redis.log";
/// Whatever the server prints before its log file is open.
const STDERR_FILE: &str = "stderr.log";
/// How long a server may take to answer PING after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The shared server: never ours.
const SHARED_PORT: u16 = 6379;

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

/// Spawns `redis-server` on `port` with `dir` as its directory and waits
/// until it answers PING (as itself, not some other process on the port).
pub(crate) fn launch(
    dir: &ScratchDir,
    opts: &ServerOptions,
    port: u16,
) -> Result<Child, LaunchError> {
    // Only the log written by this launch tells whether *it* lost the port.
    let log_start = dir.read(LOG_FILE).len();
    let mut child = spawn(dir, opts, port);
    let Err(why) = wait_ready(&mut child, port, opts.password.as_deref()) else {
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

fn spawn(dir: &ScratchDir, opts: &ServerOptions, port: u16) -> Child {
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
    cmd.arg("--port")
        .arg(port.to_string())
        .args([
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
        .args(["--save", ""]);
    if opts.persistence {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    if let Some(password) = &opts.password {
        cmd.arg("--requirepass").arg(password);
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
fn wait_ready(child: &mut Child, port: u16, password: Option<&str>) -> Result<(), String> {
    let url = redis_url(port, password);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("exited early ({status})")),
            Err(e) => return Err(format!("cannot be waited for: {e}")),
            Ok(None) => {}
        }
        let last = match answers_as(&url, child.id()) {
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

/// PINGs `url` and checks that the process answering is `pid`: if another
/// test's server grabbed the port, ours is about to exit, not ready.
fn answers_as(url: &str, pid: u32) -> redis::RedisResult<bool> {
    let timeout = Duration::from_millis(500);
    let mut conn = connect(url, timeout, timeout)?;
    redis::cmd("PING").query::<String>(&mut conn)?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
    let wanted = format!("process_id:{pid}");
    Ok(info.lines().any(|line| line.trim() == wanted))
}
