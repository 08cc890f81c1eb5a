//! A local Redis Cluster of private [`RedisServer`]s: three masters with one
//! replica each, built with cluster commands (no `redis-cli`, which a
//! Valkey-only machine may not have).

use std::time::Duration;

use crate::launch::LOG_FILE;
use crate::topology_pki::TopologyPki;
use crate::{RedisServer, ServerOptions, TestPki};

/// Masters at start; node `i + MASTERS` starts as the replica of node `i`.
const MASTERS: usize = 3;
/// The slots each master starts with, as `redis-cli --cluster create` splits
/// them.
const SLOT_RANGES: [(u16, u16); MASTERS] = [(0, 5460), (5461, 10922), (10923, 16383)];
/// Hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;
/// How long each wait for the cluster to converge may take before it is a
/// failure rather than slowness.
const WAIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Between polls of a wait: short, since gossip settles in milliseconds.
const POLL: Duration = Duration::from_millis(20);
/// Keys moved per `MIGRATE`.
const MIGRATE_BATCH: usize = 100;
/// `MIGRATE`'s own timeout, in ms.
const MIGRATE_TIMEOUT_MS: &str = "5000";
/// Lines of each node's log in a panic message: the end is what explains a
/// cluster that does not converge, and six whole logs would drown it.
const LOG_TAIL_LINES: usize = 40;

/// A local Redis Cluster: six cluster-mode [`RedisServer`]s on free
/// loopback ports, three masters owning slots 0-5460, 5461-10922 and
/// 10923-16383, and one replica of each. Every node is killed and its
/// directory removed on drop.
///
/// Built the way an operator would with commands only: `CLUSTER
/// ADDSLOTS` on the masters, `CLUSTER MEET` to join, `CLUSTER
/// REPLICATE` for the replicas; [`LocalCluster::start`] returns once every
/// node agrees. Cluster defaults are kept (`cluster-require-full-coverage
/// yes`: while any slot has no live master, the whole cluster refuses
/// commands), with a short `cluster-node-timeout` (1.5 s) so that a killed
/// master is replaced by its replica within a few seconds.
///
/// Nodes are found by port ([`LocalCluster::node`],
/// [`LocalCluster::node_mut`] to kill, pause or restart one). Roles and slot
/// owners are not fixed: [`LocalCluster::masters`],
/// [`LocalCluster::master_of_slot`] and the like ask the cluster each time.
/// After a fault (a kill, a restart), [`LocalCluster::wait_until_stable`]
/// waits for the cluster to settle, e.g. for a replica to take over from a
/// killed master.
///
/// ```
/// use baton_test_support::LocalCluster;
///
/// let cluster = LocalCluster::start();
/// let slot = LocalCluster::slot_of("{user:1}:lock");
/// let master = cluster.master_of_slot(slot);
/// master.cmd::<()>(&["SET", "{user:1}:lock", "x"]);
/// assert_eq!(cluster.keys(), ["{user:1}:lock"]);
///
/// // Move the slot to another master, keys and all.
/// let other = cluster.masters().into_iter().find(|m| m.port() != master.port()).unwrap();
/// let other = other.port();
/// cluster.migrate_slot(slot, other);
/// assert_eq!(cluster.master_of_slot(slot).port(), other);
///
/// // Promote that master's replica.
/// let promoted = cluster.failover_master_of_slot(slot);
/// assert_ne!(promoted, other);
/// assert_eq!(cluster.master_of_slot(slot).port(), promoted);
/// ```
#[derive(Debug)]
pub struct LocalCluster {
    /// In start order: the three first masters, then their replicas.
    nodes: Vec<RedisServer>,
    /// `CLUSTER MYID` of each node, same order. Fixed: a restarted node
    /// reads its identity back from its `nodes.conf`.
    ids: Vec<String>,
    /// The one PKI of a TLS cluster ([`LocalCluster::start_tls`]); declared
    /// last, so its files outlive the nodes.
    pki: TopologyPki,
}

/// A slot being moved by [`LocalCluster::begin_migration`]: `MIGRATING` on
/// its source, `IMPORTING` on its target, so clients get `ASK` redirects for
/// keys already moved. Nothing happens on drop: call [`Migration::finish`]
/// (or [`LocalCluster::migrate_slot`] for the whole move at once).
#[derive(Debug)]
#[must_use = "the slot stays MIGRATING/IMPORTING until Migration::finish"]
pub struct Migration<'a> {
    cluster: &'a LocalCluster,
    slot: u16,
    /// Indexes into `cluster.nodes`.
    from: usize,
    to: usize,
}

