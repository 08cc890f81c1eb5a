//! One private `redis-server` process per [`RedisServer`].

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::conn::Target;
use crate::launch::{free_cluster_port, free_port, launch, LaunchError, LOG_FILE};
use crate::scratch::ScratchDir;
use crate::url::redis_url;
use crate::{signal, ServerOptions, TestPki, TlsMode};

/// Fresh ports tried by [`RedisServer::start_with`] before giving up.
const START_ATTEMPTS: usize = 5;
/// Tries of the same port by [`RedisServer::restart`], [`RESTART_BACKOFF`] apart.
const RESTART_ATTEMPTS: usize = 20;
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// Timeouts of [`RedisServer::conn`]: short, so a paused server fails a
/// command instead of hanging the test.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Where a TLS server's [`TestPki`] writes its files, inside its directory.
const TLS_DIR: &str = "tls";

/// A private `redis-server` on a free loopback port, in its own temporary
/// directory, killed and cleaned up on drop.
///
/// Everything is synchronous and short, so it can be used from sync tests
/// and from inside a tokio runtime alike.
///
/// With [`ServerOptions::tls`] it is a TLS-only server
/// ([`RedisServer::start_tls`]); the harness's own helpers ([`conn`],
/// [`cmd`], [`keys`], ...) then connect over TLS with the server's test CA and
/// client certificate.
///
/// [`conn`]: RedisServer::conn
/// [`cmd`]: RedisServer::cmd
/// [`keys`]: RedisServer::keys
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    options: ServerOptions,
    /// The certificates of a TLS server, in `dir`; kept across restarts.
    pki: Option<TestPki>,
    /// How the harness's own helpers connect.
    target: Target,
    /// Behind a mutex so `&self` methods can check the process has not been
    /// reaped before signalling its pid (a reaped pid may be reused).
    process: Mutex<Process>,
    /// Declared last: removed only after `Drop` has killed the process.
    dir: ScratchDir,
}

#[derive(Debug)]
struct Process {
    child: Child,
    paused: bool,
}

impl RedisServer {
    /// Starts a server with [`ServerOptions::default`] (no password, no
    /// persistence).
    ///
    /// # Panics
    /// If `redis-server` cannot be run or does not become ready; the message
    /// says why and includes the server's log.
    pub fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with `options`, retrying on a new port if another
    /// process takes the chosen one first.
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    pub fn start_with(options: ServerOptions) -> Self {
        let dir = ScratchDir::new();
        let pki = options
            .tls
            .map(|_| TestPki::new_in(dir.path().join(TLS_DIR)));
        Self::start_in(dir, options, pki)
    }

    /// Starts a TLS server ([`ServerOptions::tls`], set to the default if
    /// `options` has none) with the certificates of `pki` instead of its
    /// own, so servers that talk to each other (a replica to its master, a
    /// Sentinel or a cluster node to the others) trust one CA. `pki`'s
    /// files must outlive the server.
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    pub fn start_with_pki(options: ServerOptions, pki: &TestPki) -> Self {
        let options = ServerOptions {
            tls: Some(options.tls.unwrap_or_default()),
            ..options
        };
        Self::start_in(ScratchDir::new(), options, Some(pki.clone()))
    }

    fn start_in(dir: ScratchDir, options: ServerOptions, pki: Option<TestPki>) -> Self {
        for _ in 0..START_ATTEMPTS {
            let port = if options.cluster {
                free_cluster_port()
            } else {
                free_port()
            };
            match launch(&dir, &options, pki.as_ref(), port) {
                Ok(child) => {
                    let process = Mutex::new(Process {
                        child,
                        paused: false,
                    });
                    let target = Target::new(port, &options, pki.as_ref());
                    return Self {
                        port,
                        options,
                        pki,
                        target,
                        process,
                        dir,
                    };
                }
                Err(LaunchError::PortInUse) => continue,
                Err(LaunchError::Failed(why)) => panic!("{why}"),
            }
        }
        panic!(
            "redis-server lost its port to another process {START_ATTEMPTS} times\n--- {LOG_FILE} ---\n{}",
            dir.read(LOG_FILE)
        )
    }

