//! The script transport: [`RedisNode`], the [`Node`] of a Redis server or
//! Cluster over a redis-rs connection, and the transport's errors
//! ([`redis_error`], [`is_transient`]).
//!
//! Scripts go out as `EVALSHA` with the SHA1 pinned in `baton-core`; on
//! `NOSCRIPT` (a `SCRIPT FLUSH`, a restart, a failover) they are sent again
//! as `EVAL`, which also loads them. Pipelined renewals ([`extend`]) do the
//! same for the commands of the pipeline that came back `NOSCRIPT`.
//!
//! Apart from [`crate::node`] so the interface the lock logic sees stays
//! small and free of redis-rs calls; a Cluster and a Sentinel's master
//! reuse this one implementation rather than a copy of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use baton_core::acquire::Reply;
use baton_core::backoff::HolderTtl;
use baton_core::scripts::{self, Script};
use baton_core::vote::Found;
use baton_core::{Keys, Kind, Token};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

use crate::acknowledge::{
    aof_unavailable, confirmation, wait_command, Acknowledge, Confirmation, APPENDONLY_OFF,
    NO_WAITAOF,
};
use crate::error::{Error, Result};
use crate::node::{BoxFuture, Inspection, Link, Node, Notifications, Renewal};
use crate::wait::Subscription;

mod extend;

/// A Redis server reached through a redis-rs connection (a
/// `ConnectionManager`, which reconnects, or a `MultiplexedConnection`),
/// or a Redis Cluster reached through its cluster connection.
pub(crate) struct RedisNode<C> {
    conn: C,
    name: String,
    notifications: Option<Arc<dyn Notifications>>,
    /// Set once a refused release announcement has been warned about: an
    /// ACL without the channel would otherwise warn at every release.
    warned_unannounced: AtomicBool,
    /// Writes that make a lease (acquire, extend, raise) count only once
    /// this many replicas confirm them.
    acknowledge: Option<Acknowledge>,
    /// Whether this server has refused the native extend
    /// (`SET … IFEQ … PX`, Valkey ≥ 8.1) once: renewals then use the
    /// extend script. Learned from the first renewal batch, so finding out
    /// costs a server without it that batch's refused commands (one per
    /// lease, resent as the script) and nothing else (no probe, no extra
    /// round trip where it exists).
    native_extend_refused: AtomicBool,
}

/// What one script call came to.
struct Called<T> {
    value: T,
    /// Sent twice (the connection broke under the first).
    retried: bool,
    /// What the acknowledgement behind it said, when asked.
    confirmed: Option<Confirmation>,
}

impl<T> Called<T> {
    /// The same call with its value turned by `f`.
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Called<U> {
        Called {
            value: f(self.value),
            retried: self.retried,
            confirmed: self.confirmed,
        }
    }
}

impl Called<(i64, i64)> {
    /// An acquire's `[ours, n]`, with no fence counter reported.
    fn without_counter(self) -> Called<(i64, i64, Option<i64>)> {
        self.map(|(ours, n)| (ours, n, None))
    }
}

impl<C: Link> RedisNode<C> {
    /// A node over `conn`, shown as `name`.
    pub(crate) fn new(
        conn: C,
        name: String,
        notifications: Option<Arc<dyn Notifications>>,
        acknowledge: Option<Acknowledge>,
    ) -> RedisNode<C> {
        RedisNode {
            conn,
            name,
            notifications,
            warned_unannounced: AtomicBool::new(false),
            acknowledge,
            native_extend_refused: AtomicBool::new(false),
        }
    }

