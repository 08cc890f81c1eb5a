//! When a waiter tries again if no release notification wakes it first.
//!
//! Waiting is woken by release notifications; this schedule is the fallback
//! for holders that never announce a release (another library, a crash, a
//! lost notification). Jitter comes in as an argument so the schedule is
//! plain data.

use std::time::Duration;

/// What the busy reply said about the holder's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HolderTtl {
    /// The key expires in this long.
    Expires(Duration),
    /// The key has no expiry (a lock without a TTL, from another library).
    Persistent,
}

impl HolderTtl {
    /// Interprets a `PTTL` reply: `-1` means no expiry, `-2` (gone) expires now.
    pub fn from_pttl(pttl: i64) -> HolderTtl {
        match pttl {
            -1 => HolderTtl::Persistent,
            ms => HolderTtl::Expires(Duration::from_millis(ms.max(0) as u64)),
        }
    }
}

/// Slack after the holder's expiry before trying, so the key has surely
/// expired on the server when the retry lands.
pub const EXPIRY_SLACK: Duration = Duration::from_millis(1);

/// How long to wait before the next attempt, if no notification comes first.
///
/// The wait is a jittered share of `interval` (between half and all of it,
/// `jitter` in `[0, 1)`), shortened to just past the holder's expiry and to
/// the caller's remaining wait budget `left`.
///
/// ```
/// use std::time::Duration;
/// use baton_core::backoff::{next_try_in, HolderTtl};
/// let ms = Duration::from_millis;
/// // The holder expires in 5 ms: try again just after.
/// assert_eq!(next_try_in(HolderTtl::Expires(ms(5)), ms(200), None, 0.0), ms(6));
/// // Otherwise the jittered interval, capped by what is left of the wait.
/// assert_eq!(next_try_in(HolderTtl::Persistent, ms(200), None, 0.5), ms(150));
/// assert_eq!(next_try_in(HolderTtl::Persistent, ms(200), Some(ms(40)), 0.5), ms(40));
/// ```
pub fn next_try_in(
    holder: HolderTtl,
    interval: Duration,
    left: Option<Duration>,
    jitter: f64,
) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut wait = interval.mul_f64(0.5 + jitter / 2.0);
    if let HolderTtl::Expires(ttl) = holder {
        wait = wait.min(ttl + EXPIRY_SLACK);
    }
    match left {
        Some(left) => wait.min(left),
        None => wait,
    }
}

/// How far apart contenders of a split Redlock vote retry, at least (twice
/// the round's duration when that is longer; see
/// [`crate::acquire::Loss::SplitVote`]).
pub const SPLIT_SPREAD: Duration = Duration::from_millis(50);

/// After a split vote (a round over several nodes lost with some of them
/// ours), how long to stay back before the next round: a random share
/// (`jitter` in `[0, 1)`) of `spread`, so contenders stop colliding.
///
/// ```
/// use std::time::Duration;
/// use baton_core::backoff::after_split;
/// assert_eq!(after_split(Duration::from_millis(50), 0.5), Duration::from_millis(25));
/// ```
pub fn after_split(spread: Duration, jitter: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    spread.mul_f64(jitter)
}

/// The first pause after a transient server error while waiting.
pub const FIRST_ERROR_PAUSE: Duration = Duration::from_millis(20);
/// The longest pause between attempts while a server keeps failing.
pub const MAX_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// After the `failures`-th transient server error in a row (0 for the
/// first) while waiting for a lock, how long to pause before trying again:
/// doubling from [`FIRST_ERROR_PAUSE`] up to [`MAX_ERROR_PAUSE`], jittered
/// to between half and all of it (`jitter` in `[0, 1)`), so waiters do not
/// return in step when a failed-over server comes back.
///
/// ```
/// use std::time::Duration;
/// use baton_core::backoff::after_error;
/// let ms = Duration::from_millis;
/// assert_eq!(after_error(0, 0.999_999), ms(20) - Duration::from_nanos(10));
/// assert_eq!(after_error(1, 0.0), ms(20));
/// assert_eq!(after_error(30, 0.0), ms(500));
/// ```
pub fn after_error(failures: u32, jitter: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let full = FIRST_ERROR_PAUSE
        .saturating_mul(1 << failures.min(16))
        .min(MAX_ERROR_PAUSE);
    full.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn error_pauses_double_up_to_the_cap() {
        let full: Vec<Duration> = (0..8).map(|n| after_error(n, 0.999_999_999)).collect();
        for pair in full.windows(2) {
            assert!(pair[1] >= pair[0]);
        }
        assert!(full.iter().all(|&d| d <= MAX_ERROR_PAUSE));
        assert_eq!(after_error(u32::MAX, 0.0), MAX_ERROR_PAUSE / 2);
        assert_eq!(after_error(0, f64::NAN), FIRST_ERROR_PAUSE / 2);
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn pttl_replies() {
        assert_eq!(HolderTtl::from_pttl(-1), HolderTtl::Persistent);
        assert_eq!(HolderTtl::from_pttl(-2), HolderTtl::Expires(MS(0)));
        assert_eq!(HolderTtl::from_pttl(1500), HolderTtl::Expires(MS(1500)));
    }

    #[test]
    fn table() {
        let cases = [
            // holder, interval, left, jitter -> wait
            (HolderTtl::Persistent, MS(100), None, 0.0, MS(50)),
            (HolderTtl::Persistent, MS(100), None, 0.999_999_9, MS(100)),
            (HolderTtl::Expires(MS(0)), MS(100), None, 0.3, MS(1)),
            (
                HolderTtl::Expires(MS(30)),
                MS(100),
                Some(MS(10)),
                0.3,
                MS(10),
            ),
            (
                HolderTtl::Expires(MS(1_000)),
                MS(30_000),
                None,
                0.0,
                MS(1_001),
            ),
            (HolderTtl::Persistent, MS(100), Some(MS(0)), 0.5, MS(0)),
            (HolderTtl::Persistent, MS(100), None, f64::NAN, MS(50)),
            (HolderTtl::Persistent, MS(100), None, 7.0, MS(100)),
        ];
        for (holder, interval, left, jitter, want) in cases {
            let got = next_try_in(holder, interval, left, jitter);
            assert!(
                got.abs_diff(want) < Duration::from_micros(5),
                "{holder:?} {interval:?} {left:?} {jitter}: {got:?} != {want:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_longer_than_interval_left_or_holder(
            ttl in 0u64..100_000, interval in 1u64..100_000, left in proptest::option::of(0u64..100_000), jitter in 0.0f64..1.0,
        ) {
            let got = next_try_in(HolderTtl::Expires(MS(ttl)), MS(interval), left.map(MS), jitter);
            prop_assert!(got <= MS(interval));
            prop_assert!(got <= MS(ttl) + EXPIRY_SLACK);
            if let Some(left) = left { prop_assert!(got <= MS(left)); }
            prop_assert!(got >= MS(interval / 2).min(MS(ttl) + EXPIRY_SLACK).min(left.map_or(Duration::MAX, MS)));
        }
    }
}
