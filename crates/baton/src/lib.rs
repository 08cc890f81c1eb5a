//! Distributed locks and leases on Redis: safe, fenced, renewed, and woken
//! by pub/sub — from async code or, through [`blocking`], from plain threads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), baton::Error> {
//! use std::time::Duration;
//! let client = baton::Client::connect("redis://127.0.0.1:6379").await?;
//! let lock = client.lock("nightly-report").ttl(Duration::from_secs(10));
//!
//! // Skip the work if another worker is on it:
//! if let Some(guard) = lock.try_acquire().await? {
//!     println!("fence {}", guard.fence());
//!     guard.release().await?;
//! }
//!
//! // Or wait for it (woken by the holder's release), run, release:
//! lock.wait(Duration::from_secs(30))
//!     .run(|lease| async move { /* work, writing with lease.fence() */ })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # How a lock is stored
//! The key is `prefix + name` (prefix `baton:` by default) and holds the
//! owner's token, 128 random bits as 32 hex characters, set with
//! `SET key token NX PX ttl` — the same shape as the Redis locks of other
//! libraries (redis-py `Lock`, Redlock-py, aioredlock, node-redlock,
//! redsync), so Baton's locks and theirs exclude each other on the same key.
//! Beside it: a fence counter (never deleted) and a release channel, both in
//! the lock key's Redis Cluster slot.
//!
//! Acquire is one round trip (one script sets the key and draws the fence);
//! release and extend are one round trip each, and act only if the key still
//! holds our token, so no client can release or extend a lock it does not
//! hold.
//!
//! # Guarantees
//! A lock with a timeout is a **lease**. What holds, and what does not:
//! - **Mutual exclusion, within the lease.** While a guard's lease is valid
//!   by its local monotonic clock ([`Guard::is_held`]), no other client
//!   holds the same lock, provided the server keeps its data (no restart
//!   without persistence, no failover to a replica that missed the write),
//!   and the process is not paused longer than the lease's remaining time.
//! - **Pauses break it; fences catch it.** A process paused (GC, swap,
//!   SIGSTOP, VM migration) past its deadline can wake up believing it still
//!   holds the lock while another does. No lock service can prevent that;
//!   the [`Fence`] makes it harmless: fences strictly increase across
//!   successive holders of a name, so storage that refuses a write whose
//!   fence is lower than the highest it has seen refuses the stale holder.
//! - **Clocks.** Deadlines use the monotonic clock (`Instant`) with a drift
//!   allowance of `ttl/100 + 2 ms`; wall-clock jumps do not matter. The
//!   server's expiry is by the server's clock: a server clock that jumps
//!   forward expires leases early.
//! - **Renewal is best effort and loud.** With auto-renew on, a lease is
//!   renewed about every third of its TTL; if it cannot be (key gone or
//!   taken, server unreachable until shortly before the deadline),
//!   [`Guard::lost`] resolves — before the local deadline passes when the
//!   server is unreachable — and [`Lock::run`] drops the work.
//! - **No resurrection.** Extend and renewal only reset the TTL of a key
//!   that still holds our token; they never re-create an expired lock.
//! - **Fences.** Strictly increasing per name on one server as long as the
//!   counter survives: a server restarted without persistence (or a
//!   failover to a replica that missed increments) can hand out a fence
//!   again. Enable AOF persistence where fences matter.
//! - **Waiting is not fair** unless asked for. Waiters of a plain lock are
//!   woken by release notifications and race; [`Lock::fair`] queues them
//!   in Redis and hands the lock to the first live one.
//! - **Redlock** (several URLs): held while a majority of the configured
//!   nodes agrees; validity as above from before the requests went out.
//!   It relies on the nodes keeping their data (a majority restarted
//!   without persistence can grant a second holder and repeat a fence) and
//!   on bounded drift between the servers' clocks. Fences are settled on a
//!   quorum before a lease is handed out, so they increase across holders.
//!
//! # Layout
//! [`Client`] (a backend) makes [`Lock`]s (a name and options), which
//! make [`Guard`]s (a held lease, released on drop). The other primitives
//! are `Lock`s too, whose keys hold something else: a fair lock
//! ([`Lock::fair`]), a counting [`Semaphore`] (its guards are
//! [`Permit`]s), a [`RwLock`] (its `read()` and `write()` sides). Each has
//! the same leases, renewal, lost signal and fences, on one server,
//! Sentinel or Cluster. [`MemoryStore`] is an in-process backend with the
//! same semantics.
#![deny(missing_docs)]
// One exception, with its reason at the site: the fork handler that keeps a
// forked child from repeating its parent's tokens (random.rs).
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

mod acknowledge;
mod acl;
mod admin;
pub mod blocking;
mod client;
mod cluster;
mod connect;
mod error;
mod fanout;
mod guard;
#[cfg(test)]
mod layering;
mod lock;
mod memory;
mod node;
mod pubsub;
mod random;
mod redact;
mod renew;
mod rwlock;
mod script;
mod semaphore;
mod sentinel;
mod topology;
mod wait;

pub use acl::acl_rules;
pub use admin::{Holder, LockStatus};
pub use baton_core::name::MAX_MULTI_NAMES;
pub use baton_core::{Fence, Kind, NameError};
pub use client::{Client, ClientBuilder, DEFAULT_NODE_TIMEOUT, MAX_NODE_TIMEOUT};
pub use error::{BoxError, Error, NodeError, NodeFailure, Result};
pub use guard::{Guard, Lease, Released};
pub use lock::{Lock, DEFAULT_RETRY_INTERVAL, DEFAULT_TTL, FAIR_RETRY_INTERVAL, MAX_TTL, MIN_TTL};
pub use memory::MemoryStore;
pub use node::Connection;
pub use renew::RenewalStats;
pub use rwlock::RwLock;
pub use semaphore::{Permit, Semaphore};

/// The README's examples, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Compile-time checks: every future and handle a user may move to another
/// task or thread is `Send` (and handles are `Sync`), so `tokio::spawn` works.
#[cfg(test)]
mod send_sync {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn futures_and_handles_can_cross_threads() {
        send_sync::<crate::Client>();
        send_sync::<crate::Lock>();
        send_sync::<crate::Guard>();
        send_sync::<crate::Lease>();
        send_sync::<crate::Error>();
        send_sync::<crate::blocking::Client>();
        send_sync::<crate::blocking::Guard>();
        let client = crate::Client::in_memory();
        let lock = client.lock("x");
        send(&lock.try_acquire());
        send(&lock.acquire());
        send(&lock.run(|lease| async move { lease.fence() }));
        send(&client.status("x"));
        send(&client.force_release("x"));
        send(&crate::Client::connect("redis://127.0.0.1:1"));
        fn guard_futures(guard: &mut crate::Guard) {
            send(&guard.lost());
            send(&guard.extend(std::time::Duration::from_secs(1)));
        }
        fn release_future(guard: crate::Guard) {
            send(&guard.release());
        }
        let _ = (guard_futures, release_future);
    }
}
