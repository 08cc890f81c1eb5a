//! The faults the nemesis injects, and how a fault phase is chosen (pure:
//! randomness comes in as a [`Rng`]).

use std::time::Duration;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// SIGKILL a persistent node (AOF, fsync always); restart it when healed.
    Kill,
    /// SIGKILL a node without persistence; restart it empty no sooner than a
    /// TTL later (Redlock's delayed restart).
    KillVolatile,
    /// SIGSTOP a node; SIGCONT when healed.
    Pause,
    /// The node's proxy swallows everything.
    Blackhole,
    /// The node's proxy delays every chunk.
    Delay,
    /// The node's proxy forwards requests but swallows replies.
    DropReplies,
    /// The node's proxy resets connections.
    Reset,
    /// `SCRIPT FLUSH` on a node (instant).
    ScriptFlush,
    /// SIGSTOP the client that read last (likely the holder) for longer
    /// than a TTL: the process-pause scenario.
    PauseClient,
    /// SIGKILL the client that read last (likely mid-hold); a new
    /// incarnation replaces it when healed.
    KillClient,
    /// Sentinel or Cluster: a replica promoted while the master lives
    /// (`SENTINEL FAILOVER`; `CLUSTER FAILOVER` on the replica of the lock
    /// slot's master), returning once the topology has settled.
    Failover,
    /// Sentinel or Cluster: SIGKILL the (lock slot's) master; a replica is
    /// promoted; the killed node comes back as a replica when healed.
    KillMaster,
    /// Sentinel or Cluster: cut the replicas off (stopped, their links
    /// closed), so writes reach the master alone; when healed, kill the
    /// master and let the replicas back: a failover that loses every write
    /// in between.
    LoseWrites,
    /// Cluster: migrate the lock's slot to another master (`SETSLOT
    /// MIGRATING`/`IMPORTING`, `MIGRATE`, `SETSLOT NODE`) while it is used.
    Migrate,
}

/// What the nodes are: separate servers (one, or a Redlock) behind fault
/// proxies, or a Sentinel set (a master, two replicas, three Sentinels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// `--nodes N` independent servers.
    Servers,
    /// A Sentinel set, reached with `redis+sentinel://`.
    Sentinel,
    /// A local Redis Cluster of three masters with a replica each, reached
    /// with `redis+cluster://`.
    Cluster,
}

impl Fault {
    /// Every fault, in the order of the summary.
    pub const ALL: [Fault; 14] = [
        Fault::Kill,
        Fault::KillVolatile,
        Fault::Pause,
        Fault::Blackhole,
        Fault::Delay,
        Fault::DropReplies,
        Fault::Reset,
        Fault::ScriptFlush,
        Fault::PauseClient,
        Fault::KillClient,
        Fault::Failover,
        Fault::KillMaster,
        Fault::LoseWrites,
        Fault::Migrate,
    ];

    /// Whether it can happen on `topology`: the node faults of separate
    /// servers need their proxies and restarts; a Sentinel set has
    /// failovers instead. Client faults happen on both.
    pub fn applies_to(self, topology: Topology) -> bool {
        let failover = matches!(
            self,
            Fault::Failover | Fault::KillMaster | Fault::LoseWrites
        );
        match topology {
            _ if self.on_client() => true,
            Topology::Servers => !failover && self != Fault::Migrate,
            Topology::Sentinel => failover,
            Topology::Cluster => failover || self == Fault::Migrate,
        }
    }

    /// The fault's name on the command line and in the history.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::KillVolatile => "kill-volatile",
            Fault::Pause => "pause",
            Fault::Blackhole => "blackhole",
            Fault::Delay => "delay",
            Fault::DropReplies => "drop-replies",
            Fault::Reset => "reset",
            Fault::ScriptFlush => "script-flush",
            Fault::PauseClient => "pause-client",
            Fault::KillClient => "kill-client",
            Fault::Failover => "failover",
            Fault::KillMaster => "kill-master",
            Fault::LoseWrites => "lose-writes",
            Fault::Migrate => "migrate",
        }
    }

    /// What it acts on: 0 a node's process, 1 a node's proxy, 2 a client.
    /// Two faults of one layer never hit the same node in a phase.
    pub fn layer(self) -> u8 {
        match self {
            Fault::Kill
            | Fault::KillVolatile
            | Fault::Pause
            | Fault::ScriptFlush
            | Fault::Failover
            | Fault::KillMaster
            | Fault::LoseWrites
            | Fault::Migrate => 0,
            Fault::Blackhole | Fault::Delay | Fault::DropReplies | Fault::Reset => 1,
            Fault::PauseClient | Fault::KillClient => 2,
        }
    }

    /// Whether it targets a client process rather than a node.
    pub fn on_client(self) -> bool {
        matches!(self, Fault::PauseClient | Fault::KillClient)
    }

    /// Parses `all`, `none` or a comma-separated list of names. `all` is
    /// every kind; a run keeps those that apply to its topology.
    ///
    /// ```
    /// use baton_check::nemesis::Fault;
    /// assert_eq!(Fault::parse_list("pause,kill").unwrap(), vec![Fault::Kill, Fault::Pause]);
    /// assert_eq!(Fault::parse_list("all").unwrap().len(), Fault::ALL.len());
    /// assert!(Fault::parse_list("none").unwrap().is_empty());
    /// assert!(Fault::parse_list("kil").is_err());
    /// ```
    pub fn parse_list(list: &str) -> Result<Vec<Fault>, String> {
        match list.trim() {
            "all" => return Ok(Fault::ALL.to_vec()),
            "none" | "" => return Ok(Vec::new()),
            _ => {}
        }
        let mut faults = Vec::new();
        for name in list.split(',').map(str::trim) {
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| {
                    let known: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                    format!(
                        "unknown fault {name:?}; known: all, none, {}",
                        known.join(", ")
                    )
                })?;
            faults.push(fault);
        }
        faults.sort();
        faults.dedup();
        Ok(faults)
    }
}

