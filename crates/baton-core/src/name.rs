//! Lock names, and the Redis keys and channel derived from one.
//!
//! A lock named `N` under prefix `P` lives at the plain key `P + N`, holding
//! the owner's token as a plain string, so Baton's locks exclude (and are
//! excluded by) other libraries' `SET key token NX PX` locks on the same key.
//!
//! Two companions go with it: the fence counter (a key) and the release
//! channel (a pub/sub channel). Both must hash to the same Redis Cluster slot
//! as the lock key, because one script touches the lock key and the fence
//! counter together. Companions contain the [`SEPARATOR`] control character,
//! which names and prefixes may not contain, so no lock key can ever equal a
//! companion key.

use std::fmt;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "baton:";
/// The longest lock name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 512;
/// The most names one multi-lock takes: its scripts touch two keys per
/// name in one atomic call, which holds the server for all of them.
pub const MAX_MULTI_NAMES: usize = 64;
/// The longest key prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;
/// Separates a lock key from a companion's suffix. Names and prefixes may not
/// contain control characters, which is what keeps companions out of the
/// lock keys' namespace.
pub const SEPARATOR: char = '\u{1f}';

/// Why a lock name or key prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name or prefix is longer than the limit, in bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The name or prefix contains a control character (which companions use).
    ControlChar {
        /// The byte offset of the first control character.
        at: usize,
    },
    /// A multi-lock was given no names.
    NoNames,
    /// A multi-lock was given more names than [`MAX_MULTI_NAMES`].
    TooManyNames {
        /// How many distinct names it was given.
        count: usize,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "is empty"),
            NameError::TooLong { len, max } => write!(f, "is {len} bytes long (at most {max})"),
            NameError::ControlChar { at } => {
                write!(f, "contains a control character at byte {at}")
            }
            NameError::NoNames => write!(f, "names no lock (a multi-lock needs at least one)"),
            NameError::TooManyNames { count } => write!(
                f,
                "names {count} locks (a multi-lock takes at most {MAX_MULTI_NAMES})"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a lock name: 1 to [`MAX_NAME_LEN`] bytes, no control characters.
///
/// ```
/// use baton_core::name::{validate_name, NameError};
/// assert!(validate_name("nightly-report").is_ok());
/// assert_eq!(validate_name(""), Err(NameError::Empty));
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    check_text(name, MAX_NAME_LEN)
}

/// Checks a key prefix: at most [`MAX_PREFIX_LEN`] bytes, no control
/// characters. The empty prefix is allowed (the key is then the bare name).
pub fn validate_prefix(prefix: &str) -> Result<(), NameError> {
    check_text(prefix, MAX_PREFIX_LEN)
}

fn check_text(text: &str, max: usize) -> Result<(), NameError> {
    if text.len() > max {
        return Err(NameError::TooLong {
            len: text.len(),
            max,
        });
    }
    match text.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, _)) => Err(NameError::ControlChar { at }),
        None => Ok(()),
    }
}

/// The Redis names one lock uses.
///
/// ```
/// use baton_core::Keys;
/// let keys = Keys::new("baton:", "nightly-report").unwrap();
/// assert_eq!(keys.lock, "baton:nightly-report");
/// // Companions hash to the lock key's cluster slot:
/// use baton_core::name::hash_slot;
/// assert_eq!(hash_slot(keys.fence.as_bytes()), hash_slot(keys.lock.as_bytes()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keys {
    /// The lock key: `prefix + name`, holding the owner's token (a lock), or
    /// the holders' tokens scored by their expiry (a semaphore).
    pub lock: String,
    /// The fence counter: incremented by every successful acquire, never deleted.
    pub fence: String,
    /// The pub/sub channel a release is announced on.
    pub channel: String,
    /// What the lock key holds, which says which scripts speak to it.
    pub kind: Kind,
    /// A multi-lock's names' keys, each a plain lock's, sorted by key
    /// (`lock`, `fence` and `channel` above are the first's); empty for
    /// every other kind.
    pub members: Vec<Keys>,
}