    /// Starts a TLS-only server with [`TlsMode::default`]: a certificate
    /// valid for `localhost`, signed by its own test CA, and no client
    /// certificates asked for. No password, no persistence. For other
    /// settings use [`RedisServer::start_with`] and [`ServerOptions::tls`].
    ///
    /// ```
    /// use baton_test_support::{ClientAuth, RedisServer, ServerOptions, TlsMode};
    ///
    /// // `RedisServer::start_tls()` for the defaults; here with mutual TLS:
    /// let server = RedisServer::start_with(
    ///     ServerOptions::default().tls(TlsMode::default().client_auth(ClientAuth::Required)),
    /// );
    /// let url = server.url(); // rediss://localhost:PORT/
    /// let pki = server.pki();
    /// let (ca, cert, key) = (pki.ca_pem(), pki.client_cert_pem(), pki.client_key_pem());
    /// // or as files, e.g. for the CLI: pki.ca_path(), pki.client_cert_path(), pki.client_key_path()
    /// let client = redis::Client::build_with_tls(
    ///     url,
    ///     redis::TlsCertificates {
    ///         client_tls: Some(redis::ClientTlsConfig {
    ///             client_cert: cert.as_bytes().to_vec(),
    ///             client_key: key.as_bytes().to_vec(),
    ///         }),
    ///         root_cert: Some(ca.as_bytes().to_vec()),
    ///     },
    /// )
    /// .unwrap();
    /// let pong: String = redis::cmd("PING")
    ///     .query(&mut client.get_connection().unwrap())
    ///     .unwrap();
    /// assert_eq!(pong, "PONG");
    /// // The harness's helpers speak TLS too.
    /// assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
    /// ```
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    pub fn start_tls() -> Self {
        Self::start_with(ServerOptions::default().tls(TlsMode::default()))
    }

    /// The server's port on 127.0.0.1 (unchanged by [`RedisServer::restart`]);
    /// the TLS port of a TLS server, which has no other.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`. To reach a TLS server through something listening
    /// elsewhere (such as a [`crate::FaultProxy`]), keep the host
    /// `localhost` in the URL, the name its certificate is valid for.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:PORT/`, with `:PASSWORD@` (percent-encoded) when
    /// the server has a password.
    ///
    /// For a TLS server `rediss://localhost:PORT/`, or
    /// `rediss://:PASSWORD@localhost:PORT/`: `localhost` is a name in its
    /// certificate, so a client that trusts [`TestPki::ca_pem`] verifies it
    /// (all but the [`crate::ServerCert::WrongHost`] one, on purpose).
    pub fn url(&self) -> String {
        redis_url(self.port, self.options.password.as_deref(), self.is_tls())
    }

    /// [`RedisServer::url`] without the password even if one is set.
    pub fn url_without_password(&self) -> String {
        redis_url(self.port, None, self.is_tls())
    }

    /// Whether this is a TLS server ([`ServerOptions::tls`]).
    pub fn is_tls(&self) -> bool {
        self.pki.is_some()
    }

    /// A TLS server's certificates: the test CA and client certificate to
    /// give a client, as PEM strings and files (which last as long as the
    /// server).
    ///
    /// # Panics
    /// If the server is not a TLS server.
    pub fn pki(&self) -> &TestPki {
        self.pki.as_ref().unwrap_or_else(|| {
            panic!(
                "redis-server on port {} has no TLS: start it with ServerOptions::tls",
                self.port
            )
        })
    }

