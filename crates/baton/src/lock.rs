//! [`Lock`]: a named lock and how to take it (once, or waiting).

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use baton_core::acquire::{Loss, Outcome};
use baton_core::lease::{LeaseState, Queued};
use baton_core::quorum::quorum;
use baton_core::waiting::{Next, Waiting};
use baton_core::{Fence, Keys, Kind, Token};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::fanout::{now, Nodes};
use crate::guard::{Guard, Lease, Released};
use crate::random;
use crate::wait::Waiter;
use futures_util::FutureExt as _;
use tokio::task::JoinHandle;

/// The default lease length.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The shortest lease accepted: what renewal can keep on a loaded machine.
///
/// A lease is renewed a third of the way in and stays valid for the TTL
/// less the drift allowance (`ttl/100 + 2 ms`) from each renewal's send, so
/// a stall of the process or the server (scheduling, a page fault, a busy
/// core) longer than about half the TTL loses it. Measured with the
/// `min_ttl` example (5 leases renewed for 2 s, 10 times, against a private
/// redis-server on the project's 2-core machine) before this floor was
/// raised from 10 ms: at 10 ms 15 of 50 leases were lost idle and all 50
/// with two CPU-bound processes beside it; at 20 ms 5 of 50 under load; at
/// 30, 50 and 100 ms none. 50 ms keeps a margin.
pub const MIN_TTL: Duration = Duration::from_millis(50);
/// The longest lease accepted. Longer work keeps a shorter lease renewed.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The default fallback between attempts while waiting, when no release
/// notification arrives first.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// A named lock: cheap to clone, holds no connection or state of its own.
///
/// Configure it with [`ttl`](Lock::ttl), [`wait`](Lock::wait),
/// [`auto_renew`](Lock::auto_renew) and
/// [`retry_interval`](Lock::retry_interval), then take it with
/// [`try_acquire`](Lock::try_acquire) ("skip if busy"),
/// [`acquire`](Lock::acquire) (wait), or [`run`](Lock::run) (acquire, work,
/// release).
///
/// ```
/// # async fn demo() -> Result<(), baton::Error> {
/// use std::time::Duration;
/// let client = baton::Client::in_memory();
/// let lock = client
///     .lock("nightly-report")
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(30));
/// let guard = lock.acquire().await?;
/// println!("holding with fence {}", guard.fence());
/// guard.release().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Lock {
    client: Client,
    name: Arc<str>,
    keys: Result<Arc<Keys>, baton_core::NameError>,
    ttl: Duration,
    wait: Option<Duration>,
    auto_renew: bool,
    retry_interval: Duration,
    /// Asked to be fair ([`Lock::fair`]); a semaphore cannot be.
    fair: bool,
}

/// A fair waiter looks again (refreshing its queue entry) at least this
/// rarely: it is woken by its own grant, so looking more often only costs
/// the server work per waiter.
pub const FAIR_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// A fair waiter's queue entry outlives this many of its retry intervals
/// without a refresh, so a live waiter keeps its place through a late
/// look or two, and a dead one is skipped after it.
const FAIR_ENTRY_INTERVALS: u32 = 3;

impl Lock {
    pub(crate) fn new(client: Client, name: &str) -> Lock {
        Lock::of_kind(client, name, Kind::Lock)
    }

    /// A handle on `name`'s key holding `kind` (a semaphore's `Lock` is its
    /// permits' handle: every rule of a lease is the same).
    pub(crate) fn of_kind(client: Client, name: &str, kind: Kind) -> Lock {
        let keys = Keys::new(&client.inner.prefix, name).map(|keys| keys.with_kind(kind));
        Lock::of_keys(client, name.into(), keys)
    }

    /// A multi-lock's handle: `names` taken all or none (see
    /// [`Client::multi_lock`]), named by them joined with `+`.
    pub(crate) fn multi(client: Client, names: &[&str]) -> Lock {
        let keys = Keys::multi(&client.inner.prefix, names);
        Lock::of_keys(client, names.join("+").into(), keys)
    }

