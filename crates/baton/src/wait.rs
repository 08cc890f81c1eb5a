//! Release notifications, and the wait that uses them with a timed fallback.
//!
//! A [`Hub`] maps release channels to watch counters; a backend bumps a
//! channel's counter when it sees a release (the Redis node from its pub/sub
//! connection, the memory node directly). A [`Subscription`] is a receiver on
//! one counter: a bump that happens after subscribing is never missed, even
//! if nobody was awaiting at that moment — which is what lets a waiter
//! subscribe, *then* retry, *then* wait, without a gap.
//!
//! This module never decides how long to wait: that is
//! [`baton_core::backoff`]'s job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::select_all;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::fanout::LateSubscriptions;

/// Called with a channel's name when its last subscriber leaves.
pub(crate) type OnLastLeave = Arc<dyn Fn(&str) + Send + Sync>;

/// Release channels with at least one subscriber.
#[derive(Default)]
pub(crate) struct Hub {
    channels: Mutex<HashMap<String, Channel>>,
}

struct Channel {
    bumps: watch::Sender<Bump>,
    subscribers: usize,
}

/// A channel's count of releases seen, and the fence the last one carried:
/// a fair lock's grant says which fence its new holder has.
#[derive(Debug, Clone, Copy, Default)]
struct Bump {
    seen: u64,
    grant: Option<u64>,
}

impl Hub {
    /// Subscribes to `channel`; `on_last_leave` runs when the last
    /// subscriber of the channel is dropped.
    pub(crate) fn join(
        self: &Arc<Self>,
        channel: &str,
        on_last_leave: Option<OnLastLeave>,
    ) -> Subscription {
        let mut channels = lock(&self.channels);
        let entry = channels
            .entry(channel.to_owned())
            .or_insert_with(|| Channel {
                bumps: watch::Sender::new(Bump::default()),
                subscribers: 0,
            });
        entry.subscribers += 1;
        Subscription {
            bumps: entry.bumps.subscribe(),
            hub: Arc::clone(self),
            channel: channel.to_owned(),
            on_last_leave,
            also: Vec::new(),
        }
    }

    /// Wakes the subscribers of `channel` (a release was seen); `grant`:
    /// the fence a fair lock's hand-off carried, if the message was one.
    pub(crate) fn publish(&self, channel: &str, grant: Option<u64>) {
        if let Some(entry) = lock(&self.channels).get(channel) {
            entry.bumps.send_modify(|b| {
                b.seen += 1;
                b.grant = grant;
            });
        }
    }

    /// Wakes every subscriber: notifications may have been lost (the
    /// connection that carried them dropped), so everyone should look again.
    pub(crate) fn publish_all(&self) {
        for entry in lock(&self.channels).values() {
            entry.bumps.send_modify(|b| {
                b.seen += 1;
                b.grant = None;
            });
        }
    }

    /// The channels that have subscribers.
    pub(crate) fn channels(&self) -> Vec<String> {
        lock(&self.channels).keys().cloned().collect()
    }

    /// True while `channel` has subscribers.
    pub(crate) fn has_subscribers(&self, channel: &str) -> bool {
        lock(&self.channels).contains_key(channel)
    }

    fn leave(&self, channel: &str) -> bool {
        let mut channels = lock(&self.channels);
        let Some(entry) = channels.get_mut(channel) else {
            return false;
        };
        entry.subscribers -= 1;
        if entry.subscribers == 0 {
            channels.remove(channel);
            return true;
        }
        false
    }
}

/// One subscriber's view of a release channel (and of the channels of
/// [`Subscription::and`]). Unsubscribes on drop.
pub(crate) struct Subscription {
    bumps: watch::Receiver<Bump>,
    hub: Arc<Hub>,
    channel: String,
    on_last_leave: Option<OnLastLeave>,
    /// More channels of the same node heard as one: a multi-lock's waiter
    /// is woken by the release of any of its names.
    also: Vec<Subscription>,
}

impl Subscription {
    /// This subscription and `other` (of the same node) as one, woken by
    /// a release on either.
    pub(crate) fn and(mut self, other: Subscription) -> Subscription {
        self.also.push(other);
        self
    }

