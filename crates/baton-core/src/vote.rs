//! The nodes' vote on an extend, a renewal or a release of a held lease,
//! counted as the replies come, with no I/O.

use crate::quorum::{extension, extension_so_far, reading_so_far, Extension, Reading};

/// One node's answer to an extend, a renewal or a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ballot {
    /// The key held our token: its TTL was reset, or it was deleted.
    Yes,
    /// The key was absent or another's: nothing was touched.
    No,
    /// The node errored or timed out: it may or may not have applied it.
    Failed,
}

/// What a release found on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Found {
    /// The key held our token and is deleted.
    Deleted,
    /// The key was absent or another's; nothing was touched.
    NotHeld,
    /// Absent, found by a release sent again after the first may itself
    /// have deleted it (its connection broke, or it timed out).
    Unclear,
}

impl Found {
    /// The ballot of a release reply. `held`: the lease was valid when the
    /// release was sent, so an [`Found::Unclear`] key was ours (nobody else
    /// could have taken it, nor could it have expired, in between).
    pub fn ballot(self, held: bool) -> Ballot {
        match self {
            Found::Deleted => Ballot::Yes,
            Found::Unclear if held => Ballot::Yes,
            Found::Unclear | Found::NotHeld => Ballot::No,
        }
    }
}

/// The vote of `n` configured nodes on one operation on a held lease.
///
/// Call order: [`Vote::new`], then [`Vote::handle`] once per node as its
/// reply comes, checking [`Vote::poll_verdict`] after each: the verdict is
/// given as soon as the replies still out cannot change it, so a caller
/// need not wait for a slow node. [`Vote::verdict`] is the verdict on what
/// came in (for a caller that stopped waiting).
///
/// ```
/// use baton_core::quorum::Extension;
/// use baton_core::vote::{Ballot, Vote};
/// let mut vote = Vote::new(3);
/// vote.handle(Ballot::Yes);
/// assert_eq!(vote.poll_verdict(), None);
/// vote.handle(Ballot::Yes);
/// assert_eq!(vote.poll_verdict(), Some(Extension::Extended));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vote {
    n: usize,
    yes: usize,
    no: usize,
    failed: usize,
}

impl Vote {
    /// A vote of `n` configured nodes, none answered yet.
    pub fn new(n: usize) -> Vote {
        Vote {
            n,
            yes: 0,
            no: 0,
            failed: 0,
        }
    }

    /// One node's answer. Answers beyond the `n` nodes are ignored.
    pub fn handle(&mut self, ballot: Ballot) {
        if self.unanswered() == 0 {
            return;
        }
        match ballot {
            Ballot::Yes => self.yes += 1,
            Ballot::No => self.no += 1,
            Ballot::Failed => self.failed += 1,
        }
    }

    /// The verdict, once the nodes still to answer cannot change it.
    pub fn poll_verdict(&self) -> Option<Extension> {
        extension_so_far(self.n, self.yes, self.no, self.unanswered())
    }

    /// The verdict on the answers so far.
    pub fn verdict(&self) -> Extension {
        extension(self.n, self.yes, self.no)
    }

    /// How many nodes said yes.
    pub fn yes(&self) -> usize {
        self.yes
    }

    /// How many nodes have not answered.
    pub fn unanswered(&self) -> usize {
        self.n - self.yes - self.no - self.failed
    }
}

/// A read of a lock over `n` configured nodes (a status view): which
/// holder, if any, a quorum agrees on.
///
/// Call order: [`Read::new`], then [`Read::handle`] once per node as its
/// answer comes (the holder's value, `None` for a free lock, or a failure),
/// checking [`Read::poll_reading`] after each: it is given as soon as the
/// answers still out cannot change it. [`Read::holder`] is the agreed value.
///
/// ```
/// use baton_core::quorum::Reading;
/// use baton_core::vote::Read;
/// let mut read = Read::new(3);
/// read.handle(Ok(Some("a")));
/// read.handle(Ok(Some("b")));
/// assert_eq!(read.poll_reading(), None, "the third decides");
/// read.handle(Ok(Some("a")));
/// assert_eq!(read.poll_reading(), Some(Reading::Held));
/// assert_eq!(read.holder(), Some(&"a"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Read<V> {
    n: usize,
    answers: Vec<Option<V>>,
    failed: usize,
}

impl<V: PartialEq> Read<V> {
    /// A read of `n` configured nodes, none answered yet.
    pub fn new(n: usize) -> Read<V> {
        Read {
            n,
            answers: Vec::new(),
            failed: 0,
        }
    }

    /// One node's answer: `Ok(Some(holder))`, `Ok(None)` when the lock is
    /// free there, `Err(())` when the node failed. Answers beyond the `n`
    /// nodes are ignored.
    #[allow(clippy::result_unit_err)]
    pub fn handle(&mut self, answer: Result<Option<V>, ()>) {
        if self.answers.len() + self.failed >= self.n {
            return;
        }
        match answer {
            Ok(value) => self.answers.push(value),
            Err(()) => self.failed += 1,
        }
    }

    /// The reading, once the nodes still to answer cannot change it.
    pub fn poll_reading(&self) -> Option<Reading> {
        let agreeing = self.most_agreeing().map_or(0, |(_, count)| count);
        let unanswered = self.n - self.answers.len() - self.failed;
        reading_so_far(self.n, agreeing, self.answers.len(), unanswered)
    }

    /// The holder a quorum agrees on (only when the reading is
    /// [`Reading::Held`]).
    pub fn holder(&self) -> Option<&V> {
        (self.poll_reading() == Some(Reading::Held))
            .then(|| self.most_agreeing().map(|(value, _)| value))
            .flatten()
    }

    /// How many nodes answered (failures not counted).
    pub fn answered(&self) -> usize {
        self.answers.len()
    }

    fn most_agreeing(&self) -> Option<(&V, usize)> {
        self.answers
            .iter()
            .flatten()
            .map(|value| {
                let count = self
                    .answers
                    .iter()
                    .filter(|a| a.as_ref() == Some(value))
                    .count();
                (value, count)
            })
            .max_by_key(|&(_, count)| count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unclear_release_counts_only_while_the_lease_was_held() {
        assert_eq!(Found::Unclear.ballot(true), Ballot::Yes);
        assert_eq!(Found::Unclear.ballot(false), Ballot::No);
        assert_eq!(Found::NotHeld.ballot(true), Ballot::No);
        assert_eq!(Found::Deleted.ballot(false), Ballot::Yes);
    }

    #[test]
    fn failures_leave_the_verdict_unknown() {
        let mut vote = Vote::new(3);
        vote.handle(Ballot::Failed);
        vote.handle(Ballot::Yes);
        assert_eq!(vote.poll_verdict(), None);
        vote.handle(Ballot::Failed);
        assert_eq!(vote.poll_verdict(), Some(Extension::Unknown));
        vote.handle(Ballot::Yes);
        assert_eq!(
            vote.verdict(),
            Extension::Unknown,
            "a fourth answer is ignored"
        );
        let mut read: Read<&str> = Read::new(3);
        read.handle(Err(()));
        read.handle(Ok(None));
        assert_eq!(read.poll_reading(), None);
        read.handle(Err(()));
        assert_eq!(read.poll_reading(), Some(Reading::NoQuorum));
        assert_eq!(read.holder(), None);
        let mut refused = Vote::new(1);
        refused.handle(Ballot::No);
        assert_eq!(refused.poll_verdict(), Some(Extension::Refused));
    }
}
