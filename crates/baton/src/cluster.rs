//! Redis Cluster: `redis+cluster://[user:pass@]host:port[,host:port…][?protocol=resp3]`
//! (seed nodes; `rediss+cluster://` for TLS), through redis-rs's async
//! cluster client.
//!
//! The cluster is one [`Node`]: a [`RedisNode`] over a [`ClusterLink`], so
//! scripts, `NOSCRIPT` fallbacks, retries and replica acknowledgement are
//! script.rs's, unchanged. What the cluster adds:
//! - every command goes to its keys' slot master; redis-rs follows `MOVED`
//!   (refreshing its slot map) and `ASK`, for pipelines too, but an `ASK`
//!   for a whole pipeline behind one `ASKING`, which lets in only its first
//!   command during a migration: [`ClusterLink`] sends such a pipeline
//!   again per script, each with the pipeline's `WAIT`;
//! - renewal batches go out as one pipeline per master (script/extend.rs,
//!   [`Link::master_of_slot`], from a `CLUSTER SLOTS` table), concurrently,
//!   each with its own `WAIT` when replica acknowledgement is on;
//! - releases are announced with `SPUBLISH` and waiters `SSUBSCRIBE`
//!   ([`pubsub::ShardedLink`]), since plain pub/sub is broadcast to every node of
//!   the cluster while sharded pub/sub stays in the lock's shard. Redis 6
//!   has no sharded pub/sub: there the release script announces with
//!   `PUBLISH` (it tries `SPUBLISH` first, so no client has to know) and the
//!   waiters `SUBSCRIBE`, learnt from the first `SSUBSCRIBE` the cluster
//!   refuses as an unknown command. Both ends follow the same server: the
//!   slot master that runs the release is the one a waiter subscribed to.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use baton_core::Keys;
use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, ServerErrorKind, Value};

use crate::acknowledge::{self, Acknowledge};
use crate::connect::{self, Tls};
use crate::error::{Error, Result};
use crate::node::{BoxFuture, Link, Node, Notifications};
use crate::script::{self, RedisNode};
use crate::topology::HostList;

mod pubsub;

use pubsub::ShardedLink;

/// The default port of a seed given without one.
const DEFAULT_PORT: u16 = 6379;

/// Connects to the cluster that the seed nodes of `url` belong to.
pub(crate) async fn connect(
    url: &str,
    timeout: Duration,
    tls: &Tls,
    acknowledge: Option<Acknowledge>,
) -> Result<Arc<dyn Node>> {
    let list = HostList::parse(url, DEFAULT_PORT)?;
    if !list.path.is_empty() && list.path != "0" {
        return Err(Error::InvalidUrl {
            url: crate::redact::redact_url(url),
            reason: "a cluster has only database 0".to_owned(),
        });
    }
    if let Some(protocol) = list.query_value("protocol") {
        if !["resp2", "resp3", "2", "3"].contains(&protocol.to_ascii_lowercase().as_str()) {
            return Err(Error::InvalidUrl {
                url: crate::redact::redact_url(url),
                reason: format!("protocol={protocol}: resp2 or resp3"),
            });
        }
    }
    let seeds: Vec<String> = list
        .hosts
        .iter()
        .map(|(host, port)| {
            list.server_url((host, *port), list.userinfo.as_deref(), None, |key| {
                key == "protocol"
            })
        })
        .collect();
    let name = list
        .hosts
        .iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let commands = builder(url, &seeds, timeout, tls)?;
    let client = commands
        .build()
        .map_err(|e| crate::redact::invalid_url(url, &e))?;
    let connect_for = timeout.saturating_mul(3);
    let conn = tokio::time::timeout(connect_for, client.get_async_connection())
        .await
        .map_err(|_| Error::NodeTimeout {
            node: name.clone(),
            timeout: connect_for,
        })?
        .map_err(|e| connect_error(&name, e))?;
    let link = ClusterLink {
        conn,
        slots: Arc::default(),
    };
    // The slot table for batching renewals per master; reading it also
    // tells a seed that is not a cluster node.
    match tokio::time::timeout(timeout, link.load_slots()).await {
        Ok(Err(e)) => return Err(connect_error(&name, e)),
        Err(_) => {
            return Err(Error::NodeTimeout {
                node: name,
                timeout,
            })
        }
        Ok(Ok(())) => {}
    }
    connect::warn_if_fences_can_be_evicted(&link, &name, timeout).await;
    acknowledge::check_wait_aof(&link, &name, timeout, acknowledge).await?;
    let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
    let pubsub = builder(url, &seeds, timeout, tls)?
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()
        .map_err(|e| crate::redact::invalid_url(url, &e))?;
    let notifications: Arc<dyn Notifications> =
        ShardedLink::new(pubsub, received, name.clone(), timeout);
    Ok(Arc::new(RedisNode::new(
        link,
        name,
        Some(notifications),
        acknowledge,
    )))
}