/// What a name's lock key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A mutex: a string key holding the one holder's token, expiring with
    /// its lease.
    Lock,
    /// A counting semaphore: a sorted set of the holders' tokens, each
    /// scored by its own lease's expiry (server milliseconds), so a dead
    /// holder's permit returns when its lease lapses. An acquire succeeds
    /// while fewer than `permits` unexpired members remain.
    Semaphore {
        /// The acquirer's limit (at least 1).
        permits: u32,
    },
    /// A read-write lock's reader: like a permit, a member of the readers'
    /// sorted set (scored by its lease's expiry) at a companion of the
    /// name ([`RwKeys::readers`]), taken only while no writer holds or waits.
    Read,
    /// A read-write lock's writer: a plain lock at the name's key, taken
    /// only while no reader holds; while it waits, it holds back new
    /// readers ([`RwKeys::waiting`]).
    Write {
        /// How long a waiting writer's mark lives without a refresh (ms), so
        /// a writer that dies or gives up stops holding readers back.
        entry_ttl_ms: u32,
    },
    /// A fair lock: a hash (field `holder`) holding the one holder's token,
    /// with a queue of waiters in arrival order ([`FairKeys`]); a release
    /// hands the lock to the first live waiter.
    Fair {
        /// How long a waiter's queue entry lives without a refresh (ms): a
        /// waiter that dies is skipped once it lapses, and a lock handed to
        /// a waiter lives this long until the waiter takes it.
        entry_ttl_ms: u32,
    },
    /// A multi-lock: the plain locks of several names
    /// ([`Keys::members`]), taken all or none by one script per server,
    /// with one fence above every earlier fence of each name (each name's
    /// counter is raised to it, so later fences of each name exceed it).
    Multi,
}

/// The keys of a read-write lock, in its cluster slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RwKeys {
    /// The writer's lock (a string holding its token): the name's key.
    pub writer: String,
    /// The readers' tokens, scored by their leases' expiry (a sorted set).
    pub readers: String,
    /// The waiting writers' tokens, scored by their marks' expiry (a sorted set).
    pub waiting: String,
}

/// The companions of a fair lock, in its cluster slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FairKeys {
    /// The waiters' tokens, in arrival order (a list).
    pub queue: String,
    /// Each waiter's entry expiry, server milliseconds (a hash).
    pub entries: String,
    /// Each waiter's grant channel (a hash).
    pub channels: String,
}

impl Keys {
    /// Validates `prefix` and `name` and derives the keys of a lock.
    pub fn new(prefix: &str, name: &str) -> Result<Keys, NameError> {
        validate_prefix(prefix)?;
        validate_name(name)?;
        let lock = format!("{prefix}{name}");
        Ok(Keys {
            fence: companion(&lock, "fence"),
            channel: companion(&lock, "released"),
            lock,
            kind: Kind::Lock,
            members: Vec::new(),
        })
    }

    /// Validates `prefix` and `names` and derives a multi-lock's keys
    /// ([`Kind::Multi`]): each name's plain-lock keys, sorted by key, a name
    /// given twice taken once.
    ///
    /// ```
    /// use baton_core::{Keys, Kind};
    /// let keys = Keys::multi("baton:", &["b", "a", "b"]).unwrap();
    /// assert_eq!(keys.kind, Kind::Multi);
    /// let locks: Vec<&str> = keys.members.iter().map(|m| m.lock.as_str()).collect();
    /// assert_eq!(locks, ["baton:a", "baton:b"]);
    /// ```
    pub fn multi(prefix: &str, names: &[&str]) -> Result<Keys, NameError> {
        let mut members = names
            .iter()
            .map(|name| Keys::new(prefix, name))
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_by(|a, b| a.lock.cmp(&b.lock));
        members.dedup_by(|a, b| a.lock == b.lock);
        match members.len() {
            0 => return Err(NameError::NoNames),
            count if count > MAX_MULTI_NAMES => return Err(NameError::TooManyNames { count }),
            _ => {}
        }
        let first = &members[0];
        Ok(Keys {
            lock: first.lock.clone(),
            fence: first.fence.clone(),
            channel: first.channel.clone(),
            kind: Kind::Multi,
            members,
        })
    }

    /// The plain locks a lease of these keys holds: a multi-lock's
    /// members, else these keys themselves.
    pub fn locks(&self) -> &[Keys] {
        match self.kind {
            Kind::Multi => &self.members,
            _ => std::slice::from_ref(self),
        }
    }

    /// Two of a multi-lock's keys in different Redis Cluster slots, if
    /// any: one script cannot touch both on a Cluster.
    pub fn slots_apart(&self) -> Option<(&str, &str)> {
        let first = self.members.first()?;
        let slot = hash_slot(first.lock.as_bytes());
        self.members
            .iter()
            .find(|m| hash_slot(m.lock.as_bytes()) != slot)
            .map(|other| (first.lock.as_str(), other.lock.as_str()))
    }

    /// The same keys, holding `kind`. A reader's lease is held in the
    /// readers' set ([`RwKeys::readers`]), so its `lock` moves there.
    pub fn with_kind(self, kind: Kind) -> Keys {
        debug_assert!(
            kind != Kind::Multi && self.kind != Kind::Multi,
            "a multi-lock's keys come from Keys::multi"
        );
        let lock = match kind {
            Kind::Read => companion(&self.base(), "readers"),
            _ => self.base(),
        };
        Keys { kind, lock, ..self }
    }

