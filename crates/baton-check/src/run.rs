//! The run: private Redis nodes behind fault proxies, the fenced store,
//! client processes, the nemesis schedule; then the history is merged and
//! checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_test_support::{FaultProxy, LocalCluster, Mode, RedisServer, SentinelSet, ServerOptions};
use tokio::process::{Child, Command};
use tokio::time::{sleep, sleep_until, Instant};

use crate::check::{check, Report};
use crate::history::{load, Op, Primitive, Recorder};
use crate::nemesis::{Fault, Planned, Rng, Schedule, Topology};
use crate::store::Store;

/// The lock every client contends for.
pub const LOCK: &str = "check";

/// What to run.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// Separate servers, or a Sentinel set.
    pub topology: Topology,
    /// The clients' replica acknowledgement (`min_replicas`); 0 = off.
    pub min_replicas: usize,
    /// Redis nodes: 1 = single server, more = Redlock (separate servers only).
    pub nodes: usize,
    /// Client processes.
    pub clients: usize,
    /// How long the clients contend.
    pub duration: Duration,
    /// The faults the nemesis may inject.
    pub nemesis: Vec<Fault>,
    /// The lock's TTL.
    pub ttl: Duration,
    /// How many nodes run without persistence (the first ones).
    pub volatile: usize,
    /// The per-node request timeout of the clients.
    pub node_timeout: Duration,
    /// Where the history files go.
    pub out: PathBuf,
    /// The nemesis schedule's seed.
    pub seed: u64,
    /// `false`: the store accepts stale fences (to show what fencing buys).
    pub fenced: bool,
    /// What the clients contend for.
    pub primitive: Primitive,
    /// A semaphore's permits.
    pub permits: u32,
}

/// What a run produced.
pub struct Outcome {
    /// The checks' verdicts and counts.
    pub report: Report,
    /// The merged history.
    pub history: PathBuf,
}

/// One client process slot: its current incarnation.
struct Slot {
    index: usize,
    incarnation: usize,
    child: Option<Child>,
    name: String,
}

/// Everything the run owns.
struct Cluster {
    args: RunArgs,
    exe: PathBuf,
    servers: Vec<RedisServer>,
    proxies: Vec<FaultProxy>,
    /// `--topology sentinel`: the set (and no `servers` or `proxies`).
    sentinel: Option<SentinelSet>,
    /// `--topology cluster`: the cluster (and no `servers` or `proxies`).
    local_cluster: Option<LocalCluster>,
    /// A master killed by a Sentinel or Cluster fault, to bring back as a
    /// replica (or, for `lose-writes` on a cluster, the master to kill).
    killed_master: Option<u16>,
    /// The replicas a cluster's `lose-writes` paused (asked before: a
    /// paused node cannot say what it is).
    cut_replicas: Vec<u16>,
    store: Store,
    clients: Vec<Slot>,
    nemesis: Recorder,
    rng: Rng,
    schedule: Schedule,
}