/// One line of `CLUSTER NODES`: one node as some node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeLine {
    id: String,
    port: u16,
    myself: bool,
    master: bool,
    /// `fail` or `fail?`: unreachable in this node's view.
    failing: bool,
    /// Still joining (`handshake`) or address unknown (`noaddr`).
    joining: bool,
    /// A replica's master; `None` for a master.
    master_id: Option<String>,
    /// Owned slot ranges, inclusive. Without the `[slot->-id]` entries of
    /// a migration in progress, which say nothing about ownership.
    slots: Vec<(u16, u16)>,
}

impl LocalCluster {
    /// Starts six nodes and joins them into a cluster of three masters
    /// with one replica each; returns once every node reports
    /// `cluster_state:ok`, all agree on the slot map and every replica's
    /// link to its master is up. Takes about 2.5 s (a master that just
    /// started holds back `cluster_state:ok` for 2 s).
    ///
    /// # Panics
    /// If a node cannot be started, a command fails or the cluster does not
    /// converge within 20 s at any step; the message includes the node logs.
    pub fn start() -> Self {
        Self::start_with_pki(TopologyPki::default())
    }

    /// As [`LocalCluster::start`], with every node speaking TLS only, to
    /// clients and on the cluster bus (`tls-cluster`, `tls-replication`),
    /// all with one [`TestPki`] ([`LocalCluster::pki`]);
    /// [`LocalCluster::seeds_url`] is then `rediss+cluster://…`. The
    /// certificate is valid for `127.0.0.1`, the address the nodes report
    /// in their slot map.
    ///
    /// # Panics
    /// As [`LocalCluster::start`].
    pub fn start_tls() -> Self {
        Self::start_with_pki(TopologyPki::tls())
    }

