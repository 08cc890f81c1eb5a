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
//! Due leases wait in a second queue ordered by their give-up points, and
//! each batch takes at most [`MAX_BATCH`] of them, the most urgent first:
//! after a stall the backlog is worked off closest deadline first, in
//! pipelines small enough that each is timed by its own most urgent lease.
//!
//! Ordering: a lease is registered only after its acquire succeeded, and
//! unregistered before its release is sent. A renewal already in flight when
//! a release is sent cannot keep the key alive: it only resets the TTL of a
//! key that still holds our token, and the release deletes that key.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use baton_core::lease::{Applied, Operation};

use baton_core::quorum::Extension;

use crate::fanout::{now, Nodes};
use crate::guard::{Lease, RenewalTurn};

/// Leases due this soon after the earliest are renewed in the same batch.
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// The most renewals in one batch (one pipeline per node). One giant
/// pipeline would be timed out by its most urgent lease's give-up point,
/// and fail every lease in it with that one. A batch is taken and sent in
/// one poll of the task, so it also bounds how long the task holds its
/// thread: at 512, 0.5–2 % of the task's polls took over 1 ms here; at 256,
/// under 0.2 % (about what a preempted thread shows). Its verdicts are
/// applied [`VERDICTS_PER_POLL`] at a time.
const MAX_BATCH: usize = 256;

/// A batch's verdicts applied per poll of the task: the task yields its
/// thread between these, so applying a batch's verdicts is no long poll.
const VERDICTS_PER_POLL: usize = 128;

/// The renewal queue of one client.
pub(crate) struct Renewer {
    shared: Arc<Shared>,
}

struct Shared {
    nodes: Arc<Nodes>,
    queue: Mutex<Queue>,
    wake: Notify,
    counts: Counts,
}

/// What the renewal task has sent so far.
#[derive(Default)]
struct Counts {
    batches: AtomicU64,
    renewals: AtomicU64,
    largest_batch: AtomicUsize,
    /// The longest single poll of the renewal task, in ns.
    longest_poll_ns: AtomicU64,
    polls: AtomicU64,
    polls_over_1ms: AtomicU64,
}

/// What a client's renewal task has sent so far ([`Client::renewal_stats`](crate::Client::renewal_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenewalStats {
    /// Batches sent: each is one pipeline per server.
    pub batches: u64,
    /// Renewals in them, one per lease per batch.
    pub renewals: u64,
    /// The most renewals one batch held (at most 256).
    pub largest_batch: usize,
    /// The longest the renewal task ran without yielding the thread (one
    /// poll): how long it can hold up the other tasks of its runtime. Wall
    /// time, so a thread the OS preempted mid-poll counts its wait too.
    pub longest_poll: Duration,
    /// Polls of the renewal task so far.
    pub polls: u64,
    /// Those that took over 1 ms (wall time, as `longest_poll`).
    pub polls_over_1ms: u64,
}

#[derive(Default)]
struct Queue {
    /// Leases (by slot) by when their next renewal is due.
    due: BTreeSet<(Instant, usize)>,
    /// Leases already due, by their give-up points: the most urgent first.
    ready: BTreeSet<(Instant, usize)>,
    /// The registered leases, each in the slot its cell names
    /// (`LeaseCell::renewal_slot`): an index, not a hash lookup, since a
    /// million of them are looked up at every renewal.
    slots: Vec<Option<Slot>>,
    /// Free slots, reused before the vector grows.
    free: Vec<usize>,
    task: Option<JoinHandle<()>>,
    /// When the task will look at the queue next.
    looks_at: Look,
}

impl Queue {
    /// Queues lease `id` (registered) for its renewal at `at`, wherever it
    /// was before; `None` (lost) drops it. Returns whether the task must be
    /// woken for it.
    fn schedule(&mut self, id: usize, at: Option<Instant>) -> bool {
        let Some(slot) = self.slots.get_mut(id).and_then(Option::as_mut) else {
            return false;
        };
        match std::mem::replace(&mut slot.place, Place::InFlight) {
            Place::Due(old) => self.due.remove(&(old, id)),
            Place::Ready(give_up) => self.ready.remove(&(give_up, id)),
            Place::InFlight => false,
        };
        let Some(at) = at else {
            self.free_slot(id);
            return false;
        };
        slot.place = Place::Due(at);
        self.due.insert((at, id));
        self.needs_wake(at)
    }

