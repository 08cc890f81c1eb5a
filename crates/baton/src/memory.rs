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
use baton_core::{Keys, Kind, Token};
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
    value: Stored,
    expires: Option<Instant>,
}

/// What a key holds, as Redis's types: a string (a lock's token, a fence
/// counter) or a sorted set (a semaphore's permits).
enum Stored {
    Text(String),
    /// Token → its permit's expiry; the entry expires with the latest.
    Permits(HashMap<String, Instant>),
    /// A fair lock's holder (Redis: a hash with field `holder`).
    Holder(String),
    /// A fair lock's waiters, in arrival order (Redis: a list and two
    /// hashes, kept here as one).
    Queue(std::collections::VecDeque<Queued>),
}

/// One waiter of a fair lock.
struct Queued {
    token: String,
    expires: Instant,
    channel: String,
}

impl Stored {
    fn text(&self) -> Option<&str> {
        match self {
            Stored::Text(text) => Some(text),
            _ => None,
        }
    }
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
            .with(|map| live(map, key).and_then(|e| e.value.text().map(str::to_owned)))
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
                    value: Stored::Text(value.to_owned()),
                    expires,
                },
            )
        });
    }

    /// How many waiters a fair lock's queue at `key` holds, live or lapsed
    /// (Redis: `LLEN`).
    pub fn queue_len(&self, key: &str) -> usize {
        self.node.with(|map| match live(map, key) {
            Some(Entry {
                value: Stored::Queue(queue),
                ..
            }) => queue.len(),
            _ => 0,
        })
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
        live(map, key).is_some_and(|e| e.value.text() == Some(token.as_str()))
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
        grant: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Reply>> {
        Box::pin(async move {
            let now = Instant::now();
            let expires = now + Duration::from_millis(ttl_ms);
            if let Kind::Fair { entry_ttl_ms } = keys.kind {
                let entry_ttl = Duration::from_millis(entry_ttl_ms.into());
                return self.with(|map| fair_acquire(map, keys, token, expires, entry_ttl, grant));
            }
            if let Kind::Read | Kind::Write { .. } = keys.kind {
                return self.with(|map| rw_acquire(map, keys, token, expires, grant.is_some()));
            }
            if keys.kind == Kind::Multi {
                return self.with(|map| multi_acquire(map, keys, token, expires));
            }
            self.with(|map| {
                match (live(map, &keys.lock), keys.kind) {
                    (
                        Some(Entry {
                            value: Stored::Text(holder),
                            expires: at,
                        }),
                        Kind::Lock,
                    ) => {
                        if holder != token.as_str() {
                            let pttl = at.map_or(-1, |at| (at - now).as_millis() as i64);
                            return Ok(Reply::Busy {
                                holder: HolderTtl::from_pttl(pttl),
                                fence: None,
                            });
                        }
                    }
                    (
                        Some(Entry {
                            value: Stored::Permits(held),
                            ..
                        }),
                        Kind::Semaphore { permits },
                    ) => {
                        held.retain(|_, at| *at > now);
                        if !held.contains_key(token.as_str()) && held.len() >= permits as usize {
                            let soonest = held.values().min().copied().unwrap_or(now);
                            return Ok(Reply::Busy {
                                holder: HolderTtl::Expires(soonest - now),
                                fence: None,
                            });
                        }
                    }
                    (None, _) => {}
                    (Some(_), kind) => return Err(wrong_kind(keys, kind)),
                }
                let fence = next_fence(map, &keys.fence)?;
                match keys.kind {
                    Kind::Semaphore { .. } => {
                        hold_in_set(map, &keys.lock, token.as_str(), expires);
                    }
                    // (Fair and read-write kinds took their own paths above.)
                    _ => {
                        let value = Stored::Text(token.as_str().to_owned());
                        let expires = Some(expires);
                        map.insert(keys.lock.clone(), Entry { value, expires });
                    }
                }
                Ok(Reply::Acquired { fence })
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
            let now = Instant::now();
            if let Kind::Fair { entry_ttl_ms } = keys.kind {
                let hand_off = Duration::from_millis(entry_ttl_ms.into());
                let released = self.with(|map| fair_release(map, keys, token, hand_off))?;
                return Ok(match released {
                    None => Found::NotHeld,
                    Some(granted) => {
                        match granted {
                            Some((channel, fence)) => self.hub.publish(&channel, Some(fence)),
                            None if announce => self.hub.publish(&keys.channel, None),
                            None => {}
                        }
                        Found::Deleted
                    }
                });
            }
            if keys.kind == Kind::Multi {
                let (whole, released) = self.with(|map| multi_release(map, keys, token))?;
                if announce {
                    for channel in released {
                        self.hub.publish(channel, None);
                    }
                }
                return Ok(if whole {
                    Found::Deleted
                } else {
                    Found::NotHeld
                });
            }
            let released = self.with(|map| match (live(map, &keys.lock), keys.kind) {
                (None, _) => Ok(false),
                (
                    Some(Entry {
                        value: Stored::Text(holder),
                        ..
                    }),
                    Kind::Lock | Kind::Write { .. },
                ) => Ok(holder == token.as_str() && map.remove(&keys.lock).is_some()),
                (
                    Some(Entry {
                        value: Stored::Permits(held),
                        ..
                    }),
                    Kind::Semaphore { .. } | Kind::Read,
                ) => {
                    let was_valid = held.remove(token.as_str()).is_some_and(|at| at > now);
                    if held.is_empty() {
                        map.remove(&keys.lock);
                    }
                    Ok(was_valid)
                }
                (Some(_), kind) => Err(wrong_kind(keys, kind)),
            })?;
            if released && announce {
                self.hub.publish(&keys.channel, None);
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
                let locks = keys.locks();
                if !locks.iter().all(|l| MemoryNode::holds(map, &l.lock, token)) {
                    return Ok(false);
                }
                for l in locks {
                    raise_fence(map, &l.fence, fence)?;
                }
                Ok(true)
            })
        })
    }

    fn inspect<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Inspection>> {
        Box::pin(async move {
            let now = Instant::now();
            self.with(|map| {
                let (holder, pttl) = match live(map, &keys.lock) {
                    None => (None, -2),
                    Some(Entry {
                        value: Stored::Text(holder) | Stored::Holder(holder),
                        expires,
                    }) => (
                        Some(holder.clone().into_bytes()),
                        expires.map_or(-1, |at| (at - now).as_millis() as i64),
                    ),
                    Some(_) => return Err(wrong_kind(keys, keys.kind)),
                };
                let fence = current_fence(map, &keys.fence);
                Ok(Inspection {
                    holder,
                    pttl,
                    fence,
                })
            })
        })
    }

    fn force_release<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let removed = self.with(|map| match live(map, &keys.lock) {
                None => Ok(None),
                Some(Entry {
                    value: Stored::Text(_) | Stored::Holder(_),
                    ..
                }) => Ok(map.remove(&keys.lock)),
                Some(_) => Err(wrong_kind(keys, keys.kind)),
            })?;
            if removed.is_some() {
                self.hub.publish(&keys.channel, None);
            }
            Ok(removed.and_then(|e| match e.value {
                Stored::Text(holder) | Stored::Holder(holder) => Some(holder.into_bytes()),
                _ => None,
            }))
        })
    }

    fn extend<'a>(&'a self, renewals: &'a [Renewal<'a>]) -> BoxFuture<'a, Vec<Result<bool>>> {
        Box::pin(async move {
            let now = Instant::now();
            self.with(|map| {
                renewals
                    .iter()
                    .map(|(keys, token, ttl_ms)| {
                        let until = now + Duration::from_millis(*ttl_ms);
                        if keys.kind == Kind::Multi {
                            let locks = keys.locks();
                            let ours = locks.iter().all(|l| MemoryNode::holds(map, &l.lock, token));
                            for l in locks.iter().filter(|_| ours) {
                                if let Some(e) = live(map, &l.lock) {
                                    e.expires = Some(until);
                                }
                            }
                            return Ok(ours);
                        }
                        match (live(map, &keys.lock), keys.kind) {
                            (None, _) => Ok(false),
                            (Some(e), Kind::Lock | Kind::Write { .. } | Kind::Multi) => {
                                let ours = e.value.text() == Some(token.as_str());
                                if ours {
                                    e.expires = Some(until);
                                }
                                Ok(ours)
                            }
                            (Some(e), Kind::Fair { .. }) => {
                                let Stored::Holder(holder) = &e.value else {
                                    return Err(wrong_kind(keys, keys.kind));
                                };
                                let ours = holder == token.as_str();
                                if ours {
                                    e.expires = Some(until);
                                }
                                Ok(ours)
                            }
                            (Some(e), Kind::Semaphore { .. } | Kind::Read) => {
                                let Stored::Permits(held) = &mut e.value else {
                                    return Err(wrong_kind(keys, keys.kind));
                                };
                                match held.get_mut(token.as_str()) {
                                    Some(at) if *at > now => *at = until,
                                    _ => return Ok(false),
                                }
                                e.expires = held.values().max().copied();
                                Ok(true)
                            }
                        }
                    })
                    .collect()
            })
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Option<Subscription>>> {
        Box::pin(async move { Ok(Some(self.hub.join(channel, None))) })
    }
}

/// The fence counter at `key`, if it is set (and a counter).
fn current_fence(map: &mut HashMap<String, Entry>, key: &str) -> Option<u64> {
    live(map, key)?.value.text()?.parse().ok()
}

/// Draws the next fence from the counter at `key` (kept with whatever
/// expiry it has, as `INCR` keeps it).
fn next_fence(map: &mut HashMap<String, Entry>, key: &str) -> Result<u64> {
    let (current, expires) = match live(map, key) {
        None => (0, None),
        Some(e) => match e.value.text().map(str::parse::<u64>) {
            Some(Ok(n)) => (n, e.expires),
            _ => return Err(not_a_counter()),
        },
    };
    let fence = current + 1;
    let value = Stored::Text(fence.to_string());
    map.insert(key.to_owned(), Entry { value, expires });
    Ok(fence)
}

/// Lifts the fence counter at `key` to at least `fence` (as the raise
/// script's `SET`; a multi-lock's acquire raises its names' counters so).
fn raise_fence(map: &mut HashMap<String, Entry>, key: &str, fence: u64) -> Result<()> {
    let current =
        live(map, key).map_or(Ok(0), |e| e.value.text().unwrap_or_default().parse::<u64>());
    match current {
        Ok(current) if current >= fence => Ok(()),
        Ok(_) => {
            let expires = live(map, key).and_then(|e| e.expires);
            let value = Stored::Text(fence.to_string());
            map.insert(key.to_owned(), Entry { value, expires });
            Ok(())
        }
        Err(_) => Err(not_a_counter()),
    }
}

fn not_a_counter() -> Error {
    Error::Redis {
        node: "memory".to_owned(),
        source: "baton: fence key is not a counter".into(),
    }
}

/// The error a Redis node gives (`WRONGTYPE`, named) when a name's key
/// holds the other kind of lock.
fn wrong_kind(keys: &Keys, used_as: Kind) -> Error {
    Error::WrongKind {
        key: keys.lock.clone(),
        used_as,
    }
}

/// A multi-lock's acquire, as `multi_acquire.lua`: every lock free or
/// ours, or nothing taken; one fence above each name's earlier ones.
fn multi_acquire(
    map: &mut HashMap<String, Entry>,
    keys: &Keys,
    token: &Token,
    expires: Instant,
) -> Result<Reply> {
    let now = Instant::now();
    for l in keys.locks() {
        match live(map, &l.lock) {
            Some(Entry {
                value: Stored::Text(holder),
                expires: at,
            }) if holder != token.as_str() => {
                let pttl = at.map_or(-1, |at| (at - now).as_millis() as i64);
                return Ok(Reply::Busy {
                    holder: HolderTtl::from_pttl(pttl),
                    fence: None,
                });
            }
            None
            | Some(Entry {
                value: Stored::Text(_),
                ..
            }) => {}
            Some(_) => return Err(wrong_kind(l, Kind::Multi)),
        }
    }
    let mut fence = 0;
    for l in keys.locks() {
        fence = fence.max(next_fence(map, &l.fence)?);
    }
    for l in keys.locks() {
        raise_fence(map, &l.fence, fence)?;
        let value = Stored::Text(token.as_str().to_owned());
        let expires = Some(expires);
        map.insert(l.lock.clone(), Entry { value, expires });
    }
    Ok(Reply::Acquired { fence })
}

/// A multi-lock's release, as `release.lua`'s `multi`: whether every lock
/// was ours, and the channels of those that were (each now deleted).
fn multi_release<'k>(
    map: &mut HashMap<String, Entry>,
    keys: &'k Keys,
    token: &Token,
) -> Result<(bool, Vec<&'k str>)> {
    let mut whole = true;
    let mut released = Vec::new();
    for l in keys.locks() {
        match live(map, &l.lock) {
            Some(Entry {
                value: Stored::Text(holder),
                ..
            }) if holder == token.as_str() => {
                map.remove(&l.lock);
                released.push(l.channel.as_str());
            }
            None
            | Some(Entry {
                value: Stored::Text(_),
                ..
            }) => whole = false,
            Some(_) => return Err(wrong_kind(l, Kind::Multi)),
        }
    }
    Ok((whole, released))
}

