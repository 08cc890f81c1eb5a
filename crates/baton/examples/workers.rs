//! Several workers, one nightly report: each tries the lock and skips the
//! work if another is on it, then all of them wait their turn.
//!
//! `cargo run -p baton --example workers` uses the in-memory store;
//! `BATON_URL=redis://127.0.0.1:6379 cargo run -p baton --example workers`
//! uses a Redis server.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), baton::Error> {
    let client = match std::env::var("BATON_URL") {
        Ok(url) => {
            println!("using redis at {url}");
            baton::Client::connect(&url).await?
        }
        Err(_) => {
            println!("using the in-memory store (set BATON_URL to use redis)");
            baton::Client::in_memory()
        }
    };
    let lock = client.lock("nightly-report").ttl(Duration::from_secs(5));

    println!("-- skip if busy (try_acquire):");
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let lock = lock.clone();
        tasks.push(tokio::spawn(async move {
            match lock.try_acquire().await? {
                Some(guard) => {
                    println!(
                        "worker {worker}: running the report (fence {})",
                        guard.fence()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    guard.release().await?;
                }
                None => println!("worker {worker}: already running elsewhere, skipping"),
            }
            Ok::<_, baton::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("worker")?;
    }

    println!("-- wait your turn (run):");
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let lock = lock.clone().wait(Duration::from_secs(10));
        tasks.push(tokio::spawn(async move {
            lock.run(|lease| async move {
                println!("worker {worker}: holding with fence {}", lease.fence());
                tokio::time::sleep(Duration::from_millis(50)).await;
            })
            .await
        }));
    }
    for task in tasks {
        task.await.expect("worker")?;
    }
    println!("done: fences only ever increased, one holder at a time");
    Ok(())
}