    /// Puts a renewed lease back in the queue for `next`, or drops it
    /// (`None`: lost); nothing if it was unregistered meanwhile.
    fn requeue(&mut self, lease: &Lease, next: Option<Instant>) {
        if let Some(id) = self.slot_of(lease) {
            self.schedule(id, next);
        }
    }

    /// The slot of `lease`, if it is registered.
    fn slot_of(&self, lease: &Lease) -> Option<usize> {
        let id = lease.0.renewal_slot.load(Ordering::Relaxed);
        self.slots
            .get(id)
            .and_then(Option::as_ref)
            .is_some_and(|slot| Arc::ptr_eq(&slot.lease.0, &lease.0))
            .then_some(id)
    }

    /// Empties slot `id` (out of both queues already) for reuse.
    fn free_slot(&mut self, id: usize) {
        if let Some(slot) = self.slots.get_mut(id).and_then(Option::take) {
            slot.lease
                .0
                .renewal_slot
                .store(usize::MAX, Ordering::Relaxed);
            self.free.push(id);
        }
    }

    /// Moves the leases due by `horizon` to `ready`.
    fn ready_up_to(&mut self, horizon: Instant) {
        while let Some(&(at, id)) = self.due.first() {
            if at > horizon {
                break;
            }
            self.due.pop_first();
            if let Some(slot) = self.slots.get_mut(id).and_then(Option::as_mut) {
                let give_up = slot.lease.0.give_up_at();
                slot.place = Place::Ready(give_up);
                self.ready.insert((give_up, id));
            }
        }
    }

    /// Whether the task must be woken for a lease due at `at`.
    fn needs_wake(&self, at: Instant) -> bool {
        match self.looks_at {
            Look::AfterThisBatch => false,
            Look::WhenWoken => true,
            Look::At(look) => at < look,
        }
    }
}

/// When the renewal task looks at the queue next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Look {
    /// It is renewing a batch, and looks again right after (also the state
    /// of a task just spawned, which looks at once).
    #[default]
    AfterThisBatch,
    /// Parked with nothing due: only a wake-up makes it look.
    WhenWoken,
    /// Asleep until then.
    At(Instant),
}

struct Slot {
    lease: Lease,
    place: Place,
}

/// Where a registered lease is.
enum Place {
    /// In `due`, for this time.
    Due(Instant),
    /// In `ready`, with this give-up point.
    Ready(Instant),
    /// Its renewal is in flight; the batch requeues it.
    InFlight,
}

impl Renewer {
    pub(crate) fn new(nodes: Arc<Nodes>) -> Renewer {
        Renewer {
            shared: Arc::new(Shared {
                nodes,
                queue: Mutex::default(),
                wake: Notify::new(),
                counts: Counts::default(),
            }),
        }
    }

