//! The Lua scripts, one per operation, with their SHA1s pinned.
//!
//! Each script opens with a contract line: its keys, arguments and replies.
//! Scripts take data only through `KEYS` and `ARGV`, never by string
//! building. The SHA1 is pinned here (and checked by a test) so the I/O layer
//! can send `EVALSHA` first and fall back to `EVAL` on `NOSCRIPT` without
//! hashing at run time.

/// One Lua script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// A short name for logs and errors.
    pub name: &'static str,
    /// The Lua source, as sent with `EVAL`.
    pub source: &'static str,
    /// The SHA1 of `source`, as sent with `EVALSHA`.
    pub sha1: &'static str,
}

/// Takes the lock and draws a fence in one round trip.
///
/// `KEYS = [lock, fence]`, `ARGV = [token, ttl_ms]`; replies `[1, fence]`
/// when the lock is ours, `[0, pttl]` when another holds it (`pttl` is the
/// holder's remaining TTL in ms, `-1` if its key has none).
pub const ACQUIRE: Script = Script {
    name: "acquire",
    source: include_str!("scripts/acquire.lua"),
    sha1: "7a1b5111b89bd40592704065105b15fe345165af",
};

/// Deletes the lock only if it holds our token, and announces the release
/// on the channel (unless it is empty: taking back a lost attempt wakes
/// nobody).
///
/// `KEYS = [lock]`, `ARGV = [token, channel or "", "sharded"?]`; replies 1
/// if released, 2 if released but the announcement was refused (an ACL user
/// without rights to the channel or to `PUBLISH`: the release still stands),
/// 0 if the key was absent or another's. A fourth argument `permit` says
/// the key is a semaphore's sorted set: the token's member is removed, and
/// counts as released only if its lease had not expired. `fair` (with
/// `KEYS = [lock, fence, queue, entries, channels]` and a fifth argument, the
/// hand-off TTL) hands a fair lock to its first live waiter, fence drawn
/// then, and announces on that waiter's grant channel only. `multi` (with
/// `KEYS` a multi-lock's locks and `ARGV[4 + i]` the channel of `KEYS[i]`;
/// `ARGV[2]` then only says whether to announce) releases each lock still
/// ours and counts as released only if every one was. A third argument `sharded`
/// announces with `SPUBLISH` (Redis Cluster's sharded pub/sub, in the lock's
/// slot), or with `PUBLISH` where the server does not know `SPUBLISH` (Redis
/// 6, whose cluster waiters `SUBSCRIBE`); without it, `PUBLISH`, as other
/// clients of these scripts send it.
pub const RELEASE: Script = Script {
    name: "release",
    source: include_str!("scripts/release.lua"),
    sha1: "6a8dab4eea6fe00c99a724b7c29d75e0c2556caf",
};

/// Resets the lock's TTL only if it holds our token; never creates the key.
///
/// `KEYS = [lock]` (or a multi-lock's locks), `ARGV = [token, ttl_ms,
/// "fair"?]`; replies 1 if extended (every key), 0 if a key was absent or
/// another's (then none is touched). `fair` reads a fair lock's hash.
pub const EXTEND: Script = Script {
    name: "extend",
    source: include_str!("scripts/extend.lua"),
    sha1: "95c733153a89c938c3253830f7b989c8d9749bff",
};

/// Raises the fence counter to at least a value, only while the lock holds
/// our token (Redlock: makes the fence a quorum agreed on the floor of every
/// later fence).
///
/// `KEYS = [lock, fence]` (or a multi-lock's lock and fence of each name,
/// in pairs), `ARGV = [token, fence]`; replies 1 if every lock is ours and
/// each counter is now at least `fence`, 0 if a lock is not ours (then
/// nothing is touched).
pub const RAISE: Script = Script {
    name: "raise",
    source: include_str!("scripts/raise.lua"),
    sha1: "dbaf13dc937d33db118def33ee7c764c1ebdc174",
};

/// Reads the lock's holder, its remaining TTL and the fence counter,
/// without changing anything (for operators' status views).
///
/// `KEYS = [lock, fence]`; replies `[holder or nil, pttl, fence or nil]`.
pub const INSPECT: Script = Script {
    name: "inspect",
    source: include_str!("scripts/inspect.lua"),
    sha1: "509f245ff1a9a3ed86a87b27fb84ee2863117f1c",
};

/// Deletes the lock whoever holds it, and announces the release: an
/// operator's tool for a stuck lock, never used by the lock itself.
///
/// `KEYS = [lock]`, `ARGV = [channel, "sharded"?]`; replies `[deleted value
/// or nil, announced]`, `announced` 0 when `PUBLISH` was refused (the lock is
/// broken all the same). `sharded` announces with `SPUBLISH`, as `RELEASE`.
pub const FORCE_RELEASE: Script = Script {
    name: "force_release",
    source: include_str!("scripts/force_release.lua"),
    sha1: "481abb116b728401f9a123beed21d1aca35e36f2",
};

/// Takes one of a semaphore's permits and draws a fence in one round trip
/// ([`crate::Kind::Semaphore`]).
///
/// `KEYS = [permits, fence]`, `ARGV = [token, ttl_ms, permits]`; replies
/// `[1, fence]` when a permit is ours, `[0, ms]` when `permits` unexpired
/// permits are held already (`ms` until the soonest of them expires).
/// Expired permits are dropped first, on the server's clock; the set's own
/// expiry follows its latest permit, so nothing outlives the holders.
pub const PERMIT_ACQUIRE: Script = Script {
    name: "permit_acquire",
    source: include_str!("scripts/permit_acquire.lua"),
    sha1: "e0b5c993f934d9e9b4268f42d95bf5e6e26eed65",
};

