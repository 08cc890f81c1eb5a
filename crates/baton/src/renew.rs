//! The renewal of every held lease of a client, by one background task.
//!
//! A held lease is an entry in a timer queue, not a task of its own. The
//! task sleeps until the earliest renewal is due, takes every lease due
//! within a short window, and renews them together: one pipeline per node.
//! It is started by the first lease (and again if the runtime it ran on has
//! gone), parks while no lease is held, and is aborted with the client.
//! Registering a lease wakes it only when that lease is due before the
//! task's next planned look, so taking a lock costs no task wake-up.
//!
//! Ordering: a lease is registered only after its acquire succeeded, and
//! unregistered before its release is sent. A renewal already in flight when
//! a release is sent cannot keep the key alive: it only resets the TTL of a
//! key that still holds our token, and the release deletes that key.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedMutexGuard};
use tokio::task::JoinHandle;

use crate::guard::Lease;
use crate::redlock::{now, Nodes};

/// Leases due this soon after the earliest are renewed in the same batch.
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// The renewal queue of one client.
pub(crate) struct Renewer {
    shared: Arc<Shared>,
}

struct Shared {
    nodes: Arc<Nodes>,
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    due: BTreeSet<(Instant, u64)>,
    leases: HashMap<u64, Slot>,
    task: Option<JoinHandle<()>>,
    /// When the task will look at the queue next: `None` while it is busy
    /// renewing (it looks again right after), `Some(None)` while parked.
    looks_at: Option<Option<Instant>>,
}

impl Queue {
    /// Whether the task must be woken for a lease due at `at`.
    fn needs_wake(&self, at: Instant) -> bool {
        match self.looks_at {
            None => false,
            Some(None) => true,
            Some(Some(look)) => at < look,
        }
    }
}

struct Slot {
    lease: Lease,
    /// When it is queued for; `None` while its renewal is in flight.
    at: Option<Instant>,
}

impl Renewer {
    pub(crate) fn new(nodes: Arc<Nodes>) -> Renewer {
        Renewer {
            shared: Arc::new(Shared {
                nodes,
                queue: Mutex::default(),
                wake: Notify::new(),
            }),
        }
    }