    /// Starts renewing `lease`. Must be called on a tokio runtime.
    pub(crate) fn register(&self, lease: &Lease) {
        let mut queue = self.shared.lock();
        let id = match queue.slot_of(lease) {
            Some(id) => id,
            None => {
                let slot = Some(Slot {
                    lease: lease.clone(),
                    place: Place::InFlight,
                });
                let id = match queue.free.pop() {
                    Some(id) => {
                        queue.slots[id] = slot;
                        id
                    }
                    None => {
                        queue.slots.push(slot);
                        queue.slots.len() - 1
                    }
                };
                lease.0.renewal_slot.store(id, Ordering::Relaxed);
                id
            }
        };
        let wake = queue.schedule(id, lease.0.next_renewal());
        // (Re)start the task if there is none, or if the runtime it was
        // spawned on has gone.
        if queue.task.as_ref().is_none_or(JoinHandle::is_finished) {
            queue.looks_at = Look::AfterThisBatch;
            let shared = Arc::clone(&self.shared);
            queue.task = Some(tokio::spawn(TimedPolls {
                task: Box::pin(run(Arc::clone(&shared))),
                shared,
            }));
        }
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Stops renewing `lease` (a no-op if it is not registered). The task
    /// is not woken: at its next look it finds nothing due.
    pub(crate) fn unregister(&self, lease: &Lease) {
        let mut queue = self.shared.lock();
        if let Some(id) = queue.slot_of(lease) {
            queue.schedule(id, None);
        }
    }

    /// Re-reads the lease's next renewal time after an extend.
    pub(crate) fn reschedule(&self, lease: &Lease) {
        let mut queue = self.shared.lock();
        let Some(id) = queue.slot_of(lease) else {
            return;
        };
        // In flight: the batch requeues it from the fresh schedule.
        if queue.slots[id]
            .as_ref()
            .is_none_or(|slot| matches!(slot.place, Place::InFlight))
        {
            return;
        }
        let wake = queue.schedule(id, lease.0.next_renewal());
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    pub(crate) fn stats(&self) -> RenewalStats {
        let counts = &self.shared.counts;
        RenewalStats {
            batches: counts.batches.load(Ordering::Relaxed),
            renewals: counts.renewals.load(Ordering::Relaxed),
            largest_batch: counts.largest_batch.load(Ordering::Relaxed),
            longest_poll: Duration::from_nanos(counts.longest_poll_ns.load(Ordering::Relaxed)),
            polls: counts.polls.load(Ordering::Relaxed),
            polls_over_1ms: counts.polls_over_1ms.load(Ordering::Relaxed),
        }
    }

    /// The number of leases being renewed: registered and not lost.
    pub(crate) fn len(&self) -> usize {
        let queue = self.shared.lock();
        queue
            .slots
            .iter()
            .flatten()
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

    /// Takes the most urgent leases due within the batch window, or says
    /// when to look again.
    fn take_due(&self) -> Step {
        let mut queue = self.lock();
        let now = now();
        if queue.ready.is_empty() {
            // A batch starts when its first lease is due, not before: the
            // window only gathers the leases due soon after it.
            match queue.due.first() {
                Some(&(first, _)) if first <= now => {}
                next => {
                    let look = next.map(|&(at, _)| at);
                    queue.looks_at = look.map_or(Look::WhenWoken, Look::At);
                    return Step::Sleep(look);
                }
            }
        }
        queue.ready_up_to(now + BATCH_WINDOW);
        queue.looks_at = Look::AfterThisBatch;
        let mut batch = Vec::new();
        let mut busy = Vec::new();
        while batch.len() < MAX_BATCH {
            let Some((_, id)) = queue.ready.pop_first() else {
                break;
            };
            let Some(slot) = queue.slots.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            slot.place = Place::InFlight;
            if !slot.lease.0.still_to_renew(now) {
                // Lost: renewing it now could keep a key alive that nobody
                // trusts any more.
                queue.free_slot(id);
                continue;
            }
            match RenewalTurn::take(&slot.lease) {
                Some(turn) => batch.push(turn),
                // An extend is in flight: it reschedules the lease when it
                // completes; look again shortly in case it does not.
                None => busy.push(id),
            }
        }
        for id in busy {
            queue.schedule(id, Some(now + BATCH_WINDOW));
        }
        Step::Renew {
            batch,
            decided: now,
        }
    }

    /// Renews `batch`, found still held at `decided`.
    async fn renew(&self, turns: Vec<RenewalTurn>, decided: Instant) {
        if turns.is_empty() {
            return; // all lost or busy
        }
        let batch: Vec<Lease> = turns.iter().map(|turn| turn.lease().clone()).collect();
        let counts = &self.counts;
        counts.batches.fetch_add(1, Ordering::Relaxed);
        counts
            .renewals
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counts
            .largest_batch
            .fetch_max(batch.len(), Ordering::Relaxed);
        // Validity is counted from the instant the leases were found held,
        // which is before the requests leave: an earlier send time only
        // shortens the deadline a verdict gives.
        let sent = decided;
        for lease in &batch {
            // What was left at the decision, so that a history can tell a
            // renewal decided in time but delayed (the process stopped, say)
            // from one decided after the deadline.
            tracing::trace!(
                lock = %lease.0.name,
                fence = %lease.fence(),
                // Rounded up: a lease found held has more than nothing left.
                valid_for_us = (lease.0.remaining(sent).as_nanos() as u64).div_ceil(1000),
                "renewing"
            );
        }
        let ttls: Vec<Duration> = batch.iter().map(|l| l.0.ttl()).collect();
        let renewals: Vec<_> = batch
            .iter()
            .zip(&ttls)
            .map(|(l, ttl)| (&*l.0.keys, &l.0.token, ttl.as_millis() as u64))
            .collect();
        // Each lease gives up at its own give-up point while the batch is
        // out, and the batch is waited for (up to the node timeout) only
        // while a lease in it is still waiting: a batch is never timed by its
        // most urgent lease, which would fail every other lease with it.
        let mut by_give_up: Vec<(Instant, usize)> = batch
            .iter()
            .enumerate()
            .map(|(i, l)| (l.0.give_up_at(), i))
            .collect();
        by_give_up.sort_unstable();
        let mut given_up = 0;
        let extend = self
            .nodes
            .extend(|r| batch[r].0.name.to_string(), &renewals);
        tokio::pin!(extend);
        let verdicts = loop {
            let Some(&(give_up, i)) = by_give_up.get(given_up) else {
                break None; // every lease in the batch gave up
            };
            tokio::select! {
                biased;
                verdicts = &mut extend => break Some(verdicts),
                () = tokio::time::sleep_until(give_up.into()) => {
                    batch[i].0.handle_verdict(Operation::Renewal, Extension::Unknown, sent, give_up);
                    given_up += 1;
                }
            }
        };
        let at = now();
        let mut verdicts = verdicts
            .into_iter()
            .flatten()
            .map(Some)
            .chain(std::iter::repeat_with(|| None));
        for (i, chunk) in batch.chunks(VERDICTS_PER_POLL).enumerate() {
            if i > 0 {
                // The run loop yields after the last chunk.
                tokio::task::yield_now().await;
            }
            let next: Vec<Option<Instant>> = chunk
                .iter()
                .zip(verdicts.by_ref())
                .map(|(lease, verdict)| {
                    let (verdict, error) = verdict.unwrap_or((Extension::Unknown, None));
                    if let Some(e) = error {
                        tracing::debug!(lock = %lease.0.name, error = %e, "renewal error");
                    }
                    let applied = lease
                        .0
                        .handle_verdict(Operation::Renewal, verdict, sent, at);
                    let held = matches!(applied, Applied::Extended | Applied::Retrying);
                    lease.0.next_renewal().filter(|_| held)
                })
                .collect();
            {
                // Back in the queue under one lock per chunk.
                let mut queue = self.lock();
                for (lease, next) in chunk.iter().zip(next) {
                    queue.requeue(lease, next);
                }
            }
        }
    }
}

enum Step {
    Sleep(Option<Instant>),
    /// Renew these leases, found held at `decided`.
    Renew {
        batch: Vec<RenewalTurn>,
        decided: Instant,
    },
}

/// The renewal task, with each of its polls timed into
/// [`RenewalStats::longest_poll`].
struct TimedPolls<F> {
    task: std::pin::Pin<Box<F>>,
    shared: Arc<Shared>,
}

impl<F: std::future::Future<Output = ()>> std::future::Future for TimedPolls<F> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        // The wall clock, not tokio's: a paused test clock would read zero.
        let start = Instant::now();
        let poll = self.task.as_mut().poll(cx);
        let took = start.elapsed().as_nanos() as u64;
        let counts = &self.shared.counts;
        counts.longest_poll_ns.fetch_max(took, Ordering::Relaxed);
        counts.polls.fetch_add(1, Ordering::Relaxed);
        if took > 1_000_000 {
            counts.polls_over_1ms.fetch_add(1, Ordering::Relaxed);
        }
        poll
    }
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
            Step::Renew { batch, decided } => {
                shared.renew(batch, decided).await;
                // A batch's verdicts and the next batch's building are two
                // polls, not one: the other tasks of the runtime run between.
                tokio::task::yield_now().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use baton_core::acquire::Reply;
    use baton_core::vote::Found;
    use baton_core::{Keys, Token};

    use crate::error::Result;
    use crate::node::{BoxFuture, Inspection, Node, Renewal};
    use crate::wait::Subscription;
    use crate::Client;

    const TTL: Duration = Duration::from_millis(300);

    /// A server whose renewals cost time in proportion to their number
    /// (as a real one's do) and that can stall: on tokio's paused clock, so
    /// the test is exact.
    struct SlowServer {
        per_renewal: Duration,
        stalled_until: Mutex<Option<tokio::time::Instant>>,
    }

    impl Node for SlowServer {
        fn name(&self) -> &str {
            "slow"
        }
        fn acquire<'a>(
            &'a self,
            _: &'a Keys,
            _: &'a Token,
            _: u64,
            _: Option<&'a str>,
        ) -> BoxFuture<'a, Result<Reply>> {
            Box::pin(async { Ok(Reply::Acquired { fence: 1 }) })
        }
        fn release<'a>(
            &'a self,
            _: &'a Keys,
            _: &'a Token,
            _: bool,
        ) -> BoxFuture<'a, Result<Found>> {
            Box::pin(async { Ok(Found::Deleted) })
        }
        fn raise<'a>(&'a self, _: &'a Keys, _: &'a Token, _: u64) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async { Ok(true) })
        }
        fn inspect<'a>(&'a self, _: &'a Keys) -> BoxFuture<'a, Result<Inspection>> {
            unimplemented!("not used")
        }
        fn force_release<'a>(&'a self, _: &'a Keys) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
            unimplemented!("not used")
        }
        fn extend<'a>(&'a self, renewals: &'a [Renewal<'a>]) -> BoxFuture<'a, Vec<Result<bool>>> {
            Box::pin(async move {
                let stall = *self.stalled_until.lock().unwrap();
                if let Some(until) = stall {
                    tokio::time::sleep_until(until).await;
                }
                tokio::time::sleep(self.per_renewal * renewals.len() as u32).await;
                renewals.iter().map(|_| Ok(true)).collect()
            })
        }
        fn subscribe<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Subscription>>> {
            Box::pin(async { Ok(None) })
        }
    }

    /// A client of a [`SlowServer`] that needs 0.1 ms per renewal, with a
    /// 5 s node timeout (longer than any stall below).
    fn slow_server() -> (std::sync::Arc<SlowServer>, Client) {
        let server = std::sync::Arc::new(SlowServer {
            per_renewal: Duration::from_micros(100),
            stalled_until: Mutex::new(None),
        });
        let client = Client::assemble(
            vec![server.clone()],
            baton_core::name::DEFAULT_PREFIX,
            Duration::from_secs(5),
        );
        (server, client)
    }

    /// Slots are reused after a release, and a lease that no longer owns
    /// its slot (a late requeue of a released one) cannot move the lease
    /// that took the slot over.
    #[tokio::test(start_paused = true)]
    async fn a_reused_slot_belongs_to_its_new_lease_only() {
        let (_server, client) = slow_server();
        let first = client.lock("a").ttl(TTL).acquire().await.unwrap();
        let stale = first.lease().clone();
        first.release().await.unwrap();
        let second = client.lock("b").ttl(TTL).acquire().await.unwrap();
        let renewer = &client.inner.renewer;
        {
            let queue = renewer.shared.lock();
            assert_eq!(queue.slots.len(), 1, "the slot is reused");
            assert_eq!(queue.slot_of(&stale), None, "the released lease has none");
            assert_eq!(queue.slot_of(second.lease()), Some(0));
        }
        // A late requeue of the released lease changes nothing.
        renewer.shared.lock().requeue(&stale, None);
        renewer.unregister(&stale);
        assert_eq!(client.renewing(), 1);
        // The new lease is still renewed, well past its TTL.
        tokio::time::sleep(TTL * 4).await;
        assert!(second.is_held());
        assert!(client.renewal_stats().renewals >= 4);
        second.release().await.unwrap();
        assert_eq!(client.renewing(), 0);
        assert!(renewer.shared.lock().free.contains(&0));
    }

    /// 2,000 leases (TTL 2 s) taken over 400 ms; their second renewals are
    /// due over the next 400 ms, exactly while the server stalls for 1 s;
    /// it then needs 0.1 ms per renewal. Every lease can still be renewed
    /// before its give-up point (89% of the TTL after its last renewal): the
    /// backlog takes 200 ms, the most urgent lease has 110 ms left and each
    /// next 256 (one batch, 26 ms) have 100 ms more. Worked off most urgent
    /// first in small batches, none is declared lost. One batch of the whole
    /// backlog, timed by its most urgent lease's 110 ms, failed them all
    /// over and over, and most were declared lost.
    #[tokio::test(start_paused = true)]
    async fn a_backlog_after_a_stall_is_worked_off_by_urgency() {
        let (server, client) = slow_server();
        let ttl = Duration::from_secs(2);
        let start = tokio::time::Instant::now();
        let mut guards = Vec::new();
        for i in 0..2000 {
            let lock = client.lock(&format!("lease-{i}")).ttl(ttl);
            guards.push(lock.try_acquire().await.unwrap().expect("free"));
            if i % 5 == 4 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep_until(start + ttl * 2 / 3).await;
        *server.stalled_until.lock().unwrap() =
            Some(tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::time::sleep(ttl * 3).await;
        let lost = guards.iter().filter(|g| !g.is_held()).count();
        assert_eq!(lost, 0, "leases declared lost that could be renewed");
    }

    /// Closest deadline first, not first due: 2,000 leases of 10 s fall due
    /// as the server stalls (1.1 s), 500 leases of 2 s fall due during the
    /// stall, later but with their give-up points only 150 ms after it
    /// ends. Worked off by give-up point, the 500 go first (50 ms) and all
    /// stay held; in the order they fell due, the 2,000 would go first
    /// (150 ms) and the 500 would pass their give-up points.
    #[tokio::test(start_paused = true)]
    async fn the_closest_deadlines_are_renewed_first() {
        let (server, client) = slow_server();
        let ms = Duration::from_millis;
        let start = tokio::time::Instant::now();
        let take = |name: &str, n: usize, ttl: Duration| {
            let client = client.clone();
            let name = name.to_owned();
            async move {
                let mut guards = Vec::new();
                for i in 0..n {
                    let lock = client.lock(&format!("{name}-{i}")).ttl(ttl);
                    guards.push(lock.try_acquire().await.unwrap().expect("free"));
                }
                guards
            }
        };
        let long = take("long", 2000, Duration::from_secs(10)).await; // due at 3,333 ms
        tokio::time::sleep_until(start + ms(2772)).await;
        let short = take("short", 500, Duration::from_secs(2)).await; // due 3,439, give up 4,550
        tokio::time::sleep_until(start + ms(3300)).await;
        *server.stalled_until.lock().unwrap() = Some(start + ms(4400));
        tokio::time::sleep_until(start + ms(4700)).await;
        let lost = short.iter().filter(|g| !g.is_held()).count();
        assert_eq!(lost, 0, "short leases lost behind long ones");
        assert!(long.iter().all(|g| g.is_held()));
    }

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
            super::Look::WhenWoken,
            "parked: no timer set"
        );
    }
}
