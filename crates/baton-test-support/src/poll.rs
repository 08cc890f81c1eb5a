//! Waiting for real processes to reach a state: a condition polled until it
//! holds or a bound passes, never a fixed sleep.

use std::time::{Duration, Instant};

/// Runs `check` every `every` until it passes (`Ok`), or `within` has
/// passed: then its last complaint is the error.
pub(crate) fn poll_until(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match check() {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(every);
    }
}
