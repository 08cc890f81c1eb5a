//! The library's only sources of randomness: owner tokens from a ChaCha20
//! generator seeded from the OS CSPRNG, and cheap jitter for retry delays.
//!
//! A token must be unpredictable (whoever can guess it can release or
//! extend the lock) and unique. ChaCha20 keyed with 256 bits from the OS is
//! a cryptographic generator: its output cannot be told from random or
//! predicted without the key, so tokens drawn from it are as good as the
//! OS's, and drawing one costs no system call (one `getrandom` per token
//! was a system call on every acquire). Each thread keys its own generator
//! on first use, and again after a `fork`: a child that went on with its
//! parent's generator would draw the parent's next tokens, and two holders
//! with one token would each pass the other's ownership checks.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use baton_core::Token;
use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha20Rng;

/// Forks seen by this process (counted in the child), so that a thread's
/// generator can tell it was copied into a child.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork() {
    // Runs in the child right after fork: an atomic add is all it may do.
    FORKS.fetch_add(1, Ordering::SeqCst);
}

#[cfg(unix)]
#[allow(unsafe_code)] // the C library's fork hook has no safe binding
fn watch_forks() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        extern "C" {
            fn pthread_atfork(
                prepare: Option<extern "C" fn()>,
                parent: Option<extern "C" fn()>,
                child: Option<extern "C" fn()>,
            ) -> std::os::raw::c_int;
        }
        // SAFETY: registers a handler with the C library; the handler only
        // does an atomic add, which is safe in a freshly forked child.
        let failed = unsafe { pthread_atfork(None, None, Some(count_fork)) } != 0;
        // Without the handler a child would repeat its parent's tokens.
        assert!(
            !failed,
            "cannot register a fork handler for token generation"
        );
    });
}

#[cfg(not(unix))]
fn watch_forks() {}

/// A fresh owner token: 128 bits from this thread's ChaCha20 generator.
pub(crate) fn token() -> Token {
    thread_local! {
        /// The generator, and the fork count when it was keyed.
        static GENERATOR: RefCell<Option<(u64, ChaCha20Rng)>> = const { RefCell::new(None) };
    }
    watch_forks();
    GENERATOR.with(|generator| {
        let mut generator = generator.borrow_mut();
        let forks = FORKS.load(Ordering::SeqCst);
        if generator
            .as_ref()
            .is_none_or(|(keyed_at, _)| *keyed_at != forks)
        {
            let mut key = [0u8; 32];
            // The OS random source failing is not something a lock can
            // recover from or work around safely (a predictable token lets
            // others release it).
            getrandom::fill(&mut key).expect("the OS random source is unavailable");
            *generator = Some((forks, ChaCha20Rng::from_seed(key)));
        }
        let (_, rng) = generator.as_mut().expect("keyed above");
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Token::from_bytes(bytes)
    })
}

/// A number in `[0, 1)` for jittering retry delays: spread, not secret, so
/// a per-thread xorshift seeded once from the OS is enough.
pub(crate) fn jitter() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            let _ = getrandom::fill(&mut seed);
            u64::from_le_bytes(seed) | 1
        });
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A forked child draws tokens of its own, not its parent's next ones.
    #[cfg(unix)]
    #[test]
    #[allow(unsafe_code)] // a real fork: the case the handler is for
    fn a_forked_child_does_not_repeat_its_parents_tokens() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        let _ = token(); // the generator is keyed before the fork
        let (mut parent_end, mut child_end) = UnixStream::pair().unwrap();
        // SAFETY: the child only draws a token, writes it and exits.
        match unsafe { libc_fork() } {
            0 => {
                let _ = child_end.write_all(token().as_str().as_bytes());
                // SAFETY: ends the child without running the parent's
                // destructors or test harness.
                unsafe { libc_exit(0) }
            }
            pid => {
                assert!(pid > 0, "fork failed");
                drop(child_end);
                let mut childs = String::new();
                parent_end.read_to_string(&mut childs).unwrap();
                let parents = token();
                assert_eq!(childs.len(), 32, "the child wrote its token");
                assert_ne!(
                    childs,
                    parents.as_str(),
                    "the child drew the parent's next token"
                );
            }
        }
    }

    #[cfg(unix)]
    #[allow(unsafe_code)]
    extern "C" {
        #[link_name = "fork"]
        fn libc_fork() -> i32;
        #[link_name = "_exit"]
        fn libc_exit(code: i32) -> !;
    }

    #[test]
    fn tokens_differ_and_jitter_stays_in_range() {
        let tokens: HashSet<String> = (0..1000).map(|_| token().as_str().to_owned()).collect();
        assert_eq!(tokens.len(), 1000);
        assert!((0..10_000)
            .map(|_| jitter())
            .all(|j| (0.0..1.0).contains(&j)));
    }
}