    /// Starts renewing `lease`. Must be called on a tokio runtime.
    pub(crate) fn register(&self, lease: &Lease) {
        let mut queue = self.shared.lock();
        let id = lease.0.id;
        let at = lease.0.next_renewal();
        queue.leases.insert(
            id,
            Slot {
                lease: lease.clone(),
                at,
            },
        );
        let mut wake = false;
        if let Some(at) = at {
            queue.due.insert((at, id));
            wake = queue.needs_wake(at);
        }
        // (Re)start the task if there is none, or if the runtime it was
        // spawned on has gone.
        if queue.task.as_ref().is_none_or(JoinHandle::is_finished) {
            queue.looks_at = None;
            queue.task = Some(tokio::spawn(run(Arc::clone(&self.shared))));
        }
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Stops renewing the lease `id` (a no-op if it is not registered).
    /// The task is not woken: at its next look it finds nothing due.
    pub(crate) fn unregister(&self, id: u64) {
        let mut queue = self.shared.lock();
        if let Some(Slot { at: Some(at), .. }) = queue.leases.remove(&id) {
            queue.due.remove(&(at, id));
        }
    }

    /// Re-reads the lease's next renewal time after an extend.
    pub(crate) fn reschedule(&self, lease: &Lease) {
        let mut queue = self.shared.lock();
        let id = lease.0.id;
        let Some(slot) = queue.leases.get_mut(&id) else {
            return;
        };
        // In flight: the batch requeues it from the fresh schedule.
        let Some(old) = slot.at else { return };
        let new = lease.0.next_renewal();
        slot.at = new;
        queue.due.remove(&(old, id));
        let mut wake = false;
        if let Some(at) = new {
            queue.due.insert((at, id));
            wake = queue.needs_wake(at);
        }
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// The number of leases being renewed: registered and not lost.
    pub(crate) fn len(&self) -> usize {
        let queue = self.shared.lock();
        queue
            .leases
            .values()
            .filter(|slot| slot.lease.0.next_renewal().is_some())
            .count()
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        if let Some(task) = self.shared.lock().task.take() {
            task.abort();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every critical section leaves the queue consistent; poison is moot.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the leases due within the batch window, or says when to look again.
    fn take_due(&self) -> Step {
        let mut queue = self.lock();
        let now = now();
        match queue.due.first() {
            Some(&(first, _)) if first <= now => {}
            next => {
                let look = next.map(|&(at, _)| at);
                queue.looks_at = Some(look);
                return Step::Sleep(look);
            }
        }
        queue.looks_at = None;
        let horizon = now + BATCH_WINDOW;
        let mut batch = Vec::new();
        let mut busy = Vec::new();
        while let Some(&(at, id)) = queue.due.first() {
            if at > horizon {
                break;
            }
            queue.due.pop_first();
            let Some(slot) = queue.leases.get_mut(&id) else {
                continue;
            };
            // A deadline passed unseen (the process was paused, say) is a
            // loss, said now.
            slot.lease.0.lose_if_expired(now);
            if slot.lease.0.next_renewal().is_none() {
                // Lost: renewing it now could keep a key alive that nobody
                // trusts any more.
                queue.leases.remove(&id);
                continue;
            }
            match Arc::clone(&slot.lease.0.in_flight).try_lock_owned() {
                Ok(turn) => {
                    slot.at = None;
                    batch.push((slot.lease.clone(), turn));
                }
                // An extend is in flight: it reschedules the lease when it
                // completes; look again shortly in case it does not.
                Err(_) => busy.push(id),
            }
        }
        for id in busy {
            let at = now + BATCH_WINDOW;
            if let Some(slot) = queue.leases.get_mut(&id) {
                slot.at = Some(at);
                queue.due.insert((at, id));
            }
        }
        Step::Renew(batch)
    }

    /// Puts a renewed lease back in the queue, or drops it if it is lost or
    /// was unregistered meanwhile.
    fn requeue(&self, lease: &Lease, held: bool) {
        let mut queue = self.lock();
        let id = lease.0.id;
        let next = lease.0.next_renewal().filter(|_| held);
        match (queue.leases.get_mut(&id), next) {
            (Some(slot), Some(at)) => {
                slot.at = Some(at);
                queue.due.insert((at, id));
            }
            (Some(_), None) => {
                queue.leases.remove(&id);
            }
            (None, _) => {}
        }
    }

    async fn renew(&self, batch: Vec<(Lease, OwnedMutexGuard<()>)>) {
        let (batch, _turns): (Vec<Lease>, Vec<_>) = batch.into_iter().unzip();
        for lease in &batch {
            tracing::trace!(lock = %lease.0.name, fence = %lease.fence(), "renewing");
        }
        let sent = now();
        let ttls: Vec<Duration> = batch.iter().map(|l| l.0.ttl()).collect();
        let renewals: Vec<_> = batch
            .iter()
            .zip(&ttls)
            .map(|(l, ttl)| (&*l.0.keys, &l.0.token, ttl.as_millis() as u64))
            .collect();
        // A stalled node must not hold the batch past its earliest give-up point.
        let give_up = batch.iter().map(|l| l.0.give_up_at()).min().unwrap_or(sent);
        let timeout = self
            .nodes
            .timeout()
            .min(give_up.saturating_duration_since(sent))
            .max(Duration::from_millis(1));
        let verdicts = self
            .nodes
            .extend(|r| batch[r].0.name.to_string(), &renewals, timeout)
            .await;
        let at = now();
        for ((lease, ttl), (verdict, error)) in batch.iter().zip(ttls).zip(verdicts) {
            if let Some(e) = error {
                tracing::debug!(lock = %lease.0.name, error = %e, "renewal error");
            }
            let held = lease.0.on_renewal(verdict, sent, ttl, at);
            self.requeue(lease, held);
        }
    }
}

enum Step {
    Sleep(Option<Instant>),
    Renew(Vec<(Lease, OwnedMutexGuard<()>)>),
}

async fn run(shared: Arc<Shared>) {
    loop {
        match shared.take_due() {
            Step::Sleep(until) => {
                let sleep = async {
                    match until {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = sleep => {}
                }
            }
            Step::Renew(batch) => shared.renew(batch).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Client;

    const TTL: Duration = Duration::from_millis(300);

    /// Many held leases are entries of one queue: they all stay held for many
    /// TTLs, and once released the queue is empty and the one task parked.
    #[tokio::test(start_paused = true)]
    async fn one_task_renews_every_lease_and_exits_when_idle() {
        let client = Client::in_memory();
        let mut guards = Vec::new();
        for i in 0..200 {
            let lock = client.lock(&format!("lease-{i}")).ttl(TTL);
            guards.push(lock.try_acquire().await.unwrap().expect("free"));
        }
        let renewer = &client.inner.renewer;
        assert_eq!(renewer.len(), 200);
        tokio::time::sleep(TTL * 10).await;
        assert!(guards.iter().all(|g| g.is_held()), "renewed throughout");
        for guard in guards {
            guard.release().await.unwrap();
        }
        assert_eq!(renewer.len(), 0);
        tokio::time::sleep(TTL).await;
        assert_eq!(
            renewer.shared.lock().looks_at,
            Some(None),
            "parked: no timer set"
        );
    }
}
