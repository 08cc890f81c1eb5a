//! Issue 9's defects, each pinned by a test that failed before its fix:
//! connections closed while idle, refused release announcements, holder
//! values that are not text, duplicate Redlock nodes, evictable fences, and
//! a slow Redlock node.

use std::time::Duration;

use baton::{Client, Error, Released};
use baton_test_support::{FaultProxy, Mode, RedisServer};
use tokio::time::Instant;

use crate::support::{command_calls, eventually, hold, spawn_waiter, within, LogCapture};

const KEY: &str = "baton:job";

/// Redis's own count of its client connections (this query's included).
fn connected_clients(server: &RedisServer) -> usize {
    let info: String = server.cmd(&["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO clients has connected_clients")
}

/// Takes lock `job` for 30 s without renewal, so its connection can go idle.
async fn hold_unrenewed(client: &Client) -> baton::Guard {
    client
        .lock("job")
        .ttl(Duration::from_secs(30))
        .auto_renew(false)
        .try_acquire()
        .await
        .unwrap()
        .expect("free")
}

/// A server that closes connections idle for a second (`timeout 1`, as
/// managed services and proxies do), and a client whose one command
/// connection it has already closed.
async fn closed_while_idle() -> (RedisServer, Client, baton::Guard) {
    let server = RedisServer::start();
    server.cmd::<()>(&["CONFIG", "SET", "timeout", "1"]);
    let client = Client::connect(&server.url()).await.unwrap();
    let guard = hold_unrenewed(&client).await;
    eventually("the server closed the idle connection", || {
        connected_clients(&server) == 1
    })
    .await;
    (server, client, guard)
}

/// The release that follows an idle period in which the server closed the
/// connection is sent again on a fresh one: the lock is released, not left
/// for its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_after_the_server_closed_the_idle_connection_releases() {
    within(async {
        let (server, client, guard) = closed_while_idle().await;
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        assert_eq!(server.cmd::<Option<String>>(&["GET", KEY]), None);
        let next = client.lock("job").try_acquire().await.unwrap();
        assert!(next.is_some(), "free for the next holder at once");
    })
    .await
}

/// A waiter whose command connection was closed while it waited takes the
/// lock when the holder (whose connection was closed too) releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_after_an_idle_close_takes_the_lock() {
    within(async {
        let (server, _holder_client, guard) = closed_while_idle().await;
        let waiter_client = Client::connect(&server.url()).await.unwrap();
        let waiter = spawn_waiter(
            waiter_client
                .lock("job")
                .retry_interval(Duration::from_secs(30)),
        );
        // Its pub/sub connection stays (Redis never times out subscribers);
        // its command connection is closed.
        eventually("the waiter subscribed", || {
            server.cmd::<Vec<redis::Value>>(&[
                "PUBSUB",
                "NUMSUB",
                &baton_core::Keys::new("baton:", "job").unwrap().channel,
            ])[1]
                == redis::Value::Int(1)
        })
        .await;
        eventually("the server closed both idle command connections", || {
            connected_clients(&server) == 2 // the waiter's subscriber and this query
        })
        .await;
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        let (next, _) = waiter.await.unwrap().expect("acquired, not an error");
        assert!(next.is_held());
    })
    .await
}

/// A client whose runtime has gone (the blocking API's pattern, a test
/// harness, a restarted service) works on the next runtime at once.
#[test]
fn a_client_outlives_the_runtime_it_was_made_on() {
    let server = RedisServer::start();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = first.block_on(async {
        let client = Client::connect(&server.url()).await.unwrap();
        let guard = hold(&client, "job", Duration::from_secs(30)).await;
        guard.release().await.unwrap();
        client
    });
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(within(async {
        let guard = client
            .lock("job")
            .try_acquire()
            .await
            .expect("the first call on the new runtime works")
            .expect("free");
        assert_eq!(guard.release().await.unwrap(), Released::Released);
    }));
}

