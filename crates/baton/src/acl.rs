//! The least privilege a Redis ACL user needs for Baton's locks.

/// Every command Baton sends: the scripts, the commands they call (the
/// sorted-set commands and `TIME` are a semaphore's, the hash and list
/// commands a fair lock's), the
/// release subscriptions, a liveness check, `WAIT` (replica
/// acknowledgement), and on a Redis Cluster the slot table
/// (`CLUSTER SLOTS`), sharded pub/sub and `ASKING` (redirects during a
/// slot migration). `CONFIG GET` (the eviction
/// check at connect) is left out: it is skipped when refused.
///
/// The sharded pub/sub commands are Redis ≥ 7.0's: on Redis 6, which
/// refuses the whole rule set over them, leave out `+spublish +ssubscribe
/// +sunsubscribe` (its cluster waiters use plain `SUBSCRIBE` instead).
///
/// `WAITAOF` ([`ClientBuilder::wait_aof`](crate::ClientBuilder::wait_aof))
/// is left out too, though it is sent when asked for: Redis before 7.2
/// refuses a whole `ACL SETUSER` that names a command it does not know, so
/// these rules would break there. Users of `wait_aof` add `+waitaof` (and,
/// for the check at connect, `+command|info`; both checks are skipped when
/// refused, and the first write says what is missing).
const COMMANDS: [&str; 35] = [
    "evalsha",
    "eval",
    "get",
    "set",
    "pexpire",
    "pttl",
    "incr",
    "del",
    "time",
    "zadd",
    "zrem",
    "zscore",
    "zcard",
    "zrange",
    "zremrangebyscore",
    "pexpireat",
    "hget",
    "hset",
    "hdel",
    "lindex",
    "lpop",
    "rpush",
    "lrem",
    "type",
    "publish",
    "subscribe",
    "unsubscribe",
    "ping",
    "hello",
    "wait",
    "cluster|slots",
    "spublish",
    "ssubscribe",
    "sunsubscribe",
    "asking",
];

/// The `ACL SETUSER` rules that let a user take, renew, release, inspect
/// and wait for the locks under `prefix`, and do nothing else: the commands
/// Baton sends (its scripts' included), the lock keys (`PREFIX*`), their
/// companion keys (fence counters, `{PREFIX*`) and release channels
/// (`{PREFIX*`). Append them to `ACL SETUSER NAME on >PASSWORD`. With
/// [`ClientBuilder::wait_aof`](crate::ClientBuilder::wait_aof), append
/// `+waitaof` too (Redis ≥ 7.2 or Valkey; it is not in these rules because
/// older servers refuse the whole rule set over it). On Redis 6, leave out
/// `+spublish +ssubscribe +sunsubscribe`, for the same reason.
///
/// Lock names containing `{` put their companions under another hash tag
/// (see the README's key layout): such names need `~*`-style key rights.
/// Glob characters in the prefix are escaped.
///
/// ```
/// assert_eq!(
///     baton::acl_rules("baton:"),
///     "resetkeys resetchannels -@all +evalsha +eval +get +set +pexpire +pttl +incr +del \
///      +time +zadd +zrem +zscore +zcard +zrange +zremrangebyscore +pexpireat +hget +hset +hdel \
///      +lindex +lpop +rpush +lrem +type \
///      +publish +subscribe +unsubscribe +ping +hello +wait +cluster|slots +spublish +ssubscribe \
///      +sunsubscribe +asking ~baton:* ~{baton:* &{baton:*"
/// );
/// ```
pub fn acl_rules(prefix: &str) -> String {
    let glob = escape_glob(prefix);
    let commands: Vec<String> = COMMANDS.iter().map(|c| format!("+{c}")).collect();
    format!(
        "resetkeys resetchannels -@all {} ~{glob}* ~{{{glob}* &{{{glob}*",
        commands.join(" ")
    )
}

/// `text` with Redis glob characters escaped, so it matches only itself.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_a_prefix_match_only_themselves() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert!(acl_rules("").ends_with("~* ~{* &{*"));
    }
}
