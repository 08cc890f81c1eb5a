//! Redis Cluster (`redis+cluster://`): scratch smoke test, replaced below.

use std::time::Duration;

use baton::Client;

fn seeds() -> Option<String> {
    std::env::var("BATON_SCRATCH_CLUSTER").ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let Some(seeds) = seeds() else { return };
    let client = Client::builder().node(&seeds).build().await.unwrap();
    let other = Client::builder().node(&seeds).build().await.unwrap();
    let mut guards = Vec::new();
    for i in 0..50 {
        let g = client
            .lock(&format!("smoke{i}"))
            .ttl(Duration::from_millis(600))
            .try_acquire()
            .await
            .unwrap()
            .unwrap();
        guards.push(g);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for g in &guards {
        assert!(g.is_held());
    }
    let t0 = std::time::Instant::now();
    let waiter = tokio::spawn({
        let other = other.clone();
        async move {
            other
                .lock("smoke0")
                .wait(Duration::from_secs(10))
                .retry_interval(Duration::from_secs(5))
                .acquire()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for g in guards {
        g.release().await.unwrap();
    }
    let w = waiter.await.unwrap().unwrap();
    eprintln!("woken after {:?}", t0.elapsed());
    w.release().await.unwrap();
    let st = client.status("smoke3").await.unwrap();
    eprintln!("{st:?}");
}