    /// The script argument that makes the release scripts announce with
    /// `SPUBLISH` (see [`scripts::RELEASE`]); empty for one server, whose
    /// announcements stay `PUBLISH`, as other clients' are.
    fn sharded(&self) -> &'static str {
        if C::CLUSTER {
            "sharded"
        } else {
            ""
        }
    }

    /// `EVALSHA`, falling back to `EVAL` on `NOSCRIPT`; sent once more on
    /// a fresh connection if the connection broke under it (the lock's
    /// scripts are safe to repeat: each acts by token, and an acquire that
    /// finds our own token counts it as ours; the operator's force release,
    /// which does not, is not repeated). With `confirm` and replica
    /// acknowledgement on, `WAIT` goes in the same pipeline.
    async fn eval(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        confirm: bool,
    ) -> Result<Called<Value>> {
        let wait = self.acknowledge.filter(|_| confirm);
        let (reply, retried) = match self.eval_once(script, keys, args, wait).await {
            // FORCE_RELEASE deletes whoever holds the lock: sent twice, the
            // second could delete the next holder's key.
            Err(e) if e.is_connection_dropped() && script.name != scripts::FORCE_RELEASE.name => {
                tracing::debug!(node = %self.name, error = %e, "connection broke; sending again on a fresh one");
                (self.eval_once(script, keys, args, wait).await, true)
            }
            first => (first, false),
        };
        reply
            .map(|(value, confirmed)| Called {
                value,
                retried,
                confirmed,
            })
            .map_err(|e| redis_error(&self.name, e))
    }

    async fn eval_once(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        wait: Option<Acknowledge>,
    ) -> redis::RedisResult<(Value, Option<Confirmation>)> {
        let mut conn = self.connection().await?;
        let Some(wait) = wait else {
            let reply = invocation(script, true, keys, args)
                .query_async::<Value>(&mut conn)
                .await;
            let value = match reply {
                Err(e) if is_noscript(&e) => {
                    invocation(script, false, keys, args)
                        .query_async::<Value>(&mut conn)
                        .await
                }
                other => other,
            }?;
            return Ok((value, None));
        };
        for use_sha in [true, false] {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.add_command(invocation(script, use_sha, keys, args));
            pipe.add_command(wait_command(wait));
            let mut replies = pipe.query_async::<Vec<Value>>(&mut conn).await?;
            let (Some(confirmed), Some(value), true) =
                (replies.pop(), replies.pop(), replies.is_empty())
            else {
                return Err(RedisError::from((
                    ErrorKind::Parse,
                    "pipeline reply count mismatch",
                )));
            };
            if use_sha
                && matches!(&value, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
            {
                continue;
            }
            return Ok((value.extract_error()?, Some(confirmation(wait, confirmed))));
        }
        unreachable!("EVAL never answers NOSCRIPT")
    }

    /// The connection for the next command. Always the one connection
    /// (redis-rs's manager replaces it only after it broke): commands to a
    /// node are applied in the order they were sent, which a timed-out
    /// command still in flight relies on (a take-back behind an acquire, a
    /// renewal before an extend). A fresh connection beside a silent one
    /// would let the old command land after newer ones.
    async fn connection(&self) -> redis::RedisResult<C> {
        Ok(self.conn.clone())
    }

    /// Runs `script` and reads its reply as a `T` (see [`RedisNode::eval`]).
    async fn call_with<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        confirm: bool,
    ) -> Result<Called<T>> {
        let called = self.eval(script, keys, args, confirm).await?;
        let value = redis::from_redis_value::<T>(called.value)
            .map_err(|e| redis_error(&self.name, RedisError::from(e)))?;
        Ok(Called {
            value,
            retried: called.retried,
            confirmed: called.confirmed,
        })
    }

    /// Runs `script` and reads its reply as a `T`.
    async fn call<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T> {
        Ok(self.call_with(script, keys, args, false).await?.value)
    }

    /// The error for a write whose acknowledgement fell short: fewer
    /// replicas than required, or (`WAITAOF`) not fsynced by the master
    /// ([`Error::NotReplicated`], transient); or whose `WAIT`/`WAITAOF`
    /// failed, which does not pass by itself: a server without `WAITAOF`
    /// or with `appendonly no` is [`Error::AofUnavailable`], anything else
    /// (an ACL refusal, a replica) the server's error.
    fn unconfirmed(&self, confirmed: Option<&Confirmation>) -> Option<Error> {
        let ack = self.acknowledge?;
        match confirmed? {
            Confirmation::Counted { local, replicas } => {
                (*replicas < ack.replicas || *local == Some(false)).then(|| Error::NotReplicated {
                    node: self.name.clone(),
                    confirmed: *replicas,
                    needed: ack.replicas,
                    fsynced: *local,
                })
            }
            Confirmation::Failed(e) => {
                let text = e.to_string();
                Some(if ack.aof && text.contains("appendonly") {
                    aof_unavailable(&self.name, APPENDONLY_OFF)
                } else if ack.aof && text.contains("unknown command") {
                    aof_unavailable(&self.name, NO_WAITAOF)
                } else {
                    self.shared_error(e)
                })
            }
        }
    }

    /// A release went through but its announcement was refused: waiters
    /// fall back to timed retries. Said once per node at `warn`, then at `debug`.
    fn unannounced(&self, key: &str) {
        if self.warned_unannounced.swap(true, Ordering::Relaxed) {
            tracing::debug!(node = %self.name, key, "release not announced: PUBLISH refused");
        } else {
            tracing::warn!(
                node = %self.name,
                key,
                "the server refused to PUBLISH the release (an ACL without the release channel or PUBLISH?): \
                 releases still happen, but waiters are woken only by their timed retries"
            );
        }
    }

    /// The release script for `keys`' kind (see [`scripts::RELEASE`]): a
    /// semaphore's permit, a fair lock's hand-off, or a plain lock.
    async fn release_script(&self, keys: &Keys, token: &str, channel: &str) -> Result<Called<i64>> {
        let sharded = self.sharded();
        match keys.kind {
            Kind::Lock | Kind::Write { .. } => {
                let args = [token, channel, sharded];
                self.call_with(&scripts::RELEASE, &[&keys.lock], &args, false)
                    .await
            }
            Kind::Semaphore { .. } | Kind::Read => {
                let args = [token, channel, sharded, "permit"];
                self.call_with(&scripts::RELEASE, &[&keys.lock], &args, false)
                    .await
            }
            Kind::Fair { entry_ttl_ms } => {
                let fair = keys.fair();
                let hand_off = Decimal::new(entry_ttl_ms.into());
                let args = [token, channel, sharded, "fair", hand_off.as_str()];
                let keys = [
                    &*keys.lock,
                    &keys.fence,
                    &fair.queue,
                    &fair.entries,
                    &fair.channels,
                ];
                self.call_with(&scripts::RELEASE, &keys, &args, false).await
            }
            Kind::Multi => {
                let announce = if channel.is_empty() { "" } else { "announce" };
                let mut args = vec![token, announce, sharded, "multi"];
                args.extend(keys.members.iter().map(|m| m.channel.as_str()));
                let locks: Vec<&str> = keys.members.iter().map(|m| m.lock.as_str()).collect();
                self.call_with(&scripts::RELEASE, &locks, &args, false)
                    .await
            }
        }
    }

    fn shared_error(&self, e: &Arc<RedisError>) -> Error {
        redis_error(&self.name, SharedError(Arc::clone(e)))
    }
}