    /// A redis-rs client configured as the harness's own connections are:
    /// [`RedisServer::url`], and for a TLS server trusting the test CA and
    /// offering the client certificate ([`TestPki::redis_tls`]; for a
    /// [`crate::ServerCert::WrongHost`] server without verifying the
    /// server's certificate). For async connections in tests.
    ///
    /// # Panics
    /// If redis-rs refuses the configuration (a bug here).
    pub fn client(&self) -> redis::Client {
        self.target.client().unwrap_or_else(|e| {
            panic!(
                "redis-server on port {}: cannot make a client: {e}",
                self.port
            )
        })
    }

    /// The process id of the current `redis-server` process (it changes on
    /// [`RedisServer::restart`]).
    pub fn pid(&self) -> u32 {
        self.process().child.id()
    }

    /// The contents of the server's log file (across restarts).
    pub fn log(&self) -> String {
        self.dir.read(LOG_FILE)
    }

    /// Kills the server with SIGKILL (no shutdown, no final save) and waits
    /// for it to exit. Does nothing if it is already dead.
    pub fn kill(&mut self) {
        let process = self
            .process
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        // SIGKILL also ends a stopped process; no SIGCONT needed.
        let _ = process.child.kill();
        let _ = process.child.wait();
        process.paused = false;
    }

    /// Stops the server with SIGSTOP: it keeps its port and connections but
    /// answers nothing until [`RedisServer::resume`].
    ///
    /// # Panics
    /// If the server is not running.
    pub fn pause(&self) {
        self.signal("STOP", true);
    }

    /// Continues a paused server with SIGCONT.
    ///
    /// # Panics
    /// If the server is not running.
    pub fn resume(&self) {
        self.signal("CONT", false);
    }

