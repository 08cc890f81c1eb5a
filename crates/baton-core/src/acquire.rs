//! One acquire attempt over N nodes, as a state machine with no I/O.
//!
//! [`Attempt`] takes the nodes' replies in whatever order they come and says
//! what to send next and, as soon as it is certain, what the attempt came
//! to: won with a fence and a deadline, or lost with what to take back and
//! what the caller should do next ([`Loss`]). A single Redis server is the
//! case N = 1: one request, one reply, decided.
//!
//! The rules (Redlock's, made exact):
//! - the quorum is `N/2 + 1` of the **configured** N, never of the nodes
//!   that happen to be reachable;
//! - validity is measured on the monotonic clock from the start of the
//!   attempt: `ttl - elapsed - drift` ([`quorum::validity`]); a lease with no
//!   validity left is not acquired;
//! - a lost attempt takes back every node that may hold our token: those
//!   that said yes, those that failed (the SET may have landed) and those
//!   that have not answered yet;
//! - a won round whose yes-nodes disagree on the fence is not won until the
//!   fence is *settled* on a quorum ([`quorum::fence_settled`]): the lagging
//!   yes-nodes are raised to it first (see [`quorum`] for why that keeps
//!   fences increasing across holders).

use crate::per_node::PerNode;
use std::time::{Duration, Instant};

use crate::backoff::{HolderTtl, SPLIT_SPREAD};
use crate::lease::LeaseState;
use crate::quorum::{self, fence_settled, quorum};
use crate::seeded;
use crate::token::Fence;

/// What one node answered to the acquire script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
        /// The node's fence counter as the reply found it, where the script
        /// reports it (a fair lock's: a grant with a fence no higher comes
        /// from a hand-off before this attempt landed, see
        /// [`crate::lease::LeaseState::handed`]).
        fence: Option<u64>,
    },
    /// The node errored or timed out: our SET may or may not have landed.
    Failed,
}

/// A request the attempt wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    /// Run the acquire script on `node`; answer with [`Attempt::handle_reply`].
    Acquire {
        /// The node's index among the configured nodes.
        node: usize,
    },
    /// Raise `node`'s fence counter to at least `fence`, only while the lock
    /// holds our token there (the raise script); answer with
    /// [`Attempt::handle_raise`].
    Raise {
        /// The node's index among the configured nodes.
        node: usize,
        /// The fence to raise the counter to.
        fence: Fence,
    },
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The lock is ours: a quorum said yes, the fence is settled on a
    /// quorum, and validity remains.
    Won {
        /// The fence: the highest value among the nodes that said yes.
        fence: Fence,
        /// The lease's local deadline (monotonic), counted from the
        /// attempt's start.
        valid_until: Instant,
    },
    /// The attempt failed. Take back `release` (without waking waiters)
    /// before the token is used again, then act on `loss`.
    Lost {
        /// Nodes that may hold our token: they said yes, failed, or have not
        /// answered.
        release: Vec<usize>,
        /// Why, and what to do next.
        loss: Loss,
    },
}

/// What becomes of the requests still out once an attempt is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stragglers {
    /// After a win: let them finish, so that a node needing the script sent
    /// again after `NOSCRIPT` still gets it and the lease stands on every
    /// node that can take it, not on a bare quorum. Ask
    /// [`Attempt::take_back_straggler`] about each as it lands.
    Finish,
    /// After a loss: drop them. The take-back already covers their nodes,
    /// and a fallback request sent later could land after it.
    Drop,
}

