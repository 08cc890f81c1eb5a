//! A held lease as a state machine with no I/O: its deadline, its renewal
//! schedule, and whether it is still held.
//!
//! A lease of `ttl` is renewed a third of the way into each period, so two
//! attempts fit before it lapses. When renewals fail for transient reasons
//! they are retried every tenth of the TTL, until the give-up point a tenth
//! of the TTL before the local deadline: the holder is told its lease is lost
//! *before* it actually lapses, while it can still stop its work in time.
//!
//! Renewals and extends feed their verdicts through one
//! [`LeaseState::handle_verdict`], so the rule that a verdict arriving after
//! the deadline never revives the lease is written once.

use std::time::{Duration, Instant};

use crate::quorum::{self, drift, Extension};
use crate::seeded;

/// A fair waiter's last queued attempt, as [`LeaseState::handed`] needs
/// it: when it went out, and the fence counter its busy reply saw (`None`:
/// the node did not say, and no grant can be shown fresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Queued {
    /// When the attempt went out.
    pub sent: Instant,
    /// The counter its busy reply reported ([`crate::acquire::Reply::Busy`]).
    pub fence: Option<u64>,
}

/// Where a lease is in its life. Once it is not [`State::Held`] it never is
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Ours, as far as is known; trusted up to [`LeaseState::valid_until`].
    Held,
    /// Lost, for this reason: the holder must stop.
    Lost(LostBecause),
    /// Given up by its holder (a release).
    Released,
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostBecause {
    /// A quorum said the key is gone or another's.
    Refused,
    /// A renewal's or extend's "yes" came back after the deadline: the lease
    /// was not to be trusted in between, so it does not count.
    LateVerdict,
    /// Renewals kept failing until the give-up point.
    RenewalsFailed,
    /// The give-up point passed before a renewal could be sent (the
    /// process was paused, or the renewals were backlogged): a renewal sent
    /// then could only be trusted after the holder was to be told.
    GiveUpPointPassed,
    /// The deadline passed.
    DeadlinePassed,
    /// An extend was asked for after the deadline.
    ExtendedAfterDeadline,
}

impl LostBecause {
    /// The reason in words, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            LostBecause::Refused => "its key is gone or another's",
            LostBecause::LateVerdict => "its renewal or extend came back after the deadline",
            LostBecause::RenewalsFailed => "renewals failed until its deadline",
            LostBecause::GiveUpPointPassed => {
                "its give-up point passed before its renewal went out"
            }
            LostBecause::DeadlinePassed => "its deadline passed",
            LostBecause::ExtendedAfterDeadline => "it was extended after its deadline",
        }
    }
}

/// Which operation a verdict answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A background renewal to the lease's current TTL.
    Renewal,
    /// An extend to a new TTL, which renewals use from then on.
    Extend {
        /// The new TTL.
        ttl: Duration,
    },
}

/// What a verdict did to the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applied {
    /// Extended: the deadline and the schedule moved on.
    Extended,
    /// A renewal got no verdict: it is retried ([`LeaseState::next_renewal`])
    /// and the lease is held until its deadline.
    Retrying,
    /// An extend got no verdict: the server may have applied it, so the
    /// deadline is the earlier of the two possible ones. Still held.
    Unknown,
    /// The lease is lost now, for this reason.
    Lost(LostBecause),
    /// The lease was no longer held before the verdict came: nothing changed.
    Over,
}

/// The state of one held lease.
///
/// Call order: [`LeaseState::new`] from the won attempt; then, for each
/// renewal or extend, send it at `sent` and feed its verdict to
/// [`LeaseState::handle_verdict`] (one at a time: two in flight could be
/// applied by the server in one order and here in the other);
/// [`LeaseState::next_renewal`] says when the next renewal is due, and
/// [`LeaseState::handle_timeout`] loses the lease once its deadline passes;
/// [`LeaseState::release`] ends it.
///
/// ```
/// use std::time::{Duration, Instant};
/// use baton_core::lease::{Applied, LeaseState, Operation};
/// use baton_core::quorum::Extension;
/// let t0 = Instant::now();
/// let ttl = Duration::from_millis(300);
/// let mut lease = LeaseState::new(ttl, t0 + Duration::from_millis(295), t0);
/// assert_eq!(lease.next_renewal(), Some(t0 + Duration::from_millis(100)));
/// // A renewal sent at t0 + 100 ms succeeded: valid until then + ttl - drift.
/// let sent = t0 + Duration::from_millis(100);
/// let applied = lease.handle_verdict(Operation::Renewal, Extension::Extended, sent, sent);
/// assert_eq!(applied, Applied::Extended);
/// assert_eq!(lease.valid_until(), t0 + Duration::from_millis(395));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseState {
    ttl: Duration,
    valid_until: Instant,
    next: Instant,
    /// How long before the deadline renewals give up: a tenth of the TTL
    /// (of the hand-off lease, for a lock handed over, until it is renewed).
    margin: Duration,
    state: State,
}

