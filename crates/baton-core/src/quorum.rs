//! The quorum arithmetic of N nodes: how many must agree, how long a lease
//! is valid, and what the votes on an extend, a release or a read mean.
//! Only [`quorum`], [`drift`] and the verdict types are public: the rules
//! themselves are applied by the machines ([`crate::acquire::Attempt`],
//! [`crate::vote::Vote`], [`crate::vote::Read`]), so no caller can apply
//! one of them beside the machines.
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
//! a script that checks our token first ([`crate::acquire::Request::Raise`]).
//!
//! Why that suffices: the next holder B wins a quorum, which shares a node
//! `n` with A's settled quorum. On `n`, the counter reached `M` while A's key
//! was there, so before A's key left `n`, so before B's `SET` succeeded on
//! `n`; B's increment on `n` then yields more than `M`, and B's fence (a
//! maximum that includes it) is greater than A's. This holds as long as
//! counters survive: a node restarted without persistence forgets its
//! counter, and then fences can repeat.

use std::time::Duration;

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
pub(crate) fn validity(ttl: Duration, elapsed: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift(ttl))
        .filter(|left| !left.is_zero())
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
pub(crate) fn extension(n: usize, extended: usize, refused: usize) -> Extension {
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
pub(crate) fn extension_so_far(
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
pub(crate) fn reading_so_far(
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
pub(crate) fn fence_settled(n: usize, at_fence: usize, raised: usize) -> bool {
    at_fence + raised >= quorum(n)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Worked cases of `validity`.
    #[test]
    fn validity_worked_cases() {
        let ms = Duration::from_millis;
        assert_eq!(validity(ms(1000), ms(100)), Some(ms(888)));
        assert_eq!(validity(ms(1000), ms(988)), None);
    }

    /// Worked cases of `extension`.
    #[test]
    fn extension_worked_cases() {
        assert_eq!(extension(5, 3, 0), Extension::Extended);
        assert_eq!(extension(5, 2, 3), Extension::Refused);
        assert_eq!(extension(5, 2, 2), Extension::Unknown);
        assert_eq!(extension(1, 0, 0), Extension::Unknown);
    }

    /// Worked cases of `extension_so_far`.
    #[test]
    fn extension_so_far_worked_cases() {
        assert_eq!(extension_so_far(3, 2, 0, 1), Some(Extension::Extended));
        assert_eq!(extension_so_far(3, 1, 0, 2), None);
        assert_eq!(extension_so_far(3, 0, 2, 1), Some(Extension::Refused));
        // Two failed: the third cannot make a quorum either way.
        assert_eq!(extension_so_far(3, 0, 0, 1), Some(Extension::Unknown));
    }

    /// Worked cases of `reading_so_far`.
    #[test]
    fn reading_so_far_worked_cases() {
        assert_eq!(reading_so_far(3, 2, 2, 1), Some(Reading::Held));
        assert_eq!(reading_so_far(3, 0, 2, 1), Some(Reading::Free));
        // One holder seen on two answers: the third may hold it too.
        assert_eq!(reading_so_far(3, 1, 2, 1), None);
        assert_eq!(reading_so_far(3, 1, 1, 0), Some(Reading::NoQuorum));
    }

    /// Worked cases of `fence_settled`.
    #[test]
    fn fence_settled_worked_cases() {
        assert!(fence_settled(5, 3, 0));
        assert!(!fence_settled(5, 1, 1));
        assert!(fence_settled(5, 1, 2));
    }
}
