//! What a lock costs the server, and what dropping and cancelling leave.

use std::time::Duration;

use baton_test_support::{Mode, RedisServer};

use crate::support::{behind_proxy, command_calls as calls, eventually, hold, within};

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
        // The stats count the commands run inside scripts too: acquire runs
        // SET and INCR, release GET, DEL and PUBLISH. Exact counts, so any
        // extra round trip (even of one of these) shows.
        let info: String = server.cmd(&["INFO", "commandstats"]);
        let mut seen: Vec<String> = info
            .lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .filter(|l| !l.starts_with("info:") && !l.starts_with("config|"))
            .map(|l| l.split(",usec=").next().unwrap().to_owned())
            .collect();
        seen.sort();
        let want = [
            "del:calls=1",
            "evalsha:calls=2",
            "get:calls=1",
            "incr:calls=1",
            "publish:calls=1",
            "set:calls=1",
        ];
        assert_eq!(
            seen, want,
            "one script call each for acquire and release, nothing else"
        );
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
        let guard = hold(&client, "job", Duration::from_millis(600)).await;
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

/// An extend whose reply never comes may still have been applied: a shorter
/// TTL must shorten the local deadline too, or the guard would claim a lease
/// the server has already ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend_without_a_verdict_shortens_the_deadline() {
    within(async {
        let (server, proxy, client) = behind_proxy(Duration::from_millis(200)).await;
        let mut guard = client
            .lock("job")
            .ttl(Duration::from_secs(10))
            .auto_renew(false)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        guard.extend(Duration::from_secs(10)).await.unwrap(); // loads the script, so the next EVALSHA lands

        // A watcher already asleep until the 10 s deadline is woken by the
        // shortened one, not left to sleep past it.
        let lease = guard.lease().clone();
        let watcher = tokio::spawn(async move { lease.lost().await });
        proxy.set_mode(Mode::DropReplies);
        let err = guard.extend(Duration::from_millis(100)).await.unwrap_err();
        assert!(err.is_backend(), "{err:?}");
        assert!(
            guard.lease().remaining() <= Duration::from_millis(100),
            "deadline now {:?}",
            guard.lease().remaining()
        );
        proxy.set_mode(Mode::Pass);
        tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("the watcher saw the shortened deadline, long before the old one")
            .unwrap();
        guard.lost().await;
        let pttl: i64 = server.cmd(&["PTTL", "baton:job"]);
        assert!(pttl <= 100, "the server applied the short TTL: {pttl}");
    })
    .await
}

/// An extend in flight and a renewal falling due meanwhile never overlap:
/// the server applies the extend's TTL last, as the guard believes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend_and_a_renewal_never_overlap() {
    within(async {
        let server = RedisServer::start();
        let client = baton::Client::builder()
            .node(&server.url())
            .node_timeout(Duration::from_secs(5))
            .build()
            .await
            .unwrap();
        let mut guard = hold(&client, "job", Duration::from_secs(1)).await;
        guard.extend(Duration::from_secs(1)).await.unwrap(); // loads the script: no NOSCRIPT resends below
        server.pause();
        let extend =
            tokio::spawn(
                async move { guard.extend(Duration::from_secs(60)).await.map(|()| guard) },
            );
        // Past the first renewal's due time (ttl/3) while the extend is stuck.
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.resume();
        let guard = extend.await.unwrap().expect("extended");
        // A renewal sent while the extend was stuck would have been applied
        // after it, with the old 1 s TTL.
        let pttl: i64 = server.cmd(&["PTTL", "baton:job"]);
        assert!(
            pttl > 50_000,
            "the server holds the extend's TTL, not a stale renewal's: {pttl}"
        );
        assert!(guard.lease().remaining() <= Duration::from_millis(pttl as u64));
    })
    .await
}

/// A process paused past its lease's deadline (here: its only thread
/// blocked) sends no renewal when it wakes: the renewer finds the deadline
/// passed and marks the lease lost, instead of extending a key that nobody
/// may trust any more.
#[tokio::test(flavor = "current_thread")]
async fn a_lease_past_its_deadline_after_a_pause_is_not_renewed() {
    within(async {
        let server = RedisServer::start();
        let client = baton::Client::connect(&server.url()).await.unwrap();
        let ttl = Duration::from_millis(300);
        let guard = hold(&client, "job", ttl).await;
        server.cmd::<()>(&["CONFIG", "RESETSTAT"]);
        // The pause: nothing of this process runs for one and a half TTLs.
        std::thread::sleep(ttl * 3 / 2);
        eventually("the renewer gave the lease up", || client.renewing() == 0).await;
        // Neither form of extend: the script, or the native SET … IFEQ.
        assert_eq!(calls(&server, "evalsha"), 0, "no renewal was sent");
        assert_eq!(calls(&server, "set"), 0, "no renewal was sent");
        assert!(!guard.is_held());
        guard.lost().await;
    })
    .await
}

/// Whether `server` knows `SET … IFEQ` (Valkey ≥ 8.1): nil for a key that
/// does not exist, where other servers answer a syntax error.
fn has_native_extend(server: &RedisServer) -> bool {
    server
        .try_cmd::<Option<String>>(&["SET", "baton-test:ifeq-probe", "x", "IFEQ", "x"])
        .is_ok()
}

/// Renewals are one command per lease: on a server with `SET … IFEQ` the
/// native extend (no script at all, about a quarter of its server time);
/// elsewhere the extend script, after one refused native extend that
/// changed nothing. Either way the lease stays held across several TTLs,
/// and a renewal refused (the key is another's) loses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_use_the_native_extend_where_the_server_has_it() {
    within(async {
        let server = RedisServer::start();
        let native = has_native_extend(&server);
        let client = baton::Client::connect(&server.url()).await.unwrap();
        let ttl = Duration::from_millis(300);
        let guard = hold(&client, "job", ttl).await;
        server.cmd::<()>(&["CONFIG", "RESETSTAT"]);
        eventually("three renewals", || {
            calls(&server, "evalsha") + calls(&server, "set") >= 3 + u64::from(!native)
        })
        .await;
        assert!(guard.is_held());
        let pttl: i64 = server.cmd(&["PTTL", "baton:job"]);
        assert!(pttl > 0 && pttl <= 300, "renewed to the TTL: {pttl}");
        if native {
            assert_eq!(calls(&server, "evalsha"), 0, "no script");
        } else {
            let info: String = server.cmd(&["INFO", "commandstats"]);
            let set = info
                .lines()
                .find(|l| l.starts_with("cmdstat_set:"))
                .expect("the refused SET … IFEQ is counted");
            // Refused once, for the whole connection.
            assert_eq!(calls(&server, "set"), 1, "{set}");
            assert!(set.ends_with("failed_calls=1"), "{set}");
            assert!(calls(&server, "evalsha") >= 3, "the script renews");
        }
        // Another's key now: the next renewal is refused and the lease lost.
        server.cmd::<()>(&["SET", "baton:job", "someone-else"]);
        guard.lease().lost().await;
        assert!(!guard.is_held());
        let value: Option<String> = server.cmd(&["GET", "baton:job"]);
        assert_eq!(value.as_deref(), Some("someone-else"), "not overwritten");
    })
    .await
}