/// Runs the whole thing. Errors only if it cannot set up.
pub async fn run(args: RunArgs) -> Result<Outcome, String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut entries = std::fs::read_dir(&args.out).map_err(|e| e.to_string())?;
    let ours = ["history.jsonl", "checker.jsonl"]
        .iter()
        .any(|f| args.out.join(f).exists());
    if entries.next().is_some() && !ours {
        return Err(format!(
            "{} is not empty and not a baton-check output directory: choose another --out",
            args.out.display()
        ));
    }
    for entry in std::fs::read_dir(&args.out).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path
            .extension()
            .is_some_and(|x| x == "jsonl" || x == "stderr")
        {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let recorder = |name: &str| {
        Recorder::open(&args.out.join(format!("{name}.jsonl")), name)
            .map_err(|e| format!("history: {e}"))
    };
    let checker = recorder("checker")?;
    let nemesis = recorder("nemesis")?;
    let store = Store::start(recorder("store")?, args.fenced)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let (servers, sentinel, local_cluster): (Vec<RedisServer>, _, _) = match args.topology {
        Topology::Servers => (
            tokio::task::block_in_place(|| {
                (0..args.nodes)
                    .map(|i| {
                        RedisServer::start_with(
                            ServerOptions::default().persistence(i >= args.volatile),
                        )
                    })
                    .collect()
            }),
            None,
            None,
        ),
        Topology::Sentinel => (
            Vec::new(),
            Some(tokio::task::block_in_place(SentinelSet::start)),
            None,
        ),
        Topology::Cluster => (
            Vec::new(),
            None,
            Some(tokio::task::block_in_place(LocalCluster::start)),
        ),
    };
    // The nodes as the checker counts them: a Sentinel set is one (its master).
    let nodes = servers.len().max(1);
    let mut proxies = Vec::new();
    for server in &servers {
        proxies.push(FaultProxy::start(server.addr()).await);
    }
    let settle = settle(&args);
    checker.record(Op::Meta {
        nodes,
        clients: args.clients,
        ttl_ms: args.ttl.as_millis() as u64,
        settle_ms: settle.as_millis() as u64,
        volatile: args.volatile,
        primitive: args.primitive,
        permits: if args.primitive == Primitive::Semaphore {
            args.permits as usize
        } else {
            0
        },
    });
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let volatile: Vec<bool> = (0..nodes).map(|i| i < args.volatile).collect();
    let mut cluster = Cluster {
        rng: Rng::new(args.seed),
        schedule: Schedule::new(&args.nemesis, &volatile, args.topology),
        args,
        exe,
        servers,
        proxies,
        sentinel,
        local_cluster,
        killed_master: None,
        cut_replicas: Vec::new(),
        store,
        clients: Vec::new(),
        nemesis,
    };
    for index in 0..cluster.args.clients {
        let slot = cluster.spawn(index, 0)?;
        cluster.clients.push(slot);
    }

    let end = Instant::now() + cluster.args.duration;
    // Long enough for the liveness check to look at a few TTLs of it.
    let quiet = settle + cluster.args.ttl * 3;
    sleep_until(end.min(Instant::now() + quiet)).await;
    while !cluster.schedule.kinds().is_empty() && Instant::now() + cluster.args.ttl * 4 < end {
        cluster.phase().await?;
        sleep_until(end.min(Instant::now() + quiet)).await;
    }
    sleep_until(end).await;

    checker.record(Op::Stop);
    cluster.stop_clients(&checker).await;
    checker.record(Op::Final {
        value: cluster.store.value(),
    });
    // Keys of killed clients and of abandoned attempts expire within a TTL
    // (a fair lock's queue entries within theirs).
    sleep(cluster.args.ttl + queue_entry_ttl(&cluster.args) + Duration::from_millis(200)).await;
    let fence_key = baton_core::Keys::new(baton_core::name::DEFAULT_PREFIX, LOCK)
        .map_err(|e| e.to_string())?
        .fence;
    let scanned: Vec<Vec<String>> = tokio::task::block_in_place(|| {
        match (&cluster.sentinel, &cluster.local_cluster) {
            (Some(set), _) => vec![set.master().keys()],
            // One node to the checker: every master's keys.
            (_, Some(local)) => vec![local.keys()],
            _ => cluster.servers.iter().map(RedisServer::keys).collect(),
        }
    });
    for (node, keys) in scanned.into_iter().enumerate() {
        checker.record(Op::Leftover {
            node,
            keys: keys.into_iter().filter(|k| *k != fence_key).collect(),
        });
    }
    let out = cluster.args.out.clone();
    drop(cluster);

    let history = merge(&out)?;
    let events = load(&[&history]).map_err(|e| format!("{}: {e}", history.display()))?;
    Ok(Outcome {
        report: check(&events),
        history,
    })
}

/// How long after every fault has healed acquisitions must succeed again:
/// a killed holder's key expires (a TTL), clients reconnect (node timeouts)
/// and a waiter's fallback retry comes round (a TTL). A fair lock's killed
/// or paused waiter at the head of the queue keeps its place until its
/// entry lapses, and a lock handed to it lives as long again.
pub fn settle(args: &RunArgs) -> Duration {
    args.ttl * 3 + args.node_timeout * 2 + queue_entry_ttl(args) * 2 + Duration::from_millis(200)
}

/// How long a fair lock's queue entry outlives its waiter's last look (the
/// library's: three retry intervals of at least `FAIR_RETRY_INTERVAL`); zero
/// for the other primitives.
fn queue_entry_ttl(args: &RunArgs) -> Duration {
    match args.primitive {
        Primitive::Fair => (args.ttl / 5).max(baton::FAIR_RETRY_INTERVAL) * 3,
        _ => Duration::ZERO,
    }
}

