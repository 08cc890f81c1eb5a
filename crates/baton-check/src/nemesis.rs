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
}

impl Fault {
    /// Every fault, in the order of the summary.
    pub const ALL: [Fault; 10] = [
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
    ];

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
        }
    }

    /// Whether it targets a client process rather than a node.
    pub fn on_client(self) -> bool {
        matches!(self, Fault::PauseClient | Fault::KillClient)
    }

    /// Parses `all`, `none` or a comma-separated list of names.
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

/// Chooses the faults of one phase: one or two kinds from `enabled`, each
/// on a different node where it can be. A kill needs a node of the right
/// kind (`volatile[i]` says node i has no persistence); a fault with no
/// eligible node is skipped.
pub fn plan_phase(rng: &mut Rng, enabled: &[Fault], volatile: &[bool]) -> Vec<Planned> {
    if enabled.is_empty() {
        return Vec::new();
    }
    let count = 1 + rng.below(2);
    let mut phase: Vec<Planned> = Vec::new();
    for _ in 0..count {
        let fault = enabled[rng.below(enabled.len())];
        if phase.iter().any(|p| p.fault == fault) {
            continue;
        }
        let eligible: Vec<usize> = (0..volatile.len())
            .filter(|&i| match fault {
                Fault::Kill => !volatile[i],
                Fault::KillVolatile => volatile[i],
                _ => true,
            })
            .filter(|&i| {
                fault.on_client() || !phase.iter().any(|p| !p.fault.on_client() && p.node == i)
            })
            .collect();
        if eligible.is_empty() {
            continue;
        }
        phase.push(Planned {
            fault,
            node: eligible[rng.below(eligible.len())],
        });
    }
    phase
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_respect_persistence_and_spread_over_nodes() {
        let mut rng = Rng::new(7);
        let volatile = [true, false, false];
        for _ in 0..10_000 {
            let phase = plan_phase(&mut rng, &Fault::ALL, &volatile);
            assert!(!phase.is_empty() && phase.len() <= 2);
            for p in &phase {
                match p.fault {
                    Fault::Kill => assert!(!volatile[p.node]),
                    Fault::KillVolatile => assert!(volatile[p.node]),
                    _ => {}
                }
            }
            let nodes: Vec<_> = phase
                .iter()
                .filter(|p| !p.fault.on_client())
                .map(|p| p.node)
                .collect();
            assert!(
                nodes.len() < 2 || nodes[0] != nodes[1],
                "two node faults on one node: {phase:?}"
            );
        }
    }

    #[test]
    fn every_enabled_fault_is_chosen_sometimes() {
        let mut rng = Rng::new(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            seen.extend(
                plan_phase(&mut rng, &Fault::ALL, &[true, false])
                    .iter()
                    .map(|p| p.fault),
            );
        }
        assert_eq!(seen.len(), Fault::ALL.len());
    }

    #[test]
    fn a_kill_without_an_eligible_node_is_skipped() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            assert!(plan_phase(&mut rng, &[Fault::KillVolatile], &[false]).is_empty());
        }
    }
}