    /// The name's own key (`prefix + name`), read back from the fence
    /// counter, a companion of it (see [`companion`]).
    fn base(&self) -> String {
        let after_tag = &self.fence[self.fence.find('}').expect("a companion has a tag") + 1..];
        let mut parts = after_tag.split(SEPARATOR).skip(1);
        let rest = parts.next().unwrap_or_default();
        if rest.is_empty() {
            let tag = &self.fence[1..self.fence.find('}').expect("a companion has a tag")];
            tag.to_owned()
        } else {
            rest.to_owned()
        }
    }

    /// A read-write lock's keys (made on demand, as [`Keys::fair`]).
    pub fn rw(&self) -> RwKeys {
        let base = self.base();
        RwKeys {
            readers: companion(&base, "readers"),
            waiting: companion(&base, "writers"),
            writer: base,
        }
    }

    /// A fair lock's queue companions (made on demand: only fair locks use
    /// them, and a lease keeps its `Keys` for its life).
    pub fn fair(&self) -> FairKeys {
        FairKeys {
            queue: companion(&self.lock, "queue"),
            entries: companion(&self.lock, "entries"),
            channels: companion(&self.lock, "channels"),
        }
    }

    /// The channel on which a fair lock's release tells one waiter that the
    /// lock is now its own. `waiter` names the waiter: a random value of its
    /// own, not its lease token, since a channel's name is visible to every
    /// subscriber (`PUBSUB CHANNELS`) and the token is the holder's
    /// capability.
    pub fn grant_channel(&self, waiter: &str) -> String {
        companion(&self.lock, &format!("granted-{waiter}"))
    }
}

/// A companion of `key` named by `suffix`, in the same cluster slot as `key`.
///
/// The form is `{TAG}` SEP `REST` SEP `suffix`, where `{TAG}` makes the slot:
/// - a key with a hash tag keeps its tag (Redis hashes only the tag);
/// - a key without one, and without any `}`, is itself the tag;
/// - a key without a tag but with a `}` cannot be a tag: a short brace-free
///   tag with the same slot is found instead.
///
/// `REST` is the key itself, or empty when the tag *is* the key. Tags never
/// contain `}` and keys never contain SEP, so the key can be read back from a
/// companion: companions of different keys never coincide.
fn companion(key: &str, suffix: &str) -> String {
    let found;
    let tag = match hash_tag(key.as_bytes()) {
        Some(tag) => std::str::from_utf8(tag).expect("a tag is cut at ASCII braces"),
        None if !key.contains('}') => key,
        None => {
            found = tag_for_slot(hash_slot(key.as_bytes()));
            &found
        }
    };
    let rest = if tag == key { "" } else { key };
    format!("{{{tag}}}{SEPARATOR}{rest}{SEPARATOR}{suffix}")
}

/// The hash tag of a key, if it has a non-empty one.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// The Redis Cluster slot of a key (CRC16/XMODEM of its hash tag or whole key, mod 16384).
pub fn hash_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % 16384
}

/// The first brace-free, base-36 string whose slot is `slot`: about 16,384
/// candidates on average, tried only for keys with a `}` and no hash tag.
fn tag_for_slot(slot: u16) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0u32..)
        .map(|mut n| {
            let mut s = Vec::new();
            loop {
                s.push(DIGITS[(n % 36) as usize]);
                n /= 36;
                if n == 0 {
                    break;
                }
            }
            s
        })
        .find(|s| crc16(s) % 16384 == slot)
        .map(|s| String::from_utf8(s).expect("ascii digits"))
        .expect("every slot has a tag")
}