/// Why an attempt was lost, which says what the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Others hold the key on so many nodes that we cannot win: wait for
    /// the holder (its release notification, or its expiry).
    Busy {
        /// The soonest expiry among the holders' keys, to bound the wait.
        holder: Option<HolderTtl>,
    },
    /// A split vote: some nodes were ours, and no one can hold a quorum
    /// either. Contenders woken together stay back a random share of
    /// `spread` ([`crate::backoff::after_split`]) before the next attempt.
    SplitVote {
        /// The spread to back off over.
        spread: Duration,
    },
    /// A quorum said yes, but the round took so long that no validity was
    /// left: back off as after a split vote.
    TooSlow {
        /// The spread to back off over.
        spread: Duration,
    },
    /// A quorum said yes, but the fence could not be settled on a quorum
    /// before the deadline: back off as after a split vote.
    FenceUnsettled {
        /// The spread to back off over.
        spread: Duration,
    },
    /// Failures alone make a quorum impossible: the caller gets an error
    /// (it may retry it as a transient one).
    NoQuorum {
        /// How many nodes said yes.
        acquired: usize,
    },
}

impl Loss {
    /// The spread to back off over, for the losses that back off.
    pub fn back_off(&self) -> Option<Duration> {
        match *self {
            Loss::SplitVote { spread }
            | Loss::TooSlow { spread }
            | Loss::FenceUnsettled { spread } => Some(spread),
            Loss::Busy { .. } | Loss::NoQuorum { .. } => None,
        }
    }
}

/// One acquire attempt over `n` nodes.
///
/// Call order:
/// 1. [`Attempt::new`] when the requests are about to go out (the lease's
///    clock starts here);
/// 2. [`Attempt::poll_transmit`] until `None`, sending each request;
/// 3. for each reply, [`Attempt::handle_reply`] (an acquire) or
///    [`Attempt::handle_raise`] (a raise); a node that errs or times out
///    is a [`Reply::Failed`], or a raise that is not `true`;
/// 4. after each input, [`Attempt::poll_transmit`] again (a won vote whose
///    fences disagree asks for raises), then [`Attempt::poll_outcome`];
/// 5. while settling, [`Attempt::poll_timeout`] is the lease's deadline:
///    call [`Attempt::handle_timeout`] when it passes.
///
/// Once [`Attempt::poll_outcome`] gives an outcome, inputs change nothing;
/// [`Attempt::poll_stragglers`] says what becomes of the requests still out.
///
/// ```
/// use std::time::{Duration, Instant};
/// use baton_core::acquire::{Attempt, Outcome, Reply, Request};
/// let t0 = Instant::now();
/// let mut attempt = Attempt::new(3, Duration::from_secs(10), t0);
/// let sent: Vec<Request> = std::iter::from_fn(|| attempt.poll_transmit()).collect();
/// assert_eq!(sent.len(), 3);
/// attempt.handle_reply(0, Reply::Acquired { fence: 4 }, t0);
/// assert_eq!(attempt.poll_outcome(), None);
/// attempt.handle_reply(2, Reply::Acquired { fence: 5 }, t0);
/// // The fences disagree: node 0 is raised to 5 before the lease counts.
/// assert_eq!(
///     attempt.poll_transmit(),
///     Some(Request::Raise { node: 0, fence: baton_core::Fence(5) })
/// );
/// assert_eq!(attempt.poll_outcome(), None);
/// attempt.handle_raise(0, true, t0);
/// assert!(matches!(attempt.poll_outcome(), Some(Outcome::Won { fence, .. }) if fence.0 == 5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attempt {
    ttl: Duration,
    started: Instant,
    replies: PerNode<Option<Reply>>,
    /// The next node to ask for an acquire (`n` once all were handed out).
    next_acquire: usize,
    phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Phase {
    Voting,
    Settling {
        fence: Fence,
        valid_until: Instant,
        /// Yes-nodes that reported `fence` itself.
        at_fence: usize,
        /// The lagging yes-nodes, and where each one's raise is.
        raises: Vec<(usize, Raise)>,
    },
    Done(Outcome),
}

/// Where one lagging node's raise is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Raise {
    ToSend,
    InFlight,
    Answered { raised: bool },
}

