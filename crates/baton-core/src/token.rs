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
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// A token from 16 random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Token {
        Token(hex(&bytes))
    }

    /// The token as stored in Redis.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 hex characters: enough to tell holders apart in logs and
    /// status output, not enough to act as the owner.
    pub fn fingerprint(&self) -> &str {
        fingerprint(&self.0)
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

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
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
