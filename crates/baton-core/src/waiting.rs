//! The waiting side of an acquire: between one [`Attempt`] and the next,
//! what the caller does, which token the next attempt carries, and when the
//! wait budget is spent.
//!
//! [`Attempt`]: crate::acquire::Attempt
//!
//! The rules:
//! - a token is reused across the attempts of one acquire, so an attempt
//!   whose reply was lost but whose `SET` landed is recognised as ours by the
//!   next; it is *spent* (the next attempt draws a fresh one) when a late
//!   release of it could still meet the next attempt's key: after an error,
//!   and after a loss whose take-back has not finished with every node
//!   answering;
//! - the first time the lock is busy, the caller subscribes to release
//!   notifications and tries again at once, so a release between the busy
//!   reply and the subscription is not missed; after that it waits for a
//!   notification, bounded by the holder's expiry and the retry interval
//!   ([`next_try_in`]);
//! - a split vote backs off a random share of its spread, with no
//!   notification shortening it ([`after_split`]);
//! - a transient error is ridden out with doubling pauses
//!   ([`after_error`]), unless the pause would not fit in what is left of
//!   the budget, in which case the caller gets that error, not a timeout.

use std::time::{Duration, Instant};

use crate::acquire::Loss;
use crate::backoff::{after_error, after_split, next_try_in, HolderTtl};

/// What the caller does before its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Next {
    /// Subscribe to the lock's release notifications, then try again at once.
    Subscribe,
    /// Wait for a release notification, or this long at most, then try again.
    AwaitRelease {
        /// The longest wait without a notification.
        at_most: Duration,
    },
    /// Stay back this long, notification or not, then try again.
    Pause(Duration),
    /// The wait budget is spent: fail with a timeout.
    TimedOut,
    /// Fail with the error that came in.
    Fail,
}

/// Whether the take-back of the last lost attempt is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TakeBack {
    /// Nothing to take back, or it finished with every node answering.
    Clear,
    /// Running, or finished with a node that did not answer.
    Unsettled,
}

/// The wait of one acquire call, across its attempts.
///
/// Call order: [`Waiting::new`] once; before each attempt,
/// [`Waiting::poll_fresh_token`] (draw a new token if it says so); after an
/// attempt that was not won, exactly one of [`Waiting::handle_loss`] or
/// [`Waiting::handle_error`], and do what the returned [`Next`] says. When
/// the lost attempt's take-back finishes, report it with
/// [`Waiting::handle_take_back`] (before the next attempt, if it finished by
/// then; a take-back not reported is taken as unsettled).
///
/// ```
/// use std::time::{Duration, Instant};
/// use baton_core::acquire::Loss;
/// use baton_core::backoff::HolderTtl;
/// use baton_core::waiting::{Next, Waiting};
/// let start = Instant::now();
/// let mut waiting = Waiting::new(start, Some(Duration::from_secs(1)), Duration::from_millis(200));
/// assert!(!waiting.poll_fresh_token());
/// let busy = Loss::Busy { holder: Some(HolderTtl::Expires(Duration::from_millis(30))) };
/// // The first busy reply: subscribe, then try again at once.
/// assert_eq!(waiting.handle_loss(&busy, false, start, 0.5), Next::Subscribe);
/// assert!(!waiting.poll_fresh_token(), "nothing was taken back: the token is reused");
/// // The next: wait for the release, at most until just past the holder's expiry.
/// assert_eq!(
///     waiting.handle_loss(&busy, false, start, 0.5),
///     Next::AwaitRelease { at_most: Duration::from_millis(31) },
/// );
/// // Past the budget, a timeout.
/// let later = start + Duration::from_secs(1);
/// assert_eq!(waiting.handle_loss(&busy, false, later, 0.5), Next::TimedOut);
/// ```
#[derive(Debug, Clone)]
pub struct Waiting {
    deadline: Option<Instant>,
    retry_interval: Duration,
    subscribed: bool,
    /// Transient errors in a row.
    failures: u32,
    /// An error came in since the last attempt: the token is spent.
    errored: bool,
    take_back: TakeBack,
}