    fn start_with_pki(pki: TopologyPki) -> Self {
        let options = ServerOptions::default().cluster(true);
        let start = || pki.start(options.clone());
        // In parallel: each start waits for its server to answer.
        let nodes: Vec<RedisServer> = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..2 * MASTERS).map(|_| scope.spawn(start)).collect();
            starting
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let ids = nodes
            .iter()
            .map(|node| node.cmd::<String>(&["CLUSTER", "MYID"]))
            .collect();
        let cluster = Self { nodes, ids, pki };
        for (i, (first, last)) in SLOT_RANGES.iter().enumerate() {
            let master = &cluster.nodes[i];
            // ADDSLOTS with every slot, not ADDSLOTSRANGE: Redis 6 has no
            // ranges, and the Redis 6 pass runs the cluster suite too.
            let slots: Vec<String> = (*first..=*last).map(|slot| slot.to_string()).collect();
            let mut addslots = vec!["CLUSTER", "ADDSLOTS"];
            addslots.extend(slots.iter().map(String::as_str));
            master.cmd::<()>(&addslots);
            // Distinct epochs before meeting, as `redis-cli --cluster
            // create` does: otherwise the nodes first have to resolve the
            // collision of three masters at epoch 0.
            master.cmd::<()>(&["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()]);
        }
        let first_port = cluster.nodes[0].port().to_string();
        for node in &cluster.nodes[1..] {
            node.cmd::<()>(&["CLUSTER", "MEET", "127.0.0.1", &first_port]);
        }
        cluster.wait("every node to know all six", || cluster.check_all_known());
        for (master, replica) in cluster.nodes[MASTERS..].iter().enumerate() {
            replica.cmd::<()>(&["CLUSTER", "REPLICATE", &cluster.ids[master]]);
        }
        cluster.wait_until_stable();
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`: the nodes
    /// that were the masters at start, as seeds for a cluster client. Fixed
    /// for the cluster's life, like a client's configuration: a seed need
    /// not be a master (any node tells a client the whole slot map), so it
    /// stays valid after failovers.
    pub fn seeds_url(&self) -> String {
        let seeds: Vec<String> = self.nodes[..MASTERS]
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("{}://{}", self.pki.scheme("cluster"), seeds.join(","))
    }

    /// Whether the cluster was started with [`LocalCluster::start_tls`].
    pub fn is_tls(&self) -> bool {
        self.pki.get().is_some()
    }

    /// The PKI of a cluster started with [`LocalCluster::start_tls`]: the
    /// test CA to give a client ([`TestPki::ca_pem`]).
    ///
    /// # Panics
    /// If the cluster was started without TLS.
    pub fn pki(&self) -> &TestPki {
        self.pki.expect("LocalCluster")
    }

    /// All six nodes, in start order (the three first masters, then their
    /// replicas), whatever their role now and whether running or not.
    pub fn nodes(&self) -> Vec<&RedisServer> {
        self.nodes.iter().collect()
    }

    /// The node on `port`.
    ///
    /// # Panics
    /// If no node of this cluster has that port.
    pub fn node(&self, port: u16) -> &RedisServer {
        &self.nodes[self.index_of(port)]
    }

    /// The node on `port`, to kill, pause or restart it. A restarted node
    /// rejoins with the same identity (its `nodes.conf`) but, without
    /// persistence, no data; follow faults with
    /// [`LocalCluster::wait_until_stable`].
    ///
    /// # Panics
    /// If no node of this cluster has that port.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        let i = self.index_of(port);
        &mut self.nodes[i]
    }

    /// The running nodes that are masters now, each by its own account, in
    /// start order.
    ///
    /// # Panics
    /// If a running node does not answer (e.g. it is paused).
    pub fn masters(&self) -> Vec<&RedisServer> {
        self.by_role(true)
    }

    /// The running nodes that are replicas now, each by its own account, in
    /// start order.
    ///
    /// # Panics
    /// As [`LocalCluster::masters`].
    pub fn replicas(&self) -> Vec<&RedisServer> {
        self.by_role(false)
    }

    /// The master that owns `slot` in the view of the first running node
    /// (in start order); after a fault, call
    /// [`LocalCluster::wait_until_stable`] first so that all views agree.
    ///
    /// # Panics
    /// If `slot` is not below 16384, no running node answers, or no live
    /// master owns the slot in that view.
    pub fn master_of_slot(&self, slot: u16) -> &RedisServer {
        assert!(slot < SLOTS, "slot {slot} is not below {SLOTS}");
        let (viewer, view) = self
            .nodes
            .iter()
            .filter(|node| node.is_running())
            .find_map(|node| self.view(node).ok().map(|view| (node, view)))
            .unwrap_or_else(|| self.fail("master_of_slot: no running node answers CLUSTER NODES"));
        let owner = owner_in(&view, slot).unwrap_or_else(|| {
            self.fail(&format!(
                "no live master owns slot {slot} in the view of node {}",
                viewer.port()
            ))
        });
        self.node(owner)
    }

    /// The port of the master that owns `slot` in the view of the node on
    /// `node_port`, or `None` if no live master owns it there.
    ///
    /// # Panics
    /// If `slot` is not below 16384, the port is not a node of this cluster
    /// or the node does not answer.
    pub fn owner_seen_by(&self, node_port: u16, slot: u16) -> Option<u16> {
        assert!(slot < SLOTS, "slot {slot} is not below {SLOTS}");
        let view = self
            .view(self.node(node_port))
            .unwrap_or_else(|e| self.fail(&e));
        owner_in(&view, slot)
    }

    /// The hash slot of `key`, as `CLUSTER KEYSLOT` would say without
    /// asking: the library's own [`baton_core::name::hash_slot`] (the
    /// crate's tests check it against `CLUSTER KEYSLOT`).
    pub fn slot_of(key: &str) -> u16 {
        baton_core::name::hash_slot(key.as_bytes())
    }

    /// Whether the nodes have sharded pub/sub (`SPUBLISH`, Redis ≥ 7.0 and
    /// Valkey); Redis 6 has not, and Baton's waiters then use plain
    /// `SUBSCRIBE`.
    ///
    /// # Panics
    /// On any error.
    pub fn has_sharded_pubsub(&self) -> bool {
        let info: redis::Value = self.nodes[0].cmd(&["COMMAND", "INFO", "SPUBLISH"]);
        !matches!(&info, redis::Value::Array(entries) if entries.iter().all(|e| matches!(e, redis::Value::Nil)))
    }

    /// How many clients listen on the release channel `channel`: sharded
    /// subscribers on the master of its slot where the cluster has sharded
    /// pub/sub, else plain subscribers over every node (a plain message
    /// reaches them all, so a client may subscribe on any).
    ///
    /// # Panics
    /// On any error.
    pub fn channel_subscribers(&self, channel: &str) -> i64 {
        if self.has_sharded_pubsub() {
            let master = self.master_of_slot(Self::slot_of(channel));
            let (_, count): (String, i64) = master.cmd(&["PUBSUB", "SHARDNUMSUB", channel]);
            return count;
        }
        self.nodes
            .iter()
            .map(|node| node.cmd::<(String, i64)>(&["PUBSUB", "NUMSUB", channel]).1)
            .sum()
    }

    /// All keys on the current masters (SCAN on each), sorted; the
    /// replicas' copies are not listed again.
    ///
    /// # Panics
    /// On any error.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .masters()
            .into_iter()
            .flat_map(RedisServer::keys)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Moves `slot` with its keys to the master on `to`, by the real
    /// protocol ([`LocalCluster::begin_migration`], [`Migration::move_keys`],
    /// [`Migration::finish`]), and waits until every node agrees.
    ///
    /// # Panics
    /// As [`LocalCluster::begin_migration`] and [`Migration::finish`].
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        let migration = self.begin_migration(slot, to);
        migration.move_keys();
        migration.finish();
    }

    /// Starts moving `slot` to the master on `to`: `CLUSTER SETSLOT slot
    /// IMPORTING source-id` on the target, then `CLUSTER SETSLOT slot
    /// MIGRATING target-id` on the source (the order of the protocol: the
    /// target accepts `ASK`ed commands before the source sends any there).
    /// Until [`Migration::finish`], the source still serves the slot's keys
    /// it has and answers `ASK` for the others.
    ///
    /// # Panics
    /// If `slot` is not below 16384, `to` is not a master of this cluster
    /// or already owns the slot, or a command fails.
    pub fn begin_migration(&self, slot: u16, to: u16) -> Migration<'_> {
        let from = self.index_of(self.master_of_slot(slot).port());
        let to = self.index_of(to);
        if from == to {
            self.fail(&format!(
                "begin_migration: node {} already owns slot {slot}",
                self.nodes[to].port()
            ));
        }
        if !self.is_master(&self.nodes[to]) {
            self.fail(&format!(
                "begin_migration: node {} is not a master",
                self.nodes[to].port()
            ));
        }
        let slot_arg = slot.to_string();
        self.nodes[to].cmd::<()>(&[
            "CLUSTER",
            "SETSLOT",
            &slot_arg,
            "IMPORTING",
            &self.ids[from],
        ]);
        self.nodes[from].cmd::<()>(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &self.ids[to]]);
        Migration {
            cluster: self,
            slot,
            from,
            to,
        }
    }

