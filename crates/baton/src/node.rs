//! One lock server as the library sees it: the [`Node`] trait, and its Redis
//! implementation (the script transport). Its release notifications are
//! [`crate::pubsub`]'s, and what a URL shows of its password is
//! [`crate::redact`]'s.
//!
//! With `pubsub.rs`, `redact.rs`, `sentinel.rs` and `cluster.rs` it is the
//! transport layer, the only code that names `redis::` types. Everything above it
//! talks to `dyn Node`, so the in-memory backend ([`crate::memory`]) and Redis
//! behave the same to the lock logic, and a redis-rs upgrade stays here.
//!
//! Scripts go out as `EVALSHA` with the SHA1 pinned in `baton-core`; on
//! `NOSCRIPT` (a `SCRIPT FLUSH`, a restart, a failover) they are sent again
//! as `EVAL`, which also loads them. Pipelined renewals do the same for the
//! commands of the pipeline that came back `NOSCRIPT`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton_core::backoff::HolderTtl;

use baton_core::acquire::Reply;
use baton_core::scripts::{self, Script};
use baton_core::vote::Found;
use baton_core::{Keys, Token};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{socket2, TcpSettings};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

use crate::error::{Error, Result};
use crate::pubsub::PubSubLink;
use crate::redact::{invalid_url, redact_url};
use crate::wait::Subscription;

/// A boxed future, so that nodes of different kinds fit behind `dyn Node`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One renewal in a batch: the lock's keys, our token and the new TTL in ms.
pub(crate) type Renewal<'a> = (&'a Keys, &'a Token, u64);

/// What `inspect` read from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inspection {
    /// The lock key's value (the holder's token), if set: bytes, since a
    /// foreign holder may have stored anything.
    pub(crate) holder: Option<Vec<u8>>,
    /// The lock key's `PTTL` (-2 absent, -1 no expiry).
    pub(crate) pttl: i64,
    /// The fence counter, if set.
    pub(crate) fence: Option<u64>,
}

/// A lock server. Each method is one round trip.
pub(crate) trait Node: Send + Sync + 'static {
    /// The server as shown in errors and logs (`host:port`, never a password).
    fn name(&self) -> &str;

    /// The server that answers for `keys` right now, as `baton status`
    /// shows it: the name, except behind a Sentinel (the current master)
    /// or in a Cluster (the master of the keys' slot), where it moves.
    fn server_for<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, String> {
        let _ = keys;
        Box::pin(std::future::ready(self.name().to_owned()))
    }

    /// Runs the acquire script: the lock is ours (with the node's fence) or busy.
    fn acquire<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Reply>>;

    /// Runs the release script. `announce` publishes the release to waiters.
    fn release<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        announce: bool,
    ) -> BoxFuture<'a, Result<Found>>;

    /// Runs the raise script: while the lock holds our token, lifts the fence
    /// counter to at least `fence`. `true` if the lock was ours.
    fn raise<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        fence: u64,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Reads the lock's holder, TTL and fence counter (changes nothing).
    fn inspect<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Inspection>>;

    /// Deletes the lock whoever holds it and announces the release; the
    /// value deleted, if any. For operators only.
    fn force_release<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;

    /// Runs the extend script for each renewal, in one pipeline: per renewal,
    /// `true` if the key held our token and its TTL was reset.
    fn extend<'a>(&'a self, renewals: &'a [Renewal<'a>]) -> BoxFuture<'a, Vec<Result<bool>>>;

    /// Subscribes to a release channel; `None` when this node cannot notify
    /// (waiters then rely on the timed fallback alone).
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Option<Subscription>>>;
}

/// What a [`RedisNode`] sends its commands over: a connection to one
/// server (`ConnectionManager`, `MultiplexedConnection`), or to a Redis
/// Cluster ([`crate::cluster::ClusterLink`]), which routes each command
/// to its keys' slot.
pub(crate) trait Link: ConnectionLike + Clone + Send + Sync + 'static {
    /// A Cluster: releases are announced with `SPUBLISH` (sharded pub/sub
    /// in the lock's slot) and renewal batches are split per slot.
    const CLUSTER: bool = false;

    /// The server that answers for `keys` now, where it can move (see
    /// [`Node::server_for`]); `None`: the node's name.
    fn server_for<'a>(&'a self, keys: &'a Keys) -> Option<BoxFuture<'a, String>> {
        let _ = keys;
        None
    }

    /// The master serving `slot` as far as the link knows (a Cluster's
    /// slot table), to batch renewals per master.
    fn master_of_slot(&self, slot: u16) -> Option<String> {
        let _ = slot;
        None
    }
}

