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

use crate::history::{now_ns, Op, Recorder};
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
}

/// Runs the client until SIGTERM. Errors only if it cannot start.
pub async fn run(args: ClientArgs) -> Result<(), String> {
    let history =
        Recorder::open(&args.history, &args.process).map_err(|e| format!("history: {e}"))?;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(RenewalEvents {
        lock: args.lock.clone(),
        history: history.clone(),
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
    let lock = client
        .lock(&args.lock)
        .ttl(args.ttl)
        .wait(args.ttl * 2)
        .retry_interval(args.ttl / 5);
    let mut store = None;
    let mut rng = Rng::new(Rng::os_seed());
    while !stop.load(Ordering::SeqCst) {
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
        history.record_at(t, Op::AcquireOk { fence, valid_until });
        let lost_seen = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (lease, history, seen) = (lease.clone(), history.clone(), Arc::clone(&lost_seen));
            tokio::spawn(async move {
                lease.lost().await;
                history.record(Op::Lost { fence });
                seen.store(true, Ordering::SeqCst);
            })
        };

        if store.is_none() {
            store = StoreClient::connect(args.store, &args.process).await.ok();
        }
        let served = match &mut store {
            Some(conn) => {
                // The work: up to two thirds of the TTL, so renewals happen.
                let work = rng.between(Duration::ZERO, args.ttl * 2 / 3);
                update(conn, &history, fence, &lease, work).await.is_ok()
            }
            None => false,
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

/// Records the library's renewal events of our lock.
struct RenewalEvents {
    lock: String,
    history: Recorder,
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
        let Some(fence) = fields.fence else { return };
        let op = match (fields.message.as_deref(), fields.valid_for_us) {
            (Some("renewing"), _) => Op::Renewing { fence },
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
