//! The owner's token and the fencing token.

use std::fmt;

/// A lock owner's secret: 128 random bits, stored in the lock key as 32
/// lowercase hex characters (a plain string, as other libraries' locks do).
///
/// Only the holder of the token can release or extend the lock. The bytes
/// come from the caller (the `baton` crate draws them from the OS CSPRNG), so
/// this crate stays free of randomness.
///
/// ```
/// use baton_core::Token;
/// let token = Token::from_bytes([0xab; 16]);
/// assert_eq!(token.as_str(), "abababababababababababababababab");
/// assert_eq!(token.fingerprint(), "abababab");
/// ```
///
/// The hex is kept inline, not on the heap: a token is cloned into every
/// request of an acquire, a release and a renewal, and a clone is a copy.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token([u8; 32]);

impl Token {
    /// A token from 16 random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Token {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (pair, b) in hex.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        Token(hex)
    }

    /// The token as stored in Redis.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into it.
        std::str::from_utf8(&self.0).expect("a token is ASCII hex")
    }

    /// The first 8 hex characters: enough to tell holders apart in logs and
    /// status output, not enough to act as the owner.
    pub fn fingerprint(&self) -> &str {
        fingerprint(self.as_str())
    }
}

/// The first 8 characters of a stored token value (or all of a shorter one),
/// for showing whose lock a key is without revealing the whole secret.
pub fn fingerprint(value: &str) -> &str {
    let end = value.char_indices().nth(8).map_or(value.len(), |(i, _)| i);
    &value[..end]
}

/// Debug shows only the fingerprint, so a token never lands whole in a log.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", self.fingerprint())
    }
}

/// A fencing token: strictly increasing across successive holders of the
/// same lock name.
///
/// Pass it with every write the lock protects; storage that remembers the
/// highest fence it has accepted and refuses lower ones cannot be corrupted
/// by a holder whose lease lapsed while it was paused.
///
/// ```
/// use baton_core::Fence;
/// assert!(Fence(7) > Fence(6));
/// assert_eq!(Fence(7).to_string(), "7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fence(pub u64);

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_chars_and_debug_hides_them() {
        let t = Token::from_bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 255]);
        assert_eq!(t.as_str(), "000102030405060708090a0b0c0d0eff");
        assert_eq!(format!("{t:?}"), "Token(00010203…)");
        assert!(!format!("{t:?}").contains(t.as_str()));
    }

    #[test]
    fn fingerprint_of_short_or_foreign_values() {
        assert_eq!(fingerprint("abc"), "abc");
        assert_eq!(fingerprint("ééééééééé"), "éééééééé");
    }
}