/// A fair lock's acquire, as `fair_acquire.lua`.
fn fair_acquire(
    map: &mut HashMap<String, Entry>,
    keys: &Keys,
    token: &Token,
    expires: Instant,
    entry_ttl: Duration,
    grant: Option<&str>,
) -> Result<Reply> {
    let now = Instant::now();
    let queue_key = keys.fair().queue;
    let holder = match live(map, &keys.lock) {
        None => None,
        Some(Entry {
            value: Stored::Holder(holder),
            expires: at,
        }) => {
            if holder == token.as_str() {
                *at = Some(expires);
                let fence = current_fence(map, &keys.fence).unwrap_or_default();
                return Ok(Reply::Acquired { fence });
            }
            Some(at.map_or(-1, |at| (at - now).as_millis() as i64))
        }
        Some(_) => return Err(wrong_kind(keys, keys.kind)),
    };
    let head = first_live_waiter(map, &queue_key, now)?;
    if holder.is_none() && head.as_ref().is_none_or(|(t, _)| t == token.as_str()) {
        let fence = next_fence(map, &keys.fence)?;
        let value = Stored::Holder(token.as_str().to_owned());
        map.insert(
            keys.lock.clone(),
            Entry {
                value,
                expires: Some(expires),
            },
        );
        if head.is_some() {
            pop_waiter(map, &queue_key);
        }
        return Ok(Reply::Acquired { fence });
    }
    if let Some(channel) = grant {
        let entry = map.entry(queue_key.clone()).or_insert_with(|| Entry {
            value: Stored::Queue(Default::default()),
            expires: None,
        });
        if let Stored::Queue(queue) = &mut entry.value {
            let until = now + entry_ttl;
            match queue.iter_mut().find(|q| q.token == token.as_str()) {
                Some(queued) => queued.expires = until,
                None => queue.push_back(Queued {
                    token: token.as_str().to_owned(),
                    expires: until,
                    channel: channel.to_owned(),
                }),
            }
            entry.expires = Some(until);
        }
    }
    let wait_ms = match (holder, head) {
        (Some(pttl), _) => pttl,
        (None, Some((_, head_expires))) => (head_expires - now).as_millis() as i64,
        (None, None) => 0,
    };
    Ok(Reply::Busy {
        holder: HolderTtl::from_pttl(wait_ms),
        fence: Some(current_fence(map, &keys.fence).unwrap_or_default()),
    })
}