/// Resets one permit's expiry only if it is ours and has not expired;
/// never creates one.
///
/// `KEYS = [permits]`, `ARGV = [token, ttl_ms]`; replies 1 if extended, 0
/// if the permit was absent or expired.
pub const PERMIT_EXTEND: Script = Script {
    name: "permit_extend",
    source: include_str!("scripts/permit_extend.lua"),
    sha1: "72cf4b3adfbc7bae289b65bea75d1c3a8980d51b",
};

/// Takes a fair lock, or queues for it, in one round trip
/// ([`crate::Kind::Fair`]).
///
/// `KEYS = [lock, fence, queue, entries, channels]`, `ARGV = [token,
/// ttl_ms, entry_ttl_ms, grant channel or ""]`; replies `[1, fence]` when
/// the lock is ours (free with no live waiter ahead, or handed to us by a
/// release), `[0, ms, counter]` when not, with the longest wait before
/// looking again and the fence counter then (a grant with a fence no
/// higher comes from a hand-off before this call).
/// A grant channel queues the caller (or refreshes its entry); without one
/// (`try_acquire`) it never queues and never jumps the queue.
pub const FAIR_ACQUIRE: Script = Script {
    name: "fair_acquire",
    source: include_str!("scripts/fair_acquire.lua"),
    sha1: "7f24c72d7e060d4002db1284e44a8b3d24b4dcf2",
};

/// Takes a read lease of a read-write lock ([`crate::Kind::Read`]) while
/// no writer holds or waits.
///
/// `KEYS = [readers, fence, writer, waiting]`, `ARGV = [token, ttl_ms]`;
/// replies `[1, fence]` (the counter as the last write left it: readers
/// share it) or `[0, ms]`, the longest wait before looking again.
pub const READ_ACQUIRE: Script = Script {
    name: "read_acquire",
    source: include_str!("scripts/read_acquire.lua"),
    sha1: "54ddb1d14f762ddcb9f566e649305296d716f400",
};

/// Takes the write lease of a read-write lock ([`crate::Kind::Write`])
/// once no reader holds, drawing a fence; while it waits, marks the writer
/// as waiting so new readers hold back.
///
/// `KEYS = [writer, fence, readers, waiting]`, `ARGV = [token, ttl_ms,
/// mark_ttl_ms or "0" not to wait]`; replies `[1, fence]` or `[0, ms]`.
pub const WRITE_ACQUIRE: Script = Script {
    name: "write_acquire",
    source: include_str!("scripts/write_acquire.lua"),
    sha1: "d1858c60812f29e1bba07be271d4bb68585bdc08",
};

/// Takes a multi-lock's locks all or none, with one fence, in one round
/// trip ([`crate::Kind::Multi`]).
///
/// `KEYS = [lock₁, fence₁, lock₂, fence₂, …]` (each name's plain-lock keys),
/// `ARGV = [token, ttl_ms]`; replies `[1, fence]` when every lock is ours,
/// the fence above every earlier fence of each name (each counter raised to
/// it), or `[0, pttl]` of a holder's key when one is another's (nothing is
/// taken).
pub const MULTI_ACQUIRE: Script = Script {
    name: "multi_acquire",
    source: include_str!("scripts/multi_acquire.lua"),
    sha1: "e22a933b85e8cfa46de9d117288189d7553e4904",
};

/// Every script, for loading and checking.
pub const ALL: [Script; 12] = [
    MULTI_ACQUIRE,
    READ_ACQUIRE,
    WRITE_ACQUIRE,
    FAIR_ACQUIRE,
    ACQUIRE,
    RELEASE,
    EXTEND,
    RAISE,
    INSPECT,
    FORCE_RELEASE,
    PERMIT_ACQUIRE,
    PERMIT_EXTEND,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Data reaches the scripts only through KEYS and ARGV: every command
    /// a script runs is named by a literal, no code is built or loaded at
    /// run time, and the only concatenation is of an error message.
    #[test]
    fn scripts_take_data_only_through_keys_and_argv() {
        for script in ALL {
            for banned in ["loadstring", "load(", "dofile", "setfenv", "getfenv", "_G"] {
                assert!(!script.source.contains(banned), "{}: {banned}", script.name);
            }
            for call in script.source.split("redis.").skip(1) {
                if let Some(args) = call
                    .strip_prefix("call(")
                    .or_else(|| call.strip_prefix("pcall("))
                {
                    assert!(
                        args.starts_with('\''),
                        "{}: a command not named by a literal: redis.{call}",
                        script.name
                    );
                }
            }
            for (i, line) in script.source.lines().enumerate() {
                if line.contains("..") {
                    assert!(
                        line.contains("redis.error_reply('baton: "),
                        "{} line {}: concatenation outside an error message",
                        script.name,
                        i + 1
                    );
                }
            }
        }
    }

    #[test]
    fn pinned_sha1s_match_the_sources() {
        for script in ALL {
            let actual = sha1_smol::Sha1::from(script.source).digest().to_string();
            assert_eq!(
                script.sha1, actual,
                "{} changed: pin the new SHA1",
                script.name
            );
        }
    }

    #[test]
    fn every_script_opens_with_its_contract_line() {
        for script in ALL {
            let first = script.source.lines().next().unwrap_or_default();
            assert!(
                first.starts_with(&format!("-- {}(", script.name)),
                "{}: {first}",
                script.name
            );
        }
    }
}