/// A small deterministic generator (xorshift64*), seeded per run so a
/// schedule can be replayed with `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// A seed from the OS's random source (printable, so a run can be
    /// replayed with it).
    pub fn os_seed() -> u64 {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("OS randomness");
        u64::from_le_bytes(bytes) >> 1
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A duration in `[low, high)`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_nanos() as u64;
        low + Duration::from_nanos(self.next_u64() % span.max(1))
    }
}

/// One fault of a phase: its kind and its node (ignored for client faults,
/// whose target is chosen when the fault starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// The fault.
    pub fault: Fault,
    /// The node's index.
    pub node: usize,
}

/// Which faults each phase injects: two kinds per phase, dealt from a
/// shuffled deck of the enabled kinds, so every kind comes up once every
/// `kinds / 2` phases (a short run still sees them all) while the pairs
/// vary. Kinds with no eligible node are left out of the deck.
#[derive(Debug, Clone)]
pub struct Schedule {
    kinds: Vec<Fault>,
    deck: Vec<Fault>,
    /// `volatile[i]`: node i runs without persistence.
    volatile: Vec<bool>,
}

impl Schedule {
    /// A schedule over the `enabled` kinds that apply to `topology`, for
    /// nodes of which `volatile[i]` says whether node i has no persistence
    /// (a Sentinel set is one node to the schedule: its master).
    pub fn new(enabled: &[Fault], volatile: &[bool], topology: Topology) -> Schedule {
        let kinds = enabled
            .iter()
            .copied()
            .filter(|&f| f.applies_to(topology))
            .filter(|&f| match f {
                Fault::Kill => volatile.contains(&false),
                Fault::KillVolatile => volatile.contains(&true),
                _ => true,
            })
            .collect();
        Schedule {
            kinds,
            deck: Vec::new(),
            volatile: volatile.to_vec(),
        }
    }

    /// The kinds this schedule injects (the enabled ones that can happen).
    pub fn kinds(&self) -> &[Fault] {
        &self.kinds
    }

    /// The faults of the next phase: two kinds when the deck allows, never
    /// two of one layer (process, proxy) on the same node.
    pub fn next_phase(&mut self, rng: &mut Rng) -> Vec<Planned> {
        let mut phase: Vec<Planned> = Vec::new();
        for _ in 0..2.min(self.kinds.len()) {
            if self.deck.is_empty() {
                self.deck = self.shuffled(rng);
            }
            // The topmost card that fits with what this phase has; if none
            // does, one from a fresh deck slipped under this one.
            let i = match self.top_fit(&phase) {
                Some(i) => i,
                None => {
                    let mut deck = self.shuffled(rng);
                    deck.append(&mut self.deck);
                    self.deck = deck;
                    let Some(i) = self.top_fit(&phase) else { break };
                    i
                }
            };
            let fault = self.deck.remove(i);
            let eligible = self.eligible(fault, &phase);
            phase.push(Planned {
                fault,
                node: eligible[rng.below(eligible.len())],
            });
        }
        phase
    }

    /// The index of the topmost card of the deck that fits with `phase`.
    fn top_fit(&self, phase: &[Planned]) -> Option<usize> {
        self.deck.iter().rposition(|&f| {
            !phase.iter().any(|p| p.fault == f) && !self.eligible(f, phase).is_empty()
        })
    }

    /// The enabled kinds in a random order.
    fn shuffled(&self, rng: &mut Rng) -> Vec<Fault> {
        let mut deck = self.kinds.clone();
        // Fisher-Yates.
        for i in (1..deck.len()).rev() {
            deck.swap(i, rng.below(i + 1));
        }
        deck
    }