/// A fair lock's release, as `release.lua`'s fair branch: `None` if the
/// lock was not ours; else `Some` with the grant channel of the waiter it
/// was handed to and its fence, if it was handed on.
fn fair_release(
    map: &mut HashMap<String, Entry>,
    keys: &Keys,
    token: &Token,
    hand_off: Duration,
) -> Result<Option<Option<(String, u64)>>> {
    let now = Instant::now();
    match live(map, &keys.lock) {
        Some(Entry {
            value: Stored::Holder(holder),
            ..
        }) if holder == token.as_str() => {}
        Some(Entry {
            value: Stored::Holder(_),
            ..
        })
        | None => {
            // Not the holder: a waiter leaving takes its entry out.
            if let Some(Entry {
                value: Stored::Queue(queue),
                ..
            }) = live(map, &keys.fair().queue)
            {
                queue.retain(|q| q.token != token.as_str());
            }
            return Ok(None);
        }
        Some(_) => return Err(wrong_kind(keys, keys.kind)),
    }
    let queue_key = keys.fair().queue;
    if first_live_waiter(map, &queue_key, now)?.is_none() {
        map.remove(&keys.lock);
        return Ok(Some(None));
    }
    let fence = next_fence(map, &keys.fence)?;
    let next = pop_waiter(map, &queue_key).expect("a live first waiter");
    let value = Stored::Holder(next.token);
    map.insert(
        keys.lock.clone(),
        Entry {
            value,
            expires: Some(now + hand_off),
        },
    );
    Ok(Some(Some((next.channel, fence))))
}