/// Merges every process's history file into `history.jsonl`, in time order.
fn merge(out: &Path) -> Result<PathBuf, String> {
    let merged = out.join("history.jsonl");
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(out).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|x| x == "jsonl") && path != merged {
            parts.push(path);
        }
    }
    let events = load(&parts).map_err(|e| format!("history: {e}"))?;
    let mut text = String::new();
    for event in &events {
        text.push_str(&serde_json::to_string(event).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    std::fs::write(&merged, text).map_err(|e| format!("{}: {e}", merged.display()))?;
    for part in parts {
        let _ = std::fs::remove_file(part);
    }
    Ok(merged)
}

/// A fault in progress, and how to heal it.
enum Active {
    Node { fault: Fault, node: usize },
    Client { fault: Fault, slot: usize },
}

impl Cluster {
    /// Starts incarnation `incarnation` of client `index`.
    fn spawn(&self, index: usize, incarnation: usize) -> Result<Slot, String> {
        let name = format!("c{index}.{incarnation}");
        let urls: Vec<String> = match (&self.sentinel, &self.local_cluster) {
            (Some(set), _) => vec![set.url()],
            (_, Some(local)) => vec![local.seeds_url()],
            _ => self.proxies.iter().map(FaultProxy::url).collect(),
        };
        let out = &self.args.out;
        let stderr = std::fs::File::create(out.join(format!("{name}.stderr")))
            .map_err(|e| format!("client stderr: {e}"))?;
        let child = Command::new(&self.exe)
            .arg("client")
            .args(["--process", &name])
            .args(["--urls", &urls.join(",")])
            .args(["--store", &self.store.addr().to_string()])
            .arg("--history")
            .arg(out.join(format!("{name}.jsonl")))
            .args(["--lock", LOCK])
            .args(["--ttl-ms", &self.args.ttl.as_millis().to_string()])
            .args([
                "--node-timeout-ms",
                &self.args.node_timeout.as_millis().to_string(),
            ])
            .args(["--min-replicas", &self.args.min_replicas.to_string()])
            .args(["--primitive", self.args.primitive.name()])
            .args(["--permits", &self.args.permits.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a client: {e}"))?;
        Ok(Slot {
            index,
            incarnation,
            child: Some(child),
            name,
        })
    }

    /// One fault phase: inject, wait, heal.
    async fn phase(&mut self) -> Result<(), String> {
        let planned = self.schedule.next_phase(&mut self.rng);
        let ttl = self.args.ttl;
        let mut until = Instant::now() + self.rng.between(ttl, ttl * 4);
        let mut active = Vec::new();
        let mut clients_hit = Vec::new();
        for Planned { fault, node } in planned {
            if fault.on_client() {
                let Some(slot) = self.client_target(&clients_hit) else {
                    continue;
                };
                clients_hit.push(slot);
                self.start_client_fault(fault, slot);
                if fault == Fault::PauseClient {
                    // Past its TTL: the holder's lease lapses while it is stopped.
                    until = until.max(Instant::now() + ttl * 3 / 2);
                }
                active.push(Active::Client { fault, slot });
            } else {
                if let Some(at) = self.start_node_fault(fault, node) {
                    until = until.max(at);
                }
                active.push(Active::Node { fault, node });
            }
        }
        sleep_until(until).await;
        for fault in active.into_iter().rev() {
            match fault {
                Active::Node { fault, node } => self.heal_node(fault, node),
                Active::Client { fault, slot } => self.heal_client(fault, slot).await?,
            }
        }
        Ok(())
    }

    /// The client to pause or kill: the last reader of the store (most
    /// likely the holder), else any, never one already hit this phase.
    fn client_target(&mut self, hit: &[usize]) -> Option<usize> {
        let reader = self.store.last_reader();
        let free: Vec<usize> = (0..self.clients.len())
            .filter(|i| !hit.contains(i))
            .collect();
        free.iter()
            .copied()
            .find(|&i| Some(&self.clients[i].name) == reader.as_ref())
            .or_else(|| (!free.is_empty()).then(|| free[self.rng.below(free.len())]))
    }

    fn start_client_fault(&mut self, fault: Fault, slot: usize) {
        let client = &mut self.clients[slot];
        self.nemesis.record(Op::FaultStart {
            fault: fault.name().into(),
            target: client.name.clone(),
        });
        let signal = match fault {
            Fault::PauseClient => nix::sys::signal::Signal::SIGSTOP,
            _ => nix::sys::signal::Signal::SIGKILL,
        };
        signal_child(client, signal);
    }

    async fn heal_client(&mut self, fault: Fault, slot: usize) -> Result<(), String> {
        let name = self.clients[slot].name.clone();
        match fault {
            Fault::PauseClient => {
                signal_child(&self.clients[slot], nix::sys::signal::Signal::SIGCONT)
            }
            _ => {
                if let Some(mut child) = self.clients[slot].child.take() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                self.nemesis.record(Op::Exited {
                    client: name.clone(),
                    status: "killed by the nemesis".into(),
                    clean: true,
                });
                let (index, incarnation) =
                    (self.clients[slot].index, self.clients[slot].incarnation);
                self.clients[slot] = self.spawn(index, incarnation + 1)?;
            }
        }
        self.nemesis.record(Op::FaultEnd {
            fault: fault.name().into(),
            target: name,
        });
        Ok(())
    }

    /// Injects a node fault; returns the earliest time it may be healed.
    fn start_node_fault(&mut self, fault: Fault, node: usize) -> Option<Instant> {
        let target = format!("node{node}");
        self.nemesis.record(Op::FaultStart {
            fault: fault.name().into(),
            target: target.clone(),
        });
        let ttl = self.args.ttl;
        if let Some(local) = &mut self.local_cluster {
            let slot = lock_slot();
            tokio::task::block_in_place(|| match fault {
                Fault::Failover => {
                    local.failover_master_of_slot(slot);
                }
                Fault::Migrate => {
                    let from = local.master_of_slot(slot).port();
                    let to = local
                        .masters()
                        .into_iter()
                        .map(RedisServer::port)
                        .find(|&p| p != from)
                        .expect("a cluster has three masters");
                    local.migrate_slot(slot, to);
                }
                Fault::KillMaster => {
                    let old = local.master_of_slot(slot).port();
                    local.node_mut(old).kill();
                    local.wait_until_stable();
                    self.killed_master = Some(old);
                }
                Fault::LoseWrites => {
                    let master = local.master_of_slot(slot).port();
                    self.cut_replicas = local.replicas().iter().map(|r| r.port()).collect();
                    for &replica in &self.cut_replicas {
                        local.node(replica).pause();
                    }
                    let _ = local
                        .node(master)
                        .try_cmd::<i64>(&["CLIENT", "KILL", "TYPE", "replica"]);
                    self.killed_master = Some(master);
                }
                other => unreachable!("{other:?} is not a Cluster fault"),
            });
            if matches!(fault, Fault::Failover | Fault::Migrate) {
                self.nemesis.record(Op::FaultEnd {
                    fault: fault.name().into(),
                    target,
                });
            }
            return None;
        }
        if let Some(set) = &mut self.sentinel {
            tokio::task::block_in_place(|| match fault {
                Fault::Failover => {
                    set.failover();
                }
                Fault::KillMaster => {
                    let old = set.master_port();
                    set.kill_master();
                    self.killed_master = Some(old);
                }
                Fault::LoseWrites => {
                    for replica in set.replicas() {
                        replica.pause();
                    }
                    let _ = set
                        .master()
                        .try_cmd::<i64>(&["CLIENT", "KILL", "TYPE", "replica"]);
                }
                other => unreachable!("{other:?} is not a Sentinel fault"),
            });
            if fault == Fault::Failover {
                self.nemesis.record(Op::FaultEnd {
                    fault: fault.name().into(),
                    target,
                });
            }
            return None;
        }
        let server = &mut self.servers[node];
        let proxy = &self.proxies[node];
        match fault {
            Fault::Kill => tokio::task::block_in_place(|| server.kill()),
            Fault::KillVolatile => {
                tokio::task::block_in_place(|| server.kill());
                // Redlock's delayed restart: no key it held may still count.
                return Some(
                    Instant::now()
                        + ttl
                        + baton_core::quorum::drift(ttl)
                        + Duration::from_millis(100),
                );
            }
            Fault::Pause => tokio::task::block_in_place(|| server.pause()),
            Fault::Blackhole => proxy.set_mode(Mode::Blackhole),
            Fault::Delay => {
                // Per chunk and direction: slow round trips, some still
                // inside the node timeout.
                let timeout = self.args.node_timeout;
                let delay = self.rng.between(timeout / 20, timeout / 2);
                proxy.set_mode(Mode::Delay(delay));
            }
            Fault::DropReplies => proxy.set_mode(Mode::DropReplies),
            Fault::Reset => proxy.set_mode(Mode::Reset),
            Fault::ScriptFlush => {
                let _ = tokio::task::block_in_place(|| server.try_cmd::<()>(&["SCRIPT", "FLUSH"]));
                self.nemesis.record(Op::FaultEnd {
                    fault: fault.name().into(),
                    target,
                });
            }
            Fault::PauseClient | Fault::KillClient => {
                unreachable!("client faults are not node faults")
            }
            Fault::Failover | Fault::KillMaster | Fault::LoseWrites | Fault::Migrate => {
                unreachable!("failover faults need a Sentinel set or a cluster")
            }
        }
        None
    }

    fn heal_node(&mut self, fault: Fault, node: usize) {
        if let Some(local) = &mut self.local_cluster {
            let killed = self.killed_master.take();
            tokio::task::block_in_place(|| match fault {
                // Instant: already ended.
                Fault::Failover | Fault::Migrate => {}
                Fault::KillMaster => {
                    if let Some(old) = killed {
                        local.node_mut(old).restart();
                        local.wait_until_stable();
                    }
                }
                Fault::LoseWrites => {
                    // The writes since the cut are on the master alone: kill
                    // it, and let the replicas (which never saw them) back.
                    if let Some(old) = killed {
                        local.node_mut(old).kill();
                        for replica in std::mem::take(&mut self.cut_replicas) {
                            local.node(replica).resume();
                        }
                        local.wait_until_stable();
                        local.node_mut(old).restart();
                        local.wait_until_stable();
                    }
                }
                other => unreachable!("{other:?} is not a Cluster fault"),
            });
            if !matches!(fault, Fault::Failover | Fault::Migrate) {
                self.nemesis.record(Op::FaultEnd {
                    fault: fault.name().into(),
                    target: format!("node{node}"),
                });
            }
            return;
        }
        if let Some(set) = &mut self.sentinel {
            let killed = self.killed_master.take();
            tokio::task::block_in_place(|| match fault {
                // Instant: already ended.
                Fault::Failover => {}
                Fault::KillMaster => {
                    if let Some(old) = killed {
                        set.restart_node(old);
                    }
                }
                Fault::LoseWrites => {
                    // The writes since the cut are on the master alone: kill
                    // it, and let the replicas (which never saw them) back.
                    let old = set.master_port();
                    set.node_mut(old).kill();
                    for replica in set.replicas() {
                        replica.resume();
                    }
                    set.wait_for_new_master(old);
                    set.restart_node(old);
                }
                other => unreachable!("{other:?} is not a Sentinel fault"),
            });
            if fault != Fault::Failover {
                self.nemesis.record(Op::FaultEnd {
                    fault: fault.name().into(),
                    target: format!("node{node}"),
                });
            }
            return;
        }
        let server = &mut self.servers[node];
        match fault {
            Fault::Kill | Fault::KillVolatile => tokio::task::block_in_place(|| server.restart()),
            Fault::Pause => tokio::task::block_in_place(|| server.resume()),
            Fault::Blackhole | Fault::Delay | Fault::DropReplies | Fault::Reset => {
                self.proxies[node].set_mode(Mode::Pass)
            }
            // Instant: already ended.
            Fault::ScriptFlush => return,
            Fault::PauseClient | Fault::KillClient => {
                unreachable!("client faults are not node faults")
            }
            Fault::Failover | Fault::KillMaster | Fault::LoseWrites | Fault::Migrate => {
                unreachable!("failover faults need a Sentinel set or a cluster")
            }
        }
        self.nemesis.record(Op::FaultEnd {
            fault: fault.name().into(),
            target: format!("node{node}"),
        });
    }

    /// Tells every client to stop after its current round, waits, and
    /// records how each ended.
    async fn stop_clients(&mut self, checker: &Recorder) {
        let mut early = Vec::new();
        for client in &mut self.clients {
            // One that is gone already crashed: nobody told it to stop.
            if let Some(status) = client
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                early.push((client.name.clone(), status));
                client.child = None;
            }
            signal_child(client, nix::sys::signal::Signal::SIGCONT);
            signal_child(client, nix::sys::signal::Signal::SIGTERM);
        }
        for (client, status) in early {
            checker.record(Op::Exited {
                client,
                status: format!("ended before it was told to stop: {status}"),
                clean: false,
            });
        }
        // A round is at most a wait (two TTLs), the work and a release.
        let grace = self.args.ttl * 4 + self.args.node_timeout * 4 + Duration::from_secs(5);
        for client in &mut self.clients {
            let Some(mut child) = client.child.take() else {
                continue;
            };
            let (status, clean) = match tokio::time::timeout(grace, child.wait()).await {
                Ok(Ok(status)) => (status.to_string(), status.success()),
                Ok(Err(e)) => (format!("could not be waited for: {e}"), false),
                Err(_) => {
                    let _ = child.kill().await;
                    (format!("did not stop within {grace:?}; killed"), false)
                }
            };
            checker.record(Op::Exited {
                client: client.name.clone(),
                status,
                clean,
            });
        }
    }
}

/// The cluster slot of the lock every client contends for.
fn lock_slot() -> u16 {
    let keys = baton_core::Keys::new(baton_core::name::DEFAULT_PREFIX, LOCK)
        .expect("the checker's lock name is valid");
    LocalCluster::slot_of(&keys.lock)
}

fn signal_child(slot: &Slot, signal: nix::sys::signal::Signal) {
    if let Some(pid) = slot.child.as_ref().and_then(Child::id) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
    }
}
