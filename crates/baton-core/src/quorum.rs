//! One acquire round over N nodes: who answered what, and what it means.
//!
//! A single Redis server is the case N = 1. The rules (Redlock's, made
//! exact):
//! - the quorum is `N/2 + 1` of the **configured** N, never of the nodes
//!   that happen to be reachable;
//! - validity is measured on the monotonic clock from the start of the
//!   attempt: `ttl - elapsed - drift`, drift = `ttl/100 + 2 ms`; a lease with
//!   no validity left is not acquired;
//! - a failed attempt releases on every node that may hold our token: those
//!   that said yes, those that failed (the SET may have landed) and those
//!   that have not answered yet.
//!
//! # Fences over several nodes
//! Each node keeps its own counter, incremented by every acquire on it; the
//! fence of a won round is the highest value among the nodes that said yes.
//! That alone is not monotonic: holder A may see 100 on node 1 and 5 on
//! node 2, while B's quorum shares only node 2 with A's and sees 6. So a
//! round whose yes-nodes disagree is not won until its fence `M` is
//! *settled*: a quorum of nodes has a counter of at least `M` while the lock
//! is ours there — the nodes that reported `M`, plus nodes raised to `M` by
//! a script that checks our token first ([`Decision::Won::raise`]).
//!
//! Why that suffices: the next holder B wins a quorum, which shares a node
//! `n` with A's settled quorum. On `n`, the counter reached `M` while A's key
//! was there, so before A's key left `n`, so before B's `SET` succeeded on
//! `n`; B's increment on `n` then yields more than `M`, and B's fence (a
//! maximum that includes it) is greater than A's. This holds as long as
//! counters survive: a node restarted without persistence forgets its
//! counter, and then fences can repeat.

use std::time::{Duration, Instant};

use crate::backoff::HolderTtl;
use crate::token::Fence;

/// The number of nodes that must agree out of `n` configured nodes.
///
/// ```
/// use baton_core::quorum::quorum;
/// assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
/// ```
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// The clock-drift allowance for a lease of `ttl`: `ttl/100 + 2 ms`.
pub fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How long a lease of `ttl` is still valid `elapsed` after its attempt
/// started, or `None` when nothing is left.
///
/// ```
/// use std::time::Duration;
/// use baton_core::quorum::validity;
/// let ms = Duration::from_millis;
/// assert_eq!(validity(ms(1000), ms(100)), Some(ms(888)));
/// assert_eq!(validity(ms(1000), ms(988)), None);
/// ```
pub fn validity(ttl: Duration, elapsed: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift(ttl))
        .filter(|left| !left.is_zero())
}

/// What one node answered to the acquire script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The lock is ours on this node, with the node's fence value.
    Acquired {
        /// The node's fence counter after our increment.
        fence: u64,
    },
    /// Another token holds the key on this node.
    Busy {
        /// What the node said about the holder's expiry.
        holder: HolderTtl,
    },
    /// The node errored or timed out: our SET may or may not have landed.
    Failed,
}

/// What a quorum of nodes said to an extend (or renewal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// A quorum reset the TTL of a key holding our token.
    Extended,
    /// So many nodes said the key is not ours that a quorum can no longer
    /// agree: the lease is lost.
    Refused,
    /// Neither: too many nodes failed. The lease may still be ours.
    Unknown,
}

/// Combines per-node extend replies over `n` configured nodes.
///
/// ```
/// use baton_core::quorum::{extension, Extension};
/// assert_eq!(extension(5, 3, 0), Extension::Extended);
/// assert_eq!(extension(5, 2, 3), Extension::Refused);
/// assert_eq!(extension(5, 2, 2), Extension::Unknown);
/// assert_eq!(extension(1, 0, 0), Extension::Unknown);
/// ```
pub fn extension(n: usize, extended: usize, refused: usize) -> Extension {
    if extended >= quorum(n) {
        Extension::Extended
    } else if refused > n - quorum(n) {
        Extension::Refused
    } else {
        Extension::Unknown
    }
}

