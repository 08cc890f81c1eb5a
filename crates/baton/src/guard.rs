//! [`Guard`] (a held lock, released on drop) and [`Lease`] (the view of it
//! that work can carry around).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use baton_core::lease::{Applied, LeaseState, LostBecause, Operation, State};
use baton_core::quorum::Extension;
use baton_core::{Fence, Keys, Token};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::fanout::now;
use crate::lock::validate_ttl;

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
    pub(crate) name: Arc<str>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) token: Token,
    fence: Fence,
    /// Written only through the core's machine, so every rule about the
    /// deadline, renewals and loss is `baton_core::lease`'s.
    state: Mutex<LeaseState>,
    /// Wakes [`Lease::lost`]'s watchers on a loss, a release, or a deadline
    /// that may have moved earlier. A mutex and one `Notify` rather than a
    /// watch channel: a held lease is read far more often than it changes,
    /// and a million of them should not cost a watch channel's memory each.
    changed: Notify,
    /// Shared with the won attempt's straggling requests: set before the
    /// release is sent, so a late `SET` takes itself back.
    ended: Option<Arc<AtomicBool>>,
    /// One permit, taken while an extend or a renewal of this lease is in
    /// flight: two at once could be applied by the server in one order and
    /// by us in the other, leaving a local deadline later than the server's.
    /// A semaphore in the cell rather than a shared mutex, so a lease costs
    /// no allocation of its own for it.
    in_flight: tokio::sync::Semaphore,
    /// Where the client's renewer keeps this lease (`usize::MAX`: not
    /// registered); read and written only under the renewer's lock.
    pub(crate) renewal_slot: AtomicUsize,
}

/// A renewal's turn on its lease (see `LeaseCell::in_flight`), given back
/// when dropped.
pub(crate) struct RenewalTurn(Lease);

impl RenewalTurn {
    /// The renewal's turn on `lease`, unless an extend is in flight.
    pub(crate) fn take(lease: &Lease) -> Option<RenewalTurn> {
        let permit = lease.0.in_flight.try_acquire().ok()?;
        // Given back by the turn's drop instead.
        permit.forget();
        Some(RenewalTurn(lease.clone()))
    }

    pub(crate) fn lease(&self) -> &Lease {
        &self.0
    }
}

impl Drop for RenewalTurn {
    fn drop(&mut self) {
        self.0 .0.in_flight.add_permits(1);
    }
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
    /// The lease of a won attempt: its fence and state as the core built
    /// them, and the flag its straggling requests watch (see
    /// [`crate::fanout::AttemptOutcome::ended`]).
    pub(crate) fn new(
        name: Arc<str>,
        keys: Arc<Keys>,
        token: Token,
        (fence, state): (Fence, LeaseState),
        ended: Option<Arc<AtomicBool>>,
    ) -> Lease {
        Lease(Arc::new(LeaseCell {
            name,
            keys,
            token,
            fence,
            state: Mutex::new(state),
            changed: Notify::new(),
            in_flight: tokio::sync::Semaphore::new(1),
            renewal_slot: AtomicUsize::new(usize::MAX),
            ended,
        }))
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
        self.0.remaining(now())
    }