impl Link for ConnectionManager {}
impl Link for redis::aio::MultiplexedConnection {}

/// Where a node's waiters subscribe to release channels.
pub(crate) trait Notifications: Send + Sync + 'static {
    /// Subscribes to `channel` (unsubscribed when the last subscription of
    /// it is dropped).
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription>>;
}

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

/// Replica acknowledgement (see
/// [`ClientBuilder::min_replicas`](crate::ClientBuilder::min_replicas)
/// and [`ClientBuilder::wait_aof`](crate::ClientBuilder::wait_aof)):
/// `WAIT replicas timeout`, or `WAITAOF 1 replicas timeout`, pipelined
/// behind each write that makes a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acknowledge {
    /// Replicas that must confirm (0: only the master's AOF, with `aof`).
    pub(crate) replicas: usize,
    pub(crate) timeout_ms: u64,
    /// `WAITAOF`: the master and the replicas must have fsynced the write
    /// to their append-only files, not only hold it in memory.
    pub(crate) aof: bool,
}

/// What the `WAIT` or `WAITAOF` behind a write said (see
/// [`confirmation`]).
#[derive(Debug, Clone)]
enum Confirmation {
    /// Who has the write: the master's append-only file (`None` for
    /// `WAIT`, which does not ask) and how many replicas.
    Counted {
        local: Option<bool>,
        replicas: usize,
    },
    /// The command failed: refused by an ACL, sent to a replica, unknown
    /// to the server, or `WAITAOF` with `appendonly no`.
    Failed(Arc<RedisError>),
}

/// What one script call came to.
struct Called<T> {
    value: T,
    /// Sent twice (the connection broke under the first).
    retried: bool,
    /// What the acknowledgement behind it said, when asked.
    confirmed: Option<Confirmation>,
}

/// The TLS material for `rediss://` URLs (see
/// [`ClientBuilder::tls_ca`](crate::ClientBuilder::tls_ca)): PEM bytes,
/// checked by [`Tls::check`] before any server is asked.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    /// Trust these CAs instead of the system roots.
    pub(crate) ca: Option<Vec<u8>>,
    /// Present this certificate chain and key (mutual TLS).
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Refuses PEM that holds nothing of what it should: a CA or
    /// certificate file without a certificate, a key file without a key.
    /// (redis-rs reads the PEM only when a client is built, and an empty CA
    /// list would fail every handshake with a misleading "unknown issuer".)
    pub(crate) fn check(&self) -> Result<()> {
        let has = |pem: &[u8], what: &str| {
            String::from_utf8_lossy(pem).contains(&format!("-----BEGIN {what}"))
        };
        let refuse = |reason: &str| {
            Err(Error::InvalidTls {
                reason: reason.to_owned(),
            })
        };
        if self
            .ca
            .as_deref()
            .is_some_and(|ca| !has(ca, "CERTIFICATE-----"))
        {
            return refuse("the CA holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
        if let Some((cert, key)) = &self.client {
            if !has(cert, "CERTIFICATE-----") {
                return refuse("the client certificate holds no PEM certificate");
            }
            if !has(key, "PRIVATE KEY-----") {
                return refuse("the client key holds no PEM private key");
            }
        }
        Ok(())
    }
}

/// `rediss://…#insecure` turns certificate verification off: said once per
/// process, as a warning, since it is meant for tests.
pub(crate) fn warn_insecure_once(url: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            url = %redact_url(url),
            "TLS certificate verification is off (#insecure): anyone on the path can pose as the server"
        );
    });
}

/// TCP keepalive on every connection: probes after this much idle time
/// keep NAT and load-balancer state alive (their idle cut-offs are minutes)
/// and find a dead peer without waiting for a command to time out.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;
/// Unacknowledged data for this long breaks the connection (Linux
/// `TCP_USER_TIMEOUT`), so a peer gone silent mid-command is noticed.
#[cfg(target_os = "linux")]
const USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens a Redis node from a URL: a reconnecting connection for commands,
/// and (lazily) a separate pub/sub connection for release notifications.
pub(crate) async fn connect(
    url: &str,
    timeout: Duration,
    tls: &Tls,
    acknowledge: Option<Acknowledge>,
) -> Result<Arc<dyn Node>> {
    let client = open_client(url, tls)?;
    let notifications = PubSubLink::new(client.clone(), timeout);
    connect_client(client, timeout, acknowledge, notifications).await
}

