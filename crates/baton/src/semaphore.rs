//! [`Semaphore`]: at most N holders of a name at once, each with a lease of
//! its own.
//!
//! A permit is a lease like a lock's: the same attempt, the same renewal by
//! the client's one task, the same lost signal, the same release. Only the
//! scripts differ (see [`baton_core::Kind::Semaphore`]), so a [`Permit`] *is*
//! a [`Guard`] and a semaphore is a [`Lock`] whose key holds permits.

use std::future::Future;
use std::time::Duration;

use baton_core::Kind;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::guard::{Guard, Lease};
use crate::lock::Lock;

/// One held permit of a [`Semaphore`]: a lease of its own, renewed in the
/// background, with a fence and a lost signal, released on drop or with
/// [`Guard::release`].
pub type Permit = Guard;

/// A counting semaphore: at most `permits` holders of a name at once, each
/// holding a leased [`Permit`].
///
/// Made by [`Client::semaphore`]. Cheap: nothing is sent until a permit is
/// acquired; an invalid name or permit count is reported then.
///
/// What it guarantees, on one server (or a Sentinel- or Cluster-managed
/// master; it is refused over a Redlock, see [`Error::NotOffered`]):
/// - at most `permits` permits are valid at once, by the server's clock
///   (each permit's deadline is its own, in a sorted set scored by expiry);
/// - a dead holder's permit returns when its lease lapses, with no one
///   having to release it;
/// - every permit carries a fence greater than every earlier permit's of
///   this name (one counter for the name), so storage can refuse a holder
///   whose permit lapsed;
/// - waiters are woken by every release.
///
/// The limit is the acquirer's: an acquire succeeds while fewer than *its*
/// `permits` unexpired permits are held. Lowering the count for a name with
/// holders revokes nothing: new permits wait until the held ones drop below
/// the new count. Raising it admits more at once. Holders with different
/// counts on one name each apply their own.
///
/// It is not fair: a waiter may be overtaken by a newcomer when a permit
/// returns.
///
/// ```
/// # async fn demo() -> Result<(), baton::Error> {
/// let client = baton::Client::in_memory();
/// let exports = client.semaphore("exports", 2);
/// let a = exports.try_acquire().await?.expect("a first permit");
/// let b = exports.try_acquire().await?.expect("a second permit");
/// assert!(exports.try_acquire().await?.is_none(), "two at most");
/// assert!(b.fence() > a.fence());
/// a.release().await?;
/// assert!(exports.try_acquire().await?.is_some(), "a permit returned");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    permits: u32,
    lock: Lock,
}

impl Semaphore {
    pub(crate) fn new(client: Client, name: &str, permits: u32) -> Semaphore {
        Semaphore {
            permits,
            lock: Lock::of_kind(client, name, Kind::Semaphore { permits }),
        }
    }

    /// Each permit's lease length (see [`Lock::ttl`]).
    pub fn ttl(self, ttl: Duration) -> Semaphore {
        self.map(|lock| lock.ttl(ttl))
    }

    /// The longest [`acquire`](Semaphore::acquire) waits for a permit
    /// (see [`Lock::wait`]).
    pub fn wait(self, wait: Duration) -> Semaphore {
        self.map(|lock| lock.wait(wait))
    }

    /// Whether permits are renewed in the background (see
    /// [`Lock::auto_renew`]).
    pub fn auto_renew(self, on: bool) -> Semaphore {
        self.map(|lock| lock.auto_renew(on))
    }

    /// How often a waiter tries again without a release notification
    /// (see [`Lock::retry_interval`]).
    pub fn retry_interval(self, interval: Duration) -> Semaphore {
        self.map(|lock| lock.retry_interval(interval))
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        self.lock.name()
    }

    /// The most permits held at once, as this handle counts.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// Takes a permit if one is free, else `None` ("skip if busy").
    pub async fn try_acquire(&self) -> Result<Option<Permit>> {
        self.lock.try_acquire().await
    }

    /// Takes a permit, waiting while all are held, up to the
    /// [`wait`](Semaphore::wait) limit (see [`Lock::acquire`]).
    pub async fn acquire(&self) -> Result<Permit> {
        self.lock.acquire().await
    }

    /// Acquires a permit, runs `work` while it is renewed, then releases it
    /// (see [`Lock::run`]).
    pub async fn run<F, Fut, T>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        self.lock.run(work).await
    }

    /// The semaphore as a [`Lock`]: the same methods, taking permits. For
    /// code that takes either, such as `baton exec --permits`.
    pub fn into_lock(self) -> Lock {
        self.lock
    }

    fn map(self, f: impl FnOnce(Lock) -> Lock) -> Semaphore {
        Semaphore {
            permits: self.permits,
            lock: f(self.lock),
        }
    }
}

/// Whether a semaphore of `permits` can run on `nodes` servers.
///
/// Over a Redlock it is refused: each permit would stand on a quorum of
/// nodes, and quorums of different permits need not meet on a node that
/// counts them both. With 3 nodes and 2 permits, holders on nodes {1,2},
/// {2,3} and {1,3} leave every node at 2, yet 3 permits are valid.
pub(crate) fn check(permits: u32, nodes: usize) -> Result<()> {
    if permits == 0 {
        return Err(Error::InvalidPermits {
            permits: 0,
            reason: "a semaphore needs at least one permit",
        });
    }
    if nodes > 1 {
        return Err(Error::not_over_redlock(
            "a semaphore",
            nodes,
            "each permit would stand on its own quorum, and quorums of different permits \
             need not meet on a server that counts them both, so more than the permitted \
             number could be valid at once; use one server, Sentinel or Cluster",
        ));
    }
    Ok(())
}
