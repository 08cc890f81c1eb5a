//! Many held leases through a server stall: how many does renewal declare
//! lost, and how many were really lost on the server?
//!
//! Takes N leases (TTL 3 s, auto-renewed) on a private redis-server (needs
//! `redis-server` on PATH), lets them renew for a while, stops the server
//! with SIGSTOP for the stall, resumes it, waits two TTLs, and counts the
//! leases the library declared lost and the lock keys still on the server.
//!
//! ```sh
//! cargo run --release -p baton --example renewal_stall -- 100000 1200
//! ```
//! (arguments: leases, stall in ms; defaults 100000 and 1200).

use std::time::Duration;

use baton_test_support::RedisServer;
use futures_util::stream::{self, StreamExt};

const TTL: Duration = Duration::from_secs(3);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let leases: usize = args.next().map_or(100_000, |a| a.parse().expect("leases"));
    let stall = Duration::from_millis(args.next().map_or(1200, |a| a.parse().expect("stall ms")));
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(std::io::stderr)
            .init();
    }
    let server = RedisServer::start();
    let client = baton::Client::connect(&server.url())
        .await
        .expect("connect to the private redis-server");
    let guards: Vec<baton::Guard> = stream::iter(0..leases)
        .map(|i| {
            let lock = client.lock(&format!("stall-{i}")).ttl(TTL);
            async move { lock.try_acquire().await }
        })
        .buffer_unordered(256)
        .map(|g| g.expect("acquire").expect("free"))
        .collect()
        .await;
    // Renewals spread over the TTL, as in a service that took them over time.
    tokio::time::sleep(TTL).await;
    server.pause();
    tokio::time::sleep(stall).await;
    server.resume();
    tokio::time::sleep(TTL * 2).await;
    let declared_lost = guards.iter().filter(|g| !g.is_held()).count();
    let held = guards.len() - declared_lost;
    let on_server = server
        .keys()
        .iter()
        .filter(|k| k.starts_with("baton:stall-"))
        .count();
    println!(
        "{leases} leases, TTL {TTL:?}, stall {stall:?}: {declared_lost} declared lost, {held} held, {on_server} lock keys on the server"
    );
    std::process::exit(i32::from(declared_lost > 0));
}