/// The verdict of an extend or release over `n` nodes as soon as it is
/// certain, with `unanswered` nodes still to reply: `None` while their
/// replies could still change it. Lets a caller return at quorum and leave
/// a slow node to finish in the background.
///
/// ```
/// use baton_core::quorum::{extension_so_far, Extension};
/// assert_eq!(extension_so_far(3, 2, 0, 1), Some(Extension::Extended));
/// assert_eq!(extension_so_far(3, 1, 0, 2), None);
/// assert_eq!(extension_so_far(3, 0, 2, 1), Some(Extension::Refused));
/// // Two failed: the third cannot make a quorum either way.
/// assert_eq!(extension_so_far(3, 0, 0, 1), Some(Extension::Unknown));
/// ```
pub fn extension_so_far(
    n: usize,
    extended: usize,
    refused: usize,
    unanswered: usize,
) -> Option<Extension> {
    let verdict = extension(n, extended, refused);
    let could_extend = extended + unanswered >= quorum(n);
    let could_refuse = refused + unanswered > n - quorum(n);
    (verdict != Extension::Unknown || !(could_extend || could_refuse)).then_some(verdict)
}

/// What a read of a lock over several nodes (a status view) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A quorum of the nodes holds the same value.
    Held,
    /// A quorum answered and no value can reach a quorum.
    Free,
    /// Too many nodes failed for a quorum to answer.
    NoQuorum,
}

/// The verdict of a read over `n` nodes as soon as it is certain: `agreeing`
/// is the largest number of nodes holding one same value, `answered` the
/// nodes that replied, `unanswered` those still to reply. `None` while the
/// rest could still change it.
///
/// ```
/// use baton_core::quorum::{reading_so_far, Reading};
/// assert_eq!(reading_so_far(3, 2, 2, 1), Some(Reading::Held));
/// assert_eq!(reading_so_far(3, 0, 2, 1), Some(Reading::Free));
/// // One holder seen on two answers: the third may hold it too.
/// assert_eq!(reading_so_far(3, 1, 2, 1), None);
/// assert_eq!(reading_so_far(3, 1, 1, 0), Some(Reading::NoQuorum));
/// ```
pub fn reading_so_far(
    n: usize,
    agreeing: usize,
    answered: usize,
    unanswered: usize,
) -> Option<Reading> {
    let need = quorum(n);
    if agreeing >= need {
        Some(Reading::Held)
    } else if answered + unanswered < need {
        Some(Reading::NoQuorum)
    } else if answered >= need && agreeing + unanswered < need {
        Some(Reading::Free)
    } else {
        None
    }
}

/// Whether a won round's fence is settled: the nodes that reported it plus
/// those raised to it form a quorum of the `n` configured nodes (see the
/// module docs for why that keeps fences increasing).
///
/// ```
/// use baton_core::quorum::fence_settled;
/// assert!(fence_settled(5, 3, 0));
/// assert!(!fence_settled(5, 1, 1));
/// assert!(fence_settled(5, 1, 2));
/// ```
pub fn fence_settled(n: usize, at_fence: usize, raised: usize) -> bool {
    at_fence + raised >= quorum(n)
}

/// The outcome of a round, once it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not enough replies yet to decide.
    Pending,
    /// A quorum is ours and validity remains.
    Won {
        /// The fence: the highest value among the nodes that said yes.
        fence: Fence,
        /// The local deadline of the lease (monotonic).
        valid_until: Instant,
        /// Yes-nodes whose counter is below `fence`: unless the nodes that
        /// reported `fence` are a quorum already ([`fence_settled`] with no
        /// raises), they must be raised to it before the lease is used.
        raise: Vec<usize>,
        /// How many yes-nodes reported `fence` itself.
        at_fence: usize,
    },
    /// The attempt failed; release on `release` before trying again.
    Lost {
        /// Nodes that may hold our token (said yes, failed, or not answered).
        release: Vec<usize>,
        /// How many nodes said yes (more than zero on a loss: a split vote).
        acquired: usize,
        /// How many nodes said another holds the key.
        busy: usize,
        /// How many nodes failed.
        failed: usize,
        /// The soonest expiry among the holders' keys, to bound a wait.
        holder: Option<HolderTtl>,
        /// True when the quorum was ours but no validity was left.
        expired: bool,
    },
}

