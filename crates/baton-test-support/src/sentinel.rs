//! A master, two replicas and three Sentinels watching them, per
//! [`SentinelSet`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::conn::Target;
use crate::launch::{free_port, wait_ready};
use crate::scratch::ScratchDir;
use crate::topology_pki::TopologyPki;
use crate::{unique_name, RedisServer, ServerCert, ServerOptions, TestPki, TlsMode};

/// Sentinels in a set: three, so two of them (the quorum and a majority)
/// can still authorise a failover while one is busy or slow.
/// How long one `SENTINEL FAILOVER` may take before it is asked again
/// (the failover timeout, 3 s, and the Sentinels' agreement after it).
const FAILOVER_ATTEMPT: Duration = Duration::from_secs(6);
const SENTINELS: usize = 3;
/// Votes needed to agree that the master is down.
const QUORUM: usize = 2;
/// How long the master must not answer before a Sentinel thinks it is
/// down: short, so [`SentinelSet::kill_master`] takes seconds, not the
/// default 30 s.
const DOWN_AFTER_MS: u64 = 1000;
/// A failover that stalls is retried (by another Sentinel) after this long
/// instead of the default 3 minutes.
const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// Sentinel's internal periods (`SENTINEL DEBUG`, Redis ≥ 7.0 and Valkey),
/// shorter than the defaults so the set settles in seconds: replicas'
/// `INFO` every second instead of 10 s (a Sentinel notices a replica's new
/// role or link only then), hello messages every 500 ms instead of 2 s
/// (Sentinels find each other and spread a new master through them; a
/// demoted master is turned into a replica 4 periods after it reports its
/// role, 2 s instead of 8 s), and TILT lasting 5 s instead of 30 s (a
/// Sentinel enters it when its timer stalls for 2 s, as on a loaded test
/// machine, and takes no action while in it).
const DEBUG_PERIODS: [&str; 6] = [
    "info-period",
    "1000",
    "publish-period",
    "500",
    "tilt-period",
    "5000",
];
/// Bound of every wait for the set to reach a state.
const WAIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two checks of a condition.
const POLL: Duration = Duration::from_millis(50);
/// Fresh ports tried for a Sentinel before giving up.
const START_ATTEMPTS: usize = 5;
/// Timeouts of the harness's connections to Sentinels and data nodes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A Sentinel's files, inside its directory.
const CONF_FILE: &str = "sentinel.conf";
const LOG_FILE: &str = "sentinel.log";
const STDERR_FILE: &str = "stderr.log";
/// Lines of each Sentinel's log quoted in a panic message.
const LOG_TAIL: usize = 40;

/// A Redis Sentinel topology: a master ([`RedisServer::start`]), two
/// replicas of it and three Sentinels monitoring it under a unique master
/// name, all on free loopback ports in their own temporary directories,
/// killed and cleaned up on drop.
///
/// [`SentinelSet::start`] returns only once the replicas are in sync and
/// every Sentinel sees the master, both replicas and the two other
/// Sentinels, so a failover can be authorised at once.
/// [`SentinelSet::failover`] and [`SentinelSet::kill_master`] return only
/// once all three Sentinels agree on the new master and the other running
/// data nodes replicate from it.
///
/// Which data node is the master changes with failovers: address data nodes
/// by port ([`SentinelSet::node`], [`SentinelSet::node_mut`]) and ask
/// [`SentinelSet::master_port`] which one it is now.
///
/// Everything is synchronous, so it can be used from sync tests and from
/// inside a tokio runtime alike.
///
/// ```no_run
/// use baton_test_support::SentinelSet;
///
/// let mut set = SentinelSet::start();
/// let url = set.url(); // redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/NAME
/// let first = set.master_port();
/// let second = set.kill_master(); // the Sentinels promote a replica
/// assert_ne!(first, second);
/// set.restart_node(first); // and it comes back as a replica of `second`
/// ```
#[derive(Debug)]
pub struct SentinelSet {
    name: String,
    /// Declared first: dropped (killed) before the data nodes, so no
    /// Sentinel reacts to them going away.
    sentinels: Vec<Sentinel>,
    /// The master as started, then its two replicas; roles change with
    /// failovers, the order does not.
    nodes: Vec<RedisServer>,
    /// The one PKI of a TLS set ([`SentinelSet::start_tls`]), shared by
    /// every process so each trusts the others; declared last, so its
    /// files outlive the processes.
    pki: TopologyPki,
}