impl LeaseState {
    /// A lease of `ttl` whose acquire attempt started at `started` and which
    /// is valid until `valid_until`.
    pub fn new(ttl: Duration, valid_until: Instant, started: Instant) -> LeaseState {
        LeaseState {
            ttl,
            valid_until,
            next: started + ttl / 3,
            margin: ttl / 10,
            state: State::Held,
        }
    }

    /// A fair lock handed to a waiter by the holder's release, which the
    /// waiter learns from its grant (the fence `granted`): the release set
    /// the key to the waiter's token with a short hand-off lease `hand_off`.
    ///
    /// The grant counts only if it comes from a release after the waiter's
    /// last queued attempt `queued` landed: one before it either made that
    /// attempt win (the key held our token) or had lapsed when it landed —
    /// and its notification may arrive late, on the waiter's pub/sub
    /// connection, after that attempt's busy reply. The release draws the
    /// fence it hands over, so a grant from after the attempt carries a
    /// fence above the counter its busy reply saw (`queued.fence`); any
    /// other is stale: `None`. A counted grant's hand-off began after the
    /// attempt went out, so the lease is valid until `queued.sent +
    /// hand_off - drift`, and its first renewal, which extends it to `ttl`,
    /// is due a third of the way to that deadline (as a fresh lease renews
    /// at a third of its TTL), so work that ends sooner costs no renewal.
    /// `None` too when that leaves nothing at `now`. On `None` the waiter
    /// takes the lock with an attempt instead, which finds it if it is ours.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use baton_core::lease::{LeaseState, Queued};
    /// let t0 = Instant::now();
    /// let (ttl, hand_off) = (Duration::from_secs(10), Duration::from_secs(3));
    /// let queued = Queued { sent: t0, fence: Some(7) };
    /// let lease = LeaseState::handed(ttl, hand_off, queued, 8, t0 + Duration::from_secs(1)).unwrap();
    /// assert_eq!(lease.valid_until(), t0 + Duration::from_millis(2_968));
    /// let at = t0 + Duration::from_secs(1) + Duration::from_millis(1_968) / 3;
    /// assert_eq!(lease.next_renewal(), Some(at), "a third of the way to the deadline");
    /// assert!(LeaseState::handed(ttl, hand_off, queued, 8, t0 + Duration::from_secs(3)).is_none());
    /// assert!(LeaseState::handed(ttl, hand_off, queued, 7, t0).is_none(), "stale: from before the attempt");
    /// ```
    pub fn handed(
        ttl: Duration,
        hand_off: Duration,
        queued: Queued,
        granted: u64,
        now: Instant,
    ) -> Option<LeaseState> {
        let sent = if seeded::defect(seeded::Defect::HandedFromGrant) {
            now
        } else {
            queued.sent
        };
        let fresh = queued.fence.is_some_and(|seen| granted > seen);
        if !fresh && !seeded::defect(seeded::Defect::StaleGrantTaken) {
            return None;
        }
        let left = quorum::validity(hand_off, now.saturating_duration_since(sent))?;
        Some(LeaseState {
            ttl,
            valid_until: now + left,
            next: now + left / 3,
            margin: ttl.min(hand_off) / 10,
            state: State::Held,
        })
    }

    /// Where the lease is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// Held, and before the deadline at `now`.
    pub fn is_held(&self, now: Instant) -> bool {
        self.state == State::Held && now < self.valid_until
    }

