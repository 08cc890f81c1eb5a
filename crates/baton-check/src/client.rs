//! One client process: contends for the lock in a loop and, while holding
//! it, does a read-modify-write on the fenced store; records everything.
//!
//! Each round: acquire (waiting up to two TTLs); read the resource under
//! the fence; if the lease is still held, "work" for a random time (up to
//! two thirds of the TTL, so renewals happen), then write `value + 1` —
//! *without* checking the lease again, as real code cannot avoid: a process
//! pause during the work is exactly what fences exist for; then release.
//! A task watches `Lease::lost` and records the loss. The library's own
//! renewal events (tracing, `renewing` / `renewed`) are recorded too.
//!
//! The primitive changes the round (`--primitive`): a fair lock's waiter
//! also records when it queues; a read-write lock's client takes the write
//! side one round in three (a writer does the read-modify-write) and the
//! read side otherwise (a reader only reads, under the last write's fence);
//! a semaphore's permit holder leaves the store alone (several hold at once,
//! so their writes would be lost updates by design), and only the windows
//! are checked.
//!
//! SIGTERM ends the loop after the current round.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton::{Client, Error, Released};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::history::{now_ns, Op, Primitive, Recorder, Side};
use crate::nemesis::Rng;
use crate::store::StoreClient;

/// What a client process is told on its command line.
#[derive(Debug, Clone)]
pub struct ClientArgs {
    /// The process name in the history, `c<i>.<incarnation>`.
    pub process: String,
    /// One URL per node (through the nemesis's proxies).
    pub urls: Vec<String>,
    /// The fenced store.
    pub store: SocketAddr,
    /// This process's history file.
    pub history: PathBuf,
    /// The lock's name.
    pub lock: String,
    /// The lock's TTL.
    pub ttl: Duration,
    /// The per-node request timeout.
    pub node_timeout: Duration,
    /// Replica acknowledgement (`ClientBuilder::min_replicas`); 0 = off.
    pub min_replicas: usize,
    /// What to contend for.
    pub primitive: Primitive,
    /// A semaphore's permits.
    pub permits: u32,
}

/// Runs the client until SIGTERM. Errors only if it cannot start.
pub async fn run(args: ClientArgs) -> Result<(), String> {
    let history =
        Recorder::open(&args.history, &args.process).map_err(|e| format!("history: {e}"))?;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(RenewalEvents {
        lock: args.lock.clone(),
        history: history.clone(),
        queues: args.primitive == Primitive::Fair,
    }))
    .map_err(|e| format!("tracing: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("signal: {e}"))?;
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        term.recv().await;
        flag.store(true, Ordering::SeqCst);
    });

    // Building connects to every node: one the nemesis has down right now
    // (a replacement client starts while a node fault of its phase is still
    // on) is waited for, as a real worker's start-up would.
    let client = loop {
        let mut builder = Client::builder().node_timeout(args.node_timeout);
        if args.min_replicas > 0 {
            let wait = (args.node_timeout / 2).min(Duration::from_millis(100));
            builder = builder.min_replicas(args.min_replicas, wait);
        }
        for url in &args.urls {
            builder = builder.node(url);
        }
        match builder.build().await {
            Ok(client) => break client,
            Err(e) if e.is_retryable() && !stop.load(Ordering::SeqCst) => {
                // Not history: no acquire was invoked.
                eprintln!("baton-check client: connecting: {e}; trying again");
                tokio::time::sleep(args.ttl / 5).await;
            }
            Err(e) => return Err(format!("client: {e}")),
        }
    };
    let configure = |lock: baton::Lock| {
        lock.ttl(args.ttl)
            .wait(args.ttl * 2)
            .retry_interval(args.ttl / 5)
    };
    // The locks of this primitive, each with the side its leases are.
    let locks: Vec<(baton::Lock, Side)> = match args.primitive {
        Primitive::Lock => vec![(client.lock(&args.lock), Side::Exclusive)],
        Primitive::Fair => vec![(client.lock(&args.lock).fair(true), Side::Exclusive)],
        Primitive::Semaphore => vec![(
            client.semaphore(&args.lock, args.permits).into_lock(),
            Side::Permit,
        )],
        Primitive::Rwlock => {
            let rw = client.rw_lock(&args.lock);
            vec![(rw.write(), Side::Exclusive), (rw.read(), Side::Read)]
        }
    }
    .into_iter()
    .map(|(lock, side)| (configure(lock), side))
    .collect();
    let mut store = None;
    let mut rng = Rng::new(Rng::os_seed());
    while !stop.load(Ordering::SeqCst) {
        // A read-write lock: the write side one round in three.
        let (lock, side) = match locks.len() {
            1 => &locks[0],
            _ if rng.next_u64().is_multiple_of(3) => &locks[0],
            _ => &locks[1],
        };
        let side = *side;
        history.record(Op::AcquireInvoke);
        let guard = match lock.acquire().await {
            Ok(guard) => guard,
            Err(e @ Error::Timeout { .. }) => {
                history.record(Op::AcquireFail {
                    reason: e.to_string(),
                });
                continue;
            }
            Err(e) => {
                history.record(Op::AcquireInfo {
                    error: e.to_string(),
                });
                // A node that refuses connections answers at once: do not spin.
                tokio::time::sleep(rng.between(Duration::ZERO, args.ttl / 10)).await;
                continue;
            }
        };
        let fence = guard.fence().0;
        let lease = guard.lease().clone();
        // The clock first: a delay before `remaining()` only shortens the
        // recorded window, never stretches it.
        let t = now_ns();
        let valid_until = t + lease.remaining().as_nanos() as u64;
        history.record_at(
            t,
            Op::AcquireOk {
                fence,
                valid_until,
                side,
            },
        );
        let lost_seen = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (lease, history, seen) = (lease.clone(), history.clone(), Arc::clone(&lost_seen));
            tokio::spawn(async move {
                lease.lost().await;
                history.record(Op::Lost { fence });
                seen.store(true, Ordering::SeqCst);
            })
        };

        if store.is_none() && side != Side::Permit {
            store = StoreClient::connect(args.store, &args.process).await.ok();
        }
        // The work: up to two thirds of the TTL, so renewals happen.
        let work = rng.between(Duration::ZERO, args.ttl * 2 / 3);
        let served = match (&mut store, side) {
            (_, Side::Permit) => {
                tokio::time::sleep(work).await;
                true
            }
            (Some(conn), Side::Read) => read_only(conn, &history, fence, work).await.is_ok(),
            (Some(conn), Side::Exclusive) => {
                update(conn, &history, fence, &lease, work).await.is_ok()
            }
            (None, _) => false,
        };

        // Stop watching first: `lost()` also resolves on release. A loss
        // the watcher had no turn to record yet is recorded here.
        watcher.abort();
        let _ = watcher.await;
        if !lost_seen.load(Ordering::SeqCst) && !lease.is_held() {
            history.record(Op::Lost { fence });
        }
        history.record(Op::ReleaseInvoke { fence });
        match guard.release().await {
            Ok(released) => history.record(Op::ReleaseOk {
                fence,
                released: released == Released::Released,
                renewing: client.renewing(),
            }),
            Err(e) => history.record(Op::ReleaseInfo {
                fence,
                error: e.to_string(),
                renewing: client.renewing(),
            }),
        }
        if !served {
            // The store lives in the checker and is never faulted: it is
            // gone only if the checker is. Do not outlive it.
            return Err("the store is unreachable: the checker has gone".into());
        }
    }
    Ok(())
}