    /// Kills the server if it is running and starts it again on the same
    /// port, with the same directory and options (so persisted data comes
    /// back) and, for a TLS server, the same certificates, then waits until
    /// it answers.
    ///
    /// # Panics
    /// If it does not come back; the message includes the server's log.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..RESTART_ATTEMPTS {
            match launch(&self.dir, &self.options, self.pki.as_ref(), self.port) {
                Ok(child) => {
                    *self
                        .process
                        .get_mut()
                        .unwrap_or_else(PoisonError::into_inner) = Process {
                        child,
                        paused: false,
                    };
                    return;
                }
                // The port is briefly busy (e.g. another test picked it
                // while we were down): wait for it to be released.
                Err(LaunchError::PortInUse) => std::thread::sleep(RESTART_BACKOFF),
                Err(LaunchError::Failed(why)) => panic!("restart: {why}"),
            }
        }
        panic!(
            "restart: port {} stayed in use\n--- {LOG_FILE} ---\n{}",
            self.port,
            self.log()
        )
    }

    /// Whether the process is alive (a paused server is running).
    pub fn is_running(&self) -> bool {
        matches!(self.process().child.try_wait(), Ok(None))
    }

    /// A new synchronous, authenticated connection with a 2 s connect
    /// timeout and 5 s read/write timeouts; over TLS for a TLS server (see
    /// [`RedisServer::client`]).
    ///
    /// # Panics
    /// If the connection fails; use [`RedisServer::try_conn`] to expect that.
    pub fn conn(&self) -> redis::Connection {
        self.try_conn()
            .unwrap_or_else(|e| panic!("cannot connect to redis-server on port {}: {e}", self.port))
    }

    /// As [`RedisServer::conn`], returning the error instead of panicking.
    pub fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        self.target.connect(CONNECT_TIMEOUT, IO_TIMEOUT)
    }

    /// Runs one command on a fresh connection, e.g.
    /// `server.cmd::<Option<String>>(&["GET", "k"])`.
    ///
    /// # Panics
    /// On any error (connection or command), naming the command; and if
    /// `args` is empty.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_cmd(args).unwrap_or_else(|e| {
            panic!(
                "redis-server on port {}: {} failed: {e}",
                self.port,
                shorten(args)
            )
        })
    }

    /// As [`RedisServer::cmd`], returning the error instead of panicking.
    ///
    /// # Panics
    /// If `args` is empty (Redis would silently ignore an empty command).
    pub fn try_cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let (name, rest) = args
            .split_first()
            .expect("try_cmd needs at least a command name");
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.try_conn()?)
    }

    /// All keys (SCAN, so any number of them), sorted.
    ///
    /// # Panics
    /// On any error.
    pub fn keys(&self) -> Vec<String> {
        let mut conn = self.conn();
        let mut keys = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("redis-server on port {}: SCAN failed: {e}", self.port));
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        // SCAN may return a key more than once.
        keys.dedup();
        keys
    }

    /// Waits until a replica of this server acknowledges a write
    /// ([`RedisServer::wait_for_replicas`] of 1).
    ///
    /// # Panics
    /// If no replica acknowledges within 30 s, or on any error.
    pub fn wait_for_replica(&self) {
        self.wait_for_replicas(1);
    }

    /// Waits until `count` replicas of this server acknowledge a write: a
    /// probe key written and `WAIT count 100` answered `count`, on one
    /// connection. (`WAIT` counts acknowledgements of the connection's own
    /// last write, so on a fresh connection it returns at once; and a
    /// replica listed as online after a diskless sync gets the stream only
    /// after its first acknowledgement, up to a second later.) The wait is
    /// `WAIT`'s own, no sleep.
    ///
    /// # Panics
    /// If fewer replicas acknowledge within 30 s, or on any error.
    pub fn wait_for_replicas(&self, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut conn = self.conn();
        let mut acked = 0;
        while std::time::Instant::now() < deadline {
            redis::cmd("SET")
                .arg("baton-test:sync-probe")
                .arg("1")
                .query::<()>(&mut conn)
                .unwrap_or_else(|e| panic!("redis-server on port {}: SET failed: {e}", self.port));
            acked = redis::cmd("WAIT")
                .arg(count)
                .arg(100)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("redis-server on port {}: WAIT failed: {e}", self.port));
            if acked >= count {
                redis::cmd("DEL")
                    .arg("baton-test:sync-probe")
                    .query::<()>(&mut conn)
                    .unwrap_or_else(|e| {
                        panic!("redis-server on port {}: DEL failed: {e}", self.port)
                    });
                return;
            }
        }
        panic!(
            "redis-server on port {}: {acked} of {count} replicas acknowledged a write within 30 s\n--- {LOG_FILE} ---\n{}",
            self.port,
            self.log()
        )
    }

    /// `SCRIPT FLUSH`: forgets all cached Lua scripts, so the next EVALSHA
    /// gets NOSCRIPT.
    ///
    /// # Panics
    /// On any error.
    pub fn flush_scripts(&self) {
        self.cmd::<()>(&["SCRIPT", "FLUSH"]);
    }

    fn process(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signal(&self, signal: &str, paused: bool) {
        let mut process = self.process();
        // Only signal a process not yet reaped: its pid cannot have been
        // reused by something else.
        if !matches!(process.child.try_wait(), Ok(None)) {
            panic!(
                "redis-server on port {} is not running: cannot send SIG{signal}",
                self.port
            );
        }
        if let Err(e) = signal::send(process.child.id(), signal) {
            panic!("redis-server on port {}: {e}", self.port);
        }
        process.paused = paused;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let process = self
            .process
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if process.paused && matches!(process.child.try_wait(), Ok(None)) {
            let _ = signal::send(process.child.id(), "CONT");
        }
        let _ = process.child.kill();
        let _ = process.child.wait();
        // `dir` is removed when the fields drop, right after this.
    }
}

/// The command for an error message, cut short (scripts can be long).
fn shorten(args: &[&str]) -> String {
    let joined = args.join(" ");
    match joined.char_indices().nth(120) {
        Some((cut, _)) => format!("`{}...`", &joined[..cut]),
        None => format!("`{joined}`"),
    }
}