impl Attempt {
    /// An attempt over `n` nodes for a lease of `ttl`, whose requests go out
    /// at `started`.
    ///
    /// # Panics
    /// If `n` is zero.
    pub fn new(n: usize, ttl: Duration, started: Instant) -> Attempt {
        assert!(n > 0, "an attempt needs at least one node");
        Attempt {
            ttl,
            started,
            replies: PerNode::filled(n, None),
            next_acquire: 0,
            phase: Phase::Voting,
        }
    }

    /// When the attempt's requests went out: the lease's clock starts here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The number of configured nodes.
    pub fn nodes(&self) -> usize {
        self.replies.len()
    }

    /// The next request to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Request> {
        if self.next_acquire < self.replies.len() {
            self.next_acquire += 1;
            return Some(Request::Acquire {
                node: self.next_acquire - 1,
            });
        }
        if let Phase::Settling { fence, raises, .. } = &mut self.phase {
            let (node, state) = raises
                .iter_mut()
                .find(|(_, state)| *state == Raise::ToSend)?;
            *state = Raise::InFlight;
            return Some(Request::Raise {
                node: *node,
                fence: *fence,
            });
        }
        None
    }

    /// Node `node` answered the acquire at `now`. A second answer from the
    /// same node, or one after the vote, is ignored.
    pub fn handle_reply(&mut self, node: usize, reply: Reply, now: Instant) {
        if !matches!(self.phase, Phase::Voting) {
            return;
        }
        if let Some(slot @ None) = self.replies.get_mut(node) {
            *slot = Some(reply);
            self.decide_vote(now);
        }
    }

    /// Node `node` answered a raise at `now`: `true` if its counter is now
    /// at least the fence while the lock is ours there.
    pub fn handle_raise(&mut self, node: usize, raised: bool, now: Instant) {
        if let Phase::Settling { raises, .. } = &mut self.phase {
            if let Some((_, state @ Raise::InFlight)) = raises.iter_mut().find(|(i, _)| *i == node)
            {
                *state = Raise::Answered { raised };
                self.decide_settling(now);
            }
        }
    }

    /// When the attempt must be looked at again without an input: the
    /// lease's deadline while its fence is being settled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Settling { valid_until, .. } => Some(valid_until),
            _ => None,
        }
    }

    /// The time is `now` (see [`Attempt::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Settling { .. }) {
            self.decide_settling(now);
        }
    }

    /// The outcome, once it is certain.
    pub fn poll_outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// The won lease's fence and state, built from the outcome in one
    /// step (`None` unless the attempt was won).
    pub fn won_lease(&self) -> Option<(Fence, LeaseState)> {
        match self.phase {
            Phase::Done(Outcome::Won { fence, valid_until }) => {
                Some((fence, LeaseState::new(self.ttl, valid_until, self.started)))
            }
            _ => None,
        }
    }

    /// What becomes of the requests still out, once the outcome is certain.
    pub fn poll_stragglers(&self) -> Option<Stragglers> {
        match self.phase {
            Phase::Done(Outcome::Won { .. }) => Some(Stragglers::Finish),
            Phase::Done(Outcome::Lost { .. }) => Some(Stragglers::Drop),
            _ => None,
        }
    }

    /// After a win, an acquire still out when the attempt was decided
    /// answered `reply`: true if its node must be taken back. That is when it
    /// landed (our key is there now) after the lease's release began
    /// (`release_begun`, noted before the release is sent), since the
    /// release may have passed that node already. One that landed earlier
    /// is covered by the release.
    pub fn take_back_straggler(&self, reply: Reply, release_begun: bool) -> bool {
        matches!(self.phase, Phase::Done(Outcome::Won { .. }))
            && matches!(reply, Reply::Acquired { .. })
            && release_begun
    }

    /// Whether node `node`'s acquire reply can still change the attempt.
    pub fn awaits_reply(&self, node: usize) -> bool {
        matches!(self.phase, Phase::Voting) && self.replies.get(node) == Some(&None)
    }

    /// Whether node `node`'s raise reply can still change the attempt.
    pub fn awaits_raise(&self, node: usize) -> bool {
        match &self.phase {
            Phase::Settling { raises, .. } => raises
                .iter()
                .any(|(i, state)| *i == node && *state == Raise::InFlight),
            _ => false,
        }
    }

    fn count(&self, pred: impl Fn(&Reply) -> bool) -> usize {
        self.replies.iter().flatten().filter(|r| pred(r)).count()
    }

    fn decide_vote(&mut self, now: Instant) {
        let n = self.replies.len();
        let need = quorum(n);
        let acquired = self.count(|r| matches!(r, Reply::Acquired { .. }));
        let busy = self.count(|r| matches!(r, Reply::Busy { .. }));
        let failed = self.count(|r| matches!(r, Reply::Failed));
        if acquired >= need {
            let Some(valid_until) = self.deadline(now) else {
                let spread = self.spread(now);
                return self.lose(Loss::TooSlow { spread });
            };
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
            let at_fence = fences().filter(|&(_, f)| f == fence).count();
            let fence = Fence(fence);
            if fence_settled(n, at_fence, 0) || seeded::defect(seeded::Defect::FenceBeforeSettled) {
                self.phase = Phase::Done(Outcome::Won { fence, valid_until });
                return;
            }
            let raises = fences()
                .filter(|&(_, f)| f < fence.0)
                .map(|(i, _)| (i, Raise::ToSend))
                .collect();
            self.phase = Phase::Settling {
                fence,
                valid_until,
                at_fence,
                raises,
            };
            return;
        }
        if busy + failed <= n - need {
            return; // still winnable
        }
        let loss = if failed > n - need {
            Loss::NoQuorum { acquired }
        } else if acquired > 0 && busy + self.unanswered() < need {
            Loss::SplitVote {
                spread: self.spread(now),
            }
        } else {
            Loss::Busy {
                holder: self.soonest_holder(),
            }
        };
        self.lose(loss);
    }

    fn decide_settling(&mut self, now: Instant) {
        let Phase::Settling {
            fence,
            valid_until,
            at_fence,
            ref raises,
        } = self.phase
        else {
            return;
        };
        let raised = raises
            .iter()
            .filter(|(_, s)| *s == Raise::Answered { raised: true })
            .count();
        let answered = raises
            .iter()
            .all(|(_, s)| matches!(s, Raise::Answered { .. }));
        let settled = fence_settled(self.replies.len(), at_fence, raised);
        if now >= valid_until || (answered && !settled) {
            let spread = self.spread(now);
            self.lose(Loss::FenceUnsettled { spread });
        } else if settled {
            self.phase = Phase::Done(Outcome::Won { fence, valid_until });
        }
    }

    /// The deadline of a lease won at `now`, if validity is left.
    fn deadline(&self, now: Instant) -> Option<Instant> {
        if seeded::defect(seeded::Defect::ValidityFromDecision) {
            return quorum::validity(self.ttl, Duration::ZERO).map(|left| now + left);
        }
        let elapsed = now.saturating_duration_since(self.started);
        quorum::validity(self.ttl, elapsed).map(|left| now + left)
    }

    /// How far apart contenders of a split vote retry: twice the round's
    /// duration, at least [`SPLIT_SPREAD`].
    fn spread(&self, now: Instant) -> Duration {
        SPLIT_SPREAD.max(now.saturating_duration_since(self.started) * 2)
    }

    /// The highest fence counter a busy node reported (see
    /// [`Reply::Busy`]), if any did.
    pub fn busy_fence(&self) -> Option<u64> {
        self.replies
            .iter()
            .filter_map(|r| match r {
                Some(Reply::Busy { fence, .. }) => *fence,
                _ => None,
            })
            .max()
    }

    fn unanswered(&self) -> usize {
        self.replies.iter().filter(|r| r.is_none()).count()
    }

    fn soonest_holder(&self) -> Option<HolderTtl> {
        self.replies
            .iter()
            .filter_map(|r| match r {
                Some(Reply::Busy { holder, .. }) => Some(*holder),
                _ => None,
            })
            .min_by_key(|h| match h {
                HolderTtl::Expires(d) => *d,
                HolderTtl::Persistent => Duration::MAX,
            })
    }

    fn lose(&mut self, loss: Loss) {
        let release = (0..self.replies.len())
            .filter(|&i| !matches!(self.replies[i], Some(Reply::Busy { .. })))
            .collect();
        self.phase = Phase::Done(Outcome::Lost { release, loss });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// An attempt over `n` nodes with every acquire handed out.
    fn sent(n: usize, ttl: Duration, t0: Instant) -> Attempt {
        let mut attempt = Attempt::new(n, ttl, t0);
        let requests: Vec<Request> = std::iter::from_fn(|| attempt.poll_transmit()).collect();
        assert_eq!(
            requests,
            (0..n)
                .map(|node| Request::Acquire { node })
                .collect::<Vec<_>>()
        );
        attempt
    }

    fn lost(attempt: &Attempt) -> (&[usize], Loss) {
        match attempt.poll_outcome() {
            Some(Outcome::Lost { release, loss }) => (release, *loss),
            other => panic!("not lost: {other:?}"),
        }
    }

    #[test]
    fn stragglers_finish_after_a_win_and_take_back_only_what_lands_after_the_release() {
        let t0 = Instant::now();
        let mut won = sent(3, MS(1000), t0);
        assert_eq!(won.poll_stragglers(), None, "undecided");
        won.handle_reply(0, Reply::Acquired { fence: 1 }, t0);
        won.handle_reply(1, Reply::Acquired { fence: 1 }, t0);
        assert_eq!(won.poll_stragglers(), Some(Stragglers::Finish));
        let landed = Reply::Acquired { fence: 1 };
        assert!(won.take_back_straggler(landed, true));
        assert!(
            !won.take_back_straggler(landed, false),
            "the release covers it"
        );
        let busy = Reply::Busy {
            holder: HolderTtl::Persistent,
            fence: None,
        };
        assert!(
            !won.take_back_straggler(busy, true),
            "nothing of ours there"
        );
        assert!(!won.take_back_straggler(Reply::Failed, true));

        let mut lost = sent(3, MS(1000), t0);
        lost.handle_reply(0, busy, t0);
        lost.handle_reply(1, busy, t0);
        assert_eq!(lost.poll_stragglers(), Some(Stragglers::Drop));
        assert!(
            !lost.take_back_straggler(landed, true),
            "dropped, not asked"
        );
    }

    #[test]
    fn single_node_busy_and_failed() {
        let t0 = Instant::now();
        let mut busy = sent(1, MS(1000), t0);
        let holder = HolderTtl::Expires(MS(70));
        busy.handle_reply(
            0,
            Reply::Busy {
                holder,
                fence: None,
            },
            t0,
        );
        assert_eq!(
            lost(&busy),
            (
                &[][..],
                Loss::Busy {
                    holder: Some(holder)
                }
            )
        );
        let mut failed = sent(1, MS(1000), t0);
        failed.handle_reply(0, Reply::Failed, t0);
        assert_eq!(lost(&failed), (&[0][..], Loss::NoQuorum { acquired: 0 }));
    }

    #[test]
    fn a_slow_win_is_a_loss_that_releases() {
        let t0 = Instant::now();
        let mut late = sent(1, MS(100), t0);
        late.handle_reply(0, Reply::Acquired { fence: 1 }, t0 + MS(98));
        assert_eq!(
            lost(&late),
            (
                &[0][..],
                Loss::TooSlow {
                    spread: SPLIT_SPREAD.max(MS(196))
                }
            )
        );
        let mut in_time = sent(1, MS(100), t0);
        in_time.handle_reply(0, Reply::Acquired { fence: 1 }, t0 + MS(50));
        assert_eq!(
            in_time.poll_outcome(),
            Some(&Outcome::Won {
                fence: Fence(1),
                valid_until: t0 + MS(97)
            })
        );
    }

    #[test]
    fn a_split_vote_backs_off_and_a_busy_quorum_waits() {
        let t0 = Instant::now();
        let holder = HolderTtl::Expires(MS(500));
        // 1 ours, 1 another's, 1 failed: no one can have a quorum.
        let mut split = sent(3, MS(10_000), t0);
        split.handle_reply(0, Reply::Acquired { fence: 1 }, t0);
        split.handle_reply(
            1,
            Reply::Busy {
                holder,
                fence: None,
            },
            t0,
        );
        split.handle_reply(2, Reply::Failed, t0 + MS(40));
        assert_eq!(
            lost(&split),
            (&[0, 2][..], Loss::SplitVote { spread: MS(80) })
        );
        // Two another's: they may hold a quorum, so wait for them.
        let mut busy = sent(3, MS(10_000), t0);
        busy.handle_reply(
            1,
            Reply::Busy {
                holder,
                fence: None,
            },
            t0,
        );
        busy.handle_reply(
            2,
            Reply::Busy {
                holder,
                fence: None,
            },
            t0,
        );
        assert_eq!(
            lost(&busy),
            (
                &[0][..],
                Loss::Busy {
                    holder: Some(holder)
                }
            )
        );
    }

    #[test]
    fn a_fence_on_a_quorum_already_needs_no_raise() {
        let t0 = Instant::now();
        let mut attempt = sent(3, MS(10_000), t0);
        attempt.handle_reply(0, Reply::Acquired { fence: 7 }, t0);
        attempt.handle_reply(1, Reply::Acquired { fence: 7 }, t0);
        assert_eq!(attempt.poll_transmit(), None);
        assert!(matches!(
            attempt.poll_outcome(),
            Some(Outcome::Won {
                fence: Fence(7),
                ..
            })
        ));
    }

    #[test]
    fn an_unsettled_fence_is_its_own_loss() {
        let t0 = Instant::now();
        let mut refused = sent(3, MS(10_000), t0);
        refused.handle_reply(0, Reply::Acquired { fence: 3 }, t0);
        refused.handle_reply(1, Reply::Acquired { fence: 9 }, t0);
        assert_eq!(
            refused.poll_transmit(),
            Some(Request::Raise {
                node: 0,
                fence: Fence(9)
            })
        );
        assert_eq!(refused.poll_timeout(), Some(t0 + MS(9_898)));
        refused.handle_raise(0, false, t0 + MS(1));
        assert_eq!(
            lost(&refused),
            (
                &[0, 1, 2][..],
                Loss::FenceUnsettled {
                    spread: SPLIT_SPREAD
                }
            )
        );
        // The deadline passes while the raise is out.
        let mut slow = sent(3, MS(1_000), t0);
        slow.handle_reply(0, Reply::Acquired { fence: 3 }, t0);
        slow.handle_reply(1, Reply::Acquired { fence: 9 }, t0);
        assert!(slow.poll_transmit().is_some());
        slow.handle_timeout(t0 + MS(100));
        assert_eq!(slow.poll_outcome(), None, "still valid");
        slow.handle_timeout(t0 + MS(988));
        assert!(matches!(lost(&slow).1, Loss::FenceUnsettled { .. }));
        slow.handle_raise(0, true, t0 + MS(989));
        assert!(
            matches!(lost(&slow).1, Loss::FenceUnsettled { .. }),
            "final"
        );
    }

    /// Every mask of node outcomes for N = 1..=7: the attempt is won exactly
    /// when the acquired nodes reach the quorum of the configured N (after
    /// raises, when the fences disagree), and a loss takes back every node
    /// that is not busy.
    #[test]
    fn every_outcome_mask_for_up_to_seven_nodes() {
        let t0 = Instant::now();
        for n in 1..=7usize {
            for mask in 0..3u32.pow(n as u32) {
                let mut attempt = sent(n, MS(10_000), t0);
                let mut digits = mask;
                let mut outcome = Vec::new();
                for node in 0..n {
                    let reply = match digits % 3 {
                        0 => Reply::Acquired {
                            fence: node as u64 + 1,
                        },
                        1 => Reply::Busy {
                            holder: HolderTtl::Expires(MS(50 + node as u64)),
                            fence: None,
                        },
                        _ => Reply::Failed,
                    };
                    digits /= 3;
                    if attempt.awaits_reply(node) {
                        // Replies after the decision change nothing: the
                        // checks below are on those that came before it.
                        attempt.handle_reply(node, reply, t0);
                        outcome.push(reply);
                    }
                }
                while let Some(Request::Raise { node, .. }) = attempt.poll_transmit() {
                    attempt.handle_raise(node, true, t0);
                }
                let acquired = outcome
                    .iter()
                    .filter(|r| matches!(r, Reply::Acquired { .. }))
                    .count();
                let not_busy: Vec<usize> = (0..n)
                    .filter(|&i| !matches!(outcome.get(i), Some(Reply::Busy { .. })))
                    .collect();
                match attempt.poll_outcome() {
                    Some(Outcome::Won { fence, .. }) => {
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
                    Some(Outcome::Lost { release, .. }) => {
                        assert!(acquired < quorum(n), "n={n} mask={mask}");
                        // Every node that may hold our token, no busy one.
                        assert_eq!(release, &not_busy, "n={n} mask={mask}");
                    }
                    None => panic!("all replied yet undecided: n={n} mask={mask}"),
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
            let mut attempt = sent(n, ttl, t0);
            let now = t0 + MS(elapsed_ms);
            for node in 0..quorum(n) {
                attempt.handle_reply(node, Reply::Acquired { fence: 1 }, now);
            }
            match attempt.poll_outcome() {
                Some(Outcome::Won { valid_until, .. }) => {
                    let left = quorum::validity(ttl, MS(elapsed_ms)).expect("won only with validity left");
                    prop_assert_eq!(*valid_until, now + left);
                    prop_assert!(*valid_until < t0 + ttl, "never past the server's expiry");
                }
                Some(Outcome::Lost { loss, release }) => {
                    let too_slow = matches!(loss, Loss::TooSlow { .. });
                    prop_assert!(too_slow);
                    prop_assert!(quorum::validity(ttl, MS(elapsed_ms)).is_none());
                    prop_assert_eq!(release, &(0..n).collect::<Vec<_>>());
                }
                None => prop_assert!(false, "a quorum of replies is decided"),
            }
        }

        /// Replies arriving in any order: the outcome never flips once
        /// made, and it is made as soon as it is certain.
        #[test]
        fn early_decisions_are_final(n in 1usize..=7, outcomes in proptest::collection::vec(0u8..3, 7), order in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle()) {
            let t0 = Instant::now();
            let mut attempt = sent(n, MS(10_000), t0);
            let mut first: Option<bool> = None;
            let (mut acquired, mut refused) = (0, 0);
            for &node in order.iter().filter(|&&i| i < n) {
                let reply = match outcomes[node] {
                    0 => { acquired += 1; Reply::Acquired { fence: 1 } }
                    1 => { refused += 1; Reply::Busy { holder: HolderTtl::Persistent, fence: None } }
                    _ => { refused += 1; Reply::Failed }
                };
                attempt.handle_reply(node, reply, t0);
                let won = attempt.poll_outcome().map(|o| matches!(o, Outcome::Won { .. }));
                let certain = acquired >= quorum(n) || refused > n - quorum(n);
                prop_assert_eq!(won.is_some(), certain);
                if let (Some(a), Some(b)) = (first, won) { prop_assert_eq!(a, b); }
                first = first.or(won);
            }
        }
    }
}