impl<C: Link> Node for RedisNode<C> {
    fn name(&self) -> &str {
        &self.name
    }

    fn server_for<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, String> {
        match self.conn.server_for(keys) {
            Some(server) => server,
            None => Box::pin(std::future::ready(self.name.clone())),
        }
    }

    fn acquire<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        ttl_ms: u64,
        grant: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Reply>> {
        Box::pin(async move {
            let ttl = Decimal::new(ttl_ms);
            let ttl = ttl.as_str();
            let token = token.as_str();
            let called = match keys.kind {
                Kind::Lock => {
                    let args = [token, ttl];
                    let keys = [&*keys.lock, &keys.fence];
                    self.call_with::<(i64, i64)>(&scripts::ACQUIRE, &keys, &args, true)
                        .await
                        .map(Called::without_counter)
                }
                Kind::Semaphore { permits } => {
                    let permits = Decimal::new(u64::from(permits));
                    let args = [token, ttl, permits.as_str()];
                    let keys = [&*keys.lock, &keys.fence];
                    self.call_with::<(i64, i64)>(&scripts::PERMIT_ACQUIRE, &keys, &args, true)
                        .await
                        .map(Called::without_counter)
                }
                Kind::Read => {
                    let rw = keys.rw();
                    let args = [token, ttl];
                    let keys = [&*keys.lock, &keys.fence, &rw.writer, &rw.waiting];
                    self.call_with::<(i64, i64)>(&scripts::READ_ACQUIRE, &keys, &args, true)
                        .await
                        .map(Called::without_counter)
                }
                Kind::Write { entry_ttl_ms } => {
                    let rw = keys.rw();
                    let mark = Decimal::new(if grant.is_some() {
                        entry_ttl_ms.into()
                    } else {
                        0
                    });
                    let args = [token, ttl, mark.as_str()];
                    let keys = [&*keys.lock, &keys.fence, &rw.readers, &rw.waiting];
                    self.call_with::<(i64, i64)>(&scripts::WRITE_ACQUIRE, &keys, &args, true)
                        .await
                        .map(Called::without_counter)
                }
                Kind::Fair { entry_ttl_ms } => {
                    let fair = keys.fair();
                    let entry_ttl = Decimal::new(entry_ttl_ms.into());
                    let args = [token, ttl, entry_ttl.as_str(), grant.unwrap_or("")];
                    let keys = [
                        &*keys.lock,
                        &keys.fence,
                        &fair.queue,
                        &fair.entries,
                        &fair.channels,
                    ];
                    // A busy reply also carries the fence counter (three values).
                    let called = self
                        .call_with::<Vec<i64>>(&scripts::FAIR_ACQUIRE, &keys, &args, true)
                        .await;
                    called.and_then(|called| match called.value[..] {
                        [ours, n] => Ok(called.map(|_| (ours, n, None))),
                        [ours, n, counter] => Ok(called.map(|_| (ours, n, Some(counter)))),
                        _ => Err(redis_error(
                            &self.name,
                            RedisError::from((
                                ErrorKind::Parse,
                                "unexpected reply to the fair acquire script",
                                format!("{:?}", called.value),
                            )),
                        )),
                    })
                }
                Kind::Multi => {
                    if C::CLUSTER {
                        if let Some((first, second)) = keys.slots_apart() {
                            return Err(Error::CrossSlot {
                                first: first.to_owned(),
                                second: second.to_owned(),
                            });
                        }
                    }
                    let args = [token, ttl];
                    let keys = locks_and_fences(keys);
                    self.call_with::<(i64, i64)>(&scripts::MULTI_ACQUIRE, &keys, &args, true)
                        .await
                        .map(Called::without_counter)
                }
            }
            .map_err(|e| wrong_kind(e, keys))?;
            let (ours, n, counter) = called.value;
            if ours == 1 {
                if let Some(fewer) = self.unconfirmed(called.confirmed.as_ref()) {
                    // Not confirmed, so it does not count: take it back.
                    let _ = self.release_script(keys, token, "").await;
                    return Err(fewer);
                }
            }
            Ok(if ours == 1 {
                Reply::Acquired { fence: n as u64 }
            } else {
                Reply::Busy {
                    holder: HolderTtl::from_pttl(n),
                    fence: counter.map(|c| c.max(0) as u64),
                }
            })
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        announce: bool,
    ) -> BoxFuture<'a, Result<Found>> {
        Box::pin(async move {
            let channel = if announce { keys.channel.as_str() } else { "" };
            let called = self
                .release_script(keys, token.as_str(), channel)
                .await
                .map_err(|e| wrong_kind(e, keys))?;
            let (n, retried) = (called.value, called.retried);
            Ok(match n {
                RELEASED_UNANNOUNCED => {
                    self.unannounced(&keys.lock);
                    Found::Deleted
                }
                1 => Found::Deleted,
                _ if retried => Found::Unclear,
                _ => Found::NotHeld,
            })
        })
    }

    fn raise<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        fence: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let fence = Decimal::new(fence);
            let called = self
                .call_with::<i64>(
                    &scripts::RAISE,
                    &locks_and_fences(keys),
                    &[token.as_str(), fence.as_str()],
                    true,
                )
                .await?;
            if let Some(fewer) = self.unconfirmed(called.confirmed.as_ref()) {
                return Err(fewer);
            }
            Ok(called.value == 1)
        })
    }

    fn inspect<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Inspection>> {
        Box::pin(async move {
            let (holder, pttl, fence): (Option<Vec<u8>>, i64, Option<String>) = self
                .call(&scripts::INSPECT, &[&keys.lock, &keys.fence], &[])
                .await
                .map_err(|e| wrong_kind(e, keys))?;
            Ok(Inspection {
                holder,
                pttl,
                fence: fence.and_then(|f| f.parse().ok()),
            })
        })
    }

    fn force_release<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let (holder, announced): (Option<Vec<u8>>, i64) = self
                .call(
                    &scripts::FORCE_RELEASE,
                    &[&keys.lock],
                    &[&keys.channel, self.sharded()],
                )
                .await
                .map_err(|e| wrong_kind(e, keys))?;
            if holder.is_some() && announced == 0 {
                self.unannounced(&keys.lock);
            }
            Ok(holder)
        })
    }

    fn extend<'a>(&'a self, renewals: &'a [Renewal<'a>]) -> BoxFuture<'a, Vec<Result<bool>>> {
        Box::pin(self.extend_per_slot(renewals))
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Option<Subscription>>> {
        Box::pin(async move {
            match &self.notifications {
                Some(link) => link.subscribe(channel).await.map(Some),
                None => Ok(None),
            }
        })
    }
}