    /// Promotes the replica on `replica_port` with `CLUSTER FAILOVER` (the
    /// coordinated manual failover: its master stops taking writes until
    /// the replica has caught up, so nothing acknowledged is lost), then
    /// waits until every running node sees it as the master of its old
    /// master's slots, the cluster is stable and the old master, if
    /// running, is its replica with the link up. Returns `replica_port`,
    /// the new master's port.
    ///
    /// The old master must be running: to replace a killed master, let the
    /// cluster fail over by itself and call
    /// [`LocalCluster::wait_until_stable`].
    ///
    /// # Panics
    /// If the node is not a replica, the command fails or the failover
    /// does not complete within 20 s.
    pub fn failover(&self, replica_port: u16) -> u16 {
        let replica = self.node(replica_port);
        let me = self
            .view(replica)
            .ok()
            .and_then(|view| view.into_iter().find(|line| line.myself))
            .unwrap_or_else(|| {
                self.fail(&format!("failover: node {replica_port} does not answer"))
            });
        let Some(master_id) = me.master_id else {
            self.fail(&format!("failover: node {replica_port} is not a replica"))
        };
        let old = self.ids.iter().position(|id| *id == master_id);
        let old_slots = old
            .and_then(|old| self.view(&self.nodes[old]).ok())
            .and_then(|view| view.into_iter().find(|line| line.myself))
            .map(|line| line.slots)
            .unwrap_or_default();
        replica.cmd::<()>(&["CLUSTER", "FAILOVER"]);
        self.wait(&format!("node {replica_port} to take over as master"), || {
            for node in self.running() {
                let view = self.view(node)?;
                for &(first, _) in &old_slots {
                    if owner_in(&view, first) != Some(replica_port) {
                        return Err(format!(
                            "node {} does not yet see node {replica_port} as the owner of slot {first}",
                            node.port()
                        ));
                    }
                }
            }
            if let Some(old) = old.map(|old| &self.nodes[old]) {
                if old.is_running() {
                    let mine = self
                        .view(old)?
                        .into_iter()
                        .find(|line| line.myself)
                        .ok_or("no myself line")?;
                    if mine.master_id.as_deref() != Some(&self.ids[self.index_of(replica_port)]) {
                        return Err(format!(
                            "old master {} is not yet a replica of {replica_port}",
                            old.port()
                        ));
                    }
                }
            }
            self.check_stable()
        });
        replica_port
    }