/// Opens a node on `client` whose release notifications come through
/// `notifications`, which may be shared: a Sentinel's link follows the
/// master from server to server, so its waiters stay subscribed.
pub(crate) async fn connect_client(
    client: redis::Client,
    timeout: Duration,
    acknowledge: Option<Acknowledge>,
    notifications: Arc<PubSubLink>,
) -> Result<Arc<dyn Node>> {
    let is_tls = matches!(
        client.get_connection_info().addr(),
        redis::ConnectionAddr::TcpTls { .. }
    );
    let name = client.get_connection_info().addr().to_string();
    let connect_for = timeout.saturating_mul(3);
    let conn = tokio::time::timeout(
        connect_for,
        ConnectionManager::new_with_config(client.clone(), manager_config(timeout)),
    )
    .await
    .map_err(|_| Error::NodeTimeout {
        node: name.clone(),
        timeout: connect_for,
    })?
    .map_err(|e| match e.is_timeout() && is_tls {
        // A plain server reads a TLS hello as a command that never ends,
        // and answers nothing: say what that silence most likely means.
        true => redis_error(
            &name,
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer to the TLS handshake: is the server speaking TLS on this port \
                 (rediss://), or plain Redis (redis://)?",
            ),
        ),
        false => redis_error(&name, e),
    })?;
    warn_if_fences_can_be_evicted(&conn, &name, timeout).await;
    check_wait_aof(&conn, &name, timeout, acknowledge).await?;
    let notifications: Arc<dyn Notifications> = notifications;
    Ok(Arc::new(RedisNode::new(
        conn,
        name,
        Some(notifications),
        acknowledge,
    )))
}

/// A redis-rs client for one server's URL: TCP keepalive on, and for
/// `rediss://` the TLS material given (`#insecure` warned about once).
/// Nothing is sent yet.
pub(crate) fn open_client(url: &str, tls: &Tls) -> Result<redis::Client> {
    let info =
        redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| invalid_url(url, &e))?;
    let info = info.set_tcp_settings(tcp_settings());
    Ok(match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure, .. } => {
            if *insecure {
                warn_insecure_once(url);
            }
            let certificates = redis::TlsCertificates {
                client_tls: tls.client.clone().map(|(client_cert, client_key)| {
                    redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }
                }),
                root_cert: tls.ca.clone(),
            };
            redis::Client::build_with_tls(info, certificates).map_err(|e| Error::InvalidTls {
                reason: e.to_string(),
            })?
        }
        _ => redis::Client::open(info).map_err(|e| invalid_url(url, &e))?,
    })
}

/// Which server a URL names, for telling duplicates apart: its address
/// (`host:port`, the host without case, or the socket path as it is). The
/// database is left out on purpose: two databases of one server are still
/// one server, and would give it two votes.
pub(crate) fn server_of(url: &str) -> Result<String> {
    let info =
        redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| invalid_url(url, &e))?;
    Ok(match info.addr() {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{}:{port}", host.to_ascii_lowercase())
        }
        other => other.to_string(),
    })
}

/// Says once, at connect, if the server may evict keys without a TTL:
/// under `allkeys-*` the fence counter can be evicted like any key, and the
/// next acquire then draws fence 1 again, after higher ones — a fenced store
/// would refuse the new, rightful holder. `volatile-*` only evicts keys with
/// a TTL: fence counters are safe, but a lock key may be evicted under
/// memory pressure (a second holder gets in; its higher fence still
/// protects a fenced store). A server that refuses `CONFIG` (an ACL, a
/// managed service) is left at that, with a debug line.
pub(crate) async fn warn_if_fences_can_be_evicted<C: ConnectionLike + Clone>(
    conn: &C,
    name: &str,
    timeout: Duration,
) {
    let mut conn = conn.clone();
    let asked = tokio::time::timeout(
        timeout,
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            // A map in RESP3, pairs in RESP2: both read as a map.
            .query_async::<std::collections::HashMap<String, String>>(&mut conn),
    )
    .await;
    match asked {
        Ok(Ok(reply)) => match reply.get("maxmemory-policy").map(String::as_str) {
            Some(policy) if policy.starts_with("allkeys-") => tracing::warn!(
                node = %name,
                policy,
                "maxmemory-policy {policy} can evict fence counters, after which fences start again at 1 \
                 and a fenced store refuses the rightful holder: use noeviction (or a volatile-* policy)"
            ),
            Some(policy) if policy.starts_with("volatile-") => tracing::info!(
                node = %name,
                policy,
                "maxmemory-policy {policy} can evict lock keys under memory pressure (fences stay safe): \
                 noeviction keeps locks too"
            ),
            _ => {}
        },
        Ok(Err(e)) => tracing::debug!(node = %name, error = %e, "cannot read maxmemory-policy"),
        Err(_) => tracing::debug!(node = %name, "no answer reading maxmemory-policy"),
    }
}