    fn of_keys(client: Client, name: Arc<str>, keys: Result<Keys, baton_core::NameError>) -> Lock {
        Lock {
            client,
            name,
            keys: keys.map(Arc::new),
            ttl: DEFAULT_TTL,
            wait: None,
            auto_renew: true,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            fair: false,
        }
    }

    /// Serves waiters in arrival order (default `false`).
    ///
    /// Waiters queue in Redis, in the lock's cluster slot; a release hands
    /// the lock straight to the first live waiter (the key is set to its
    /// token, its fence drawn then) and tells only that waiter, which owns
    /// the lock on receipt, without a round trip of its own. A releaser that asks
    /// again queues behind the others. [`try_acquire`](Lock::try_acquire)
    /// never jumps a non-empty queue. A waiter that leaves (its wait runs
    /// out, an error, its future dropped) takes its entry out of the queue
    /// at once, or passes on a lock handed to it. One that dies (a crashed
    /// process) keeps its place only until its queue entry lapses (three
    /// retry intervals, at least [`FAIR_RETRY_INTERVAL`] each), and a lock
    /// handed to it lives no longer than that unless it takes it.
    ///
    /// A name is used fairly or not: the other use fails with
    /// [`Error::WrongKind`]. Over a Redlock it is not offered
    /// ([`Error::NotOffered`]), nor for a semaphore.
    ///
    /// ```
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::in_memory();
    /// let guard = client.lock("payments").fair(true).try_acquire().await?.expect("free");
    /// guard.release().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn fair(mut self, on: bool) -> Lock {
        self.fair = on;
        self.rekind();
        self
    }

    /// Keeps the keys' kind in step with `fair` and the retry interval (a
    /// fair lock's queue entries are sized by it).
    fn rekind(&mut self) {
        let entries = |interval: Duration| {
            interval
                .saturating_mul(FAIR_ENTRY_INTERVALS)
                .as_millis()
                .min(u128::from(u32::MAX)) as u32
        };
        let kind = match (self.fair, self.keys.as_ref().map(|k| k.kind)) {
            (true, Ok(Kind::Lock | Kind::Fair { .. })) => Kind::Fair {
                entry_ttl_ms: entries(self.fair_interval()),
            },
            (false, Ok(Kind::Fair { .. })) => Kind::Lock,
            // A waiting writer's mark outlives a few of its looks.
            (_, Ok(Kind::Write { .. })) => Kind::Write {
                entry_ttl_ms: entries(self.retry_interval),
            },
            _ => return,
        };
        if let Ok(keys) = &mut self.keys {
            *keys = Arc::new((**keys).clone().with_kind(kind));
        }
    }

    /// How often a fair waiter looks again without its grant.
    fn fair_interval(&self) -> Duration {
        self.retry_interval.max(FAIR_RETRY_INTERVAL)
    }

    /// The lease length (default 10 s), rounded down to whole milliseconds;
    /// from 50 ms ([`MIN_TTL`]) to 24 h, else acquiring fails with
    /// [`Error::InvalidTtl`].
    pub fn ttl(mut self, ttl: Duration) -> Lock {
        self.ttl = ttl;
        self
    }

    /// How long [`acquire`](Lock::acquire) may wait before it fails with
    /// [`Error::Timeout`]. Unset, it waits until the lock is acquired.
    pub fn wait(mut self, wait: Duration) -> Lock {
        self.wait = Some(wait);
        self
    }

    /// Whether a held lease is renewed in the background (default `true`):
    /// about every third of its TTL, by the client's one renewal task.
    pub fn auto_renew(mut self, on: bool) -> Lock {
        self.auto_renew = on;
        self
    }

    /// While waiting, the longest pause between attempts when no release
    /// notification comes (default 200 ms, jittered to between half and all
    /// of it). Attempts also follow the holder's expiry at once.
    pub fn retry_interval(mut self, interval: Duration) -> Lock {
        self.retry_interval = interval.max(Duration::from_millis(1));
        self.rekind();
        self
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One attempt: `Some(guard)` if the lock is now ours, `None` if not —
    /// another holds it, or (Redlock) a split vote or a round too slow to
    /// leave any validity. One round trip.
    ///
    /// ```
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::in_memory();
    /// let lock = client.lock("cache-rebuild");
    /// match lock.try_acquire().await? {
    ///     Some(guard) => { /* rebuild */ guard.release().await?; }
    ///     None => { /* someone else is on it: skip */ }
    /// }
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn try_acquire(&self) -> Result<Option<Guard>> {
        let (keys, ttl) = self.plan()?;
        match self.attempt(&keys, ttl, &random::token(), None).await? {
            Attempt::Won(guard) => Ok(Some(guard)),
            Attempt::Lost { .. } => Ok(None),
        }
    }

    /// Takes the lock, waiting while another holds it, up to the
    /// [`wait`](Lock::wait) limit ([`Error::Timeout`] past it).
    ///
    /// A waiter is woken by the holder's release notification; a holder
    /// that never announces its release (another library, a crash) is
    /// followed when its key expires, or after the retry interval.
    ///
    /// A transient server failure ([`Error::is_transient`]: a restart, a
    /// failover, a connection reset) is ridden out within the wait budget,
    /// with jittered backoff from 20 ms to 1 s; when the budget ends during
    /// one, the last such error is returned rather than [`Error::Timeout`].
    /// Any other error ends the wait at once.
    pub async fn acquire(&self) -> Result<Guard> {
        let (keys, ttl) = self.plan()?;
        let start = tokio::time::Instant::now();
        let fair = matches!(keys.kind, Kind::Fair { .. });
        // A writer queues too: its waiting mark holds new readers back.
        let queues = fair || matches!(keys.kind, Kind::Write { .. });
        let interval = if fair {
            self.fair_interval()
        } else {
            self.retry_interval
        };
        let mut waiting = Waiting::new(start.into_std(), self.wait, interval);
        let mut token = random::token();
        let mut waiter: Option<Waiter> = None;
        // A fair waiter's own channel, once it has subscribed: its attempts
        // then queue it (named by a random value, not the token).
        let mut grant: Option<Arc<str>> = None;
        // The last attempt that queued this waiter and came back busy: a
        // grant counts only if it came after it (see `LeaseState::handed`).
        let mut queued: Option<Queued> = None;
        // A fair waiter that leaves without the lock (an error, its wait run
        // out, its future dropped) leaves the queue, or passes on a lock
        // handed to it, rather than hold the queue up until its entry lapses.
        let mut leaving = LeaveQueue {
            nodes: Arc::clone(&self.client.inner.nodes),
            keys: Arc::clone(&keys),
            token: None,
        };
        let mut taking_back: Option<JoinHandle<bool>> = None;
        loop {
            if let Some(take_back) = taking_back.take() {
                // Finished by now? (A slow node's is not waited for: the
                // next attempt draws a fresh token instead.)
                if let Some(Ok(all_answered)) = take_back.now_or_never() {
                    waiting.handle_take_back(all_answered);
                }
            }
            if waiting.poll_fresh_token() {
                token = random::token();
                if grant.take().is_some() {
                    // The queue entry (and its grant channel) belong to
                    // the old token: leave it, and queue afresh on a
                    // channel of the new.
                    waiter = None;
                    queued = None;
                    leaving.leave_now();
                }
            }
            let sent = grant.is_some().then(now);
            let (next, error) = match self.attempt(&keys, ttl, &token, grant.as_ref()).await {
                Ok(Attempt::Won(guard)) => {
                    leaving.token = None;
                    self.keep_grant_channel(&keys, grant, waiter);
                    return Ok(guard);
                }
                Ok(Attempt::Lost {
                    loss,
                    take_back,
                    busy_fence,
                }) => {
                    if let Some(sent) = sent {
                        queued = Some(Queued {
                            sent,
                            fence: busy_fence,
                        });
                    }
                    let next =
                        waiting.handle_loss(&loss, take_back.is_some(), now(), random::jitter());
                    taking_back = take_back;
                    (next, None)
                }
                Err(e) => (
                    waiting.handle_error(e.is_transient(), now(), random::jitter()),
                    Some(e),
                ),
            };
            match (next, &mut waiter) {
                // Before the retry that follows, so a release between the
                // two is not missed.
                (Next::Subscribe, _) | (Next::AwaitRelease { .. }, None) => {
                    let idle = fair.then(|| self.client.inner.idle_grants.take(&keys.lock));
                    if let Some((channel, idle)) = idle.flatten() {
                        grant = Some(channel);
                        leaving.token = Some(token.clone());
                        tracing::debug!(lock = %self.name, notified = idle.is_notified(), "waiting");
                        waiter = Some(idle);
                        continue;
                    }
                    // A fair waiter's own channel; else the release channel
                    // of each lock the lease takes (a multi-lock's waiter is
                    // woken by whichever of its names is released).
                    let channels: Arc<[Arc<str>]> = if fair {
                        [keys.grant_channel(random::token().as_str()).into()].into()
                    } else {
                        keys.locks()
                            .iter()
                            .map(|l| l.channel.as_str().into())
                            .collect()
                    };
                    if queues {
                        grant = Some(Arc::clone(&channels[0]));
                    }
                    if fair {
                        leaving.token = Some(token.clone());
                    }
                    let (subscriptions, late) = self.client.inner.nodes.subscribe(&channels).await;
                    let w = Waiter::new(subscriptions, late, quorum(self.client.inner.nodes.len()));
                    tracing::debug!(lock = %self.name, notified = w.is_notified(), "waiting");
                    waiter = Some(w);
                }
                (Next::AwaitRelease { at_most }, Some(listening)) => {
                    let granted = listening.wait(at_most).await;
                    let handed = match (granted, queued, keys.kind) {
                        (Some(fence), Some(queued), Kind::Fair { entry_ttl_ms }) => {
                            let hand_off = Duration::from_millis(entry_ttl_ms.into());
                            LeaseState::handed(ttl, hand_off, queued, fence, now())
                                .map(|state| (Fence(fence), state))
                        }
                        _ => None,
                    };
                    if let Some(won) = handed {
                        // Handed over by the release: ours without another
                        // round trip (it renews to its full TTL soon after).
                        tracing::debug!(lock = %self.name, fence = %won.0, "handed the lock");
                        leaving.token = None;
                        let guard = self.guard(&keys, &token, won, None);
                        self.keep_grant_channel(&keys, grant, waiter.take());
                        return Ok(guard);
                    }
                }
                (Next::Pause(pause), _) => {
                    if let Some(e) = &error {
                        tracing::debug!(lock = %self.name, error = %e, ?pause, "transient error while waiting; trying again");
                    }
                    tokio::time::sleep(pause).await;
                }
                (Next::TimedOut, _) => {
                    return Err(Error::Timeout {
                        name: self.name.to_string(),
                        waited: start.elapsed(),
                    });
                }
                (Next::Fail, _) => return Err(error.expect("only an error fails the wait")),
            }
        }
    }

    /// Acquires (waiting as [`acquire`](Lock::acquire) does), runs `work`
    /// while the lease is renewed, then releases.
    ///
    /// If the lease is lost while `work` runs, `work` is dropped at its next
    /// await point and this returns [`Error::Lost`]; it also returns
    /// `Lost` when the work finished but the release found the lease already
    /// gone, since the work was then not protected to its end.
    ///
    /// ```
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::in_memory();
    /// let total = client.lock("ledger").run(|lease| async move {
    ///     // write with lease.fence() so storage can refuse a stale holder
    ///     lease.fence().0
    /// }).await?;
    /// assert_eq!(total, 1);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn run<F, Fut, T>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.acquire().await?;
        let lease = guard.lease().clone();
        let outcome = tokio::select! {
            biased;
            () = lease.lost() => None,
            value = work(lease.clone()) => Some(value),
        };
        let lost = || Error::Lost {
            name: self.name.to_string(),
        };
        match outcome {
            None => {
                drop(guard);
                Err(lost())
            }
            Some(value) => match guard.release().await? {
                Released::Released => Ok(value),
                Released::AlreadyExpired => Err(lost()),
            },
        }
    }

    fn plan(&self) -> Result<(Arc<Keys>, Duration)> {
        let keys = match &self.keys {
            Ok(keys) => Arc::clone(keys),
            Err(reason) => return Err(Error::invalid_name(&self.name, reason.clone())),
        };
        let nodes = self.client.inner.nodes.len();
        match keys.kind {
            Kind::Semaphore { permits } => {
                crate::semaphore::check(permits, nodes)?;
                if self.fair {
                    return Err(Error::NotOffered {
                        what: "a fair semaphore",
                        deployment: "any deployment".to_owned(),
                        reason: "permits are not queued: a semaphore is not fair",
                    });
                }
            }
            Kind::Read | Kind::Write { .. } if nodes > 1 => {
                return Err(Error::not_over_redlock(
                    "a read-write lock",
                    nodes,
                    "readers share one fence and the waiting writers' marks live on one \
                     server; use one server, Sentinel or Cluster",
                ));
            }
            Kind::Read | Kind::Write { .. } if self.fair => {
                return Err(Error::NotOffered {
                    what: "a fair read-write lock",
                    deployment: "any deployment".to_owned(),
                    reason: "readers and writers are not queued in order (writers are preferred)",
                });
            }
            Kind::Multi if self.fair => {
                return Err(Error::NotOffered {
                    what: "a fair multi-lock",
                    deployment: "any deployment".to_owned(),
                    reason: "a multi-lock's names are not queued: take them with one fair lock \
                             of their own if arrival order matters",
                });
            }
            Kind::Fair { .. } if nodes > 1 => {
                return Err(Error::not_over_redlock(
                    "a fair lock",
                    nodes,
                    "its queue and hand-off live on one server; over several, a quorum of \
                     queues could disagree on who is next; use one server, Sentinel or Cluster",
                ));
            }
            _ => {}
        }
        Ok((keys, validate_ttl(self.ttl)?))
    }

    /// One attempt, as the core's machine decided it: won (the guard),
    /// busy or backing off (with the take-back of what may have landed), or
    /// an error when failures alone made a quorum impossible.
    async fn attempt(
        &self,
        keys: &Arc<Keys>,
        ttl: Duration,
        token: &Token,
        grant: Option<&Arc<str>>,
    ) -> Result<Attempt> {
        let nodes = &self.client.inner.nodes;
        let outcome = nodes.acquire(keys, token, ttl, grant).await;
        let Some(Outcome::Lost { release, loss }) = outcome.attempt.poll_outcome() else {
            let won = outcome
                .attempt
                .won_lease()
                .expect("a decided attempt not lost is won");
            tracing::debug!(lock = %self.name, fence = %won.0, "acquired");
            return Ok(Attempt::Won(self.guard(keys, token, won, outcome.ended)));
        };
        // Take back what may have landed, without making the caller wait
        // for a slow node (see `acquire` for the token's reuse).
        let take_back = (!release.is_empty())
            .then(|| self.take_back_in_background(keys, token, release.clone()));
        match *loss {
            Loss::NoQuorum { acquired } => {
                Err(nodes.no_quorum(&self.name, outcome.errors, outcome.busy, acquired))
            }
            loss => Ok(Attempt::Lost {
                loss,
                take_back,
                busy_fence: outcome.attempt.busy_fence(),
            }),
        }
    }

    /// After a won acquire, keeps a fair waiter's grant channel for the
    /// client's next waiter of this lock (see [`crate::wait::IdleGrants`]):
    /// its queue entry is gone, since winning takes it out.
    fn keep_grant_channel(&self, keys: &Keys, grant: Option<Arc<str>>, waiter: Option<Waiter>) {
        if let (Kind::Fair { .. }, Some(channel), Some(waiter)) = (keys.kind, grant, waiter) {
            self.client
                .inner
                .idle_grants
                .put(&keys.lock, channel, waiter);
        }
    }

    /// The guard of a lease won (or handed over) with `won`'s fence and
    /// state; `ended`: the flag the won attempt's stragglers watch.
    fn guard(
        &self,
        keys: &Arc<Keys>,
        token: &Token,
        won: (Fence, LeaseState),
        ended: Option<Arc<AtomicBool>>,
    ) -> Guard {
        let lease = Lease::new(
            Arc::clone(&self.name),
            Arc::clone(keys),
            token.clone(),
            won,
            ended,
        );
        Guard::new(lease, self.client.clone(), self.auto_renew)
    }

    /// After a lost attempt, takes back whatever of it may have landed, so
    /// others need not wait out its TTL. Yields whether every node answered.
    fn take_back_in_background(
        &self,
        keys: &Arc<Keys>,
        token: &Token,
        which: Vec<usize>,
    ) -> JoinHandle<bool> {
        spawn_take_back(&self.client.inner.nodes, keys, token.clone(), which)
    }
}