/// One `redis-server --sentinel` process.
#[derive(Debug)]
struct Sentinel {
    port: u16,
    target: Target,
    child: Child,
    /// Declared last: removed only after `Drop` has killed the process.
    dir: ScratchDir,
}

impl SentinelSet {
    /// Starts the master, its two replicas and three Sentinels, and waits
    /// until the set is ready for a failover (see [`SentinelSet`]).
    /// `REDIS_SERVER_BIN`, when set, is used for the Sentinels as for the
    /// data nodes.
    ///
    /// # Panics
    /// If a process cannot be started, or the set is not ready within 20 s;
    /// the message says why and includes the Sentinels' logs.
    pub fn start() -> Self {
        Self::start_with_pki(TopologyPki::default())
    }

    /// As [`SentinelSet::start`], with every process speaking TLS only:
    /// data nodes and Sentinels share one [`TestPki`]
    /// ([`SentinelSet::pki`]), replicate and monitor over TLS, and
    /// [`SentinelSet::url`] is `rediss+sentinel://…`. Their certificate is
    /// valid for `127.0.0.1`, the address the Sentinels report.
    ///
    /// # Panics
    /// As [`SentinelSet::start`].
    pub fn start_tls() -> Self {
        Self::start_with_pki(TopologyPki::tls())
    }

    fn start_with_pki(pki: TopologyPki) -> Self {
        let master = pki.start(ServerOptions::default());
        let replica_options = ServerOptions::default().replica_of(master.port());
        let replicas = [
            pki.start(replica_options.clone()),
            pki.start(replica_options),
        ];
        let mut set = Self {
            name: unique_name("baton-sentinel"),
            sentinels: Vec::new(),
            nodes: Vec::new(),
            pki,
        };
        set.nodes.push(master);
        set.nodes.extend(replicas);
        let master_port = set.nodes[0].port();
        // In sync before any Sentinel starts: a Sentinel learns of replicas
        // from the master's INFO, and then notices their links only at its
        // next INFO of each.
        set.wait_until("the replicas to sync with the master", || {
            set.nodes[1..]
                .iter()
                .try_for_each(|replica| linked(replica, &set.nodes[0]))
        });
        set.wait_for_streaming_replicas(master_port);
        for _ in 0..SENTINELS {
            let sentinel = Sentinel::start(&set.name, master_port, set.pki.get());
            set.sentinels.push(sentinel);
        }
        set.wait_for_sentinels(master_port);
        set
    }

    /// The PKI of a set started with [`SentinelSet::start_tls`]: the test
    /// CA to give a client ([`TestPki::ca_pem`]).
    ///
    /// # Panics
    /// If the set was started without TLS.
    pub fn pki(&self) -> &TestPki {
        self.pki.expect("SentinelSet")
    }

    /// Whether the set was started with [`SentinelSet::start_tls`].
    pub fn is_tls(&self) -> bool {
        self.pki.get().is_some()
    }

    /// The name the Sentinels monitor the master under (unique per set).
    pub fn master_name(&self) -> &str {
        &self.name
    }