/// A `WRONGTYPE` reply means the name's key holds the other kind of lock:
/// said so, by name, instead of as the server's bare error.
pub(crate) fn wrong_kind(e: Error, keys: &Keys) -> Error {
    match &e {
        Error::Redis { source, .. } if source.to_string().contains("WRONGTYPE") => {
            let key = match keys.kind {
                Kind::Multi => on_lock_keys(keys, |locks| locks.join(", ")),
                _ => keys.lock.clone(),
            };
            Error::WrongKind {
                key,
                used_as: keys.kind,
            }
        }
        _ => e,
    }
}

/// A script call on the lock keys an extend or release touches: a
/// multi-lock's every name's, else the one (without allocating: renewals
/// of plain locks are the hot path).
fn on_lock_keys<T>(keys: &Keys, call: impl FnOnce(&[&str]) -> T) -> T {
    match keys.kind {
        Kind::Multi => call(
            &keys
                .members
                .iter()
                .map(|m| m.lock.as_str())
                .collect::<Vec<_>>(),
        ),
        _ => call(&[&keys.lock]),
    }
}

/// Each lock with its fence counter, in pairs, as the multi-lock's acquire
/// and the raise take them (a multi-lock's every name's, else the one).
fn locks_and_fences(keys: &Keys) -> Vec<&str> {
    match keys.kind {
        Kind::Multi => keys
            .members
            .iter()
            .flat_map(|m| [m.lock.as_str(), m.fence.as_str()])
            .collect(),
        _ => vec![&keys.lock, &keys.fence],
    }
}