/// A proxy (or load balancer) that closes idle connections: the release
/// after the idle period meets the closed connection, is sent again on a
/// fresh one and releases; the next call works at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_after_a_proxy_closed_the_idle_connection_releases() {
    within(async {
        let server = RedisServer::start();
        let proxy = FaultProxy::start(server.addr()).await;
        let node_timeout = Duration::from_secs(5);
        let client = Client::builder()
            .node(&proxy.url())
            .node_timeout(node_timeout)
            .build()
            .await
            .unwrap();
        let guard = hold_unrenewed(&client).await;
        proxy.set_mode(Mode::CloseIdle(Duration::from_millis(50)));
        eventually("the proxy closed the idle connection", || {
            proxy.closed_idle() == 1
        })
        .await;
        proxy.set_mode(Mode::Pass);
        let started = Instant::now();
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        assert_eq!(server.cmd::<Option<String>>(&["GET", KEY]), None);
        let next = client.lock("job").try_acquire().await.unwrap();
        assert!(next.is_some());
        assert!(started.elapsed() < node_timeout, "no timeout on the way");
    })
    .await
}

/// An ACL user that may not publish on the release channel (or may not
/// PUBLISH at all): the release happens, and it is reported as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_announcement_does_not_fail_a_release() {
    within(async {
        let server = RedisServer::start();
        for (user, rule) in [("nochannel", "resetchannels"), ("nopublish", "-publish")] {
            server.cmd::<()>(&[
                "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", rule,
            ]);
            let url = format!("redis://{user}:pw@127.0.0.1:{}/", server.port());
            let client = Client::connect(&url).await.unwrap();
            let guard = hold(&client, "job", Duration::from_secs(30)).await;
            assert_eq!(guard.release().await.unwrap(), Released::Released, "{user}");
            assert_eq!(server.cmd::<Option<String>>(&["GET", KEY]), None, "{user}");

            let value = client
                .lock("job")
                .run(|lease| async move { lease.fence() })
                .await
                .unwrap_or_else(|e| panic!("{user}: run after the work succeeded: {e}"));
            assert!(value.0 > 0);

            let _stuck = hold(&client, "job", Duration::from_secs(30)).await;
            let removed = client.force_release("job").await.unwrap();
            assert_eq!(
                removed.len(),
                1,
                "{user}: forced release reports the holder"
            );
            assert_eq!(server.cmd::<Option<String>>(&["GET", KEY]), None, "{user}");
        }
    })
    .await
}

/// A holder value that is not UTF-8 (another library storing raw bytes):
/// status says held, with a lossy fingerprint, instead of failing.
#[tokio::test]
async fn a_holder_value_that_is_not_text_is_still_a_holder() {
    within(async {
        let server = RedisServer::start();
        redis::cmd("SET")
            .arg(KEY)
            .arg(&[0xff_u8, 0xfe, b'a', 0x00, 0x80][..])
            .query::<()>(&mut server.conn())
            .unwrap();
        let client = Client::connect(&server.url()).await.unwrap();
        let holder = client.status("job").await.unwrap().holder.expect("held");
        assert_eq!(holder.fingerprint, "\u{fffd}\u{fffd}a\u{0}\u{fffd}");
        assert!(client.lock("job").try_acquire().await.unwrap().is_none());
        let removed = client.force_release("job").await.unwrap();
        assert_eq!(removed, vec!["\u{fffd}\u{fffd}a\u{0}\u{fffd}".to_owned()]);
    })
    .await
}