    /// [`LocalCluster::failover`] of the first running replica (in start
    /// order) of the master that owns `slot`; returns the new master's port.
    ///
    /// # Panics
    /// If that master has no running replica, or as
    /// [`LocalCluster::failover`].
    pub fn failover_master_of_slot(&self, slot: u16) -> u16 {
        let master = self.master_of_slot(slot);
        let master_id = &self.ids[self.index_of(master.port())];
        let replica = self
            .replicas()
            .into_iter()
            .find(|replica| {
                self.view(replica)
                    .ok()
                    .and_then(|view| view.into_iter().find(|line| line.myself))
                    .is_some_and(|line| line.master_id.as_ref() == Some(master_id))
            })
            .unwrap_or_else(|| {
                self.fail(&format!(
                    "failover_master_of_slot: master {} of slot {slot} has no running replica",
                    master.port()
                ))
            });
        self.failover(replica.port())
    }

    /// Waits until the cluster has settled: every running node reports
    /// `cluster_state:ok`, sees no joining node and no running node as
    /// failing, all agree on which master owns which slots, and every
    /// running replica's link to its master is up. After killing a master
    /// this includes its replica taking over (a few seconds).
    ///
    /// A paused node counts as running (resume it first).
    ///
    /// # Panics
    /// If that does not happen within 20 s; the message says what was still
    /// missing and includes the node logs.
    pub fn wait_until_stable(&self) {
        self.wait("the cluster to be stable", || self.check_stable());
    }

    /// Every running node: state ok, a view that matches the others', no
    /// node joining, no running node failing, a replica's link up.
    fn check_stable(&self) -> Result<(), String> {
        let running_ports: Vec<u16> = self.running().map(RedisServer::port).collect();
        let mut first: Option<(u16, Topology)> = None;
        for node in self.running() {
            let port = node.port();
            let info: String = node
                .try_cmd(&["CLUSTER", "INFO"])
                .map_err(|e| format!("node {port}: CLUSTER INFO failed: {e}"))?;
            if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
                return Err(format!("node {port} is not cluster_state:ok"));
            }
            let view = self.view(node)?;
            if let Some(line) = view.iter().find(|line| line.joining) {
                return Err(format!("node {port} is still meeting {}", line.port));
            }
            if let Some(line) = view
                .iter()
                .find(|line| line.failing && running_ports.contains(&line.port))
            {
                return Err(format!(
                    "node {port} sees running node {} as failing",
                    line.port
                ));
            }
            let map = topology(&view);
            match &first {
                None => first = Some((port, map)),
                Some((first_port, first_map)) if *first_map != map => {
                    return Err(format!(
                        "nodes {first_port} and {port} disagree on the slot map or \
                         who replicates whom: {first_map:?} vs {map:?}"
                    ))
                }
                Some(_) => {}
            }
            let me = view
                .iter()
                .find(|line| line.myself)
                .ok_or_else(|| format!("node {port}: no myself line in CLUSTER NODES"))?;
            if !me.master {
                let replication: String = node
                    .try_cmd(&["INFO", "replication"])
                    .map_err(|e| format!("node {port}: INFO replication failed: {e}"))?;
                if !replication
                    .lines()
                    .any(|line| line.trim() == "master_link_status:up")
                {
                    return Err(format!("replica {port}'s link to its master is not up"));
                }
            }
        }
        Ok(())
    }

    /// Every node knows all six, none still in handshake.
    fn check_all_known(&self) -> Result<(), String> {
        for node in &self.nodes {
            let view = self.view(node)?;
            let known = view.iter().filter(|line| !line.joining).count();
            if known != self.nodes.len() {
                return Err(format!(
                    "node {} knows {known} of {} nodes",
                    node.port(),
                    self.nodes.len()
                ));
            }
        }
        Ok(())
    }

    /// `node`'s `CLUSTER NODES`, parsed.
    fn view(&self, node: &RedisServer) -> Result<Vec<NodeLine>, String> {
        let text: String = node
            .try_cmd(&["CLUSTER", "NODES"])
            .map_err(|e| format!("node {}: CLUSTER NODES failed: {e}", node.port()))?;
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                parse_node_line(line).ok_or_else(|| {
                    format!(
                        "node {}: cannot parse CLUSTER NODES line {line:?}",
                        node.port()
                    )
                })
            })
            .collect()
    }

    /// Whether `node` says it is a master.
    fn is_master(&self, node: &RedisServer) -> bool {
        self.view(node)
            .unwrap_or_else(|e| self.fail(&e))
            .iter()
            .any(|line| line.myself && line.master)
    }

    fn by_role(&self, master: bool) -> Vec<&RedisServer> {
        self.running()
            .filter(|node| self.is_master(node) == master)
            .collect()
    }

    fn running(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|node| node.is_running())
    }

    fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|node| node.port() == port)
            .unwrap_or_else(|| {
                let ports: Vec<u16> = self.nodes.iter().map(RedisServer::port).collect();
                panic!("no node of this cluster is on port {port} (nodes: {ports:?})")
            })
    }

    /// Polls `check` every [`POLL`] until it passes; panics with `what`,
    /// its last complaint and the node logs after [`WAIT_TIMEOUT`].
    fn wait(&self, what: &str, check: impl FnMut() -> Result<(), String>) {
        if let Err(last) = crate::poll::poll_until(WAIT_TIMEOUT, POLL, check) {
            self.fail(&format!(
                "waited {WAIT_TIMEOUT:?} for {what} (last: {last})"
            ));
        }
    }

    /// Panics with `why` and the end of every node's log.
    fn fail(&self, why: &str) -> ! {
        let mut message = format!("LocalCluster: {why}");
        for node in &self.nodes {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            message.push_str(&format!(
                "\n--- node {} {LOG_FILE} (last {} lines) ---\n{}",
                node.port(),
                tail.len(),
                tail.join("\n")
            ));
        }
        panic!("{message}")
    }
}