    /// Counts every release seen so far as seen.
    fn forget_past(&mut self) {
        self.bumps.borrow_and_update();
        for other in &mut self.also {
            other.forget_past();
        }
    }

    /// Resolves at the first release seen since the last call (or since
    /// subscribing), with the fence it granted, if it was a grant.
    async fn released(&mut self) -> Option<u64> {
        let Subscription { bumps, also, .. } = self;
        if also.is_empty() {
            return changed(bumps).await;
        }
        let every = std::iter::once(bumps).chain(also.iter_mut().map(|s| &mut s.bumps));
        select_all(every.map(|bumps| Box::pin(changed(bumps))))
            .await
            .0
    }
}

/// The next bump of one channel, with the fence it granted, if any.
async fn changed(bumps: &mut watch::Receiver<Bump>) -> Option<u64> {
    if bumps.changed().await.is_err() {
        // The channel cannot be dropped while we hold it; never spin.
        std::future::pending::<()>().await;
    }
    bumps.borrow_and_update().grant
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.hub.leave(&self.channel) {
            if let Some(on_last_leave) = &self.on_last_leave {
                on_last_leave(&self.channel);
            }
        }
    }
}

/// After the first node announces a release, how long a waiter waits for
/// the announcements of a quorum of nodes before it tries anyway.
const QUORUM_GRACE: Duration = Duration::from_millis(50);

/// A waiter's subscriptions to one lock's release channel on every node
/// that supports notifications.
pub(crate) struct Waiter {
    subscriptions: Vec<Subscription>,
    /// Subscriptions of slow nodes, joining as they arrive.
    late: Option<LateSubscriptions>,
    /// How many nodes' announcements make a release certain: a quorum.
    quorum: usize,
}

impl Waiter {
    pub(crate) fn new(
        subscriptions: Vec<Subscription>,
        late: Option<LateSubscriptions>,
        quorum: usize,
    ) -> Waiter {
        Waiter {
            subscriptions,
            late,
            quorum,
        }
    }

    /// Counts every announcement so far as heard: a waiter taken from
    /// [`IdleGrants`] starts from now.
    fn forget_past(&mut self) {
        for subscription in &mut self.subscriptions {
            subscription.forget_past();
        }
    }

    /// True when at least one node will announce releases.
    pub(crate) fn is_notified(&self) -> bool {
        !self.subscriptions.is_empty() || self.late.is_some()
    }