/// With AOF acknowledgement on, refuses a server that cannot give it, at
/// connect rather than at every write: one without `WAITAOF` (`COMMAND
/// INFO WAITAOF` answers nil before Redis 7.2), or one whose `appendonly`
/// is off (`WAITAOF` with numlocal 1 then fails every call). A server that
/// refuses either question (an ACL) or does not answer in time is left to
/// the first write, whose failed `WAITAOF` says the same
/// ([`Error::AofUnavailable`], from `RedisNode::unconfirmed`).
pub(crate) async fn check_wait_aof<C: ConnectionLike + Clone>(
    conn: &C,
    name: &str,
    timeout: Duration,
    acknowledge: Option<Acknowledge>,
) -> Result<()> {
    if !acknowledge.is_some_and(|a| a.aof) {
        return Ok(());
    }
    let mut conn = conn.clone();
    let info = tokio::time::timeout(
        timeout,
        redis::cmd("COMMAND")
            .arg("INFO")
            .arg("WAITAOF")
            .query_async::<Vec<Value>>(&mut conn),
    )
    .await;
    match info {
        Ok(Ok(info)) if matches!(info.first(), None | Some(Value::Nil)) => {
            return Err(aof_unavailable(name, NO_WAITAOF));
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(node = %name, error = %e, "cannot ask for WAITAOF"),
        Err(_) => tracing::debug!(node = %name, "no answer asking for WAITAOF"),
    }
    let config = tokio::time::timeout(
        timeout,
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async::<std::collections::HashMap<String, String>>(&mut conn),
    )
    .await;
    match config {
        Ok(Ok(reply)) if reply.get("appendonly").is_some_and(|v| v == "no") => {
            Err(aof_unavailable(name, APPENDONLY_OFF))
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(node = %name, error = %e, "cannot read appendonly");
            Ok(())
        }
        Err(_) => {
            tracing::debug!(node = %name, "no answer reading appendonly");
            Ok(())
        }
    }
}

const NO_WAITAOF: &str = "the server has no WAITAOF command, which needs Redis >= 7.2 or Valkey";
const APPENDONLY_OFF: &str = "its append-only file is off (appendonly no): turn it on \
     (CONFIG SET appendonly yes) or leave wait_aof off";

fn aof_unavailable(node: &str, reason: &str) -> Error {
    Error::AofUnavailable {
        node: node.to_owned(),
        reason: reason.to_owned(),
    }
}

pub(crate) fn tcp_settings() -> TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(USER_TIMEOUT);
    settings
}

/// The settings of every command connection.
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    // redis-rs's own response timeout is a backstop behind ours (which
    // reports `NodeTimeout`), never in front of it.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout.saturating_mul(2)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(500))
}

/// A redis-rs connection handed to Baton: a `ConnectionManager` (which
/// reconnects by itself) or a `MultiplexedConnection`.
///
/// It has no URL to open a pub/sub connection with, so waiters on it rely on
/// timed retries (see [`Client::from_connection`](crate::Client::from_connection)).
pub struct Connection(Arc<dyn Node>);

impl Connection {
    pub(crate) fn into_node(self) -> Arc<dyn Node> {
        self.0
    }

    fn new<C: Link>(conn: C) -> Connection {
        let name = format!("redis db {}", conn.get_db());
        Connection(Arc::new(RedisNode::new(conn, name, None, None)))
    }
}

impl From<ConnectionManager> for Connection {
    fn from(conn: ConnectionManager) -> Connection {
        Connection::new(conn)
    }
}

