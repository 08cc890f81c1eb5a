//! [`Guard`] (a held lock, released on drop) and [`Lease`] (the view of it
//! that work can carry around).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::lease::Lease as Schedule;
use baton_core::quorum::Extension;
use baton_core::{Fence, Keys, Token};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::lock::validate_ttl;
use crate::redlock::now;

/// What [`Guard::release`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The key held our token and is deleted; waiters were notified.
    Released,
    /// The key had already expired or been taken by another; nothing was
    /// touched. Work done under the lease may have overlapped another holder.
    AlreadyExpired,
}

/// The shared state of one held lease: read by its guard and leases,
/// written by the renewal task and by extends.
pub(crate) struct LeaseCell {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) token: Token,
    fence: Fence,
    status: watch::Sender<Status>,
    /// Shared with the won round's straggling requests: set before the
    /// release is sent, so a late `SET` takes itself back.
    ended: std::sync::Mutex<Arc<AtomicBool>>,
    /// Held while an extend or a renewal of this lease is in flight: two at
    /// once could be applied by the server in one order and by us in the
    /// other, leaving a local deadline later than the server's.
    pub(crate) in_flight: Arc<tokio::sync::Mutex<()>>,
}

/// The mutable part of a lease: once `lost` is set it is never cleared.
pub(crate) struct Status {
    pub(crate) schedule: Schedule,
    pub(crate) lost: bool,
}

/// A view of a held lease: its name, fence and whether it is still held.
/// Cheap to clone; [`Lock::run`](crate::Lock::run) hands one to the work.
///
/// ```
/// # async fn demo() -> Result<(), baton::Error> {
/// let client = baton::Client::in_memory();
/// let guard = client.lock("job").try_acquire().await?.expect("free");
/// let lease = guard.lease().clone();
/// assert!(lease.is_held());
/// guard.release().await?;
/// assert!(!lease.is_held(), "a released lease is no longer held");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Lease(pub(crate) Arc<LeaseCell>);

impl Lease {
    pub(crate) fn new(
        name: Arc<str>,
        keys: Arc<Keys>,
        token: Token,
        fence: Fence,
        ttl: Duration,
        valid_until: Instant,
        started: Instant,
    ) -> Lease {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Lease(Arc::new(LeaseCell {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            name,
            keys,
            token,
            fence,
            status: watch::Sender::new(Status {
                schedule: Schedule::new(ttl, valid_until, started),
                lost: false,
            }),
            in_flight: Arc::default(),
            ended: std::sync::Mutex::default(),
        }))
    }