/// The read-modify-write under the lease.
async fn update(
    store: &mut StoreClient,
    history: &Recorder,
    fence: u64,
    lease: &baton::Lease,
    work: Duration,
) -> std::io::Result<()> {
    let value = store.read(fence).await?;
    history.record(Op::Read { fence, value });
    let Some(value) = value else { return Ok(()) };
    if !lease.is_held() {
        return Ok(());
    }
    // The work: a pause here (SIGSTOP) outlives the lease.
    tokio::time::sleep(work).await;
    history.record(Op::WriteInvoke {
        fence,
        value: value + 1,
    });
    let accepted = store.write(fence, value + 1).await?;
    history.record(Op::WriteOk { fence, accepted });
    Ok(())
}

/// A reader's round: the read under its fence, then the work.
async fn read_only(
    store: &mut StoreClient,
    history: &Recorder,
    fence: u64,
    work: Duration,
) -> std::io::Result<()> {
    let value = store.read(fence).await?;
    history.record(Op::Read { fence, value });
    tokio::time::sleep(work).await;
    Ok(())
}

/// Records the library's renewal events of our lock (and, for a fair
/// lock, when its waiter queues).
struct RenewalEvents {
    lock: String,
    history: Recorder,
    queues: bool,
}

impl<S: tracing::Subscriber> Layer<S> for RenewalEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !event.metadata().target().starts_with("baton") {
            return;
        }
        let t = now_ns();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.lock.as_deref() != Some(self.lock.as_str()) {
            return;
        }
        if self.queues && fields.message.as_deref() == Some("waiting") {
            // Logged once subscribed; the attempt that queues is next.
            self.history.record_at(t, Op::Queued);
            return;
        }
        let Some(fence) = fields.fence else { return };
        let op = match (fields.message.as_deref(), fields.valid_for_us) {
            (Some("renewing"), us) => Op::Renewing {
                fence,
                valid_for_ns: us.map(|us| us * 1000),
            },
            // Zero: the new deadline had passed already (a pause): it
            // extends nothing.
            (Some("renewed"), Some(us)) if us > 0 => Op::Renewed {
                fence,
                valid_until: t + us * 1000,
            },
            _ => return,
        };
        self.history.record_at(t, op);
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    lock: Option<String>,
    fence: Option<u64>,
    valid_for_us: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "valid_for_us" => self.valid_for_us = Some(value),
            "fence" => self.fence = Some(value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_text(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_text(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record_text(&mut self, field: &Field, text: String) {
        match field.name() {
            "message" => self.message = Some(text),
            "lock" => self.lock = Some(text),
            "fence" => self.fence = text.parse().ok(),
            _ => {}
        }
    }
}
