//! Where a fair lock's wait tail comes from: eight workers, each with a
//! client of its own on a current-thread runtime, take turns on one fair
//! lock (as `baton bench --workload contended --fair`), and every wait at
//! or above the p99 is printed with when it began and its fence, so slow
//! waits can be seen to come alone or in runs.
//!
//! `cargo run --release -p baton --example fair_tail -- redis://127.0.0.1:PORT 2000`
//! (a private server: it takes the lock `baton:tail`).

use std::sync::Arc;
use std::time::{Duration, Instant};
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args().nth(1).expect("a server URL");
    let ops: isize = std::env::args()
        .nth(2)
        .map_or(Ok(2000), |n| n.parse())
        .expect("a number of acquisitions");
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(baton::Client::connect(&url).await.unwrap());
    }
    let remaining = Arc::new(std::sync::atomic::AtomicIsize::new(ops));
    let go = Arc::new(tokio::sync::Barrier::new(9));
    let start = Instant::now();
    let mut handles = Vec::new();
    for (w, client) in clients.into_iter().enumerate() {
        let (remaining, go) = (remaining.clone(), go.clone());
        handles.push(tokio::spawn(async move {
            let lock = client.lock("tail").ttl(Duration::from_secs(10)).fair(true);
            go.wait().await;
            let mut out = Vec::new();
            while remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                let t = Instant::now();
                let g = lock.acquire().await.unwrap();
                let waited = t.elapsed();
                out.push((t.duration_since(start), waited, w, g.fence().0));
                tokio::task::yield_now().await;
                g.release().await.unwrap();
            }
            out
        }));
    }
    go.wait().await;
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_by_key(|x| x.0);
    let mut waits: Vec<_> = all.iter().map(|x| x.1).collect();
    waits.sort();
    let p99 = waits[waits.len() * 99 / 100];
    println!(
        "p50 {:?} p99 {:?} max {:?}",
        waits[waits.len() / 2],
        p99,
        waits.last().unwrap()
    );
    for (i, (at, waited, w, fence)) in all.iter().enumerate() {
        if *waited >= p99 {
            println!(
                "#{i} at {:?} worker {w} waited {:?} fence {fence}",
                at, waited
            );
        }
    }
}