/// The release script's reply when the key was deleted but `PUBLISH` was refused.
const RELEASED_UNANNOUNCED: i64 = 2;

/// A number's decimal digits, on the stack: script arguments are strings,
/// and formatting each into a `String` would cost an allocation per call.
struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    fn new(mut n: u64) -> Decimal {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[self.start..]).expect("ASCII digits")
    }
}

fn invocation(script: &Script, use_sha: bool, keys: &[&str], args: &[&str]) -> redis::Cmd {
    let (name, body) = if use_sha {
        ("EVALSHA", script.sha1)
    } else {
        ("EVAL", script.source)
    };
    let key_count = Decimal::new(keys.len() as u64);
    let head = [name, body, key_count.as_str()];
    sized_command(head.iter().chain(keys).chain(args).copied())
}

/// A command of `args`, its buffers sized before any is written: growing
/// them argument by argument costs an allocation each time they double, on
/// every lock operation and renewal.
fn sized_command<'a>(args: impl Iterator<Item = &'a str> + Clone) -> redis::Cmd {
    let (count, bytes) = args
        .clone()
        .fold((0, 0), |(count, bytes), arg| (count + 1, bytes + arg.len()));
    let mut cmd = redis::Cmd::with_capacity(count, bytes);
    for arg in args {
        cmd.arg(arg);
    }
    cmd
}

fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A redis error shared by every command of a failed pipeline.
#[derive(Debug)]
struct SharedError(Arc<RedisError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {}

/// Whether a backend error (the `source` of [`Error::Redis`]) is one that
/// passes by itself: the connection broke or was refused, the server is
/// loading its data, read-only (a demoted master in a failover), its
/// master is down, or a cluster is moving or down (`TRYAGAIN`,
/// `CLUSTERDOWN`, a `MOVED` or `ASK` redirect not followed in time).
pub(crate) fn is_transient(source: &(dyn std::error::Error + 'static)) -> bool {
    let redis = match source.downcast_ref::<SharedError>() {
        Some(shared) => &*shared.0,
        None => match source.downcast_ref::<RedisError>() {
            Some(e) => e,
            None => return false,
        },
    };
    redis.is_connection_dropped()
        || redis.is_connection_refusal()
        || redis.is_timeout()
        || matches!(
            redis.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            )
        )
}

pub(crate) fn redis_error(node: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Redis {
        node: node.to_owned(),
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::Decimal;

    #[test]
    fn decimals_read_as_the_numbers_they_are() {
        for n in [0, 7, 10, 400, 30_000, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
    }
}
