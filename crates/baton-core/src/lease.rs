//! The renewal schedule of one held lease, as data.
//!
//! A lease of `ttl` is renewed a third of the way into each period, so two
//! attempts fit before it lapses. When renewals fail for transient reasons
//! they are retried every tenth of the TTL, until the give-up point a tenth
//! of the TTL before the local deadline: the holder is told its lease is lost
//! *before* it actually lapses, while it can still stop its work in time.

use std::time::{Duration, Instant};

use crate::quorum::drift;

/// The renewal state of one lease.
///
/// ```
/// use std::time::{Duration, Instant};
/// use baton_core::lease::Lease;
/// let t0 = Instant::now();
/// let ttl = Duration::from_millis(300);
/// let mut lease = Lease::new(ttl, t0 + Duration::from_millis(295), t0);
/// assert_eq!(lease.next_renewal(), t0 + Duration::from_millis(100));
/// // A renewal sent at t0 + 100 ms succeeded: valid until then + ttl - drift.
/// lease.on_renewed(t0 + Duration::from_millis(100), ttl);
/// assert_eq!(lease.valid_until(), t0 + Duration::from_millis(395));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    ttl: Duration,
    valid_until: Instant,
    next: Instant,
}

impl Lease {
    /// A lease of `ttl` whose acquire attempt started at `started` and which
    /// is valid until `valid_until`.
    pub fn new(ttl: Duration, valid_until: Instant, started: Instant) -> Lease {
        Lease {
            ttl,
            valid_until,
            next: started + ttl / 3,
        }
    }

    /// The lease length.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The local deadline: the lease is not to be trusted from then on.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// When the next renewal (or retry) is due.
    pub fn next_renewal(&self) -> Instant {
        self.next
    }

    /// When to stop retrying and declare the lease lost.
    pub fn give_up_at(&self) -> Instant {
        self.valid_until
            .checked_sub(self.ttl / 10)
            .unwrap_or(self.valid_until)
    }

    /// A renewal (or extend) to `ttl`, sent at `sent`, succeeded: the key now
    /// outlives `sent + ttl` on the server, so locally it is valid until
    /// `sent + ttl - drift`, and the next renewal is due a third of `ttl`
    /// after `sent`. The caller must not have another renewal or extend of
    /// the same lease in flight (the later reply would not describe the
    /// server's state).
    pub fn on_renewed(&mut self, sent: Instant, ttl: Duration) {
        self.valid_until = sent + ttl.saturating_sub(drift(ttl));
        self.next = sent + ttl / 3;
    }

    /// An extend to a new `ttl`, sent at `sent`, succeeded: renewals use the
    /// new TTL from now on.
    pub fn on_extended(&mut self, ttl: Duration, sent: Instant) {
        self.ttl = ttl;
        self.on_renewed(sent, ttl);
    }

    /// An extend to `ttl`, sent at `sent`, got no verdict: the server may
    /// have applied it. Trust the lease only up to the earlier of the two
    /// possible deadlines, and renew in time for the earlier one.
    pub fn on_extend_unknown(&mut self, ttl: Duration, sent: Instant) {
        let if_applied = sent + ttl.saturating_sub(drift(ttl));
        self.valid_until = self.valid_until.min(if_applied);
        self.next = self.next.min(sent + ttl / 3);
    }

    /// A renewal failed transiently at `now` (error or timeout, not a refusal).
    /// Returns `false` when it is time to give up; otherwise schedules a retry.
    pub fn on_failed(&mut self, now: Instant) -> bool {
        let give_up = self.give_up_at();
        if now >= give_up {
            return false;
        }
        let retry = self.ttl / 10;
        self.next = (now + retry).min(give_up);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn renews_at_a_third_and_tracks_validity() {
        let t0 = Instant::now();
        let mut lease = Lease::new(MS(3000), t0 + MS(2968), t0);
        assert_eq!(lease.next_renewal(), t0 + MS(1000));
        lease.on_renewed(t0 + MS(1000), MS(3000));
        assert_eq!(lease.valid_until(), t0 + MS(1000) + MS(3000) - MS(32));
        assert_eq!(lease.next_renewal(), t0 + MS(2000));
        lease.on_extended(MS(600), t0 + MS(1500));
        assert_eq!(lease.ttl(), MS(600));
        assert_eq!(lease.next_renewal(), t0 + MS(1700));
    }

    #[test]
    fn an_unknown_extend_keeps_the_earlier_deadline() {
        let t0 = Instant::now();
        let mut lease = Lease::new(MS(10_000), t0 + MS(9_898), t0);
        lease.on_extend_unknown(MS(100), t0 + MS(10));
        assert_eq!(lease.valid_until(), t0 + MS(10) + MS(97));
        assert_eq!(lease.next_renewal(), t0 + MS(10) + MS(100) / 3);
        lease.on_extend_unknown(MS(60_000), t0 + MS(20));
        assert_eq!(
            lease.valid_until(),
            t0 + MS(107),
            "a longer unknown extend changes nothing"
        );
    }

    #[test]
    fn failures_retry_until_the_give_up_point_before_the_deadline() {
        let t0 = Instant::now();
        let mut lease = Lease::new(MS(1000), t0 + MS(988), t0);
        assert_eq!(lease.give_up_at(), t0 + MS(888));
        let mut now = lease.next_renewal();
        let mut tries = 0;
        while lease.on_failed(now) {
            tries += 1;
            assert!(lease.next_renewal() > now && lease.next_renewal() <= lease.give_up_at());
            now = lease.next_renewal();
        }
        assert_eq!(
            now,
            lease.give_up_at(),
            "gives up exactly at the give-up point"
        );
        assert!(now < lease.valid_until(), "and so before the deadline");
        assert_eq!(tries, 6, "retries every ttl/10 from 333 ms to 888 ms");
    }
}