/// The cluster client's settings for `seeds`: timeouts, TCP keepalive,
/// TLS material.
fn builder(
    url: &str,
    seeds: &[String],
    timeout: Duration,
    tls: &Tls,
) -> Result<ClusterClientBuilder> {
    let mut infos = Vec::with_capacity(seeds.len());
    for seed in seeds {
        let info = redis::IntoConnectionInfo::into_connection_info(seed.as_str())
            .map_err(|e| crate::redact::invalid_url(url, &e))?;
        infos.push(info.set_tcp_settings(connect::tcp_settings()));
    }
    let insecure = infos.iter().any(|info| {
        matches!(
            info.addr(),
            redis::ConnectionAddr::TcpTls { insecure: true, .. }
        )
    });
    let is_tls = infos
        .iter()
        .any(|info| matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }));
    // redis-rs's own response timeout is a far backstop behind ours (which
    // reports `NodeTimeout`): on it, redis-rs sends the request again by
    // itself, which could land after a take-back sent since. Its retries
    // follow redirects and ride out TRYAGAIN / CLUSTERDOWN.
    let mut builder = ClusterClient::builder(infos)
        .connection_timeout(timeout)
        .response_timeout(timeout.saturating_mul(10))
        .tcp_settings(connect::tcp_settings())
        .retries(6)
        .min_retry_wait(10)
        .max_retry_wait(500);
    if is_tls {
        if insecure {
            connect::warn_insecure_once(url);
            builder = builder.tls(redis::TlsMode::Insecure);
        } else {
            builder = builder.tls(redis::TlsMode::Secure);
        }
        if tls.ca.is_some() || tls.client.is_some() {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: tls.client.clone().map(|(client_cert, client_key)| {
                    redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }
                }),
                root_cert: tls.ca.clone(),
            });
        }
    }
    Ok(builder)
}

/// A connect failure: a seed that is not a cluster node says so.
fn connect_error(name: &str, e: redis::RedisError) -> Error {
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("cluster support disabled") || text.contains("cluster mode is not enabled") {
        return Error::NotACluster {
            node: name.to_owned(),
        };
    }
    script::redis_error(name, e)
}

/// The cluster connection that a [`RedisNode`] sends its commands over.
/// Single commands are routed and redirected by redis-rs; a pipeline of
/// several slots on one master is routed to that master by address, and
/// one that redis-rs gives up redirecting is sent again per script (see
/// [`ClusterLink::split`]).
#[derive(Clone)]
pub(crate) struct ClusterLink {
    conn: ClusterConnection,
    /// `CLUSTER SLOTS` as last read (at connect, and again after a
    /// `MOVED`): which master serves which slots, to send one pipeline per
    /// master. Only a hint: a stale entry costs a redirect, never a wrong
    /// answer.
    slots: Arc<std::sync::RwLock<Vec<SlotRange>>>,
}

/// One range of slots and its master's address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotRange {
    first: u16,
    last: u16,
    host: String,
    port: u16,
}

/// The ranges of a `CLUSTER SLOTS` reply (RESP2 or RESP3).
fn parse_slots(reply: Value) -> Vec<SlotRange> {
    let Ok(ranges) = redis::from_redis_value::<Vec<Vec<Value>>>(reply) else {
        return Vec::new();
    };
    ranges
        .into_iter()
        .filter_map(|range| {
            let first = redis::from_redis_value_ref::<u16>(range.first()?).ok()?;
            let last = redis::from_redis_value_ref::<u16>(range.get(1)?).ok()?;
            let master = redis::from_redis_value_ref::<Vec<Value>>(range.get(2)?).ok()?;
            let host = redis::from_redis_value_ref::<String>(master.first()?).ok()?;
            let port = redis::from_redis_value_ref::<u16>(master.get(1)?).ok()?;
            Some(SlotRange {
                first,
                last,
                host,
                port,
            })
        })
        .collect()
}

/// The slot of a script command's first key (`EVALSHA sha 1 KEY …`).
fn slot_of(cmd: &Cmd) -> Option<u16> {
    if !is_script(cmd) {
        return None;
    }
    match cmd.args_iter().nth(3)? {
        redis::Arg::Simple(key) => Some(baton_core::name::hash_slot(key)),
        _ => None,
    }
}

impl ConnectionLike for ClusterLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut replies = match self.one_master(pipeline) {
                // Scripts of several slots on one master: one pipeline
                // there (redis-rs routes a pipeline by one slot only).
                Some((host, port)) => {
                    let route = SingleNodeRoutingInfo::ByAddress { host, port };
                    self.conn
                        .route_pipeline(pipeline.clone(), offset, count, route)
                        .await
                }
                None => self.conn.req_packed_commands(pipeline, offset, count).await,
            };
            let scripts = pipeline.cmd_iter().filter(|c| is_script(c)).count();
            if offset == 0 && scripts > 1 {
                if let Err(e) = &replies {
                    if is_redirect(e) {
                        tracing::debug!(error = %e, "pipeline redirected (slot moving): sending it per script");
                        replies = self.split(pipeline).await;
                    }
                }
            }
            replies
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Link for ClusterLink {
    const CLUSTER: bool = true;

    fn server_for<'a>(&'a self, keys: &'a Keys) -> Option<BoxFuture<'a, String>> {
        Some(Box::pin(self.master_of(keys)))
    }

    fn master_of_slot(&self, slot: u16) -> Option<String> {
        self.range_of(slot)
            .map(|r| format!("{}:{}", r.host, r.port))
    }
}

