//! How short a lease renewal can keep: for each TTL, 5 leases held with
//! auto-renewal for 2 s, 10 times over, against a private redis-server
//! (needs `redis-server` on PATH); prints how many were lost. The basis of
//! `baton::MIN_TTL`. Run it beside a load (`yes > /dev/null &` twice) to see
//! a busy machine.
//!
//! ```sh
//! cargo run --release -p baton --example min_ttl
//! ```
//!
//! Leases shorter than `MIN_TTL` are refused by the library, so this sets
//! them through the lower bound's own check: it only measures TTLs the
//! library accepts, and says so for the rest.

use std::time::Duration;

use baton_test_support::RedisServer;

const LEASES: usize = 5;
const TRIALS: usize = 10;
const HOLD: Duration = Duration::from_secs(2);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = RedisServer::start();
    let client = baton::Client::connect(&server.url())
        .await
        .expect("connect to the private redis-server");
    println!("TTL ms  lost (of {})", LEASES * TRIALS);
    for ms in [10_u64, 20, 30, 50, 100] {
        let ttl = Duration::from_millis(ms);
        let mut lost = 0;
        for trial in 0..TRIALS {
            let mut guards = Vec::new();
            for i in 0..LEASES {
                let lock = client.lock(&format!("min-ttl-{ms}-{trial}-{i}")).ttl(ttl);
                match lock.try_acquire().await {
                    Ok(guard) => guards.push(guard.expect("a fresh name is free")),
                    Err(baton::Error::InvalidTtl { reason, .. }) => {
                        println!("{ms:>6}  refused: {reason}");
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            if guards.is_empty() {
                break;
            }
            tokio::time::sleep(HOLD).await;
            lost += guards.iter().filter(|g| !g.is_held()).count();
            for guard in guards {
                let _ = guard.release().await;
            }
            if trial + 1 == TRIALS {
                println!("{ms:>6}  {lost}");
            }
        }
    }
}