/// Drops the waiters at the head of the queue whose entries lapsed; the
/// first live one's token and entry expiry.
fn first_live_waiter(
    map: &mut HashMap<String, Entry>,
    queue_key: &str,
    now: Instant,
) -> Result<Option<(String, Instant)>> {
    let Some(entry) = live(map, queue_key) else {
        return Ok(None);
    };
    let Stored::Queue(queue) = &mut entry.value else {
        return Err(Error::Redis {
            node: "memory".to_owned(),
            source: "WRONGTYPE a fair lock's queue holds something else".into(),
        });
    };
    while queue.front().is_some_and(|q| q.expires <= now) {
        queue.pop_front();
    }
    let head = queue.front().map(|q| (q.token.clone(), q.expires));
    if queue.is_empty() {
        map.remove(queue_key);
    }
    Ok(head)
}

/// Takes the first waiter off the queue (an empty queue is removed, as
/// Redis removes an empty list).
fn pop_waiter(map: &mut HashMap<String, Entry>, queue_key: &str) -> Option<Queued> {
    let entry = live(map, queue_key)?;
    let Stored::Queue(queue) = &mut entry.value else {
        return None;
    };
    let first = queue.pop_front();
    if queue.is_empty() {
        map.remove(queue_key);
    }
    first
}