impl Waiting {
    /// A wait that began at `now`, for at most `wait` (`None`: no limit),
    /// trying again every `retry_interval` (jittered) when no notification
    /// comes.
    pub fn new(now: Instant, wait: Option<Duration>, retry_interval: Duration) -> Waiting {
        Waiting {
            deadline: wait.and_then(|wait| now.checked_add(wait)),
            retry_interval,
            subscribed: false,
            failures: 0,
            errored: false,
            take_back: TakeBack::Clear,
        }
    }

    /// Before an attempt: true if its token is spent and the attempt must
    /// draw a fresh one. Clears the reasons, which apply to one attempt.
    pub fn poll_fresh_token(&mut self) -> bool {
        let spent = self.errored || self.take_back == TakeBack::Unsettled;
        self.errored = false;
        self.take_back = TakeBack::Clear;
        spent
    }

    /// The lost attempt's take-back finished; `all_answered`: every node
    /// answered it, so none can still hold the token.
    pub fn handle_take_back(&mut self, all_answered: bool) {
        if all_answered {
            self.take_back = TakeBack::Clear;
        }
    }

    /// An attempt was lost for `loss`; `taking_back`: its take-back was
    /// started (see [`crate::acquire::Outcome::Lost`]'s `release`). `jitter`
    /// is a uniform random number in `[0, 1)`.
    ///
    /// A [`Loss::NoQuorum`] is an error, not a wait: report it with
    /// [`Waiting::handle_error`] instead (this treats it as one that does not
    /// pass).
    pub fn handle_loss(
        &mut self,
        loss: &Loss,
        taking_back: bool,
        now: Instant,
        jitter: f64,
    ) -> Next {
        if taking_back {
            self.take_back = TakeBack::Unsettled;
        }
        let holder = match *loss {
            Loss::NoQuorum { .. } => return self.handle_error(false, now, jitter),
            Loss::Busy { holder } => holder,
            Loss::SplitVote { .. } | Loss::TooSlow { .. } | Loss::FenceUnsettled { .. } => None,
        };
        self.failures = 0;
        let left = self.left(now);
        if left == Some(Duration::ZERO) {
            return Next::TimedOut;
        }
        if let Some(spread) = loss.back_off() {
            let pause = after_split(spread, jitter);
            return Next::Pause(left.map_or(pause, |left| pause.min(left)));
        }
        if !self.subscribed {
            self.subscribed = true;
            return Next::Subscribe;
        }
        let holder = holder.unwrap_or(HolderTtl::Expires(Duration::ZERO));
        Next::AwaitRelease {
            at_most: next_try_in(holder, self.retry_interval, left, jitter),
        }
    }

    /// An attempt failed with an error; `transient`: one that passes by
    /// itself (a restart, a failover), which is ridden out within the budget.
    /// Whatever the attempt left is being taken back, so the token is spent.
    pub fn handle_error(&mut self, transient: bool, now: Instant, jitter: f64) -> Next {
        self.errored = true;
        if !transient {
            return Next::Fail;
        }
        let pause = after_error(self.failures, jitter);
        if self.left(now).is_some_and(|left| left <= pause) {
            return Next::Fail;
        }
        self.failures = self.failures.saturating_add(1);
        Next::Pause(pause)
    }

