//! The release of a lease, or the take-back of a lost attempt, over N
//! nodes, as a state machine with no I/O.
//!
//! A release that timed out on a node is sent once more: a lock left behind
//! costs every other worker its whole TTL, which is worth a second node
//! timeout (a server stalled a little longer than the timeout answers it).
//! The caller sends it on the same connection, behind the first, so when it
//! answers the first has been applied or dropped, never later. The first
//! may have deleted the key, so "not held" from the second is
//! [`Found::Unclear`].

use crate::per_node::PerNode;
use crate::quorum::Extension;
use crate::vote::{Ballot, Found, Vote};

/// What became of one release request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The node answered.
    Found(Found),
    /// The node did not answer within its timeout.
    TimedOut,
    /// The node failed otherwise (an error reply, a broken connection).
    Failed,
}

/// A release request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// The node's index among the configured nodes.
    pub node: usize,
    /// Whether this is the second try after a timeout.
    pub again: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    /// Not part of this release.
    Skipped,
    ToSend {
        again: bool,
    },
    InFlight {
        again: bool,
    },
    Answered {
        ok: bool,
    },
}

/// One release (or take-back) over the nodes `which` of `n` configured.
///
/// Call order: [`Release::new`]; [`Release::poll_transmit`] until `None`,
/// sending each request; for each answer [`Release::handle_answer`], then
/// [`Release::poll_transmit`] again (a timed-out node is asked once more)
/// and [`Release::poll_verdict`]. The verdict may come before every node
/// answered; the caller then finishes the rest in the background, still
/// through this machine, until [`Release::is_finished`].
///
/// ```
/// use baton_core::quorum::Extension;
/// use baton_core::release::{Answer, Release, Request};
/// use baton_core::vote::Found;
/// let mut release = Release::new(1, &[0], true);
/// assert_eq!(release.poll_transmit(), Some(Request { node: 0, again: false }));
/// release.handle_answer(0, Answer::TimedOut);
/// // Sent again; the first may have deleted the key meanwhile.
/// assert_eq!(release.poll_transmit(), Some(Request { node: 0, again: true }));
/// release.handle_answer(0, Answer::Found(Found::NotHeld));
/// assert_eq!(release.poll_verdict(), Some(Extension::Extended), "ours while held");
/// assert!(release.all_answered());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Release {
    held: bool,
    vote: Vote,
    nodes: PerNode<Node>,
}

impl Release {
    /// A release on the nodes `which` of `n` configured. `held`: the lease
    /// was valid when the release was sent (see [`Found::ballot`]).
    pub fn new(n: usize, which: &[usize], held: bool) -> Release {
        let mut nodes = PerNode::filled(n, Node::Skipped);
        for &i in which {
            if let Some(node) = nodes.get_mut(i) {
                *node = Node::ToSend { again: false };
            }
        }
        Release {
            held,
            vote: Vote::new(n),
            nodes,
        }
    }

    /// A release on every one of `n` configured nodes (a held lease's).
    pub fn on_every_node(n: usize, held: bool) -> Release {
        Release {
            held,
            vote: Vote::new(n),
            nodes: PerNode::filled(n, Node::ToSend { again: false }),
        }
    }

    /// The next request to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Request> {
        let (node, state) = self
            .nodes
            .iter_mut()
            .enumerate()
            .find(|(_, s)| matches!(s, Node::ToSend { .. }))?;
        let Node::ToSend { again } = *state else {
            unreachable!("found above")
        };
        *state = Node::InFlight { again };
        Some(Request { node, again })
    }

    /// Node `node` answered its request. A first timeout queues the
    /// request again; anything else is the node's answer.
    pub fn handle_answer(&mut self, node: usize, answer: Answer) {
        let Some(state) = self.nodes.get_mut(node) else {
            return;
        };
        let Node::InFlight { again } = *state else {
            return;
        };
        let ballot = match answer {
            Answer::TimedOut if !again => {
                *state = Node::ToSend { again: true };
                return;
            }
            Answer::TimedOut | Answer::Failed => Ballot::Failed,
            Answer::Found(Found::NotHeld) if again => Found::Unclear.ballot(self.held),
            Answer::Found(found) => found.ballot(self.held),
        };
        *state = Node::Answered {
            ok: ballot != Ballot::Failed,
        };
        self.vote.handle(ballot);
    }

    /// The verdict over the configured nodes, once the rest cannot change
    /// it: `Extended` if a quorum deleted our key, `Refused` if so many
    /// found it gone or another's that no quorum can, `Unknown` if failures
    /// leave it open. Nodes left out of the release count as failed.
    pub fn poll_verdict(&self) -> Option<Extension> {
        let skipped = self.nodes.iter().filter(|s| **s == Node::Skipped).count();
        let mut vote = self.vote.clone();
        for _ in 0..skipped {
            vote.handle(Ballot::Failed);
        }
        vote.poll_verdict()
    }

    /// Whether every node of the release has answered (or failed twice).
    pub fn is_finished(&self) -> bool {
        self.nodes
            .iter()
            .all(|s| matches!(s, Node::Skipped | Node::Answered { .. }))
    }

    /// Whether every node of the release answered without failing: then
    /// none can still hold the token, and a take-back's token may be used
    /// again.
    pub fn all_answered(&self) -> bool {
        self.nodes
            .iter()
            .all(|s| matches!(s, Node::Skipped | Node::Answered { ok: true }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_timeout_is_a_failure_and_the_verdict_comes_at_quorum() {
        let mut release = Release::new(3, &[0, 1, 2], true);
        let sent: Vec<Request> = std::iter::from_fn(|| release.poll_transmit()).collect();
        assert_eq!(sent.len(), 3);
        release.handle_answer(0, Answer::TimedOut);
        release.handle_answer(0, Answer::TimedOut); // not in flight: ignored
        assert_eq!(
            release.poll_transmit(),
            Some(Request {
                node: 0,
                again: true
            })
        );
        release.handle_answer(1, Answer::Found(Found::Deleted));
        assert_eq!(release.poll_verdict(), None);
        release.handle_answer(2, Answer::Found(Found::Deleted));
        assert_eq!(release.poll_verdict(), Some(Extension::Extended));
        assert!(!release.is_finished(), "node 0's second try is out");
        release.handle_answer(0, Answer::TimedOut);
        assert!(release.is_finished());
        assert!(!release.all_answered(), "node 0 may still hold the token");
    }

    #[test]
    fn an_unclear_release_counts_only_while_held() {
        let mut late = Release::new(1, &[0], false);
        late.poll_transmit();
        late.handle_answer(0, Answer::TimedOut);
        late.poll_transmit();
        late.handle_answer(0, Answer::Found(Found::NotHeld));
        assert_eq!(late.poll_verdict(), Some(Extension::Refused));
    }

    #[test]
    fn a_take_back_of_some_nodes_finishes_when_they_answered() {
        let mut take_back = Release::new(3, &[1], false);
        assert_eq!(
            take_back.poll_transmit(),
            Some(Request {
                node: 1,
                again: false
            })
        );
        assert_eq!(take_back.poll_transmit(), None);
        assert!(!take_back.is_finished());
        take_back.handle_answer(1, Answer::Found(Found::NotHeld));
        assert!(take_back.is_finished() && take_back.all_answered());
        let mut failed = Release::new(2, &[0, 1], false);
        failed.poll_transmit();
        failed.poll_transmit();
        failed.handle_answer(0, Answer::Failed);
        failed.handle_answer(1, Answer::Found(Found::Deleted));
        assert!(failed.is_finished() && !failed.all_answered());
    }
}