impl Migration<'_> {
    /// The slot being moved.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The master the slot is moving from (`MIGRATING`).
    pub fn source(&self) -> &RedisServer {
        &self.cluster.nodes[self.from]
    }

    /// The master the slot is moving to (`IMPORTING`).
    pub fn target(&self) -> &RedisServer {
        &self.cluster.nodes[self.to]
    }

    /// Moves every key of the slot that the source has now to the target:
    /// `CLUSTER GETKEYSINSLOT` and `MIGRATE ... KEYS` in batches until the
    /// source has none. Returns how many keys were moved. May be called
    /// again for keys written to the source since.
    ///
    /// # Panics
    /// If a command fails.
    pub fn move_keys(&self) -> usize {
        let (source, target) = (self.source(), self.target());
        let target_port = target.port().to_string();
        let (slot, batch) = (self.slot.to_string(), MIGRATE_BATCH.to_string());
        let mut moved = 0;
        loop {
            let keys: Vec<String> = source.cmd(&["CLUSTER", "GETKEYSINSLOT", &slot, &batch]);
            if keys.is_empty() {
                return moved;
            }
            let mut migrate = vec![
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                "",
                "0",
                MIGRATE_TIMEOUT_MS,
                "KEYS",
            ];
            migrate.extend(keys.iter().map(String::as_str));
            source.cmd::<()>(&migrate);
            moved += keys.len();
        }
    }

    /// Ends the migration: `CLUSTER SETSLOT slot NODE target-id` on the
    /// target, the source, then every other master (the protocol's order:
    /// the target first, so that it owns the slot before the source stops
    /// redirecting with `ASK`), and waits until every running node sees the
    /// target as the owner and the cluster is stable. Keys still on the
    /// source are not moved (call [`Migration::move_keys`] first); the
    /// source would refuse to give up a slot it still has keys in.
    ///
    /// # Panics
    /// If a command fails or the nodes do not agree within 20 s.
    pub fn finish(self) {
        let cluster = self.cluster;
        let (slot, to_port) = (self.slot.to_string(), self.target().port());
        let setslot = ["CLUSTER", "SETSLOT", &slot, "NODE", &cluster.ids[self.to]];
        self.target().cmd::<()>(&setslot);
        self.source().cmd::<()>(&setslot);
        for master in cluster.masters() {
            let port = master.port();
            if port != to_port && port != self.source().port() {
                master.cmd::<()>(&setslot);
            }
        }
        cluster.wait(
            &format!("every node to see node {to_port} as the owner of slot {slot}"),
            || {
                for node in cluster.running() {
                    if owner_in(&cluster.view(node)?, self.slot) != Some(to_port) {
                        return Err(format!(
                            "node {} does not see node {to_port} as the owner",
                            node.port()
                        ));
                    }
                }
                cluster.check_stable()
            },
        );
    }
}