/// A fair waiter's way out of the queue: dropped with a token still set,
/// it sends that token's release in the background, which passes on a lock
/// handed to it or, not holding one, takes its entry out of the queue.
struct LeaveQueue {
    nodes: Arc<Nodes>,
    keys: Arc<Keys>,
    token: Option<Token>,
}

impl LeaveQueue {
    /// Leaves the queue now with the token set, if any.
    fn leave_now(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return; // no runtime left: the entry lapses on its own
        }
        drop(spawn_take_back(&self.nodes, &self.keys, token, vec![0]));
    }
}

/// Takes back, in the background, what `token` may hold on nodes `which`
/// (see [`Nodes::take_back`]); yields whether every node answered.
fn spawn_take_back(
    nodes: &Arc<Nodes>,
    keys: &Arc<Keys>,
    token: Token,
    which: Vec<usize>,
) -> JoinHandle<bool> {
    let (nodes, keys) = (Arc::clone(nodes), Arc::clone(keys));
    tokio::spawn(async move { nodes.take_back(&keys, &token, &which).await })
}

impl Drop for LeaveQueue {
    fn drop(&mut self) {
        self.leave_now();
    }
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("wait", &self.wait)
            .field("auto_renew", &self.auto_renew)
            .field("fair", &self.fair)
            .finish()
    }
}

enum Attempt {
    Won(Guard),
    /// Not won, for `loss` (never [`Loss::NoQuorum`], which is an error).
    /// `take_back`: the release of what the attempt may have left, running;
    /// `busy_fence`: the fence counter a busy node reported (a fair lock's).
    Lost {
        loss: Loss,
        take_back: Option<JoinHandle<bool>>,
        busy_fence: Option<u64>,
    },
}

/// Checks a lease length and rounds it down to whole milliseconds.
pub(crate) fn validate_ttl(ttl: Duration) -> Result<Duration> {
    let ms = Duration::from_millis(ttl.as_millis().min(u128::from(u64::MAX)) as u64);
    let reason = if ttl.is_zero() {
        "a lease must have a positive ttl"
    } else if ms < MIN_TTL {
        "a lease must last at least 50ms (shorter ones cannot be kept renewed)"
    } else if ms > MAX_TTL {
        "a lease may last at most 24h (renew a shorter one instead)"
    } else {
        return Ok(ms);
    };
    Err(Error::InvalidTtl { ttl, reason })
}
