//! What a lock costs the server, and what dropping and cancelling leave.

use std::time::Duration;

use baton_test_support::{Mode, RedisServer};

use crate::support::{behind_proxy, eventually, within};

/// The calls of each command the server has served, from `INFO commandstats`.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Uncontended: acquire is one script call, release is one, and nothing
/// else reaches the server (no subscription, no extra round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_and_release_are_one_round_trip_each() {
    within(async {
        let server = RedisServer::start();
        let client = baton::Client::connect(&server.url()).await.unwrap();
        // Warm up: load the scripts, so the count below is of steady state.
        client
            .lock("warm")
            .acquire()
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        server.cmd::<()>(&["CONFIG", "RESETSTAT"]);
        let guard = client.lock("job").acquire().await.unwrap();
        assert_eq!(calls(&server, "evalsha"), 1, "acquire");
        guard.release().await.unwrap();
        assert_eq!(calls(&server, "evalsha"), 2, "release");
        // The stats also count the commands the scripts run inside; any
        // other command would be a round trip of its own.
        let inside_scripts = [
            "evalsha", "get", "set", "incr", "del", "publish", "info", "config",
        ];
        let info: String = server.cmd(&["INFO", "commandstats"]);
        let others: Vec<&str> = info
            .lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .filter(|l| {
                !inside_scripts
                    .iter()
                    .any(|c| l.starts_with(&format!("{c}:")) || l.starts_with(&format!("{c}|")))
            })
            .collect();
        assert!(others.is_empty(), "nothing else was sent: {others:?}");
    })
    .await
}

/// A release cancelled while its command is swallowed by the network:
/// renewal has stopped before the release was sent, so the key is never
/// extended again and is gone within its TTL — nobody is left owning it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_release_leaves_nothing_beyond_the_ttl() {
    within(async {
        let (server, proxy, client) = behind_proxy(baton::DEFAULT_NODE_TIMEOUT).await;
        let guard = client
            .lock("job")
            .ttl(Duration::from_millis(600))
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        proxy.set_mode(Mode::Blackhole);
        let cancelled = tokio::time::timeout(Duration::from_millis(50), guard.release()).await;
        assert!(cancelled.is_err(), "the release was cut off mid-flight");
        proxy.set_mode(Mode::Pass);
        let mut last = i64::MAX;
        eventually("the key is gone", || {
            let pttl: i64 = server.cmd(&["PTTL", "baton:job"]);
            assert!(
                pttl <= last,
                "extended after its release was cancelled: {pttl} > {last}"
            );
            last = pttl;
            pttl == -2
        })
        .await;
    })
    .await
}

/// A guard dropped on a plain thread, after the runtime it was acquired on
/// has shut down: no panic, no block; the key expires with its TTL.
#[test]
fn dropping_a_guard_outside_any_runtime_never_panics() {
    let store = baton::MemoryStore::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let guard = runtime.block_on(async {
        store
            .client()
            .lock("job")
            .ttl(Duration::from_millis(100))
            .try_acquire()
            .await
            .unwrap()
            .expect("free")
    });
    drop(runtime);
    std::thread::spawn(move || drop(guard))
        .join()
        .expect("no panic");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let next = store
            .client()
            .lock("job")
            .wait(Duration::from_secs(5))
            .acquire()
            .await
            .unwrap();
        assert_eq!(
            next.fence().0,
            2,
            "taken again once the orphaned lease expired"
        );
    });
}

/// The empty prefix stores the lock at the bare name.
#[tokio::test]
async fn the_empty_prefix_uses_the_bare_name() {
    within(async {
        let server = RedisServer::start();
        let client = baton::Client::builder()
            .node(&server.url())
            .prefix("")
            .build()
            .await
            .unwrap();
        assert_eq!(client.prefix(), "");
        let guard = client
            .lock("bare")
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        assert!(server.cmd::<Option<String>>(&["GET", "bare"]).is_some());
        guard.release().await.unwrap();
    })
    .await
}