    /// How long the lease is still to be trusted at `now` (zero once it is
    /// not held).
    pub fn remaining(&self, now: Instant) -> Duration {
        match self.state {
            State::Held => self.valid_until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// The lease length renewals send.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The local deadline: the lease is not to be trusted from then on.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// When the next renewal (or retry) is due; `None` once not held.
    pub fn next_renewal(&self) -> Option<Instant> {
        (self.state == State::Held).then_some(self.next)
    }

    /// When to stop retrying renewals and declare the lease lost.
    pub fn give_up_at(&self) -> Instant {
        self.valid_until
            .checked_sub(self.margin)
            .unwrap_or(self.valid_until)
    }

    /// Applies the verdict of `operation`, sent at `sent`, that came back at
    /// `now`.
    ///
    /// An extension counts only if it came back before the deadline: the
    /// key then outlives `sent + ttl` on the server, so locally the lease is
    /// valid until `sent + ttl - drift`, and the next renewal is due a third
    /// of `ttl` after `sent`. One that comes back later does not revive the
    /// lease: it was not to be trusted in between.
    pub fn handle_verdict(
        &mut self,
        operation: Operation,
        verdict: Extension,
        sent: Instant,
        now: Instant,
    ) -> Applied {
        let revives = seeded::defect(seeded::Defect::LateExtendRevives);
        if self.state != State::Held && !revives {
            return Applied::Over;
        }
        let in_time = now < self.valid_until || revives;
        match (verdict, operation) {
            (Extension::Extended, _) if in_time => {
                self.state = State::Held;
                if let Operation::Extend { ttl } = operation {
                    self.ttl = ttl;
                }
                self.valid_until = sent + self.ttl.saturating_sub(drift(self.ttl));
                self.next = sent + self.ttl / 3;
                self.margin = self.ttl / 10;
                Applied::Extended
            }
            (Extension::Extended, _) => self.lose(LostBecause::LateVerdict),
            (Extension::Refused, _) => self.lose(LostBecause::Refused),
            (Extension::Unknown, Operation::Renewal) => {
                let give_up = self.give_up_at();
                if now >= give_up {
                    return self.lose(LostBecause::RenewalsFailed);
                }
                self.next = (now + self.margin).min(give_up);
                Applied::Retrying
            }
            (Extension::Unknown, Operation::Extend { ttl }) => {
                let if_applied = sent + ttl.saturating_sub(drift(ttl));
                self.valid_until = self.valid_until.min(if_applied);
                self.next = self.next.min(sent + ttl / 3);
                Applied::Unknown
            }
        }
    }

    /// The time is `now`: a lease whose deadline has passed is lost.
    /// Returns whether the lease is still held.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.state == State::Held && now >= self.valid_until {
            self.lose(LostBecause::DeadlinePassed);
        }
        self.state == State::Held
    }

    /// Declares the lease lost `because` (if it is still held).
    pub fn lose(&mut self, because: LostBecause) -> Applied {
        if self.state != State::Held {
            return Applied::Over;
        }
        self.state = State::Lost(because);
        Applied::Lost(because)
    }