    /// The Sentinels' addresses, `127.0.0.1:PORT` each.
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels
            .iter()
            .map(|s| SocketAddr::from((Ipv4Addr::LOCALHOST, s.port)))
            .collect()
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/NAME`: the
    /// three Sentinels and [`SentinelSet::master_name`].
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_addrs()
            .iter()
            .map(SocketAddr::to_string)
            .collect();
        format!(
            "{}://{}/{}",
            self.pki.scheme("sentinel"),
            hosts.join(","),
            self.name
        )
    }

    /// The port of the data node the Sentinels report as the master now
    /// (`SENTINEL get-master-addr-by-name`, asked of the first Sentinel
    /// that answers). During a failover Sentinels may briefly disagree;
    /// after [`SentinelSet::failover`] or [`SentinelSet::kill_master`] they
    /// do not.
    ///
    /// # Panics
    /// If no Sentinel answers, or the address is not one of the data nodes.
    pub fn master_port(&self) -> u16 {
        self.reported_master()
            .unwrap_or_else(|why| self.fail(&format!("no Sentinel reports the master: {why}")))
    }

    /// [`SentinelSet::master_port`], or why no Sentinel reports one.
    fn reported_master(&self) -> Result<u16, String> {
        let mut errors = Vec::new();
        for sentinel in &self.sentinels {
            match sentinel.master_addr(&self.name) {
                Ok(port) if self.has_node(port) => return Ok(port),
                Ok(port) => errors.push(format!(
                    "port {}: reports {port}, not a data node of the set",
                    sentinel.port
                )),
                Err(e) => errors.push(format!("port {}: {e}", sentinel.port)),
            }
        }
        Err(errors.join("; "))
    }

    /// The data node the Sentinels report as the master now (see
    /// [`SentinelSet::master_port`]).
    pub fn master(&self) -> &RedisServer {
        self.node(self.master_port())
    }

    /// The data nodes other than [`SentinelSet::master`], running or not.
    pub fn replicas(&self) -> Vec<&RedisServer> {
        let master = self.master_port();
        self.nodes.iter().filter(|n| n.port() != master).collect()
    }

    /// All three data nodes, in the order they were started (the first
    /// was the master at start); their roles change with failovers.
    pub fn data_nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The data node on `port`.
    ///
    /// # Panics
    /// If no data node of the set has that port.
    pub fn node(&self, port: u16) -> &RedisServer {
        match self.nodes.iter().position(|n| n.port() == port) {
            Some(i) => &self.nodes[i],
            None => self.fail(&format!("no data node on port {port}")),
        }
    }

    /// The data node on `port`, to kill, pause or restart it. After a
    /// restart, [`SentinelSet::wait_for_replica_of_master`] waits for the
    /// Sentinels to make it a replica again.
    ///
    /// # Panics
    /// If no data node of the set has that port.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        match self.nodes.iter().position(|n| n.port() == port) {
            Some(i) => &mut self.nodes[i],
            None => self.fail(&format!("no data node on port {port}")),
        }
    }

    /// Forces a failover (`SENTINEL FAILOVER` on one Sentinel, retried
    /// while it answers that it cannot start one yet) and waits until all
    /// three Sentinels report a new master, it answers as a master, every
    /// other running data node (the old master too) replicates from it
    /// with its link up, and every Sentinel sees those replicas. Returns the
    /// new master's port.
    ///
    /// # Panics
    /// If the failover does not complete within 20 s; the message includes
    /// the Sentinels' logs.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            match self.sentinels[0].cmd::<String>(&["SENTINEL", "FAILOVER", &self.name]) {
                Ok(_) => {}
                // -NOGOODSLAVE or -INPROG: e.g. just after another
                // failover, before the Sentinel has refreshed its view.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(e) => self.fail(&format!("SENTINEL FAILOVER kept failing: {e}")),
            }
            // A failover can abort (the chosen replica was still syncing
            // and did not report its promotion within the failover
            // timeout): the old master stays, and asking again helps.
            let attempt = Instant::now() + FAILOVER_ATTEMPT;
            while Instant::now() < attempt {
                if self.agreed_new_master(old).is_ok() {
                    return self.wait_for_new_master(old);
                }
                std::thread::sleep(POLL);
            }
            if Instant::now() >= deadline {
                return self.wait_for_new_master(old);
            }
        }
    }

    /// The new master, if every Sentinel reports the same one, not `old`.
    fn agreed_new_master(&self, old: u16) -> Result<u16, String> {
        let ports = self
            .sentinels
            .iter()
            .map(|s| s.master_addr(&self.name))
            .collect::<Result<Vec<u16>, String>>()?;
        match ports[..] {
            [first, ..] if first != old && ports.iter().all(|&p| p == first) => Ok(first),
            _ => Err(format!("old master {old}, Sentinels report {ports:?}")),
        }
    }

    /// Kills the current master with SIGKILL ([`RedisServer::kill`]) and
    /// waits for the Sentinels' own failover, as [`SentinelSet::failover`]
    /// does: all three report a new master, it answers as one, the
    /// remaining replica replicates from it. Returns the new master's port;
    /// the killed node stays down until [`SentinelSet::restart_node`].
    ///
    /// # Panics
    /// If the failover does not complete within 20 s; the message includes
    /// the Sentinels' logs.
    pub fn kill_master(&mut self) -> u16 {
        let old = self.master_port();
        self.node_mut(old).kill();
        self.wait_for_new_master(old)
    }

    /// Restarts the data node on `port` ([`RedisServer::restart`]: same
    /// port and directory) and waits until the Sentinels have made it a
    /// replica of the current master
    /// ([`SentinelSet::wait_for_replica_of_master`]). Meant for a node that
    /// is not the master, such as the one [`SentinelSet::kill_master`]
    /// killed.
    ///
    /// # Panics
    /// If it does not come back, or not as a replica within 20 s.
    pub fn restart_node(&mut self, port: u16) {
        self.node_mut(port).restart();
        self.wait_for_replica_of_master(port);
    }

    /// Waits until the data node on `port` replicates from the current
    /// master with its link up, and every Sentinel sees it as a replica.
    /// A restarted former master comes back as a master with no data; the
    /// Sentinels turn it into a replica about 2 s after they notice it.
    /// The master is asked for again at every check: on a loaded machine
    /// the Sentinels may fail over once more meanwhile, and the node then
    /// becomes a replica of that one.
    ///
    /// # Panics
    /// If that does not happen within 20 s, or `port` is the master's.
    pub fn wait_for_replica_of_master(&self, port: u16) {
        let node = self.node(port);
        let mut master_port = 0;
        self.wait_until(&format!("port {port} to replicate from the master"), || {
            master_port = self.reported_master()?;
            if port == master_port {
                self.fail(&format!(
                    "port {port} is the master's: it cannot become its replica"
                ));
            }
            linked(node, self.node(master_port))
        });
        self.wait_for_streaming_replicas(master_port);
        self.wait_for_sentinels(master_port);
    }

    /// The contents of Sentinel `i`'s log file (`i` < 3, in the order of
    /// [`SentinelSet::sentinel_addrs`]).
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn sentinel_log(&self, i: usize) -> String {
        self.sentinels[i].dir.read(LOG_FILE)
    }

    /// Runs one command on Sentinel `i` on a fresh connection, e.g.
    /// `set.sentinel_cmd::<Vec<String>>(0, &["SENTINEL",
    /// "get-master-addr-by-name", set.master_name()])`.
    ///
    /// # Panics
    /// On any error, naming the command; and if `args` is empty or `i` is
    /// out of range.
    pub fn sentinel_cmd<T: redis::FromRedisValue>(&self, i: usize, args: &[&str]) -> T {
        self.sentinels[i].cmd(args).unwrap_or_else(|e| {
            self.fail(&format!(
                "Sentinel on port {}: `{}` failed: {e}",
                self.sentinels[i].port,
                args.join(" ")
            ))
        })
    }

    /// Waits until every Sentinel reports a master other than `old`, the
    /// same one, which answers as a master and which every other running
    /// data node replicates from; then until the Sentinels see it all (so
    /// another failover can be authorised). Returns the new master's port.
    /// For a failover a test brings about itself (say, killing the master
    /// while its replicas are paused, then resuming them).
    ///
    /// # Panics
    /// If that does not happen within 20 s.
    pub fn wait_for_new_master(&self, old: u16) -> u16 {
        // One check of everything, again from the top while it fails: on
        // a loaded machine the Sentinels can fail a fresh master over once
        // more (it missed their pings), and the set then settles on that one.
        let mut new = 0;
        self.wait_until("the set to settle on a new master", || {
            new = self.agreed_new_master(old)?;
            if !self.has_node(new) {
                self.fail(&format!(
                    "the Sentinels promoted port {new}, not a data node"
                ));
            }
            let master = self.node(new);
            match replication(master)?.get("role").map(String::as_str) {
                Some("master") => {}
                other => return Err(format!("port {new} has role {other:?}")),
            }
            let replicas: Vec<&RedisServer> = self
                .nodes
                .iter()
                .filter(|n| n.port() != new && n.is_running())
                .collect();
            replicas.iter().try_for_each(|n| linked(n, master))?;
            let ports: Vec<u16> = replicas.iter().map(|n| n.port()).collect();
            self.sentinels
                .iter()
                .try_for_each(|s| s.sees(&self.name, new, &ports))
        });
        self.wait_for_streaming_replicas(new);
        new
    }

    /// Waits until every running data node but the master on `master_port`
    /// acknowledges a write to it: a replica the master lists as online may
    /// not get the stream yet ([`RedisServer::wait_for_replicas`]), and a
    /// test that writes next expects every replica to have its write.
    fn wait_for_streaming_replicas(&self, master_port: u16) {
        let running = self
            .nodes
            .iter()
            .filter(|n| n.port() != master_port && n.is_running())
            .count();
        self.node(master_port).wait_for_replicas(running);
    }

    /// Waits until every Sentinel reports `master_port` as the master, sees
    /// it up, sees every running data node but it as a replica that is up,
    /// and sees the two other Sentinels: what a failover needs.
    fn wait_for_sentinels(&self, master_port: u16) {
        let replicas: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.port() != master_port && n.is_running())
            .map(RedisServer::port)
            .collect();
        self.wait_until("every Sentinel to see the whole set", || {
            self.sentinels
                .iter()
                .try_for_each(|s| s.sees(&self.name, master_port, &replicas))
        });
    }

    /// Polls `check` every [`POLL`] until it passes; panics with its last
    /// complaint and the Sentinels' logs after [`WAIT_TIMEOUT`].
    fn wait_until(&self, what: &str, check: impl FnMut() -> Result<(), String>) {
        if let Err(last) = crate::poll::poll_until(WAIT_TIMEOUT, POLL, check) {
            self.fail(&format!(
                "waited {WAIT_TIMEOUT:?} for {what} (last: {last})"
            ));
        }
    }

    fn has_node(&self, port: u16) -> bool {
        self.nodes.iter().any(|n| n.port() == port)
    }

    /// Panics with `why` and the end of every Sentinel's log.
    fn fail(&self, why: &str) -> ! {
        let mut message = format!("Sentinel set {}: {why}", self.name);
        for s in &self.sentinels {
            message.push_str(&format!(
                "\n--- Sentinel on port {}, {LOG_FILE} (last {LOG_TAIL} lines) ---\n{}",
                s.port,
                tail(&s.dir.read(LOG_FILE))
            ));
        }
        panic!("{message}")
    }
}

impl Sentinel {
    /// Starts a Sentinel monitoring `127.0.0.1:master_port` as `name`,
    /// retrying on a new port if another process takes the chosen one.
    fn start(name: &str, master_port: u16, pki: Option<&TestPki>) -> Self {
        let dir = ScratchDir::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let options = ServerOptions {
                tls: pki.map(|_| TlsMode::default()),
                ..ServerOptions::default()
            };
            let target = Target::new(port, &options, pki);
            let log_start = dir.read(LOG_FILE).len();
            let mut child = spawn(&dir, name, master_port, port, pki);
            let why = match wait_ready(&mut child, &target) {
                Ok(()) => {
                    let sentinel = Self {
                        port,
                        target,
                        child,
                        dir,
                    };
                    sentinel.tune();
                    return sentinel;
                }
                Err(why) => why,
            };
            let _ = child.kill();
            let _ = child.wait();
            let log = dir.read(LOG_FILE);
            if !log
                .get(log_start..)
                .unwrap_or(&log)
                .contains("Address already in use")
            {
                panic!(
                    "Sentinel on port {port} {why}\n--- {LOG_FILE} ---\n{log}\n--- {STDERR_FILE} ---\n{}",
                    dir.read(STDERR_FILE)
                );
            }
        }
        panic!(
            "Sentinel lost its port to another process {START_ATTEMPTS} times\n--- {LOG_FILE} ---\n{}",
            dir.read(LOG_FILE)
        )
    }