/// A read-write lock's acquire, as `read_acquire.lua` and
/// `write_acquire.lua`; `queued`: a waiting writer marks itself.
fn rw_acquire(
    map: &mut HashMap<String, Entry>,
    keys: &Keys,
    token: &Token,
    expires: Instant,
    queued: bool,
) -> Result<Reply> {
    let now = Instant::now();
    let rw = keys.rw();
    let busy = |ms: Duration| Reply::Busy {
        holder: HolderTtl::Expires(ms),
        fence: None,
    };
    let soonest = |map: &mut HashMap<String, Entry>, key: &str| -> Result<Option<Instant>> {
        match live(map, key) {
            None => Ok(None),
            Some(Entry {
                value: Stored::Permits(held),
                ..
            }) => {
                held.retain(|_, at| *at > now);
                Ok(held.values().min().copied())
            }
            Some(_) => Err(wrong_kind(keys, keys.kind)),
        }
    };
    let waiting = soonest(map, &rw.waiting)?;
    match keys.kind {
        Kind::Read => {
            match live(map, &rw.writer) {
                None => {}
                Some(Entry {
                    value: Stored::Text(_),
                    expires: at,
                }) => {
                    return Ok(busy(at.map_or(Duration::ZERO, |at| at - now)));
                }
                Some(_) => return Err(wrong_kind(keys, keys.kind)),
            }
            if let Some(at) = waiting {
                return Ok(busy(at - now));
            }
            soonest(map, &keys.lock)?;
            hold_in_set(map, &keys.lock, token.as_str(), expires);
            let fence = current_fence(map, &keys.fence).unwrap_or_default();
            Ok(Reply::Acquired { fence })
        }
        Kind::Write { entry_ttl_ms } => {
            let wait = match live(map, &keys.lock) {
                Some(Entry {
                    value: Stored::Text(holder),
                    expires: at,
                }) if holder != token.as_str() => Some(at.map_or(Duration::ZERO, |at| at - now)),
                Some(Entry {
                    value: Stored::Text(_),
                    ..
                })
                | None => soonest(map, &rw.readers)?.map(|at| at - now),
                Some(_) => return Err(wrong_kind(keys, keys.kind)),
            };
            if let Some(wait) = wait {
                if queued {
                    let mark = now + Duration::from_millis(entry_ttl_ms.into());
                    hold_in_set(map, &rw.waiting, token.as_str(), mark);
                }
                return Ok(busy(wait));
            }
            let fence = next_fence(map, &keys.fence)?;
            let value = Stored::Text(token.as_str().to_owned());
            map.insert(
                keys.lock.clone(),
                Entry {
                    value,
                    expires: Some(expires),
                },
            );
            if let Some(Entry {
                value: Stored::Permits(marks),
                ..
            }) = live(map, &rw.waiting)
            {
                marks.remove(token.as_str());
                if marks.is_empty() {
                    map.remove(&rw.waiting);
                }
            }
            Ok(Reply::Acquired { fence })
        }
        _ => unreachable!("only a read-write lock's kinds come here"),
    }
}

/// Puts `member` in the sorted set at `key` until `until` (the set expiring
/// with its latest member), as `ZADD` + `PEXPIREAT` do.
fn hold_in_set(map: &mut HashMap<String, Entry>, key: &str, member: &str, until: Instant) {
    let entry = map.entry(key.to_owned()).or_insert_with(|| Entry {
        value: Stored::Permits(HashMap::new()),
        expires: None,
    });
    if let Stored::Permits(held) = &mut entry.value {
        held.insert(member.to_owned(), until);
        entry.expires = held.values().max().copied();
    }
}