    /// The nodes `fault` may hit alongside `phase`.
    fn eligible(&self, fault: Fault, phase: &[Planned]) -> Vec<usize> {
        (0..self.volatile.len())
            .filter(|&i| match fault {
                Fault::Kill => !self.volatile[i],
                Fault::KillVolatile => self.volatile[i],
                _ => true,
            })
            .filter(|&i| {
                fault.on_client()
                    || !phase
                        .iter()
                        .any(|p| p.node == i && p.fault.layer() == fault.layer())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_respect_persistence_and_spread_over_nodes() {
        let mut rng = Rng::new(7);
        let volatile = [true, false, false];
        let mut schedule = Schedule::new(&Fault::ALL, &volatile, Topology::Servers);
        for _ in 0..10_000 {
            let phase = schedule.next_phase(&mut rng);
            assert!(!phase.is_empty() && phase.len() <= 2);
            for p in &phase {
                match p.fault {
                    Fault::Kill => assert!(!volatile[p.node]),
                    Fault::KillVolatile => assert!(volatile[p.node]),
                    _ => {}
                }
            }
            if let [a, b] = phase[..] {
                assert!(
                    a.fault.on_client() || a.node != b.node || a.fault.layer() != b.fault.layer(),
                    "two faults of one layer on one node: {phase:?}"
                );
            }
        }
    }

    #[test]
    fn every_kind_comes_up_within_a_round_of_the_deck() {
        let mut rng = Rng::new(1);
        let mut schedule = Schedule::new(&Fault::ALL, &[true, false, false], Topology::Servers);
        let kinds = schedule.kinds().len();
        assert_eq!(kinds, 10, "every kind but the Sentinel and Cluster ones");
        // From a fresh deck: all of them in kinds/2 phases (two per phase).
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..kinds / 2 {
            seen.extend(schedule.next_phase(&mut rng).iter().map(|p| p.fault));
        }
        assert_eq!(seen.len(), kinds, "{seen:?}");
        // Any window of `kinds` phases spans a whole deck.
        for _ in 0..50 {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..kinds {
                seen.extend(schedule.next_phase(&mut rng).iter().map(|p| p.fault));
            }
            assert_eq!(seen.len(), kinds, "{seen:?}");
        }
    }

    #[test]
    fn kinds_without_an_eligible_node_are_left_out() {
        let schedule = Schedule::new(&Fault::ALL, &[false], Topology::Servers);
        assert!(!schedule.kinds().contains(&Fault::KillVolatile));
        assert!(schedule.kinds().contains(&Fault::Kill));
        let mut schedule = Schedule::new(&[Fault::KillVolatile], &[false], Topology::Servers);
        assert!(schedule.next_phase(&mut Rng::new(3)).is_empty());
    }

    /// One node: every phase still has two faults, a process fault with a
    /// proxy or client one, and five phases show all nine kinds.
    #[test]
    fn a_single_node_gets_every_kind_too() {
        let mut rng = Rng::new(11);
        let mut schedule = Schedule::new(&Fault::ALL, &[false], Topology::Servers);
        assert_eq!(schedule.kinds().len(), 9);
        for _ in 0..100 {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..10 {
                let phase = schedule.next_phase(&mut rng);
                assert_eq!(phase.len(), 2, "{phase:?}");
                seen.extend(phase.iter().map(|p| p.fault));
            }
            assert_eq!(seen.len(), 9);
        }
    }

    /// A Sentinel set: failovers and client faults only, and never two
    /// failovers in one phase (they are one layer of its one "node").
    #[test]
    fn a_sentinel_set_gets_failovers_and_client_faults() {
        let mut rng = Rng::new(5);
        let mut schedule = Schedule::new(&Fault::ALL, &[false], Topology::Sentinel);
        assert_eq!(
            schedule.kinds(),
            [
                Fault::PauseClient,
                Fault::KillClient,
                Fault::Failover,
                Fault::KillMaster,
                Fault::LoseWrites
            ]
        );
        for _ in 0..1000 {
            let phase = schedule.next_phase(&mut rng);
            assert!(
                phase.iter().filter(|p| !p.fault.on_client()).count() <= 1,
                "{phase:?}"
            );
        }
    }

    /// A cluster: the Sentinel set's failovers and slot migrations.
    #[test]
    fn a_cluster_gets_failovers_migrations_and_client_faults() {
        let schedule = Schedule::new(&Fault::ALL, &[false], Topology::Cluster);
        assert_eq!(
            schedule.kinds(),
            [
                Fault::PauseClient,
                Fault::KillClient,
                Fault::Failover,
                Fault::KillMaster,
                Fault::LoseWrites,
                Fault::Migrate
            ]
        );
    }
}