impl From<redis::aio::MultiplexedConnection> for Connection {
    fn from(conn: redis::aio::MultiplexedConnection) -> Connection {
        Connection::new(conn)
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

    /// A renewal batch as one pipeline per cluster master (by the link's
    /// slot table; per slot where it knows none), sent concurrently; one
    /// pipeline for one server. Results in the order of `renewals`.
    async fn extend_per_slot(&self, renewals: &[Renewal<'_>]) -> Vec<Result<bool>> {
        if !C::CLUSTER {
            return self.extend_batch(renewals).await;
        }
        let mut slots: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for (i, (keys, _, _)) in renewals.iter().enumerate() {
            let slot = baton_core::name::hash_slot(keys.lock.as_bytes());
            let shard = self
                .conn
                .master_of_slot(slot)
                .unwrap_or_else(|| format!("slot {slot}"));
            slots.entry(shard).or_default().push(i);
        }
        if slots.len() <= 1 {
            return self.extend_batch(renewals).await;
        }
        let batches = slots.into_values().map(|which| async move {
            let batch: Vec<Renewal<'_>> = which.iter().map(|&i| renewals[i]).collect();
            (which, self.extend_batch(&batch).await)
        });
        let mut out: Vec<Option<Result<bool>>> = renewals.iter().map(|_| None).collect();
        for (which, results) in futures_util::future::join_all(batches).await {
            for (i, result) in which.into_iter().zip(results) {
                out[i] = Some(result);
            }
        }
        out.into_iter()
            .map(|r| r.expect("every renewal is in one slot's batch"))
            .collect()
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

    /// One renewal pipeline. On one server it uses the native extend when
    /// the server has not refused it (`SET key token IFEQ token PX ttl`:
    /// token-checked and atomic like the script, never creating a key,
    /// about a quarter of the script's server time), else the extend
    /// script. A cluster's renewals stay scripts: its redirect handling
    /// resends scripts only.
    async fn extend_batch(&self, renewals: &[Renewal<'_>]) -> Vec<Result<bool>> {
        let ttls: Vec<String> = renewals.iter().map(|r| r.2.to_string()).collect();
        let native = !C::CLUSTER && !self.native_extend_refused.load(Ordering::Relaxed);
        let build = |form: ExtendForm, which: &[usize]| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in which {
                let (keys, token, _) = renewals[i];
                pipe.add_command(match form {
                    ExtendForm::Native => native_extend(&keys.lock, token.as_str(), &ttls[i]),
                    ExtendForm::Script { use_sha } => invocation(
                        &scripts::EXTEND,
                        use_sha,
                        &[&keys.lock],
                        &[token.as_str(), &ttls[i]],
                    ),
                });
            }
            if let Some(wait) = self.acknowledge {
                pipe.add_command(wait_command(wait));
            }
            pipe
        };
        let first = if native {
            ExtendForm::Native
        } else {
            ExtendForm::Script { use_sha: true }
        };
        let waits = usize::from(self.acknowledge.is_some());
        let all: Vec<usize> = (0..renewals.len()).collect();
        let mut sent = self
            .run_pipeline(build(first, &all), all.len() + waits)
            .await;
        if matches!(&sent, Err(e) if e.is_connection_dropped()) {
            // Extends are safe to repeat: send again on a fresh connection.
            sent = self
                .run_pipeline(build(first, &all), all.len() + waits)
                .await;
        }
        let mut replies = match sent {
            Ok(replies) => replies,
            Err(e) => return all.iter().map(|_| Err(self.shared_error(&e))).collect(),
        };
        let mut confirmed = self.confirmed_by(waits, &mut replies);
        // Redis does not fall back to EVAL inside a pipeline: resend the
        // commands that came back NOSCRIPT as EVAL (which loads the script),
        // and those a server without the native extend refused (it changed
        // nothing: a syntax error is refused before it runs).
        let missing: Vec<usize> = all
            .into_iter()
            .filter(|&i| match &replies[i] {
                Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript) => true,
                Value::ServerError(e) if native && refuses_native_extend(e) => {
                    if !self.native_extend_refused.swap(true, Ordering::Relaxed) {
                        tracing::debug!(node = %self.name, error = ?e, "no native extend (SET … IFEQ): renewing with the script");
                    }
                    true
                }
                _ => false,
            })
            .collect();
        let parse = |value: Value| {
            if native {
                self.parse_native_extend(value)
            } else {
                self.parse_extend(value)
            }
        };
        let mut out: Vec<Result<bool>> = replies.into_iter().map(parse).collect();
        if !missing.is_empty() {
            match self
                .run_pipeline(
                    build(ExtendForm::Script { use_sha: false }, &missing),
                    missing.len() + waits,
                )
                .await
            {
                Ok(mut again) => {
                    confirmed = self.confirmed_by(waits, &mut again);
                    for (i, value) in missing.into_iter().zip(again) {
                        out[i] = self.parse_extend(value);
                    }
                }
                Err(e) => {
                    for i in missing {
                        out[i] = Err(self.shared_error(&e));
                    }
                }
            }
        }
        // An extend the replicas did not confirm does not count (a refusal
        // still does: the key is not ours, whatever the replicas have).
        if let Some(Confirmation::Failed(e)) = &confirmed {
            tracing::warn!(node = %self.name, error = %e, "WAIT/WAITAOF failed: renewals cannot be confirmed");
        }
        for reply in out.iter_mut().filter(|r| matches!(r, Ok(true))) {
            if let Some(fewer) = self.unconfirmed(confirmed.as_ref()) {
                *reply = Err(fewer);
            }
        }
        out
    }

    /// Takes the `WAIT`/`WAITAOF` reply off the end of a pipeline's
    /// replies, when one was sent.
    fn confirmed_by(&self, waits: usize, replies: &mut Vec<Value>) -> Option<Confirmation> {
        let wait = self.acknowledge.filter(|_| waits > 0)?;
        Some(confirmation(wait, replies.pop()?))
    }

    async fn run_pipeline(
        &self,
        pipe: redis::Pipeline,
        expected: usize,
    ) -> std::result::Result<Vec<Value>, Arc<RedisError>> {
        let mut conn = self.connection().await.map_err(Arc::new)?;
        match pipe.query_async::<Vec<Value>>(&mut conn).await {
            Ok(replies) if replies.len() == expected => Ok(replies),
            Ok(_) => Err(Arc::new(RedisError::from((
                ErrorKind::Parse,
                "pipeline reply count mismatch",
            )))),
            Err(e) => Err(Arc::new(e)),
        }
    }

    /// `SET … IFEQ` answers `OK` when the key held our token (and now
    /// expires in the TTL), nil when it did not (nothing changed).
    fn parse_native_extend(&self, value: Value) -> Result<bool> {
        match value.extract_error() {
            Ok(Value::Okay) => Ok(true),
            Ok(Value::Nil) => Ok(false),
            Ok(other) => Err(redis_error(
                &self.name,
                RedisError::from((
                    ErrorKind::Parse,
                    "unexpected reply to SET … IFEQ",
                    format!("{other:?}"),
                )),
            )),
            Err(e) => Err(redis_error(&self.name, e)),
        }
    }

    fn parse_extend(&self, value: Value) -> Result<bool> {
        value
            .extract_error()
            .and_then(|v| Ok(redis::from_redis_value::<i64>(v)?))
            .map(|n| n == 1)
            .map_err(|e| redis_error(&self.name, e))
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
    ) -> BoxFuture<'a, Result<Reply>> {
        Box::pin(async move {
            let ttl = ttl_ms.to_string();
            let called = self
                .call_with::<(i64, i64)>(
                    &scripts::ACQUIRE,
                    &[&keys.lock, &keys.fence],
                    &[token.as_str(), &ttl],
                    true,
                )
                .await?;
            let (ours, n) = called.value;
            if ours == 1 {
                if let Some(fewer) = self.unconfirmed(called.confirmed.as_ref()) {
                    // Not confirmed, so it does not count: take it back.
                    let _ = self
                        .call::<i64>(&scripts::RELEASE, &[&keys.lock], &[token.as_str(), ""])
                        .await;
                    return Err(fewer);
                }
            }
            Ok(if ours == 1 {
                Reply::Acquired { fence: n as u64 }
            } else {
                Reply::Busy {
                    holder: HolderTtl::from_pttl(n),
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
                .call_with::<i64>(
                    &scripts::RELEASE,
                    &[&keys.lock],
                    &[token.as_str(), channel, self.sharded()],
                    false,
                )
                .await?;
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
            let fence = fence.to_string();
            let called = self
                .call_with::<i64>(
                    &scripts::RAISE,
                    &[&keys.lock, &keys.fence],
                    &[token.as_str(), &fence],
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
                .await?;
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
                .await?;
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

/// `WAIT replicas timeout`: how many replicas have every write so far; or
/// `WAITAOF 1 replicas timeout`: whether the master's append-only file and
/// how many replicas' have fsynced every write so far.
fn wait_command(wait: Acknowledge) -> redis::Cmd {
    let mut cmd = if wait.aof {
        let mut cmd = redis::cmd("WAITAOF");
        cmd.arg(1);
        cmd
    } else {
        redis::cmd("WAIT")
    };
    cmd.arg(wait.replicas).arg(wait.timeout_ms);
    cmd
}

/// Reads the reply of [`wait_command`], the one parser of it (acquire,
/// raise and renewal batches alike): `WAIT`'s replica count, or
/// `WAITAOF`'s `[local, replicas]`. An error reply, or one of another
/// shape, is [`Confirmation::Failed`].
fn confirmation(wait: Acknowledge, reply: Value) -> Confirmation {
    let counted = reply.extract_error().and_then(|v| {
        Ok(if wait.aof {
            let (local, replicas) = redis::from_redis_value::<(i64, i64)>(v)?;
            (Some(local > 0), replicas)
        } else {
            (None, redis::from_redis_value::<i64>(v)?)
        })
    });
    match counted {
        Ok((local, replicas)) => Confirmation::Counted {
            local,
            replicas: replicas.max(0) as usize,
        },
        Err(e) => Confirmation::Failed(Arc::new(e)),
    }
}

/// The release script's reply when the key was deleted but `PUBLISH` was refused.
const RELEASED_UNANNOUNCED: i64 = 2;

/// How a renewal pipeline extends each lease.
#[derive(Clone, Copy)]
enum ExtendForm {
    /// `SET key token IFEQ token PX ttl` (Valkey ≥ 8.1).
    Native,
    /// The extend script, by SHA or (after `NOSCRIPT`) by source.
    Script { use_sha: bool },
}

/// The native extend: sets the key to the token it already holds, with a
/// new expiry, only if it holds that token.
fn native_extend(key: &str, token: &str, ttl_ms: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(token)
        .arg("IFEQ")
        .arg(token)
        .arg("PX")
        .arg(ttl_ms);
    cmd
}

/// Whether a server refused `SET … IFEQ` for want of the option: a
/// syntax error, which changed nothing. (An ACL user that may run Baton
/// at all may `SET`: the acquire script calls it.)
fn refuses_native_extend(e: &redis::ServerError) -> bool {
    e.to_string().contains("syntax error")
}

fn invocation(script: &Script, use_sha: bool, keys: &[&str], args: &[&str]) -> redis::Cmd {
    let mut cmd = if use_sha {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.sha1);
        cmd
    } else {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script.source);
        cmd
    };
    cmd.arg(keys.len()).arg(keys).arg(args);
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
    use super::*;

    /// The one parser of `WAIT` and `WAITAOF` replies: counts, the
    /// master's fsync, and failures (an error reply, or a reply of the
    /// other command's shape) kept as failures, never as zero replicas.
    #[test]
    fn wait_and_waitaof_replies_are_read_by_one_parser() {
        let wait = Acknowledge {
            replicas: 1,
            timeout_ms: 100,
            aof: false,
        };
        let waitaof = Acknowledge { aof: true, ..wait };
        let counted = |c: Confirmation| match c {
            Confirmation::Counted { local, replicas } => Some((local, replicas)),
            Confirmation::Failed(_) => None,
        };
        assert_eq!(counted(confirmation(wait, Value::Int(2))), Some((None, 2)));
        assert_eq!(
            counted(confirmation(
                waitaof,
                Value::Array(vec![Value::Int(1), Value::Int(0)])
            )),
            Some((Some(true), 0))
        );
        assert_eq!(
            counted(confirmation(
                waitaof,
                Value::Array(vec![Value::Int(0), Value::Int(3)])
            )),
            Some((Some(false), 3))
        );
        assert_eq!(counted(confirmation(waitaof, Value::Int(1))), None);
        let refused = redis::parse_redis_value(
            b"-ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.\r\n",
        )
        .expect("an error reply");
        assert_eq!(counted(confirmation(waitaof, refused)), None);
    }
}