    /// The holder released the lease (if it is still held).
    pub fn release(&mut self) {
        if self.state == State::Held {
            self.state = State::Released;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn renew(lease: &mut LeaseState, verdict: Extension, sent: Instant, now: Instant) -> Applied {
        lease.handle_verdict(Operation::Renewal, verdict, sent, now)
    }

    fn extend(lease: &mut LeaseState, ttl: Duration, verdict: Extension, sent: Instant) -> Applied {
        lease.handle_verdict(Operation::Extend { ttl }, verdict, sent, sent)
    }

    #[test]
    fn renews_at_a_third_and_tracks_validity() {
        let t0 = Instant::now();
        let mut lease = LeaseState::new(MS(3000), t0 + MS(2968), t0);
        assert_eq!(lease.next_renewal(), Some(t0 + MS(1000)));
        let sent = t0 + MS(1000);
        assert_eq!(
            renew(&mut lease, Extension::Extended, sent, sent),
            Applied::Extended
        );
        assert_eq!(lease.valid_until(), t0 + MS(1000) + MS(3000) - MS(32));
        assert_eq!(lease.next_renewal(), Some(t0 + MS(2000)));
        assert_eq!(
            extend(&mut lease, MS(600), Extension::Extended, t0 + MS(1500)),
            Applied::Extended
        );
        assert_eq!(lease.ttl(), MS(600));
        assert_eq!(lease.next_renewal(), Some(t0 + MS(1700)));
    }

    #[test]
    fn an_unknown_extend_keeps_the_earlier_deadline() {
        let t0 = Instant::now();
        let mut lease = LeaseState::new(MS(10_000), t0 + MS(9_898), t0);
        assert_eq!(
            extend(&mut lease, MS(100), Extension::Unknown, t0 + MS(10)),
            Applied::Unknown
        );
        assert_eq!(lease.valid_until(), t0 + MS(10) + MS(97));
        assert_eq!(lease.next_renewal(), Some(t0 + MS(10) + MS(100) / 3));
        extend(&mut lease, MS(60_000), Extension::Unknown, t0 + MS(20));
        assert_eq!(
            lease.valid_until(),
            t0 + MS(107),
            "a longer unknown extend changes nothing"
        );
        assert_eq!(lease.ttl(), MS(10_000), "nor the renewals' TTL");
    }

    #[test]
    fn a_late_or_refused_verdict_loses_the_lease_for_good() {
        let t0 = Instant::now();
        let mut late = LeaseState::new(MS(1000), t0 + MS(988), t0);
        let applied = renew(&mut late, Extension::Extended, t0 + MS(300), t0 + MS(988));
        assert_eq!(applied, Applied::Lost(LostBecause::LateVerdict));
        assert_eq!(late.state(), State::Lost(LostBecause::LateVerdict));
        assert_eq!(late.next_renewal(), None);
        let again = renew(&mut late, Extension::Extended, t0 + MS(990), t0 + MS(991));
        assert_eq!(again, Applied::Over, "nothing revives it");
        assert!(!late.is_held(t0 + MS(991)));
        let mut refused = LeaseState::new(MS(1000), t0 + MS(988), t0);
        assert_eq!(
            extend(&mut refused, MS(5000), Extension::Refused, t0 + MS(1)),
            Applied::Lost(LostBecause::Refused)
        );
        let mut released = LeaseState::new(MS(1000), t0 + MS(988), t0);
        released.release();
        assert_eq!(released.state(), State::Released);
        assert_eq!(released.lose(LostBecause::Refused), Applied::Over);
        let mut expiring = LeaseState::new(MS(1000), t0 + MS(988), t0);
        assert!(expiring.handle_timeout(t0 + MS(987)));
        assert!(!expiring.handle_timeout(t0 + MS(988)));
        assert_eq!(expiring.state(), State::Lost(LostBecause::DeadlinePassed));
    }

    /// A lock handed over on a short hand-off lease gives up by that
    /// lease's tenth, not the long TTL's (which would put the give-up point
    /// before the handing, and lose the lease at its first renewal); once
    /// renewed, it lives by its own TTL.
    #[test]
    fn a_handed_lease_renews_within_its_hand_off_lease() {
        let t0 = Instant::now();
        let (ttl, hand_off) = (Duration::from_secs(30), Duration::from_secs(3));
        let queued = Queued {
            sent: t0,
            fence: Some(1),
        };
        let mut lease = LeaseState::handed(ttl, hand_off, queued, 2, t0).unwrap();
        let next = lease.next_renewal().unwrap();
        assert!(next < lease.give_up_at() && lease.give_up_at() < lease.valid_until());
        assert_eq!(lease.give_up_at(), lease.valid_until() - hand_off / 10);
        let applied = lease.handle_verdict(Operation::Renewal, Extension::Extended, next, next);
        assert_eq!(applied, Applied::Extended);
        assert_eq!(lease.valid_until(), next + ttl - drift(ttl));
        assert_eq!(lease.give_up_at(), lease.valid_until() - ttl / 10);
    }

    #[test]
    fn failures_retry_until_the_give_up_point_before_the_deadline() {
        let t0 = Instant::now();
        let mut lease = LeaseState::new(MS(1000), t0 + MS(988), t0);
        assert_eq!(lease.give_up_at(), t0 + MS(888));
        let mut now = lease.next_renewal().unwrap();
        let mut tries = 0;
        while renew(&mut lease, Extension::Unknown, now, now) == Applied::Retrying {
            tries += 1;
            let next = lease.next_renewal().unwrap();
            assert!(next > now && next <= lease.give_up_at());
            now = next;
        }
        assert_eq!(lease.state(), State::Lost(LostBecause::RenewalsFailed));
        assert_eq!(
            now,
            lease.give_up_at(),
            "gives up exactly at the give-up point"
        );
        assert!(now < lease.valid_until(), "and so before the deadline");
        assert_eq!(tries, 6, "retries every ttl/10 from 333 ms to 888 ms");
    }
}