/// One server named twice would count twice towards a quorum: refused,
/// naming both URLs (without passwords), before anything is sent.
#[tokio::test]
async fn a_server_named_twice_is_refused() {
    for urls in [
        "redis://127.0.0.1:1,redis://127.0.0.1:1,redis://127.0.0.1:2",
        "redis://:s3cret@127.0.0.1:1/0,redis://127.0.0.1:2,redis://:other@127.0.0.1:1",
        "redis://LOCALHOST:1,redis://localhost:1/",
    ] {
        let err = Client::connect(urls).await.unwrap_err();
        let Error::InvalidUrl { url, reason } = &err else {
            panic!("{urls}: {err:?}");
        };
        assert!(reason.contains("same server as"), "{reason}");
        let shown = format!("{err}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("other"),
            "{shown}"
        );
        assert!(url.contains(":1"), "{url}");
    }
    // Two databases of one server are still one server: two votes.
    let err = Client::connect("redis://127.0.0.1:1/0,redis://127.0.0.1:1/1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    // Socket paths differ by case.
    let err = Client::connect("unix:///tmp/baton-A.sock,unix:///tmp/baton-a.sock")
        .await
        .unwrap_err();
    assert!(!matches!(err, Error::InvalidUrl { .. }), "{err:?}");
}

/// A server that may evict keys without a TTL (`allkeys-*`) can evict a
/// fence counter, and fences would start again at 1: said at connect.
#[tokio::test]
async fn an_eviction_policy_that_can_reset_fences_is_warned_about() {
    let server = RedisServer::start();
    let quiet = LogCapture::start();
    Client::connect(&server.url()).await.unwrap();
    let quiet = quiet.text();
    assert!(!quiet.contains("maxmemory-policy"), "noeviction: {quiet}");
    server.cmd::<()>(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let warned = LogCapture::start();
    Client::connect(&server.url()).await.unwrap();
    let warned = warned.text();
    assert!(
        warned.contains("WARN") && warned.contains("allkeys-lru") && warned.contains("noeviction"),
        "{warned}"
    );
}

/// One Redlock node that never answers (blackholed, a long node timeout):
/// status, release, and a waiter's wake-up all go at the pace of the two
/// others — none waits for the silent node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redlock_node_delays_no_release_status_or_waiter() {
    within(async {
        let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
        let proxy = FaultProxy::start(servers[2].addr()).await;
        let urls = [servers[0].url(), servers[1].url(), proxy.url()].join(",");
        let node_timeout = Duration::from_secs(20);
        let connect = || async {
            Client::builder()
                .node(&urls)
                .node_timeout(node_timeout)
                .build()
                .await
                .unwrap()
        };
        let (holder, other) = (connect().await, connect().await);
        proxy.set_mode(Mode::Blackhole);
        let started = Instant::now();
        let guard = hold(&holder, "job", Duration::from_secs(30)).await;
        let status = other.status("job").await.unwrap();
        assert!(status.holder.is_some(), "held on a quorum");
        let attempts = |s: &RedisServer| command_calls(s, "evalsha");
        let before: Vec<u64> = servers[..2].iter().map(attempts).collect();
        let waiter = spawn_waiter(other.lock("job").retry_interval(Duration::from_secs(30)));
        // Subscribed, and past its two attempts (the first, and the one
        // after subscribing): an attempt that met the release half-done
        // (free on one node, held on the other) would hang on the silent
        // node's answer, which then decides it.
        eventually(
            "the waiter waits, subscribed on both answering nodes",
            || {
                let channel = baton_core::Keys::new("baton:", "job").unwrap().channel;
                servers[..2].iter().zip(&before).all(|(s, &before)| {
                    s.cmd::<Vec<redis::Value>>(&["PUBSUB", "NUMSUB", &channel])[1]
                        == redis::Value::Int(1)
                        && attempts(s) >= before + 2
                })
            },
        )
        .await;
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        let (next, _) = waiter.await.unwrap().expect("acquired");
        assert!(next.is_held());
        assert!(
            started.elapsed() < node_timeout,
            "nothing waited for the silent node ({:?})",
            started.elapsed()
        );
        let free_status = holder.status("nothing-here").await.unwrap();
        assert_eq!(free_status.holder, None);
        assert!(started.elapsed() < node_timeout);
    })
    .await
}

/// Renewal over three nodes, one of them silent (a long node timeout): each
/// renewal is decided by the two that answer, so a lease much shorter than
/// the node timeout stays held for many TTLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redlock_node_does_not_hold_up_renewal() {
    within(async {
        let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
        let proxy = FaultProxy::start(servers[2].addr()).await;
        let urls = [servers[0].url(), servers[1].url(), proxy.url()].join(",");
        let client = Client::builder()
            .node(&urls)
            .node_timeout(Duration::from_secs(10))
            .build()
            .await
            .unwrap();
        proxy.set_mode(Mode::Blackhole);
        let ttl = Duration::from_millis(400);
        let guard = hold(&client, "job", ttl).await;
        // Many renewals' worth of time: each would wait 10 s for the
        // silent node if renewal waited for every node.
        tokio::time::sleep(ttl * 6).await;
        assert!(guard.is_held(), "renewed by the two that answer");
        assert_eq!(client.renewing(), 1);
        assert_eq!(guard.release().await.unwrap(), Released::Released);
    })
    .await
}