    /// What is left of the budget at `now` (`None`: no limit).
    fn left(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn waiting(wait: Option<u64>) -> (Waiting, Instant) {
        let start = Instant::now();
        (Waiting::new(start, wait.map(MS), MS(200)), start)
    }

    fn busy() -> Loss {
        Loss::Busy {
            holder: Some(HolderTtl::Persistent),
        }
    }

    #[test]
    fn a_token_is_reused_while_nothing_of_it_can_still_land() {
        let (mut w, now) = waiting(None);
        w.handle_loss(&busy(), false, now, 0.0);
        assert!(!w.poll_fresh_token());
        // A take-back that finished with every node answering.
        w.handle_loss(&busy(), true, now, 0.0);
        w.handle_take_back(true);
        assert!(!w.poll_fresh_token());
    }

    #[test]
    fn a_token_is_spent_by_an_unsettled_take_back_or_an_error() {
        let (mut w, now) = waiting(None);
        w.handle_loss(&busy(), true, now, 0.0);
        assert!(w.poll_fresh_token(), "the take-back is still running");
        w.handle_loss(&busy(), true, now, 0.0);
        w.handle_take_back(false);
        assert!(w.poll_fresh_token(), "a node did not answer the take-back");
        assert!(
            !w.poll_fresh_token(),
            "a fresh token is fresh for one attempt"
        );
        w.handle_error(true, now, 0.0);
        assert!(w.poll_fresh_token(), "an error may have left the SET");
    }

    #[test]
    fn the_first_busy_reply_subscribes_then_waits_are_bounded() {
        let (mut w, now) = waiting(Some(1_000));
        assert_eq!(w.handle_loss(&busy(), false, now, 0.0), Next::Subscribe);
        assert_eq!(
            w.handle_loss(&busy(), false, now, 0.0),
            Next::AwaitRelease { at_most: MS(100) }
        );
        let near_end = now + MS(960);
        assert_eq!(
            w.handle_loss(&busy(), false, near_end, 0.0),
            Next::AwaitRelease { at_most: MS(40) },
            "no longer than the budget"
        );
        // A holder that said nothing of its expiry is tried again soon.
        let unknown = Loss::Busy { holder: None };
        assert_eq!(
            w.handle_loss(&unknown, false, now, 0.0),
            Next::AwaitRelease { at_most: MS(1) }
        );
    }

    #[test]
    fn a_split_vote_backs_off_without_subscribing() {
        let (mut w, now) = waiting(Some(1_000));
        for loss in [
            Loss::SplitVote { spread: MS(50) },
            Loss::TooSlow { spread: MS(50) },
            Loss::FenceUnsettled { spread: MS(50) },
        ] {
            assert_eq!(w.handle_loss(&loss, true, now, 0.5), Next::Pause(MS(25)));
            assert_eq!(
                w.handle_loss(&loss, true, now + MS(990), 0.5),
                Next::Pause(MS(10)),
                "no longer than the budget"
            );
        }
        assert_eq!(w.handle_loss(&busy(), false, now, 0.0), Next::Subscribe);
    }

    #[test]
    fn the_budget_ends_in_a_timeout() {
        let (mut w, now) = waiting(Some(0));
        assert_eq!(w.handle_loss(&busy(), false, now, 0.0), Next::TimedOut);
        let (mut w, now) = waiting(None);
        let much_later = now + Duration::from_secs(86_400 * 365);
        assert_eq!(
            w.handle_loss(&busy(), false, much_later, 0.0),
            Next::Subscribe
        );
    }

    #[test]
    fn transient_errors_are_ridden_out_with_doubling_pauses_within_the_budget() {
        let (mut w, now) = waiting(Some(100));
        assert_eq!(w.handle_error(true, now, 0.0), Next::Pause(MS(10)));
        assert_eq!(w.handle_error(true, now, 0.0), Next::Pause(MS(20)));
        assert_eq!(w.handle_error(true, now, 0.0), Next::Pause(MS(40)));
        assert_eq!(
            w.handle_error(true, now + MS(70), 0.0),
            Next::Fail,
            "an 80 ms pause does not fit in the 30 ms left: the error, not a timeout"
        );
        // A loss in between starts the doubling over.
        w.handle_loss(&busy(), false, now, 0.0);
        assert_eq!(w.handle_error(true, now, 0.0), Next::Pause(MS(10)));
        assert_eq!(w.handle_error(false, now, 0.0), Next::Fail);
        assert_eq!(
            w.handle_loss(&Loss::NoQuorum { acquired: 0 }, true, now, 0.0),
            Next::Fail
        );
    }
}