    /// Resolves when the lease is lost: a renewal found the key gone or
    /// taken, renewals kept failing until just before the deadline, the
    /// deadline passed, or the lease was released. Meant for `select!`
    /// against the work the lease protects.
    pub async fn lost(&self) {
        loop {
            // Registered before the state is read, so a change in between
            // still wakes this watcher.
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (held, until) = self.0.read(|s| (s.state() == State::Held, s.valid_until()));
            if !held {
                return;
            }
            tokio::select! {
                () = &mut changed => {}
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
    /// Declares the lease lost `because` (once; later calls change nothing).
    pub(crate) fn lose(&self, because: LostBecause) {
        self.apply(|s| s.lose(because));
    }

    /// Applies one input to the lease's machine, waking the watchers on a loss
    /// or a shortened deadline, and warning once if it lost the lease.
    fn apply(&self, input: impl FnOnce(&mut LeaseState) -> Applied) -> Applied {
        let applied = input(&mut self.lock_state());
        // Watchers (`Lease::lost`) sleep until the deadline and re-read it
        // then, so only a loss or a deadline that may have moved earlier
        // wakes them: a renewal, which only moves it later, would wake every
        // watcher of every lease for nothing.
        if matches!(applied, Applied::Lost(_) | Applied::Unknown) {
            self.changed.notify_waiters();
        }
        if let Applied::Lost(because) = applied {
            tracing::warn!(lock = %self.name, fence = %self.fence, why = because.describe(), "lease lost");
        }
        applied
    }

    fn lock_state(&self) -> MutexGuard<'_, LeaseState> {
        // Every input leaves the machine consistent; poison is moot.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the lease's machine.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&LeaseState) -> T) -> T {
        f(&self.lock_state())
    }

    /// How long the lease is still valid at `now` (zero when lost).
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.read(|s| s.remaining(now))
    }

    /// The TTL renewals currently send.
    pub(crate) fn ttl(&self) -> Duration {
        self.read(LeaseState::ttl)
    }

    /// When the next renewal is due, or `None` once not held.
    pub(crate) fn next_renewal(&self) -> Option<Instant> {
        self.read(LeaseState::next_renewal)
    }

    /// Loses the lease if its deadline has passed at `now`; returns whether
    /// it is no longer held.
    pub(crate) fn lose_if_expired(&self, now: Instant) -> bool {
        !self.apply_losing(|s| s.handle_timeout(now))
    }

    /// Just before a renewal is sent at `now`: loses the lease if its
    /// deadline passed unseen (the process was paused, say), or its give-up
    /// point did while it waited in a backlog (a renewal sent now could only
    /// be trusted after the point where its holder was to be told). Whether
    /// it is still to be renewed. One look at the machine.
    pub(crate) fn still_to_renew(&self, now: Instant) -> bool {
        self.apply_losing(|s| {
            s.handle_timeout(now);
            if s.state() == State::Held && s.give_up_at() <= now {
                s.lose(LostBecause::GiveUpPointPassed);
            }
            s.next_renewal().is_some()
        })
    }

    /// Applies `input`, reporting a loss (once) if it ended a held lease.
    fn apply_losing<T>(&self, input: impl FnOnce(&mut LeaseState) -> T) -> T {
        let mut out = None;
        self.apply(|s| {
            let was_held = s.state() == State::Held;
            out = Some(input(s));
            match s.state() {
                State::Lost(because) if was_held => Applied::Lost(because),
                _ => Applied::Over,
            }
        });
        out.expect("apply runs its input")
    }

    /// When renewals should stop retrying.
    pub(crate) fn give_up_at(&self) -> Instant {
        self.read(LeaseState::give_up_at)
    }

    /// Applies the verdict of `operation`, sent at `sent`, that came back
    /// at `at` (see [`LeaseState::handle_verdict`]).
    pub(crate) fn handle_verdict(
        &self,
        operation: Operation,
        verdict: Extension,
        sent: Instant,
        at: Instant,
    ) -> Applied {
        let applied = self.apply(|s| s.handle_verdict(operation, verdict, sent, at));
        if applied == Applied::Extended {
            // Evaluated only when the event is enabled.
            tracing::trace!(
                lock = %self.name,
                fence = %self.fence,
                valid_for_us = self.remaining(now()).as_micros() as u64,
                "renewed"
            );
        }
        applied
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
        let _turn = cell
            .in_flight
            .acquire()
            .await
            .expect("a lease's semaphore is never closed");
        if !self.lease.is_held() {
            cell.lose(LostBecause::ExtendedAfterDeadline);
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
        let result = match cell.handle_verdict(Operation::Extend { ttl }, verdict, sent, now()) {
            Applied::Extended => Ok(()),
            Applied::Lost(_) | Applied::Over => return Err(self.lost_error()),
            Applied::Unknown | Applied::Retrying => {
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
            self.client.inner.renewer.unregister(&self.lease);
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
    async fn release(&self, nodes: &Arc<crate::fanout::Nodes>) -> Result<bool> {
        if let Some(ended) = &self.ended {
            ended.store(true, Ordering::SeqCst);
        }
        let held = self.read(|s| s.is_held(now()));
        nodes.release(&self.keys, &self.token, held).await
    }

    /// After a release: no longer held, without the warning of a loss.
    fn mark_ended(&self) {
        let was_held = {
            let mut s = self.lock_state();
            let was_held = s.state() == State::Held;
            s.release();
            was_held
        };
        if was_held {
            self.changed.notify_waiters();
        }
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
