//! The library's only sources of randomness: tokens from the OS CSPRNG, and
//! cheap jitter for retry delays.

use std::cell::Cell;

use baton_core::Token;

/// A fresh owner token: 128 bits from the operating system's CSPRNG.
pub(crate) fn token() -> Token {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not something a lock can recover from
    // or work around safely (a predictable token lets others release it).
    getrandom::fill(&mut bytes).expect("the OS random source is unavailable");
    Token::from_bytes(bytes)
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

    #[test]
    fn tokens_differ_and_jitter_stays_in_range() {
        let tokens: HashSet<String> = (0..1000).map(|_| token().as_str().to_owned()).collect();
        assert_eq!(tokens.len(), 1000);
        assert!((0..10_000)
            .map(|_| jitter())
            .all(|j| (0.0..1.0).contains(&j)));
    }
}
