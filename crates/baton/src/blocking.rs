//! The blocking API: the same shape as the async one, for code without an
//! async runtime.
//!
//! A [`Client`] owns a small tokio runtime (one worker thread) on which the
//! async client runs, so leases keep being renewed while your thread works.
//! Like `reqwest::blocking`, these calls must not be made from inside an
//! async runtime (they would block it; tokio panics to say so).
//!
//! ```
//! # fn demo() -> Result<(), baton::Error> {
//! let client = baton::blocking::Client::in_memory();
//! if let Some(guard) = client.lock("nightly-report").try_acquire()? {
//!     println!("fence {}", guard.fence());
//!     drop(guard); // releases
//! }
//! # Ok(()) }
//! # demo().unwrap();
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};
use crate::{Fence, Lease, Released};

/// A blocking handle to a lock backend (see [`crate::Client`]).
#[derive(Clone)]
pub struct Client {
    client: crate::Client,
    runtime: Shared,
}

/// The runtime shared by a blocking client and its locks and guards.
///
/// Tokio panics if a runtime is dropped inside an async context; the last
/// holder dropped there hands the runtime to a plain thread to drop.
#[derive(Clone)]
struct Shared(Option<Arc<Runtime>>);

impl Shared {
    fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.0
            .as_ref()
            .expect("present until dropped")
            .block_on(fut)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                std::thread::spawn(move || drop(runtime));
            }
        }
    }
}

impl Client {
    /// Connects to the Redis server at `url` (see [`crate::Client::connect`]).
    pub fn connect(url: &str) -> Result<Client> {
        let runtime = runtime()?;
        let client = runtime.block_on(crate::Client::connect(url))?;
        Ok(Client::wrap(client, runtime))
    }

    /// A client of a fresh in-process store (see [`crate::Client::in_memory`]).
    pub fn in_memory() -> Client {
        Client::from_async(crate::Client::in_memory()).expect("a runtime for the in-memory client")
    }

    /// Wraps an async client, giving it a runtime of its own.
    pub fn from_async(client: crate::Client) -> Result<Client> {
        Ok(Client::wrap(client, runtime()?))
    }

    fn wrap(client: crate::Client, runtime: Runtime) -> Client {
        Client {
            client,
            runtime: Shared(Some(Arc::new(runtime))),
        }
    }

    /// A lock named `name` (see [`crate::Client::lock`]).
    pub fn lock(&self, name: &str) -> Lock {
        Lock {
            lock: self.client.lock(name),
            runtime: self.runtime.clone(),
        }
    }

    /// A counting semaphore named `name` with `permits` permits (see
    /// [`crate::Client::semaphore`]): a blocking [`Lock`] whose guards are
    /// permits.
    ///
    /// ```
    /// let client = baton::blocking::Client::in_memory();
    /// let exports = client.semaphore("exports", 1);
    /// let permit = exports.try_acquire()?.expect("free");
    /// assert!(exports.try_acquire()?.is_none(), "one at most");
    /// permit.release()?;
    /// # Ok::<(), baton::Error>(())
    /// ```
    pub fn semaphore(&self, name: &str, permits: u32) -> Lock {
        Lock {
            lock: self.client.semaphore(name, permits).into_lock(),
            runtime: self.runtime.clone(),
        }
    }

    /// A read-write lock named `name` (see [`crate::Client::rw_lock`]): its
    /// read and write sides, as blocking [`Lock`]s.
    ///
    /// ```
    /// let client = baton::blocking::Client::in_memory();
    /// let (read, write) = client.rw_lock("config");
    /// let reader = read.try_acquire()?.expect("free");
    /// assert!(write.try_acquire()?.is_none(), "no writer beside a reader");
    /// reader.release()?;
    /// # Ok::<(), baton::Error>(())
    /// ```
    pub fn rw_lock(&self, name: &str) -> (Lock, Lock) {
        let rw = self.client.rw_lock(name);
        let side = |lock| Lock {
            lock,
            runtime: self.runtime.clone(),
        };
        (side(rw.read()), side(rw.write()))
    }

    /// A multi-lock of `names`, taken all or none (see
    /// [`crate::Client::multi_lock`]).
    ///
    /// ```
    /// let client = baton::blocking::Client::in_memory();
    /// let both = client.multi_lock(&["from", "to"]);
    /// let guard = both.try_acquire()?.expect("free");
    /// assert!(client.lock("to").try_acquire()?.is_none(), "held with the other");
    /// guard.release()?;
    /// # Ok::<(), baton::Error>(())
    /// ```
    pub fn multi_lock(&self, names: &[&str]) -> Lock {
        Lock {
            lock: self.client.multi_lock(names),
            runtime: self.runtime.clone(),
        }
    }
}

fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("baton")
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })
}

/// A blocking named lock (see [`crate::Lock`]).
#[derive(Clone)]
pub struct Lock {
    lock: crate::Lock,
    runtime: Shared,
}

impl Lock {
    /// The lease length (see [`crate::Lock::ttl`]).
    pub fn ttl(mut self, ttl: Duration) -> Lock {
        self.lock = self.lock.ttl(ttl);
        self
    }

    /// How long [`acquire`](Lock::acquire) may wait (see [`crate::Lock::wait`]).
    pub fn wait(mut self, wait: Duration) -> Lock {
        self.lock = self.lock.wait(wait);
        self
    }

    /// Background renewal on or off (see [`crate::Lock::auto_renew`]).
    pub fn auto_renew(mut self, on: bool) -> Lock {
        self.lock = self.lock.auto_renew(on);
        self
    }

    /// The fallback retry interval (see [`crate::Lock::retry_interval`]).
    pub fn retry_interval(mut self, interval: Duration) -> Lock {
        self.lock = self.lock.retry_interval(interval);
        self
    }

    /// One attempt (see [`crate::Lock::try_acquire`]).
    pub fn try_acquire(&self) -> Result<Option<Guard>> {
        let guard = self.runtime.block_on(self.lock.try_acquire())?;
        Ok(guard.map(|g| self.wrap(g)))
    }

    /// Takes the lock, waiting (see [`crate::Lock::acquire`]).
    pub fn acquire(&self) -> Result<Guard> {
        let guard = self.runtime.block_on(self.lock.acquire())?;
        Ok(self.wrap(guard))
    }

    /// Acquires, runs `work` on this thread, releases. The lease is renewed
    /// meanwhile; a thread cannot be interrupted, so if the lease was lost
    /// while `work` ran, this returns [`Error::Lost`] once it finishes —
    /// `work` should check [`Lease::is_held`] at safe points.
    pub fn run<T>(&self, work: impl FnOnce(&Lease) -> T) -> Result<T> {
        let guard = self.acquire()?;
        let value = work(guard.lease());
        match guard.release()? {
            Released::Released => Ok(value),
            Released::AlreadyExpired => Err(Error::Lost {
                name: self.lock.name().to_owned(),
            }),
        }
    }

    fn wrap(&self, guard: crate::Guard) -> Guard {
        Guard {
            guard: Some(guard),
            runtime: self.runtime.clone(),
        }
    }
}

/// A held lock, released when dropped (see [`crate::Guard`]).
pub struct Guard {
    guard: Option<crate::Guard>,
    runtime: Shared,
}

impl Guard {
    fn inner(&self) -> &crate::Guard {
        self.guard.as_ref().expect("present until release or drop")
    }

    /// The lease this guard holds.
    pub fn lease(&self) -> &Lease {
        self.inner().lease()
    }

    /// The fencing token (see [`crate::Lease::fence`]).
    pub fn fence(&self) -> Fence {
        self.inner().fence()
    }

    /// The local view of whether the lease is held.
    pub fn is_held(&self) -> bool {
        self.inner().is_held()
    }

    /// Resets the lease to `ttl` from now (see [`crate::Guard::extend`]).
    pub fn extend(&mut self, ttl: Duration) -> Result<()> {
        let guard = self.guard.as_mut().expect("present until release or drop");
        self.runtime.block_on(guard.extend(ttl))
    }

    /// Blocks until the lease is lost, or `timeout` passes; `true` if lost.
    pub fn wait_lost(&self, timeout: Duration) -> bool {
        let lease = self.lease().clone();
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, lease.lost()).await.is_ok() })
    }

    /// Releases the lock and reports whether it was still ours.
    pub fn release(mut self) -> Result<Released> {
        let guard = self.guard.take().expect("present until release or drop");
        self.runtime.block_on(guard.release())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Inside some runtime we must not block: the async guard
                // releases in the background instead.
                drop(guard);
            } else if let Err(e) = self.runtime.block_on(guard.release()) {
                tracing::debug!(error = %e, "release on drop failed; the key expires with its ttl");
            }
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("lease", self.lease())
            .finish()
    }
}