    /// Sets [`DEBUG_PERIODS`].
    fn tune(&self) {
        let mut args = vec!["SENTINEL", "DEBUG"];
        args.extend(DEBUG_PERIODS);
        if let Err(e) = self.cmd::<()>(&args) {
            panic!(
                "Sentinel on port {}: `{}` failed: {e} (Redis ≥ 7.0 or Valkey needed)",
                self.port,
                args.join(" ")
            );
        }
    }

    /// One command on a fresh connection.
    fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let (name, rest) = args.split_first().expect("a command needs a name");
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.target.connect(CONNECT_TIMEOUT, IO_TIMEOUT)?)
    }

    /// The master's port as this Sentinel reports it.
    fn master_addr(&self, name: &str) -> Result<u16, String> {
        let addr: Option<(String, String)> = self
            .cmd(&["SENTINEL", "get-master-addr-by-name", name])
            .map_err(|e| format!("Sentinel on port {}: {e}", self.port))?;
        let (_, port) = addr.ok_or_else(|| format!("Sentinel on port {}: no master", self.port))?;
        port.parse()
            .map_err(|e| format!("Sentinel on port {}: port {port:?}: {e}", self.port))
    }

    /// `Ok` if this Sentinel reports `master_port` as the master, up, all
    /// of `replicas` as replicas that are up, and two other Sentinels up.
    fn sees(&self, name: &str, master_port: u16, replicas: &[u16]) -> Result<(), String> {
        let me = format!("Sentinel on port {}", self.port);
        let reported = self.master_addr(name)?;
        if reported != master_port {
            return Err(format!("{me} reports master {reported}, not {master_port}"));
        }
        let master: HashMap<String, String> = self
            .cmd(&["SENTINEL", "MASTER", name])
            .map_err(|e| format!("{me}: {e}"))?;
        if !is_up(&master) {
            return Err(format!("{me}: master flags {:?}", master.get("flags")));
        }
        let known: Vec<HashMap<String, String>> = self
            .cmd(&["SENTINEL", "REPLICAS", name])
            .map_err(|e| format!("{me}: {e}"))?;
        for port in replicas {
            let port = port.to_string();
            match known.iter().find(|r| r.get("port") == Some(&port)) {
                Some(r) if is_up(r) => {}
                Some(r) => return Err(format!("{me}: replica {port} flags {:?}", r.get("flags"))),
                None => return Err(format!("{me}: does not know replica {port} yet")),
            }
        }
        let others: Vec<HashMap<String, String>> = self
            .cmd(&["SENTINEL", "SENTINELS", name])
            .map_err(|e| format!("{me}: {e}"))?;
        let up = others.iter().filter(|s| is_up(s)).count();
        if up < SENTINELS - 1 {
            return Err(format!(
                "{me}: sees {up} other Sentinels up, not {}",
                SENTINELS - 1
            ));
        }
        Ok(())
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` is removed when the fields drop, right after this.
    }
}

/// Writes `sentinel.conf` (a Sentinel needs a config file it can rewrite:
/// it records what it learns there) and spawns `redis-server CONF
/// --sentinel` on `port`.
fn spawn(
    dir: &ScratchDir,
    name: &str,
    master_port: u16,
    port: u16,
    pki: Option<&TestPki>,
) -> Child {
    // TLS only: its port the TLS port, and TLS to the data nodes and the
    // other Sentinels too (`tls-replication`).
    let listen = match pki {
        None => format!("port {port}\n"),
        Some(pki) => {
            let cert = ServerCert::default();
            format!(
                "port 0\n\
                 tls-port {port}\n\
                 tls-cert-file {}\n\
                 tls-key-file {}\n\
                 tls-ca-cert-file {}\n\
                 tls-client-cert-file {}\n\
                 tls-client-key-file {}\n\
                 tls-auth-clients no\n\
                 tls-replication yes\n",
                pki.server_cert_path(cert).display(),
                pki.server_key_path(cert).display(),
                pki.ca_path().display(),
                pki.client_cert_path().display(),
                pki.client_key_path().display(),
            )
        }
    };
    let conf = format!(
        "{listen}\
         bind 127.0.0.1\n\
         protected-mode no\n\
         daemonize no\n\
         dir {dir}\n\
         logfile {log}\n\
         sentinel monitor {name} 127.0.0.1 {master_port} {QUORUM}\n\
         sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {name} 2\n",
        dir = dir.path().display(),
        log = dir.path().join(LOG_FILE).display(),
    );
    let conf_path = dir.path().join(CONF_FILE);
    // A fresh file per attempt: a Sentinel that lost its port may have
    // written its id there already.
    std::fs::write(&conf_path, conf)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
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
    // The same binary as the data nodes (Valkey's runs as a Sentinel too).
    let bin =
        std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| OsString::from("redis-server"));
    let mut cmd = Command::new(&bin);
    cmd.arg(&conf_path)
        .arg("--sentinel")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "redis-server not found as {bin:?} (set REDIS_SERVER_BIN or install it: \
             `apt-get install -y redis-server`)"
        ),
        Err(e) => panic!("cannot run {bin:?} as a Sentinel: {e}"),
    }
}