/// A redirect or a slot in motion, which redis-rs gave up following.
fn is_redirect(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(
            ServerErrorKind::Ask | ServerErrorKind::Moved | ServerErrorKind::TryAgain
        )
    )
}

/// Whether a command is one of Baton's scripts (routed by its first key);
/// the only other command Baton pipelines is `WAIT`, which has no key.
fn is_script(cmd: &Cmd) -> bool {
    matches!(
        cmd.args_iter().next(),
        Some(redis::Arg::Simple(name))
            if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL")
    )
}

impl ClusterLink {
    /// Reads `CLUSTER SLOTS` into the slot table.
    async fn load_slots(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let reply = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Value>(&mut conn)
            .await?;
        let table = parse_slots(reply);
        *self.slots.write().unwrap_or_else(|e| e.into_inner()) = table;
        Ok(())
    }

    fn range_of(&self, slot: u16) -> Option<SlotRange> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| (r.first..=r.last).contains(&slot))
            .cloned()
    }

    /// The one master that serves every script of `pipeline`, when they
    /// span several slots; `None` for one slot (redis-rs routes it) or
    /// when the table does not know.
    fn one_master(&self, pipeline: &Pipeline) -> Option<(String, u16)> {
        let slots: HashSet<u16> = pipeline.cmd_iter().filter_map(slot_of).collect();
        if slots.len() < 2 {
            return None;
        }
        let mut masters = slots
            .into_iter()
            .map(|slot| self.range_of(slot).map(|r| (r.host, r.port)));
        let first = masters.next()??;
        masters.all(|m| m.as_ref() == Some(&first)).then_some(first)
    }

    /// A pipeline that redis-rs could not get through: it follows a `MOVED`
    /// or `ASK` of any command by sending the *whole* pipeline to the node
    /// named, behind one `ASKING` — during a migration only the first
    /// command is then let in, the others bounce back `MOVED`, and the
    /// retries run out. Sent again as one pipeline per script (with the
    /// pipeline's keyless commands, `WAIT`, behind each), which redis-rs
    /// redirects correctly; a `WAIT` counts the fewest replicas of its
    /// answers. Scripts are safe to send again, and a redirected one was not
    /// run.
    async fn split(&mut self, pipeline: &Pipeline) -> redis::RedisResult<Vec<Value>> {
        let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
        let keyless: Vec<usize> = (0..cmds.len()).filter(|&i| !is_script(cmds[i])).collect();
        let scripts: Vec<usize> = (0..cmds.len()).filter(|&i| is_script(cmds[i])).collect();
        let mut replies: Vec<Option<Value>> = cmds.iter().map(|_| None).collect();
        for &i in &scripts {
            let mut pipe = redis::pipe();
            pipe.add_command(cmds[i].clone());
            for &j in &keyless {
                pipe.add_command(cmds[j].clone());
            }
            // One after another, not all at once: redis-rs follows an `ASK`
            // with a separate `ASKING` on the one connection to the target,
            // and concurrent resends would take each other's (the next
            // command of the connection consumes it, and the rest bounce).
            let again = self
                .conn
                .req_packed_commands(&pipe, 0, 1 + keyless.len())
                .await;
            // A script that still fails gets no reply: a transient failure
            // of that one (a renewal is retried), not of the others.
            let Ok(again) = again else { continue };
            let mut again = again.into_iter();
            replies[i] = again.next();
            for &j in &keyless {
                let value = again.next().unwrap_or(Value::Nil);
                replies[j] = Some(match replies[j].take() {
                    Some(before) => fewer(before, value),
                    None => value,
                });
            }
        }
        Ok(replies
            .into_iter()
            .map(|r| r.unwrap_or(Value::Nil))
            .collect())
    }

    /// The address of the master of `keys`' slot, as that master's slot
    /// table says (the one redis-rs routes to); the seed list if unknown.
    async fn master_of(&self, keys: &Keys) -> String {
        let slot = baton_core::name::hash_slot(keys.lock.as_bytes());
        let mut conn = self.conn.clone();
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot,
            SlotAddr::Master,
        )));
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        if let Ok(reply) = conn.route_command(cmd, routing).await {
            if let Some(r) = parse_slots(reply)
                .into_iter()
                .find(|r| (r.first..=r.last).contains(&slot))
            {
                return format!("{}:{}", r.host, r.port);
            }
        }
        format!("cluster slot {slot}")
    }
}

/// Of two `WAIT` replies, the one that confirms less (an error confirms none).
fn fewer(first: Value, second: Value) -> Value {
    match (&first, &second) {
        (Value::Int(a), Value::Int(b)) => Value::Int(*a.min(b)),
        (Value::ServerError(_), _) => first,
        _ => second,
    }
}
