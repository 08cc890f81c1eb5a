//! Release notifications on a Redis Cluster: [`ShardedLink`], the waiters'
//! `SSUBSCRIBE` on a RESP3 cluster connection of its own, and plain
//! `SUBSCRIBE` on a cluster without sharded pub/sub (Redis 6).
//!
//! Apart from the command routing in [`super`] because the two share
//! nothing but the client's settings: another connection, pushes instead
//! of replies, and a re-subscribe logic of its own.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind};

use crate::error::{Error, Result};
use crate::node::{BoxFuture, Notifications};
use crate::pubsub::grant_of;
use crate::script;
use crate::wait::{Hub, Subscription};

/// Release notifications over sharded pub/sub: a RESP3 cluster connection
/// of its own (opened at the first subscription), on which redis-rs sends
/// each `SSUBSCRIBE` to the channel's slot master and subscribes again after
/// a reconnect or a slot map change. A channel the server unsubscribes us
/// from (its slot moved away, Redis sends `SUNSUBSCRIBE`) is subscribed
/// again here, and its waiters look again; so do all after a disconnection.
///
/// On a cluster without sharded pub/sub (Redis 6), the first refused
/// `SSUBSCRIBE` switches the link to plain `SUBSCRIBE` for good: a plain
/// message reaches every node, so any node's subscription hears the
/// release script's `PUBLISH`.
pub(crate) struct ShardedLink {
    client: ClusterClient,
    name: String,
    timeout: Duration,
    hub: Arc<Hub>,
    me: Weak<ShardedLink>,
    /// Set once `SSUBSCRIBE` was refused as an unknown command: this
    /// cluster's waiters use plain `SUBSCRIBE`.
    plain: std::sync::atomic::AtomicBool,
    pushes: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<PushInfo>>>,
    state: tokio::sync::Mutex<ShardedState>,
}

#[derive(Default)]
struct ShardedState {
    conn: Option<ClusterConnection>,
    subscribed: HashSet<String>,
}

impl ShardedLink {
    pub(crate) fn new(
        client: ClusterClient,
        pushes: tokio::sync::mpsc::UnboundedReceiver<PushInfo>,
        name: String,
        timeout: Duration,
    ) -> Arc<ShardedLink> {
        Arc::new_cyclic(|me| ShardedLink {
            client,
            name,
            timeout,
            hub: Arc::default(),
            me: me.clone(),
            plain: std::sync::atomic::AtomicBool::new(false),
            pushes: std::sync::Mutex::new(Some(pushes)),
            state: tokio::sync::Mutex::default(),
        })
    }

    async fn subscribe_channel(&self, channel: &str) -> Result<Subscription> {
        // Join the hub first, so a message that follows the SSUBSCRIBE
        // confirmation at once already has a receiver.
        let subscription =
            crate::pubsub::join_hub(&self.hub, &self.me, channel, |link, channel| {
                Box::pin(async move { link.unsubscribe(&channel).await })
            });
        self.ensure_subscribed(channel, false).await?;
        Ok(subscription)
    }

    /// Opens the connection if needed and `SSUBSCRIBE`s `channel` (again,
    /// with `again`, after the server unsubscribed it).
    async fn ensure_subscribed(&self, channel: &str, again: bool) -> Result<()> {
        let mut state = self.state.lock().await;
        if !again && state.subscribed.contains(channel) {
            return Ok(());
        }
        let timeout = self.timeout.saturating_mul(3);
        let outcome = tokio::time::timeout(timeout, async {
            if state.conn.is_none() {
                let conn = self
                    .client
                    .get_async_connection()
                    .await
                    .map_err(|e| script::redis_error(&self.name, e))?;
                self.start_reader();
                state.conn = Some(conn);
            }
            let conn = state.conn.as_mut().expect("opened above");
            if !self.is_plain() {
                match conn.ssubscribe(channel).await {
                    Err(e) if lacks_sharded_pubsub(&e) => {
                        tracing::debug!(node = %self.name, "the cluster has no SSUBSCRIBE (Redis < 7): waiters use plain SUBSCRIBE");
                        self.plain.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    outcome => return outcome.map_err(|e| script::redis_error(&self.name, e)),
                }
            }
            conn.subscribe(channel)
                .await
                .map_err(|e| script::redis_error(&self.name, e))
        })
        .await
        .unwrap_or_else(|_| {
            Err(Error::NodeTimeout {
                node: self.name.clone(),
                timeout,
            })
        });
        match outcome {
            Ok(()) => {
                state.subscribed.insert(channel.to_owned());
                Ok(())
            }
            Err(e) => {
                state.subscribed.remove(channel);
                Err(e)
            }
        }
    }

    /// Spawns the task that turns pushes into hub bumps (once).
    fn start_reader(&self) {
        let Some(mut pushes) = self.pushes.lock().map(|mut p| p.take()).unwrap_or(None) else {
            return;
        };
        let (hub, link) = (Arc::clone(&self.hub), self.me.clone());
        tokio::spawn(async move {
            while let Some(push) = pushes.recv().await {
                let channel = push
                    .data
                    .first()
                    .and_then(|c| redis::from_redis_value_ref::<String>(c).ok());
                match (push.kind, channel) {
                    (PushKind::SMessage | PushKind::Message, Some(channel)) => {
                        let payload = push
                            .data
                            .get(1)
                            .and_then(|p| redis::from_redis_value_ref::<Vec<u8>>(p).ok());
                        hub.publish(&channel, payload.as_deref().and_then(grant_of))
                    }
                    (PushKind::SUnsubscribe, Some(channel)) if hub.has_subscribers(&channel) => {
                        // The server dropped the subscription (the slot
                        // moved): subscribe where it lives now, and look.
                        hub.publish(&channel, None);
                        let link = link.clone();
                        tokio::spawn(async move {
                            if let Some(link) = link.upgrade() {
                                if let Err(e) = link.ensure_subscribed(&channel, true).await {
                                    tracing::debug!(node = %link.name, error = %e, "re-subscribing a moved release channel failed; waiters retry on their timer");
                                }
                            }
                        });
                    }
                    // Releases may have gone unseen while it was down.
                    (PushKind::Disconnection, _) => hub.publish_all(),
                    _ => {}
                }
            }
        });
    }

    fn is_plain(&self) -> bool {
        self.plain.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn unsubscribe(&self, channel: &str) {
        let mut state = self.state.lock().await;
        // A new waiter may have joined since the last one left.
        if self.hub.has_subscribers(channel) || !state.subscribed.remove(channel) {
            return;
        }
        let Some(conn) = state.conn.as_mut() else {
            return;
        };
        let unsubscribing = async {
            if self.is_plain() {
                conn.unsubscribe(channel).await
            } else {
                conn.sunsubscribe(channel).await
            }
        };
        if let Ok(Err(e)) | Err(e) = tokio::time::timeout(self.timeout, unsubscribing)
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out")))
        {
            tracing::debug!(node = %self.name, error = %e, "sunsubscribe failed");
        }
    }
}

/// Whether `SSUBSCRIBE` failed because the server does not know it (Redis
/// before 7.0), rather than for a reason that plain pub/sub shares (an ACL
/// refusal, a connection lost).
fn lacks_sharded_pubsub(e: &redis::RedisError) -> bool {
    e.to_string()
        .to_ascii_lowercase()
        .contains("unknown command")
}

impl Notifications for ShardedLink {
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(self.subscribe_channel(channel))
    }
}