/// `Ok` if `replica` replicates from `master` with its link up and the
/// master counts it as an online replica (so `WAIT 1` can be answered).
fn linked(replica: &RedisServer, master: &RedisServer) -> Result<(), String> {
    let me = format!("port {}", replica.port());
    let info = replication(replica)?;
    let field = |k: &str| info.get(k).map(String::as_str);
    let wanted = master.port().to_string();
    if field("role") != Some("slave") || field("master_port") != Some(wanted.as_str()) {
        return Err(format!(
            "{me}: role {:?}, master port {:?}",
            field("role"),
            field("master_port")
        ));
    }
    if field("master_link_status") != Some("up") {
        return Err(format!(
            "{me}: link to {wanted} {:?}",
            field("master_link_status")
        ));
    }
    let online = format!("port={},state=online", replica.port());
    let seen = replication(master)?
        .iter()
        .any(|(k, v)| k.starts_with("slave") && v.contains(&online));
    if !seen {
        return Err(format!("master {wanted} does not list {me} online yet"));
    }
    Ok(())
}

/// `INFO replication` of `node`, as fields.
fn replication(node: &RedisServer) -> Result<HashMap<String, String>, String> {
    let info: String = node
        .try_cmd(&["INFO", "replication"])
        .map_err(|e| format!("port {}: INFO: {e}", node.port()))?;
    Ok(info
        .lines()
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Whether an instance a Sentinel describes is reachable and not thought
/// down.
fn is_up(instance: &HashMap<String, String>) -> bool {
    let flags = instance.get("flags").map_or("", String::as_str);
    !flags
        .split(',')
        .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
}

/// The last [`LOG_TAIL`] lines of `log`.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
}
