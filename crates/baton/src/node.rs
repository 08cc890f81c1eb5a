//! One lock server as the library sees it: the [`Node`] trait, the seams
//! beneath it ([`Link`], [`Notifications`]), and [`Connection`], a user's
//! redis-rs connection made a node.
//!
//! This file is the transport layer's interface. The layer, the only code
//! that names `redis::` types, is this file with `connect.rs` (opening nodes
//! from URLs), `acknowledge.rs` (replica and AOF acknowledgement),
//! `script.rs` and `script/extend.rs` (the Redis implementation: the script
//! transport and its renewal pipelines), `pubsub.rs` (release
//! notifications), `redact.rs` (what a URL shows of its password),
//! `sentinel.rs`, and `cluster.rs` with `cluster/pubsub.rs`. Everything
//! above it talks to `dyn Node`, so the in-memory backend
//! ([`crate::memory`]) and Redis behave the same to the lock logic, and a
//! redis-rs upgrade stays in the layer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use baton_core::acquire::Reply;
use baton_core::vote::Found;
use baton_core::{Keys, Token};
use redis::aio::{ConnectionLike, ConnectionManager};

use crate::error::Result;
use crate::script::RedisNode;
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

    /// Runs the acquire script: the lock is ours (with the node's fence) or
    /// busy. `grant`: for a fair lock, the waiter's grant channel, which
    /// queues it (`None`: never queue, as `try_acquire`).
    fn acquire<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        ttl_ms: u64,
        grant: Option<&'a str>,
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