    /// Waits for a release notification, or `fallback`, whichever comes
    /// first. A fair lock's grant ends the wait at once and yields the
    /// fence it handed over.
    ///
    /// Over several nodes a release is announced by each node it reaches,
    /// a moment apart. Trying at the first announcement would race the
    /// release on the others, and a round split between a freed node and a
    /// still-held one must then wait for every node to answer (a node
    /// timeout, if one is silent). So once one node has announced, the wait
    /// goes on for the announcements of a quorum of the subscribed nodes,
    /// for at most [`QUORUM_GRACE`].
    pub(crate) async fn wait(&mut self, fallback: Duration) -> Option<u64> {
        let deadline = tokio::time::sleep(fallback);
        tokio::pin!(deadline);
        let mut announced: Vec<bool> = Vec::new();
        let mut grace: Option<Instant> = None;
        loop {
            announced.resize(self.subscriptions.len(), false);
            let heard = announced.iter().filter(|&&a| a).count();
            if heard > 0 && heard >= self.quorum.min(self.subscriptions.len()) {
                return None;
            }
            let Waiter {
                subscriptions,
                late,
                ..
            } = self;
            let released = async {
                if subscriptions.is_empty() {
                    std::future::pending::<()>().await;
                }
                let (grant, node, _) =
                    select_all(subscriptions.iter_mut().map(|s| Box::pin(s.released()))).await;
                (node, grant)
            };
            let joined = async {
                match late {
                    Some(late) => late.recv().await,
                    None => std::future::pending().await,
                }
            };
            let grace_over = async {
                match grace {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut deadline => return None,
                () = grace_over => return None,
                (node, grant) = released => {
                    if grant.is_some() {
                        // A fair lock's grant names its one recipient: no
                        // quorum to wait for.
                        return grant;
                    }
                    announced[node] = true;
                    grace.get_or_insert_with(|| Instant::now() + QUORUM_GRACE);
                }
                joined = joined => match joined {
                    Some(subscription) => self.subscriptions.push(subscription),
                    None => self.late = None,
                },
            }
        }
    }
}

/// How many idle grant channels a client keeps per fair lock, and for how
/// many locks: bounded, since each is a subscription on the server.
const IDLE_PER_LOCK: usize = 16;
const IDLE_LOCKS: usize = 64;

/// A client's idle grant channels: a fair waiter's own channel with its
/// subscription, kept after the acquire that used it won (its queue entry
/// is gone then) for the next waiter of the same lock, so that a waiting
/// acquire sends no `SUBSCRIBE` (a round trip on the client's one pub/sub
/// connection, which every waiter of the client shares) and no
/// `UNSUBSCRIBE` after. Reuse is safe because a grant counts only if its
/// fence is above the counter the waiter's own queued attempt saw
/// ([`baton_core::lease::LeaseState::handed`]): a late grant meant for the
/// channel's earlier user is not. A channel whose acquire ended any other
/// way (its entry may still be queued) is never reused.
#[derive(Default)]
pub(crate) struct IdleGrants {
    idle: Mutex<HashMap<String, Vec<IdleGrant>>>,
}

/// A grant channel and the waiter subscribed to it.
type IdleGrant = (Arc<str>, Waiter);

impl IdleGrants {
    /// An idle grant channel of the lock at `key`, its past announcements
    /// counted as heard.
    pub(crate) fn take(&self, key: &str) -> Option<IdleGrant> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(key)?;
        let mut taken = list.pop();
        if list.is_empty() {
            idle.remove(key);
        }
        if let Some((_, waiter)) = &mut taken {
            waiter.forget_past();
        }
        taken
    }

    /// Keeps `channel` (subscribed through `waiter`) for the lock at `key`,
    /// unless as many are kept already (then it is dropped: unsubscribed).
    pub(crate) fn put(&self, key: &str, channel: Arc<str>, waiter: Waiter) {
        let mut idle = lock(&self.idle);
        if !idle.contains_key(key) && idle.len() >= IDLE_LOCKS {
            return;
        }
        let list = idle.entry(key.to_owned()).or_default();
        if list.len() < IDLE_PER_LOCK {
            list.push((channel, waiter));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent
    // (every update is a single insert/remove/increment), so poison is moot.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_release_before_the_wait_is_not_missed() {
        let hub = Arc::new(Hub::default());
        let mut waiter = Waiter::new(vec![hub.join("c", None)], None, 1);
        hub.publish("c", None);
        let start = tokio::time::Instant::now();
        waiter.wait(Duration::from_secs(30)).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "woken at once, not by the fallback"
        );
        waiter.wait(Duration::from_secs(30)).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(30),
            "no second wake-up without a second release"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn subscriptions_joined_as_one_wake_on_a_release_of_either() {
        let hub = Arc::new(Hub::default());
        let both = hub.join("a", None).and(hub.join("b", None));
        let mut waiter = Waiter::new(vec![both], None, 1);
        hub.publish("b", None);
        let start = tokio::time::Instant::now();
        waiter.wait(Duration::from_secs(30)).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "woken by the second channel"
        );
        hub.publish("a", None);
        waiter.wait(Duration::from_secs(30)).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "and by the first");
        drop(waiter);
        assert!(!hub.has_subscribers("a") && !hub.has_subscribers("b"));
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_is_reported_once() {
        let hub = Arc::new(Hub::default());
        let left = Arc::new(Mutex::new(Vec::<String>::new()));
        let record: OnLastLeave = {
            let left = Arc::clone(&left);
            Arc::new(move |c: &str| lock(&left).push(c.to_owned()))
        };
        let a = hub.join("c", Some(Arc::clone(&record)));
        let b = hub.join("c", Some(record));
        drop(a);
        assert!(hub.has_subscribers("c"));
        drop(b);
        assert!(!hub.has_subscribers("c"));
        assert_eq!(*lock(&left), vec!["c".to_owned()]);
    }
}