    /// Links the lease to its won round's straggling requests (see
    /// [`crate::redlock::RoundOutcome::ended`]).
    pub(crate) fn with_round_end(self, ended: Arc<AtomicBool>) -> Lease {
        *self.0.ended.lock().unwrap_or_else(|e| e.into_inner()) = ended;
        self
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The fencing token: strictly greater than that of every earlier holder
    /// of this lock name. Send it with each write the lock protects.
    pub fn fence(&self) -> Fence {
        self.0.fence
    }

    /// The local view: not known to be lost, and before the validity
    /// deadline on the monotonic clock. A `true` is a promise only up to the
    /// deadline and only without process pauses longer than the remaining
    /// time (see the crate docs' guarantees).
    pub fn is_held(&self) -> bool {
        !self.remaining().is_zero()
    }

    /// How long the lease is still valid by the local clock (zero when lost).
    pub fn remaining(&self) -> Duration {
        let status = self.0.status.borrow();
        if status.lost {
            return Duration::ZERO;
        }
        status
            .schedule
            .valid_until()
            .saturating_duration_since(now())
    }

    /// Resolves when the lease is lost: a renewal found the key gone or
    /// taken, renewals kept failing until just before the deadline, the
    /// deadline passed, or the lease was released. Meant for `select!`
    /// against the work the lease protects.
    pub async fn lost(&self) {
        let mut status = self.0.status.subscribe();
        loop {
            let (lost, until) = {
                let s = status.borrow_and_update();
                (s.lost, s.schedule.valid_until())
            };
            if lost {
                return;
            }
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(until.into()) => {
                    // Re-read: a renewal may have moved the deadline meanwhile.
                    if self.0.lose_if_expired(now()) {
                        return;
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.0.name)
            .field("fence", &self.0.fence)
            .field("token", &self.0.token)
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl LeaseCell {
    /// Marks the lease lost (once; later calls change nothing).
    pub(crate) fn mark_lost(&self, why: &str) {
        let newly = self
            .status
            .send_if_modified(|s| !std::mem::replace(&mut s.lost, true));
        if newly {
            tracing::warn!(lock = %self.name, fence = %self.fence, why, "lease lost");
        }
    }

    /// The TTL renewals currently send.
    pub(crate) fn ttl(&self) -> Duration {
        self.status.borrow().schedule.ttl()
    }

    /// When the next renewal is due, or `None` once lost.
    pub(crate) fn next_renewal(&self) -> Option<Instant> {
        let s = self.status.borrow();
        (!s.lost).then(|| s.schedule.next_renewal())
    }

    /// Marks the lease lost if its deadline has passed at `now`; returns
    /// whether it did.
    pub(crate) fn lose_if_expired(&self, now: Instant) -> bool {
        let expired = self.status.borrow().schedule.valid_until() <= now;
        if expired {
            self.mark_lost("its deadline passed");
        }
        expired
    }

    /// When renewals should stop retrying.
    pub(crate) fn give_up_at(&self) -> Instant {
        self.status.borrow().schedule.give_up_at()
    }

    /// Applies a renewal of `ttl` sent at `sent`, whose verdict came at
    /// `at`. Returns whether the lease is still held.
    pub(crate) fn on_renewal(
        &self,
        verdict: Extension,
        sent: Instant,
        ttl: Duration,
        at: Instant,
    ) -> bool {
        let mut why = None;
        self.status.send_if_modified(|s| {
            if s.lost {
                return false;
            }
            match verdict {
                // A success that comes back after the deadline does not
                // revive the lease: it was not to be trusted in between.
                Extension::Extended if at < s.schedule.valid_until() => {
                    s.schedule.on_renewed(sent, ttl);
                    // Evaluated only when the event is enabled.
                    tracing::trace!(
                        lock = %self.name,
                        fence = %self.fence,
                        valid_for_us = s.schedule.valid_until().saturating_duration_since(now()).as_micros() as u64,
                        "renewed"
                    );
                    return true;
                }
                Extension::Extended => why = Some("its renewal came back after the deadline"),
                Extension::Refused => why = Some("its key is gone or another's"),
                Extension::Unknown if s.schedule.on_failed(at) => return true,
                Extension::Unknown => why = Some("renewals failed until its deadline"),
            }
            false
        });
        if let Some(why) = why {
            self.mark_lost(why);
        }
        !self.status.borrow().lost
    }
}

/// A held lock. Dropping it releases the lock in the background; call
/// [`release`](Guard::release) to wait for the release and learn whether
/// the lease was still ours.
///
/// While the guard lives and auto-renewal is on, the lease is renewed in
/// the background; [`lost`](Guard::lost) resolves if that fails.
///
/// ```
/// # async fn demo() -> Result<(), baton::Error> {
/// use std::time::Duration;
/// let client = baton::Client::in_memory();
/// let mut guard = client.lock("payment-42").acquire().await?;
/// guard.extend(Duration::from_secs(60)).await?;
/// assert!(guard.is_held());
/// assert_eq!(guard.release().await?, baton::Released::Released);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Guard {
    lease: Lease,
    client: Client,
    runtime: Handle,
    renewing: bool,
    done: bool,
}

impl Guard {
    /// Registers renewal (if on) now that the acquire has succeeded.
    pub(crate) fn new(lease: Lease, client: Client, auto_renew: bool) -> Guard {
        if auto_renew {
            client.inner.renewer.register(&lease);
        }
        Guard {
            lease,
            client,
            runtime: Handle::current(),
            renewing: auto_renew,
            done: false,
        }
    }

    /// The lease this guard holds.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        self.lease.name()
    }

    /// The fencing token (see [`Lease::fence`]).
    pub fn fence(&self) -> Fence {
        self.lease.fence()
    }

    /// The local view of whether the lease is held (see [`Lease::is_held`]).
    pub fn is_held(&self) -> bool {
        self.lease.is_held()
    }

    /// Resolves when the lease is lost (see [`Lease::lost`]).
    pub async fn lost(&self) {
        self.lease.lost().await
    }

    /// Resets the lease to `ttl` from now, if it is still ours; renewals use
    /// the new TTL from then on. Fails with [`Error::Lost`] if the key is
    /// gone or another's (it is never re-created), or the local deadline
    /// already passed. When too many servers fail to say (a server error, or
    /// [`Error::NoQuorum`] over several), the lease is not known to be lost:
    /// it stays valid until its deadline, which is shortened if the extend
    /// may have been applied with a shorter TTL.
    pub async fn extend(&mut self, ttl: Duration) -> Result<()> {
        let ttl = validate_ttl(ttl)?;
        let cell = Arc::clone(&self.lease.0);
        let _turn = cell.in_flight.lock().await;
        if !self.lease.is_held() {
            cell.mark_lost("it was extended after its deadline");
            return Err(self.lost_error());
        }
        let sent = now();
        let renewals = [(&*cell.keys, &cell.token, ttl.as_millis() as u64)];
        let nodes = &self.client.inner.nodes;
        let (verdict, error) = nodes
            .extend(|_| cell.name.to_string(), &renewals)
            .await
            .pop()
            .expect("one verdict per renewal");
        let result = match verdict {
            Extension::Extended => {
                let mut late = false;
                cell.status.send_modify(|s| {
                    late = s.lost || now() >= s.schedule.valid_until();
                    if !late {
                        s.schedule.on_extended(ttl, sent);
                    }
                });
                if late {
                    cell.mark_lost("its extend came back after the deadline");
                    return Err(self.lost_error());
                }
                Ok(())
            }
            Extension::Refused => {
                cell.mark_lost("its key is gone or another's");
                return Err(self.lost_error());
            }
            Extension::Unknown => {
                // The server may have applied it: a shorter TTL must shorten
                // our deadline too.
                cell.status
                    .send_modify(|s| s.schedule.on_extend_unknown(ttl, sent));
                Err(error.expect("an unknown verdict comes with an error"))
            }
        };
        if self.renewing {
            self.client.inner.renewer.reschedule(&self.lease);
        }
        result
    }

    /// Releases the lock: deletes the key only if it still holds our token,
    /// and wakes the waiters. Renewal stops before the release is sent.
    ///
    /// Cancellation-safe: if this future is dropped before it completes, the
    /// release is sent again in the background.
    pub async fn release(mut self) -> Result<Released> {
        let cell = Arc::clone(&self.lease.0);
        self.stop_renewing();
        let result = cell.release(&self.client.inner.nodes).await;
        self.done = true;
        cell.mark_ended();
        match result? {
            true => {
                tracing::debug!(lock = %cell.name, "released");
                Ok(Released::Released)
            }
            false => Ok(Released::AlreadyExpired),
        }
    }

    fn stop_renewing(&mut self) {
        if self.renewing {
            self.client.inner.renewer.unregister(self.lease.0.id);
            self.renewing = false;
        }
    }

    fn lost_error(&self) -> Error {
        Error::Lost {
            name: self.lease.name().to_owned(),
        }
    }
}

impl LeaseCell {
    /// Releases the lease on every node. Straggling requests of its round
    /// are told first, so one that lands after this takes itself back.
    async fn release(&self, nodes: &Arc<crate::redlock::Nodes>) -> Result<bool> {
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .store(true, Ordering::SeqCst);
        let held = {
            let s = self.status.borrow();
            !s.lost && s.schedule.valid_until() > now()
        };
        nodes.release(&self.keys, &self.token, held).await
    }

    /// After a release: no longer held, without the warning of a loss.
    fn mark_ended(&self) {
        self.status
            .send_if_modified(|s| !std::mem::replace(&mut s.lost, true));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.stop_renewing();
        let cell = Arc::clone(&self.lease.0);
        cell.mark_ended();
        let nodes = Arc::clone(&self.client.inner.nodes);
        // Never blocks and never panics: on a runtime that is shutting down
        // the task is simply dropped, and the key expires within its TTL.
        self.runtime.spawn(async move {
            if let Err(e) = cell.release(&nodes).await {
                tracing::debug!(lock = %cell.name, error = %e, "background release failed; the key expires with its ttl");
            }
        });
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("lease", &self.lease).finish()
    }
}
