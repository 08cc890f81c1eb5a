//! The embedded, in-process backend: the same semantics as the Lua scripts,
//! on a map in memory.
//!
//! For tests and single-process applications. Expiry uses tokio's clock, so
//! tests can pause and advance time instead of sleeping. It must behave
//! exactly like a Redis node to the lock logic: the behaviour tests run
//! against both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::backoff::HolderTtl;

use baton_core::acquire::Reply;
use baton_core::vote::Found;
use baton_core::{Keys, Token};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::node::{BoxFuture, Inspection, Node, Renewal};
use crate::wait::{Hub, Subscription};
use crate::Client;

/// An in-process lock store, shared by every [`Client`] made from it.
///
/// Locks taken through clients of one store exclude each other exactly as
/// through one Redis server; nothing leaves the process. Cloning the store
/// shares it.
///
/// ```
/// # async fn demo() -> Result<(), baton::Error> {
/// let store = baton::MemoryStore::new();
/// let (a, b) = (store.client(), store.client());
/// let held = a.lock("job").try_acquire().await?.expect("free");
/// assert!(b.lock("job").try_acquire().await?.is_none(), "busy for the other client");
/// assert!(store.get("baton:job").is_some(), "the key holds the token");
/// held.release().await?;
/// assert_eq!(store.keys().len(), 1, "only the fence counter is left");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    node: Arc<MemoryNode>,
}

#[derive(Default)]
struct MemoryNode {
    keys: Mutex<HashMap<String, Entry>>,
    hub: Arc<Hub>,
}

struct Entry {
    value: String,
    expires: Option<Instant>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A client of this store (default prefix `baton:`).
    pub fn client(&self) -> Client {
        Client::from_nodes(vec![Arc::clone(&self.node) as Arc<dyn Node>])
    }
}

/// Inspection helpers, for tests of code built on Baton (feature
/// `testing`): the store's keys as a test would look at a server's.
#[cfg(feature = "testing")]
impl MemoryStore {
    /// The live keys (lock keys and fence counters), sorted.
    pub fn keys(&self) -> Vec<String> {
        let now = Instant::now();
        let mut keys: Vec<String> = self.node.with(|map| {
            map.retain(|_, e| e.expires.is_none_or(|at| at > now));
            map.keys().cloned().collect()
        });
        keys.sort();
        keys
    }

    /// The value of a live key.
    pub fn get(&self, key: &str) -> Option<String> {
        self.node
            .with(|map| live(map, key).map(|e| e.value.clone()))
    }

    /// The remaining time to live of a live key; `None` if absent or without expiry.
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        self.node
            .with(|map| live(map, key).and_then(|e| e.expires).map(|at| at - now))
    }

    /// Sets a key, as another client (or library) would: for tests of
    /// foreign holders and interoperability.
    pub fn set(&self, key: &str, value: &str, ttl: Option<Duration>) {
        let expires = ttl.map(|ttl| Instant::now() + ttl);
        self.node.with(|map| {
            map.insert(
                key.to_owned(),
                Entry {
                    value: value.to_owned(),
                    expires,
                },
            )
        });
    }

    /// Deletes a key; `true` if it existed.
    pub fn delete(&self, key: &str) -> bool {
        self.node
            .with(|map| live(map, key).is_some() && map.remove(key).is_some())
    }
}

impl MemoryNode {
    /// Runs `f` on the map. Keys expire lazily, as in Redis: a read of an
    /// expired key through [`live`] removes it first.
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }

    fn holds(map: &mut HashMap<String, Entry>, key: &str, token: &Token) -> bool {
        live(map, key).is_some_and(|e| e.value == token.as_str())
    }
}

/// The entry at `key` if it has not expired (an expired one is removed).
fn live<'m>(map: &'m mut HashMap<String, Entry>, key: &str) -> Option<&'m mut Entry> {
    let now = Instant::now();
    if map.get(key)?.expires.is_some_and(|at| at <= now) {
        map.remove(key);
        return None;
    }
    map.get_mut(key)
}

