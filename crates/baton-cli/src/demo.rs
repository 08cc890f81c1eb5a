//! `baton demo`: the whole story in a few seconds, with nothing installed.
//!
//! Workers contend for one lock and you watch the hand-offs and fences; then
//! a holder stalls past its lease (a GC pause, a stopped VM), another takes
//! the lock, and the stale holder's late write is refused by the fence. It
//! ends with a summary that checks mutual exclusion held.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::{Client, Fence};

use crate::exit::Exit;

const WORKERS: usize = 4;
const ROUNDS: usize = 3;

/// Storage that remembers the highest fence it accepted and refuses lower
/// ones: what makes a lease safe against a paused holder.
#[derive(Default)]
struct FencedStore {
    highest: Mutex<Option<Fence>>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

impl FencedStore {
    fn write(&self, fence: Fence) -> bool {
        let mut highest = self.highest.lock().unwrap_or_else(|e| e.into_inner());
        if highest.is_some_and(|h| fence <= h) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        *highest = Some(fence);
        self.accepted.fetch_add(1, Ordering::SeqCst);
        true
    }
}

/// Runs `baton demo`.
pub async fn run() -> Exit {
    let (client, _server) = match PrivateServer::start() {
        Some(server) => match server.client().await {
            Ok(client) => {
                baton_cli::out!(
                    "using a private redis-server on 127.0.0.1:{} (stopped at the end)",
                    server.port
                );
                (client, Some(server))
            }
            Err(e) => {
                return Exit::with(
                    crate::exit::UNAVAILABLE,
                    format!("private redis-server did not answer: {e}"),
                )
            }
        },
        None => {
            baton_cli::out!("redis-server is not on PATH: using the embedded in-memory backend");
            (Client::in_memory(), None)
        }
    };
    let store = Arc::new(FencedStore::default());
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));

    baton_cli::out!("\n1. {WORKERS} workers, one lock, {ROUNDS} turns each:");
    let mut tasks = Vec::new();
    for worker in 1..=WORKERS {
        let lock = client.lock("demo-job").ttl(Duration::from_secs(5));
        let (store, inside, overlaps) = (store.clone(), inside.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let guard = lock.acquire().await?;
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                baton_cli::out!(
                    "   worker {worker} holds the lock  (fence {})",
                    guard.fence()
                );
                tokio::time::sleep(Duration::from_millis(40)).await;
                store.write(guard.fence());
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await?;
                // Think time between turns, so the others get their go
                // (waiting is not a queue: a worker that asked again at
                // once would often win again).
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            Ok::<_, baton::Error>(())
        }));
    }
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return crate::exit::from_error(&e),
            Err(e) => return Exit::with(1, format!("a worker failed: {e}")),
        }
    }

    baton_cli::out!("\n2. A holder stalls past its lease:");
    let stale = match client
        .lock("demo-job")
        .ttl(Duration::from_millis(300))
        .auto_renew(false)
        .acquire()
        .await
    {
        Ok(guard) => guard,
        Err(e) => return crate::exit::from_error(&e),
    };
    baton_cli::out!(
        "   worker A takes the lock (fence {}), then pauses (think: a long GC)…",
        stale.fence()
    );
    let next = match client
        .lock("demo-job")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
    {
        Ok(guard) => guard,
        Err(e) => return crate::exit::from_error(&e),
    };
    baton_cli::out!(
        "   A's lease expired; worker B takes the lock (fence {}) and writes",
        next.fence()
    );
    store.write(next.fence());
    let refused = !store.write(stale.fence());
    baton_cli::out!(
        "   A wakes up, still believing it holds the lock, and writes with fence {}: {}",
        stale.fence(),
        if refused {
            "REFUSED by the fenced store"
        } else {
            "accepted (!)"
        }
    );
    let _ = next.release().await;
    let _ = stale.release().await;

    let overlaps = overlaps.load(Ordering::SeqCst);
    let ok = overlaps == 0 && refused;
    baton_cli::out!(
        "\nSummary: {} turns, {} writes accepted, {} stale write refused, {} overlapping holders: {}",
        WORKERS * ROUNDS + 2,
        store.accepted.load(Ordering::SeqCst),
        store.refused.load(Ordering::SeqCst),
        overlaps,
        if ok { "mutual exclusion held, and the fence caught the stale holder" } else { "SOMETHING IS WRONG" }
    );
    if ok {
        Exit::quiet(0)
    } else {
        Exit::with(1, "the demo's checks failed")
    }
}

/// A `redis-server` of the demo's own on a free loopback port, stopped when
/// dropped. Nothing is written to disk.
struct PrivateServer {
    child: Child,
    port: u16,
}

impl PrivateServer {
    /// Starts one if `redis-server` can be run; `None` otherwise.
    fn start() -> Option<PrivateServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(PrivateServer { child, port })
    }

    /// A client, once the server answers (it takes a moment to start).
    async fn client(&self) -> Result<Client, baton::Error> {
        let url = format!("redis://127.0.0.1:{}", self.port);
        let mut tries = 0;
        loop {
            match Client::connect(&url).await {
                Ok(client) => return Ok(client),
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