/// One acquire attempt over `n` nodes.
///
/// ```
/// use std::time::{Duration, Instant};
/// use baton_core::quorum::{Decision, Reply, Round};
/// let start = Instant::now();
/// let mut round = Round::new(3, Duration::from_secs(10), start);
/// round.reply(0, Reply::Acquired { fence: 4 });
/// assert_eq!(round.decide(start), Decision::Pending);
/// round.reply(2, Reply::Acquired { fence: 5 });
/// assert!(matches!(round.decide(start), Decision::Won { fence, .. } if fence.0 == 5));
/// ```
#[derive(Debug, Clone)]
pub struct Round {
    ttl: Duration,
    started: Instant,
    replies: Vec<Option<Reply>>,
}

impl Round {
    /// A round over `n` nodes for a lease of `ttl`, started at `started`.
    pub fn new(n: usize, ttl: Duration, started: Instant) -> Round {
        Round {
            ttl,
            started,
            replies: vec![None; n],
        }
    }

    /// Records node `node`'s reply. A second reply from the same node is ignored.
    pub fn reply(&mut self, node: usize, reply: Reply) {
        if let Some(slot @ None) = self.replies.get_mut(node) {
            *slot = Some(reply);
        }
    }

    /// The decision at `now`, as early as it is certain.
    pub fn decide(&self, now: Instant) -> Decision {
        let n = self.replies.len();
        let need = quorum(n);
        let acquired = self.count(|r| matches!(r, Reply::Acquired { .. }));
        let busy = self.count(|r| matches!(r, Reply::Busy { .. }));
        let failed = self.count(|r| matches!(r, Reply::Failed));
        let elapsed = now.saturating_duration_since(self.started);
        if acquired >= need {
            if let Some(left) = validity(self.ttl, elapsed) {
                let fences = || {
                    self.replies
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| match r {
                            Some(Reply::Acquired { fence }) => Some((i, *fence)),
                            _ => None,
                        })
                };
                let fence = fences().map(|(_, f)| f).max().unwrap_or_default();
                return Decision::Won {
                    fence: Fence(fence),
                    valid_until: now + left,
                    raise: fences()
                        .filter(|&(_, f)| f < fence)
                        .map(|(i, _)| i)
                        .collect(),
                    at_fence: fences().filter(|&(_, f)| f == fence).count(),
                };
            }
            return self.lost(acquired, busy, failed, true);
        }
        if busy + failed > n - need {
            return self.lost(acquired, busy, failed, false);
        }
        Decision::Pending
    }

    fn count(&self, pred: impl Fn(&Reply) -> bool) -> usize {
        self.replies.iter().flatten().filter(|r| pred(r)).count()
    }

    fn lost(&self, acquired: usize, busy: usize, failed: usize, expired: bool) -> Decision {
        let release = (0..self.replies.len())
            .filter(|&i| !matches!(self.replies[i], Some(Reply::Busy { .. })))
            .collect();
        let holder = self
            .replies
            .iter()
            .filter_map(|r| match r {
                Some(Reply::Busy { holder }) => Some(*holder),
                _ => None,
            })
            .min_by_key(|h| match h {
                HolderTtl::Expires(d) => *d,
                HolderTtl::Persistent => Duration::MAX,
            });
        Decision::Lost {
            release,
            acquired,
            busy,
            failed,
            holder,
            expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deciding early never disagrees with deciding at the end: whatever
    /// the unanswered nodes say, the final verdict is the early one.
    #[test]
    fn early_verdicts_are_the_final_ones() {
        for n in 1..=7 {
            for ext in 0..=n {
                for refd in 0..=n - ext {
                    for failed in 0..=n - ext - refd {
                        let unanswered = n - ext - refd - failed;
                        let Some(early) = extension_so_far(n, ext, refd, unanswered) else {
                            continue;
                        };
                        for more_ext in 0..=unanswered {
                            for more_ref in 0..=unanswered - more_ext {
                                let end = extension_so_far(n, ext + more_ext, refd + more_ref, 0);
                                assert_eq!(end, Some(early), "n={n} {ext}/{refd}/{failed}");
                            }
                        }
                    }
                }
                // Reads: `ext` as the largest agreeing group.
                for answered in ext..=n {
                    for failed in 0..=n - answered {
                        let unanswered = n - answered - failed;
                        let Some(early) = reading_so_far(n, ext, answered, unanswered) else {
                            continue;
                        };
                        for more in 0..=unanswered {
                            for joins in 0..=more {
                                let end = reading_so_far(
                                    n,
                                    (ext + joins).max(more - joins),
                                    answered + more,
                                    0,
                                );
                                assert_eq!(
                                    end,
                                    Some(early),
                                    "n={n} agree={ext} answered={answered}"
                                );
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(extension_so_far(1, 0, 0, 0), Some(Extension::Unknown));
        assert_eq!(reading_so_far(1, 0, 1, 0), Some(Reading::Free));
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn drift_and_validity_edges() {
        assert_eq!(drift(MS(10_000)), MS(102));
        assert_eq!(validity(MS(10_000), MS(0)), Some(MS(9_898)));
        assert_eq!(validity(MS(10_000), MS(9_897)), Some(MS(1)));
        assert_eq!(validity(MS(10_000), MS(9_898)), None);
        assert_eq!(validity(MS(10_000), MS(20_000)), None);
        assert_eq!(
            validity(MS(2), MS(0)),
            None,
            "a ttl inside the drift is never valid"
        );
    }

    #[test]
    fn single_node_busy_and_failed() {
        let t0 = Instant::now();
        let mut busy = Round::new(1, MS(1000), t0);
        busy.reply(
            0,
            Reply::Busy {
                holder: HolderTtl::Expires(MS(70)),
            },
        );
        assert_eq!(
            busy.decide(t0),
            Decision::Lost {
                release: vec![],
                acquired: 0,
                busy: 1,
                failed: 0,
                holder: Some(HolderTtl::Expires(MS(70))),
                expired: false
            }
        );
        let mut failed = Round::new(1, MS(1000), t0);
        failed.reply(0, Reply::Failed);
        assert_eq!(
            failed.decide(t0),
            Decision::Lost {
                release: vec![0],
                acquired: 0,
                busy: 0,
                failed: 1,
                holder: None,
                expired: false
            }
        );
    }

    #[test]
    fn a_slow_win_is_a_loss_that_releases() {
        let t0 = Instant::now();
        let mut round = Round::new(1, MS(100), t0);
        round.reply(0, Reply::Acquired { fence: 1 });
        let late = t0 + MS(98);
        assert!(
            matches!(round.decide(late), Decision::Lost { ref release, expired: true, .. } if release == &[0])
        );
        assert!(
            matches!(round.decide(t0 + MS(50)), Decision::Won { valid_until, .. } if valid_until == t0 + MS(97))
        );
    }

    /// Every mask of node outcomes for N = 1..=7: the round is won exactly
    /// when the acquired nodes reach the quorum of the configured N, and a
    /// loss releases every node that is not busy.
    #[test]
    fn every_outcome_mask_for_up_to_seven_nodes() {
        let t0 = Instant::now();
        for n in 1..=7usize {
            for mask in 0..3u32.pow(n as u32) {
                let mut round = Round::new(n, MS(10_000), t0);
                let mut digits = mask;
                let mut outcome = Vec::new();
                for node in 0..n {
                    let reply = match digits % 3 {
                        0 => Reply::Acquired {
                            fence: node as u64 + 1,
                        },
                        1 => Reply::Busy {
                            holder: HolderTtl::Expires(MS(50 + node as u64)),
                        },
                        _ => Reply::Failed,
                    };
                    digits /= 3;
                    round.reply(node, reply);
                    outcome.push(reply);
                }
                let acquired = outcome
                    .iter()
                    .filter(|r| matches!(r, Reply::Acquired { .. }))
                    .count();
                match round.decide(t0 + MS(1)) {
                    Decision::Won { fence, .. } => {
                        assert!(acquired >= quorum(n), "n={n} mask={mask}");
                        let max = outcome
                            .iter()
                            .filter_map(|r| match r {
                                Reply::Acquired { fence } => Some(*fence),
                                _ => None,
                            })
                            .max();
                        assert_eq!(Some(fence.0), max);
                    }
                    Decision::Lost { release, .. } => {
                        assert!(acquired < quorum(n), "n={n} mask={mask}");
                        let want: Vec<usize> = (0..n)
                            .filter(|&i| !matches!(outcome[i], Reply::Busy { .. }))
                            .collect();
                        assert_eq!(release, want);
                    }
                    Decision::Pending => panic!("all replied yet pending: n={n} mask={mask}"),
                }
            }
        }
    }

    proptest! {
        /// Random timings: a quorum of yes-replies is a win exactly while
        /// `ttl - elapsed - drift` is positive, and the deadline it gives is
        /// that much after the decision.
        #[test]
        fn a_win_needs_validity_left(ttl_ms in 10u64..100_000, elapsed_ms in 0u64..200_000, n in 1usize..=7) {
            let t0 = Instant::now();
            let ttl = MS(ttl_ms);
            let mut round = Round::new(n, ttl, t0);
            for node in 0..quorum(n) {
                round.reply(node, Reply::Acquired { fence: 1 });
            }
            let now = t0 + MS(elapsed_ms);
            match round.decide(now) {
                Decision::Won { valid_until, .. } => {
                    let left = validity(ttl, MS(elapsed_ms)).expect("won only with validity left");
                    prop_assert_eq!(valid_until, now + left);
                    prop_assert!(valid_until < t0 + ttl, "never past the server's expiry");
                }
                Decision::Lost { expired, release, .. } => {
                    prop_assert!(expired);
                    prop_assert!(validity(ttl, MS(elapsed_ms)).is_none());
                    prop_assert_eq!(release, (0..n).collect::<Vec<_>>());
                }
                Decision::Pending => prop_assert!(false, "a quorum of replies is decided"),
            }
        }

        /// Replies arriving in any order: the decision never flips once made,
        /// and it is made as soon as it is certain.
        #[test]
        fn early_decisions_are_final(n in 1usize..=7, outcomes in proptest::collection::vec(0u8..3, 7), order in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle()) {
            let t0 = Instant::now();
            let mut round = Round::new(n, MS(10_000), t0);
            let mut first: Option<bool> = None;
            let (mut acquired, mut refused) = (0, 0);
            for &node in order.iter().filter(|&&i| i < n) {
                let reply = match outcomes[node] {
                    0 => { acquired += 1; Reply::Acquired { fence: 1 } }
                    1 => { refused += 1; Reply::Busy { holder: HolderTtl::Persistent } }
                    _ => { refused += 1; Reply::Failed }
                };
                round.reply(node, reply);
                let won = match round.decide(t0) {
                    Decision::Pending => None,
                    Decision::Won { .. } => Some(true),
                    Decision::Lost { .. } => Some(false),
                };
                let certain = acquired >= quorum(n) || refused > n - quorum(n);
                prop_assert_eq!(won.is_some(), certain);
                if let (Some(a), Some(b)) = (first, won) { prop_assert_eq!(a, b); }
                first = first.or(won);
            }
        }
    }
}