/// CRC16/XMODEM, as Redis Cluster uses for key slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc16_matches_the_redis_cluster_spec_examples() {
        // From the Redis Cluster specification: CRC16 of "123456789" is 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
        assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
        assert_eq!(hash_slot(b"foo{bar}{zap}"), hash_slot(b"bar"));
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            validate_name(&long),
            Err(NameError::TooLong {
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(validate_name("a\nb"), Err(NameError::ControlChar { at: 1 }));
        assert_eq!(
            validate_name("é\u{1f}"),
            Err(NameError::ControlChar { at: 2 })
        );
        assert!(validate_name("orders/{eu}/nightly report ✓").is_ok());
        assert!(validate_prefix("").is_ok());
        assert_eq!(
            validate_prefix("p\0"),
            Err(NameError::ControlChar { at: 1 })
        );
    }

    #[test]
    fn the_lock_key_is_prefix_plus_name() {
        assert_eq!(Keys::new("baton:", "job").unwrap().lock, "baton:job");
        assert_eq!(Keys::new("", "job").unwrap().lock, "job");
    }

    /// Reads the lock key back out of a companion (the inverse that makes
    /// companions of different keys distinct).
    fn key_of(companion: &str) -> String {
        let tag = &companion[1..companion.find('}').unwrap()];
        let parts: Vec<&str> = companion.split(SEPARATOR).collect();
        assert_eq!(parts.len(), 3, "{companion:?}");
        if parts[1].is_empty() {
            tag.to_owned()
        } else {
            parts[1].to_owned()
        }
    }

    #[test]
    fn companions_of_brace_keys_do_not_collide() {
        for (a, b) in [("x}", "{2nl}x}"), ("ab", "{ab}"), ("{ab}", "{ab}x")] {
            let (a, b) = (Keys::new("", a).unwrap(), Keys::new("", b).unwrap());
            assert_ne!(a.fence, b.fence);
            assert_ne!(a.channel, b.channel);
        }
        assert_eq!(
            Keys::new("baton:", "job").unwrap().fence,
            "{baton:job}\u{1f}\u{1f}fence"
        );
    }

    #[test]
    fn a_multi_lock_takes_distinct_valid_names_and_says_when_they_are_slots_apart() {
        assert_eq!(Keys::multi("baton:", &[]), Err(NameError::NoNames));
        assert_eq!(Keys::multi("baton:", &["a", ""]), Err(NameError::Empty));
        let many: Vec<String> = (0..=MAX_MULTI_NAMES).map(|i| format!("n{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            Keys::multi("baton:", &many),
            Err(NameError::TooManyNames {
                count: MAX_MULTI_NAMES + 1
            })
        );
        assert!(Keys::multi("baton:", &many[..MAX_MULTI_NAMES]).is_ok());
        let apart = Keys::multi("baton:", &["a", "b"]).unwrap();
        assert_eq!(apart.slots_apart(), Some(("baton:a", "baton:b")));
        let tagged = Keys::multi("baton:", &["{job}a", "{job}b", "{job}a"]).unwrap();
        assert_eq!(tagged.members.len(), 2, "a name given twice is taken once");
        assert_eq!(tagged.slots_apart(), None);
        assert_eq!(tagged.members[0], Keys::new("baton:", "{job}a").unwrap());
        assert_eq!(
            (&*tagged.lock, &*tagged.fence),
            (&*tagged.members[0].lock, &*tagged.members[0].fence)
        );
    }

    #[test]
    fn a_read_write_locks_keys_are_read_back_from_the_fence_counter() {
        for name in ["job", "{tag}job", "a}b", "{}x", "x{y}z{w}"] {
            let keys = Keys::new("baton:", name).unwrap();
            let rw = keys.rw();
            assert_eq!(rw.writer, keys.lock, "{name}");
            let reader = keys.clone().with_kind(Kind::Read);
            assert_eq!(reader.lock, rw.readers, "{name}");
            assert_eq!(reader.rw(), rw, "{name}: the same from either side");
            let slot = hash_slot(keys.lock.as_bytes());
            for key in [&rw.readers, &rw.waiting] {
                assert_eq!(hash_slot(key.as_bytes()), slot, "{name}: {key:?}");
            }
            let writer = reader.with_kind(Kind::Write { entry_ttl_ms: 1 });
            assert_eq!(
                writer.lock, keys.lock,
                "{name}: the writer holds the name's key"
            );
        }
    }

    #[test]
    fn companions_of_awkward_keys_share_the_slot() {
        for name in [
            "plain", "{tag}x", "a}b", "x{}y", "{", "}", "}{", "{}", "a{b", "{{a}}",
        ] {
            let keys = Keys::new("", name).unwrap();
            let slot = hash_slot(keys.lock.as_bytes());
            assert_eq!(hash_slot(keys.fence.as_bytes()), slot, "fence of {name:?}");
            assert_eq!(
                hash_slot(keys.channel.as_bytes()),
                slot,
                "channel of {name:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn companions_share_the_slot_and_are_distinct(
            prefix in "[a-z:{}]{0,6}",
            name in "[a-z{}é ]{1,12}",
            other in "[a-z{}é ]{1,12}",
        ) {
            let keys = Keys::new(&prefix, &name).unwrap();
            let slot = hash_slot(keys.lock.as_bytes());
            prop_assert_eq!(hash_slot(keys.fence.as_bytes()), slot);
            prop_assert_eq!(hash_slot(keys.channel.as_bytes()), slot);
            prop_assert!(keys.fence.contains(SEPARATOR));
            prop_assert!(!keys.lock.contains(SEPARATOR));
            prop_assert_eq!(key_of(&keys.fence), keys.lock.clone());
            prop_assert_eq!(key_of(&keys.channel), keys.lock.clone());
            let them = Keys::new(&prefix, &other).unwrap();
            if name != other {
                prop_assert_ne!(keys.fence, them.fence);
                prop_assert_ne!(keys.channel, them.channel);
            }
        }

        #[test]
        fn validation_never_panics(name in ".{0,600}") {
            let _ = Keys::new("baton:", &name);
        }
    }
}