/// Parses one `CLUSTER NODES` line: `id ip:port@cport[,hostname] flags
/// master-id ping-sent pong-recv config-epoch link-state slot...`.
fn parse_node_line(line: &str) -> Option<NodeLine> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    // Valkey may add `,hostname` (and more) after the bus port.
    let addr = fields[1].split(['@', ',']).next()?;
    // `:0` while the address is unknown (`noaddr`).
    let port = addr.rsplit(':').next()?.parse().ok()?;
    let flags: Vec<&str> = fields[2].split(',').collect();
    let has = |flag: &str| flags.contains(&flag);
    let master = has("master");
    let mut slots = Vec::new();
    for entry in &fields[8..] {
        if entry.starts_with('[') {
            continue;
        }
        let (first, last) = entry.split_once('-').unwrap_or((entry, entry));
        slots.push((first.parse().ok()?, last.parse().ok()?));
    }
    Some(NodeLine {
        id: fields[0].to_string(),
        port,
        myself: has("myself"),
        master,
        failing: has("fail") || has("fail?"),
        joining: has("handshake") || has("noaddr"),
        master_id: (!master && fields[3] != "-").then(|| fields[3].to_string()),
        slots,
    })
}

/// The port of the live master owning `slot` in `view`.
fn owner_in(view: &[NodeLine], slot: u16) -> Option<u16> {
    view.iter()
        .filter(|line| line.master && !line.failing)
        .find(|line| {
            line.slots
                .iter()
                .any(|&(first, last)| (first..=last).contains(&slot))
        })
        .map(|line| line.port)
}

/// What views must agree on: every owned range as `(first, last, owner
/// port)`, and every replica as `(port, master port)`, both sorted.
type Topology = (Vec<(u16, u16, u16)>, Vec<(u16, u16)>);

/// The [`Topology`] of `view`. A failing master still listed with slots
/// counts too, so a view that has not yet seen a failover differs from one
/// that has. Roles matter as well as slots: right after a failover a node
/// may not yet know that its old master now replicates it, and ignores that
/// replica's `CLUSTER FAILOVER` request until it does.
fn topology(view: &[NodeLine]) -> Topology {
    let mut slots: Vec<(u16, u16, u16)> = view
        .iter()
        .filter(|line| line.master)
        .flat_map(|line| {
            line.slots
                .iter()
                .map(move |&(first, last)| (first, last, line.port))
        })
        .collect();
    slots.sort_unstable();
    let port_of = |id: &str| {
        view.iter()
            .find(|line| line.id == id)
            .map_or(0, |line| line.port)
    };
    let mut replicas: Vec<(u16, u16)> = view
        .iter()
        .filter_map(|line| Some((line.port, port_of(line.master_id.as_deref()?))))
        .collect();
    replicas.sort_unstable();
    (slots, replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes_lines() {
        let master = parse_node_line(
            "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host \
             myself,master - 0 1426238317239 4 connected 0-5460 5461 [5462->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]",
        )
        .unwrap();
        assert_eq!(master.port, 30004);
        assert!(master.myself && master.master && !master.failing && !master.joining);
        assert_eq!(master.master_id, None);
        assert_eq!(master.slots, [(0, 5460), (5461, 5461)]);
        let replica = parse_node_line(
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30005@31005 slave,fail? \
             07c37dfeb235213a872192d90877d0cd55635b91 0 1426238316232 4 connected",
        )
        .unwrap();
        assert!(!replica.master && replica.failing);
        assert_eq!(
            replica.master_id.as_deref(),
            Some("07c37dfeb235213a872192d90877d0cd55635b91")
        );
        assert!(parse_node_line("garbage").is_none());
    }
}
