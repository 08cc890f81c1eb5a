//! [`RwLock`]: many readers or one writer, never both, writers preferred.
//!
//! Each side is a [`Lock`] with every method of one: a read lease is held
//! like a semaphore's permit (a member of the readers' sorted set, scored by
//! its own expiry), the write lease like a lock (the name's key), and their
//! acquire scripts look at each other's keys (see [`baton_core::RwKeys`]).

use baton_core::Kind;

use crate::client::Client;
use crate::lock::Lock;

/// A read-write lock: any number of read leases at once, or one write
/// lease, never both.
///
/// Made by [`Client::rw_lock`]; [`read`](RwLock::read) and
/// [`write`](RwLock::write) are [`Lock`]s (`ttl`, `wait`, `try_acquire`,
/// `acquire`, `run`, ...), each of whose guards is a lease of its own,
/// renewed by the client's one task, with a lost signal.
///
/// What it guarantees, on one server (or a Sentinel- or Cluster-managed
/// master; it is refused over a Redlock, see [`crate::Error::NotOffered`]):
/// - no write lease is valid while a read lease is, nor two write leases;
/// - **writer-preferring**: a writer that waits holds new readers back (its
///   mark lives three retry intervals without a refresh, so a writer that
///   dies stops blocking readers soon), and the readers already in drain;
/// - a write lease's fence is greater than every earlier write's; a read
///   lease's fence is the last write's (readers share it), so storage can
///   refuse a write whose fence is below what a read saw;
/// - expired readers and writers count for nothing: a holder that dies
///   frees its side when its lease lapses.
///
/// ```
/// # async fn demo() -> Result<(), baton::Error> {
/// let client = baton::Client::in_memory();
/// let config = client.rw_lock("config");
/// let (r1, r2) = (config.read().try_acquire().await?, config.read().try_acquire().await?);
/// assert!(r1.is_some() && r2.is_some(), "readers share");
/// assert!(config.write().try_acquire().await?.is_none(), "no writer beside readers");
/// drop((r1, r2));
/// let writer = config.write().acquire().await?;
/// assert!(config.read().try_acquire().await?.is_none(), "no reader beside the writer");
/// writer.release().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct RwLock {
    read: Lock,
    write: Lock,
}

impl RwLock {
    pub(crate) fn new(client: Client, name: &str) -> RwLock {
        RwLock {
            read: Lock::of_kind(client.clone(), name, Kind::Read),
            write: Lock::of_kind(client, name, Kind::Write { entry_ttl_ms: 0 })
                .retry_interval(crate::DEFAULT_RETRY_INTERVAL),
        }
    }

    /// The read side: its leases share the lock with other readers.
    pub fn read(&self) -> Lock {
        self.read.clone()
    }

    /// The write side: its lease excludes readers and other writers.
    pub fn write(&self) -> Lock {
        self.write.clone()
    }
}