impl Node for MemoryNode {
    fn name(&self) -> &str {
        "memory"
    }

    fn acquire<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Reply>> {
        Box::pin(async move {
            let expires = Some(Instant::now() + Duration::from_millis(ttl_ms));
            self.with(|map| {
                if let Some(holder) = live(map, &keys.lock) {
                    if holder.value != token.as_str() {
                        let pttl = holder
                            .expires
                            .map_or(-1, |at| (at - Instant::now()).as_millis() as i64);
                        return Ok(Reply::Busy {
                            holder: HolderTtl::from_pttl(pttl),
                        });
                    }
                }
                let fence = match live(map, &keys.fence) {
                    None => 1,
                    Some(e) => match e.value.parse::<i64>() {
                        Ok(n) => n + 1,
                        Err(_) => {
                            return Err(Error::Redis {
                                node: "memory".to_owned(),
                                source: "baton: fence key is not a counter".into(),
                            })
                        }
                    },
                };
                map.insert(
                    keys.lock.clone(),
                    Entry {
                        value: token.as_str().to_owned(),
                        expires,
                    },
                );
                let persist = live(map, &keys.fence).and_then(|e| e.expires);
                map.insert(
                    keys.fence.clone(),
                    Entry {
                        value: fence.to_string(),
                        expires: persist,
                    },
                );
                Ok(Reply::Acquired {
                    fence: fence as u64,
                })
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
            let released = self.with(|map| {
                MemoryNode::holds(map, &keys.lock, token) && map.remove(&keys.lock).is_some()
            });
            if released && announce {
                self.hub.publish(&keys.channel);
            }
            Ok(if released {
                Found::Deleted
            } else {
                Found::NotHeld
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
            self.with(|map| {
                if !MemoryNode::holds(map, &keys.lock, token) {
                    return Ok(false);
                }
                let current = live(map, &keys.fence).map_or(Ok(0), |e| e.value.parse::<u64>());
                match current {
                    Ok(current) if current >= fence => {}
                    Ok(_) => {
                        let expires = live(map, &keys.fence).and_then(|e| e.expires);
                        let value = fence.to_string();
                        map.insert(keys.fence.clone(), Entry { value, expires });
                    }
                    Err(_) => {
                        return Err(Error::Redis {
                            node: "memory".to_owned(),
                            source: "baton: fence key is not a counter".into(),
                        })
                    }
                }
                Ok(true)
            })
        })
    }

    fn inspect<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Inspection>> {
        Box::pin(async move {
            let now = Instant::now();
            Ok(self.with(|map| {
                let (holder, pttl) = match live(map, &keys.lock) {
                    None => (None, -2),
                    Some(e) => (
                        Some(e.value.clone().into_bytes()),
                        e.expires.map_or(-1, |at| (at - now).as_millis() as i64),
                    ),
                };
                let fence = live(map, &keys.fence).and_then(|e| e.value.parse().ok());
                Inspection {
                    holder,
                    pttl,
                    fence,
                }
            }))
        })
    }

    fn force_release<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let removed = self.with(|map| {
                live(map, &keys.lock)
                    .is_some()
                    .then(|| map.remove(&keys.lock))
                    .flatten()
            });
            if removed.is_some() {
                self.hub.publish(&keys.channel);
            }
            Ok(removed.map(|e| e.value.into_bytes()))
        })
    }

    fn extend<'a>(&'a self, renewals: &'a [Renewal<'a>]) -> BoxFuture<'a, Vec<Result<bool>>> {
        Box::pin(async move {
            let now = Instant::now();
            self.with(|map| {
                renewals
                    .iter()
                    .map(|(keys, token, ttl_ms)| {
                        if !MemoryNode::holds(map, &keys.lock, token) {
                            return Ok(false);
                        }
                        if let Some(e) = live(map, &keys.lock) {
                            e.expires = Some(now + Duration::from_millis(*ttl_ms));
                        }
                        Ok(true)
                    })
                    .collect()
            })
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Option<Subscription>>> {
        Box::pin(async move { Ok(Some(self.hub.join(channel, None))) })
    }
}
