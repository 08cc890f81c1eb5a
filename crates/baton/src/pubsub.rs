//! The release notifications of one Redis server: [`PubSubLink`], a pub/sub
//! connection opened on first use and shared by every waiter of the client,
//! reopened and resubscribed when it drops.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::task::AbortHandle;

use crate::error::{Error, Result};
use crate::node::{BoxFuture, Notifications};
use crate::script::redis_error;
use crate::wait::{Hub, OnLastLeave, Subscription};

/// The pub/sub connection of one Redis node, opened on first use, shared by
/// every waiter of the client. When it drops, it is reopened in the
/// background and every channel that still has waiters is subscribed again.
pub(crate) struct PubSubLink {
    /// The server subscribed on; replaced by [`PubSubLink::retarget`].
    target: std::sync::Mutex<LinkTarget>,
    timeout: Duration,
    hub: Arc<Hub>,
    me: Weak<PubSubLink>,
    state: tokio::sync::Mutex<LinkState>,
}

struct LinkTarget {
    client: redis::Client,
    /// `host:port`, for errors and logs.
    name: String,
}

#[derive(Default)]
struct LinkState {
    sink: Option<PubSubSink>,
    reader: Option<AbortHandle>,
    subscribed: HashSet<String>,
}

impl Notifications for PubSubLink {
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(PubSubLink::subscribe(self, channel))
    }
}

impl PubSubLink {
    /// A link to the server of `client`, opened on first use.
    pub(crate) fn new(client: redis::Client, timeout: Duration) -> Arc<PubSubLink> {
        let name = client.get_connection_info().addr().to_string();
        Arc::new_cyclic(|me| PubSubLink {
            target: std::sync::Mutex::new(LinkTarget { client, name }),
            timeout,
            hub: Arc::default(),
            me: me.clone(),
            state: tokio::sync::Mutex::default(),
        })
    }

    /// Moves the link to the server of `client` (a failover's new master):
    /// the connection is closed, every channel that has waiters is
    /// subscribed again there, and every waiter looks at its lock once,
    /// for releases that went unheard in between.
    pub(crate) async fn retarget(&self, client: redis::Client) {
        let name = client.get_connection_info().addr().to_string();
        *self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = LinkTarget { client, name };
        close(&mut *self.state.lock().await);
        self.hub.publish_all();
        tokio::spawn(resubscribe(self.me.clone()));
    }

    fn name(&self) -> String {
        self.target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .name
            .clone()
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        // Join the hub first, so a message that follows the SUBSCRIBE
        // confirmation at once already has a receiver.
        let subscription = join_hub(&self.hub, &self.me, channel, |link, channel| {
            Box::pin(async move { link.unsubscribe(&channel).await })
        });
        let mut state = self.state.lock().await;
        self.ensure_subscribed(&mut state, &[channel.to_owned()])
            .await?;
        Ok(subscription)
    }

    /// Opens the connection if it is down and subscribes `channels` on it.
    /// On any failure the connection is dropped, so the next call starts
    /// afresh instead of waiting on a half-open socket.
    async fn ensure_subscribed(&self, state: &mut LinkState, channels: &[String]) -> Result<()> {
        let outcome = tokio::time::timeout(self.timeout, async {
            if state.reader.as_ref().is_none_or(|r| r.is_finished()) {
                self.open(state).await?;
            }
            for channel in channels {
                if !state.subscribed.contains(channel) {
                    let sink = state.sink.as_mut().expect("opened above");
                    sink.subscribe(channel)
                        .await
                        .map_err(|e| redis_error(&self.name(), e))?;
                    state.subscribed.insert(channel.clone());
                }
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|_| {
            Err(Error::NodeTimeout {
                node: self.name(),
                timeout: self.timeout,
            })
        });
        if outcome.is_err() {
            close(state);
        }
        outcome
    }

    async fn open(&self, state: &mut LinkState) -> Result<()> {
        close(state);
        let client = self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .client
            .clone();
        let pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| redis_error(&self.name(), e))?;
        let (sink, mut stream) = pubsub.split();
        let (hub, link) = (Arc::clone(&self.hub), self.me.clone());
        let reader = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                hub.publish(msg.get_channel_name(), grant_of(msg.get_payload_bytes()));
            }
            // The connection dropped: releases may have gone unseen, and
            // the waiters' subscriptions with it.
            hub.publish_all();
            tokio::spawn(resubscribe(link));
        });
        *state = LinkState {
            sink: Some(sink),
            reader: Some(reader.abort_handle()),
            subscribed: HashSet::new(),
        };
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) {
        let mut state = self.state.lock().await;
        // A new waiter may have joined since the last one left.
        if self.hub.has_subscribers(channel) || !state.subscribed.remove(channel) {
            return;
        }
        let Some(sink) = state.sink.as_mut() else {
            return;
        };
        match tokio::time::timeout(self.timeout, sink.unsubscribe(channel)).await {
            Ok(Ok(())) => {}
            failed => {
                tracing::debug!(node = %self.name(), ?failed, "unsubscribe failed; reopening later");
                close(&mut state);
            }
        }
    }
}

/// Joins `hub` on `channel`; when its last subscriber leaves, `unsubscribe`
/// runs on a task with the link (while the link lives).
pub(crate) fn join_hub<L, F>(
    hub: &Arc<Hub>,
    me: &Weak<L>,
    channel: &str,
    unsubscribe: F,
) -> Subscription
where
    L: Send + Sync + 'static,
    F: Fn(Arc<L>, String) -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    let me = me.clone();
    let on_last_leave: OnLastLeave = Arc::new(move |channel: &str| {
        if let (Some(link), Ok(rt)) = (me.upgrade(), tokio::runtime::Handle::try_current()) {
            rt.spawn(unsubscribe(link, channel.to_owned()));
        }
    });
    hub.join(channel, Some(on_last_leave))
}

/// Drops a link's connection (its reader stops; the next use reopens).
fn close(state: &mut LinkState) {
    if let Some(reader) = state.reader.take() {
        reader.abort();
    }
    *state = LinkState::default();
}

/// After the pub/sub connection dropped: reopen it and subscribe every
/// channel that still has waiters, retrying with backoff while there are
/// waiters and the client lives.
/// (Boxed with an explicit `Send`: it is spawned from inside `open`, which
/// it calls, and the compiler cannot see through that cycle.)
fn resubscribe(link: Weak<PubSubLink>) -> BoxFuture<'static, ()> {
    Box::pin(resubscribe_loop(link))
}

async fn resubscribe_loop(link: Weak<PubSubLink>) {
    let mut delay = Duration::from_millis(20);
    loop {
        let Some(link) = link.upgrade() else { return };
        let channels = link.hub.channels();
        if channels.is_empty() {
            return;
        }
        let mut state = link.state.lock().await;
        if link.ensure_subscribed(&mut state, &channels).await.is_ok() {
            drop(state);
            // A release between the drop and now went unseen: look again.
            link.hub.publish_all();
            return;
        }
        drop(state);
        drop(link);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

impl Drop for PubSubLink {
    fn drop(&mut self) {
        if let Some(reader) = self.state.get_mut().reader.take() {
            reader.abort();
        }
    }
}

/// The fence a fair lock's grant carries (its message is the fence, in
/// decimal); `None` for a plain release announcement.
pub(crate) fn grant_of(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.parse().ok()
}
