//! Redlock over 3 and 5 real servers: quorum, faults, fences.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton::{Client, Error, NodeFailure, Released};
use baton_test_support::{FaultProxy, Mode, RedisServer, ServerOptions};
use tokio::time::Instant;

use crate::support::{command_calls, hold, within};

const KEY: &str = "baton:job";
const FOREIGN: &str = "someone-else";

/// N private servers, optionally each behind a fault proxy.
struct Cluster {
    servers: Vec<RedisServer>,
    proxies: Vec<FaultProxy>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::with(n, ServerOptions::default())
    }

    fn with(n: usize, options: ServerOptions) -> Cluster {
        let servers = (0..n)
            .map(|_| RedisServer::start_with(options.clone()))
            .collect();
        Cluster {
            servers,
            proxies: Vec::new(),
        }
    }

    async fn proxied(n: usize) -> Cluster {
        let mut cluster = Cluster::start(n);
        for server in &cluster.servers {
            cluster.proxies.push(FaultProxy::start(server.addr()).await);
        }
        cluster
    }

    /// A client over every node (through the proxies, if any).
    async fn client(&self, node_timeout: Duration) -> Client {
        let urls: Vec<String> = if self.proxies.is_empty() {
            self.servers.iter().map(RedisServer::url).collect()
        } else {
            self.proxies.iter().map(FaultProxy::url).collect()
        };
        Client::builder()
            .node(&urls.join(","))
            .node_timeout(node_timeout)
            .build()
            .await
            .expect("connect")
    }

    /// Waits until `key` is set on every node (requests of a won round may
    /// still be landing when it returns).
    async fn wait_set_everywhere(&self, key: &str) {
        crate::support::eventually(&format!("{key} set on every node"), || {
            self.servers
                .iter()
                .all(|s| s.cmd::<Option<String>>(&["GET", key]).is_some())
        })
        .await;
    }

    /// Loads the scripts on every node, so later EVALSHAs need no NOSCRIPT
    /// resend: takes a lock, waits until every node's request has landed (so
    /// none lands later), releases it, and waits until every node's release
    /// has landed too (a release returns at a quorum; the last one's
    /// announcement must not land in a later measurement).
    async fn warm_up(&self, client: &Client) {
        let warm = hold(client, "warm", Duration::from_secs(2)).await;
        self.wait_set_everywhere("baton:warm").await;
        warm.release().await.unwrap();
        crate::support::eventually("baton:warm released on every node", || {
            self.servers
                .iter()
                .all(|s| s.cmd::<Option<String>>(&["GET", "baton:warm"]).is_none())
        })
        .await;
    }

    /// The value of the lock key on each node.
    fn values(&self) -> Vec<Option<String>> {
        self.servers.iter().map(|s| s.cmd(&["GET", KEY])).collect()
    }
}

const TIMEOUT: Duration = Duration::from_millis(200);

/// Every pattern of nodes pre-held by a foreign token, on 3 and 5 nodes:
/// acquire succeeds iff the free nodes are a quorum; on failure none of our
/// tokens remain anywhere, and the foreign keys are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pattern_of_foreign_holders() {
    within(async {
        for n in [3usize, 5] {
            let cluster = Cluster::start(n);
            let client = cluster.client(TIMEOUT).await;
            for mask in 0u32..(1 << n) {
                for (i, server) in cluster.servers.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        server.cmd::<()>(&["SET", KEY, FOREIGN, "PX", "60000"]);
                    }
                }
                let free = n - mask.count_ones() as usize;
                let got = client
                    .lock("job")
                    .auto_renew(false)
                    .try_acquire()
                    .await
                    .expect("no error");
                assert_eq!(got.is_some(), free > n / 2, "n={n} mask={mask:b}");
                if got.is_none() {
                    // A lost attempt is taken back in the background.
                    crate::support::eventually("no token of ours left behind", || {
                        cluster
                            .values()
                            .iter()
                            .enumerate()
                            .all(|(i, v)| (mask & (1 << i) != 0) || v.is_none())
                    })
                    .await;
                }
                for (i, value) in cluster.values().into_iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        assert_eq!(
                            value.as_deref(),
                            Some(FOREIGN),
                            "foreign key untouched: n={n} mask={mask:b} node {i}"
                        );
                    }
                }
                if let Some(guard) = got {
                    assert_eq!(guard.release().await.unwrap(), Released::Released);
                    // Returned at quorum: the rest lands in the background.
                    crate::support::eventually("released everywhere", || {
                        cluster
                            .values()
                            .iter()
                            .all(|v| v.as_deref().is_none_or(|v| v == FOREIGN))
                    })
                    .await;
                }
                for server in &cluster.servers {
                    server.cmd::<()>(&["DEL", KEY]);
                }
            }
        }
    })
    .await
}

/// 2 of 5 killed: acquire, extend and release work. 3 of 5 down: a quorum
/// error naming the failed nodes, quickly, and no stray keys on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_five_down_works_three_is_a_named_quorum_error() {
    within(async {
        let mut cluster = Cluster::start(5);
        let client = cluster.client(TIMEOUT).await;
        cluster.servers[1].kill();
        cluster.servers[3].kill();
        let mut guard = client
            .lock("job")
            .try_acquire()
            .await
            .unwrap()
            .expect("3 of 5 is a quorum");
        guard.extend(Duration::from_secs(30)).await.unwrap();
        assert_eq!(guard.release().await.unwrap(), Released::Released);

        cluster.servers[4].kill();
        let start = Instant::now();
        let err = client.lock("job").try_acquire().await.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "bounded by the node timeout, not the ttl"
        );
        match &err {
            Error::NoQuorum {
                acquired,
                quorum,
                nodes_total,
                nodes,
                ..
            } => {
                assert_eq!((*acquired, *quorum, *nodes_total), (2, 3, 5));
                let failed: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
                let want: Vec<String> = [1, 3, 4]
                    .iter()
                    .map(|&i| format!("127.0.0.1:{}", cluster.servers[i].port()))
                    .collect();
                assert_eq!(failed, want, "{err}");
                assert!(nodes
                    .iter()
                    .all(|n| matches!(n.failure, NodeFailure::Error(_))));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_backend() && err.is_retryable());
        // The two live nodes said yes, and were released again.
        crate::support::eventually("no stray keys", || {
            [0, 2].iter().all(|&i| {
                cluster.servers[i]
                    .cmd::<Option<String>>(&["GET", KEY])
                    .is_none()
            })
        })
        .await;
    })
    .await
}

/// A node timeout long enough that a loaded machine answers well within it.
const STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A blackholed or stopped node costs about the node timeout: with a quorum
/// of healthy nodes the acquire does not wait for it; without, the error
/// comes after the node timeout, not the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_costs_the_node_timeout_not_the_ttl() {
    within(async {
        let cluster = Cluster::proxied(5).await;
        let client = cluster.client(STALL_TIMEOUT).await;
        let lock = client.lock("job").ttl(Duration::from_secs(30));
        cluster.proxies[0].set_mode(Mode::Blackhole);
        cluster.servers[1].pause();
        let start = Instant::now();
        let guard = lock.try_acquire().await.unwrap().expect("3 healthy of 5");
        assert!(
            start.elapsed() < STALL_TIMEOUT,
            "did not wait for the stalled nodes: {:?}",
            start.elapsed()
        );
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        cluster.proxies[2].set_mode(Mode::Blackhole);
        let start = Instant::now();
        let err = lock.try_acquire().await.unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, Error::NoQuorum { .. }), "{err}");
        assert!(
            took >= STALL_TIMEOUT && took < Duration::from_secs(5),
            "about the node timeout: {took:?}"
        );
        cluster.servers[1].resume();
    })
    .await
}

/// Replies from one node are dropped: that node counts as failed, yet the
/// release reaches it — its key is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_replies_count_as_failure_and_the_release_still_arrives() {
    within(async {
        let cluster = Cluster::proxied(3).await;
        let client = cluster.client(TIMEOUT).await;
        // The EVALSHA sent into the silence must be applied, not refused
        // with NOSCRIPT.
        cluster.warm_up(&client).await;
        cluster.proxies[0].set_mode(Mode::DropReplies);
        let guard = client
            .lock("job")
            .auto_renew(false)
            .try_acquire()
            .await
            .unwrap()
            .expect("2 of 3");
        // The round may be won before the silent node's SET is applied.
        cluster.wait_set_everywhere(KEY).await;
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        assert_eq!(
            cluster.values(),
            vec![None, None, None],
            "released on every node, the silent one included"
        );
    })
    .await
}

/// Latency that pushes the round past `ttl - drift`: not acquired (no
/// guard with no validity), and nothing of ours lingers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_slower_than_the_ttl_is_not_a_win() {
    within(async {
        let cluster = Cluster::proxied(3).await;
        let client = cluster.client(Duration::from_secs(2)).await;
        cluster.warm_up(&client).await;
        for proxy in &cluster.proxies {
            proxy.set_mode(Mode::Delay(Duration::from_millis(40)));
        }
        let got = client
            .lock("job")
            .ttl(Duration::from_millis(50))
            .try_acquire()
            .await
            .unwrap();
        assert!(
            got.is_none(),
            "a round that took longer than its lease is not won"
        );
        for proxy in &cluster.proxies {
            proxy.set_mode(Mode::Pass);
        }
        crate::support::eventually("nothing lingers", || {
            cluster.values().iter().all(Option::is_none)
        })
        .await;
    })
    .await
}

/// Ten clients starting together on five nodes: one holder at a time,
/// read-modify-write exact, split votes resolve, and everyone gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_on_five_nodes_exclude_each_other() {
    within(async {
        let cluster = Cluster::start(5);
        let value = Arc::new(AtomicU64::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(tokio::sync::Barrier::new(10));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let client = cluster.client(TIMEOUT).await;
            let (value, inside, start) = (value.clone(), inside.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                let lock = client
                    .lock("counter")
                    .ttl(Duration::from_secs(5))
                    .wait(Duration::from_secs(30));
                start.wait().await;
                let mut fences = Vec::new();
                for _ in 0..10 {
                    let guard = lock.acquire().await.expect("acquired within the wait");
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders at once"
                    );
                    fences.push(guard.fence());
                    let read = value.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    value.store(read + 1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.expect("release");
                }
                fences
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            let fences = task.await.unwrap();
            assert!(fences.windows(2).all(|w| w[0] < w[1]));
            all.extend(fences);
        }
        assert_eq!(value.load(Ordering::SeqCst), 100);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100, "no fence handed out twice");
    })
    .await
}

/// Extend with 2 of 5 failing succeeds; with 3 of 5 failing it cannot
/// reach a quorum: a NoQuorum error, and lost() fires before the deadline
/// as renewal gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_holds_with_two_of_five_failing_and_not_with_three() {
    within(async {
        let mut cluster = Cluster::start(5);
        let client = cluster.client(TIMEOUT).await;
        cluster.warm_up(&client).await;
        let mut guard = hold(&client, "job", Duration::from_secs(2)).await;
        // The round may be won before the last nodes answered.
        cluster.wait_set_everywhere(KEY).await;
        cluster.servers[0].kill();
        cluster.servers[1].kill();
        guard
            .extend(Duration::from_secs(2))
            .await
            .expect("3 of 5 extend");
        cluster.servers[2].kill();
        let deadline = Instant::now() + guard.lease().remaining();
        let err = guard.extend(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, Error::NoQuorum { .. }), "{err}");
        guard.lost().await;
        assert!(
            Instant::now() < deadline,
            "lost() fired before the deadline"
        );
        assert!(!guard.is_held());
    })
    .await
}

/// Fences keep increasing across holders while nodes are killed and
/// restarted — with persistence. Without it, a quorum of restarted nodes
/// forgets the counters and a fence goes back: the documented exception.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_survive_restarts_with_persistence_only() {
    within(async {
        for persistence in [true, false] {
            let mut cluster = Cluster::with(3, ServerOptions::default().persistence(persistence));
            let client = cluster.client(TIMEOUT).await;
            let mut last = 0;
            for round in 0..9 {
                let guard = client
                    .lock("job")
                    .try_acquire()
                    .await
                    .unwrap()
                    .expect("free");
                // Without persistence every restart forgets a counter, and
                // over a few rounds a majority of the nodes has forgotten the
                // last settled fence: no promise then (the documented
                // exception), only with persistence.
                if persistence {
                    assert!(
                        guard.fence().0 > last,
                        "persistence={persistence}: {} after {last}",
                        guard.fence()
                    );
                }
                last = last.max(guard.fence().0);
                guard.release().await.unwrap();
                let node = round % 3;
                cluster.servers[node].kill();
                cluster.servers[node].restart();
            }
            // Node 0 down; nodes 1 and 2 restarted: only their counters count.
            cluster.servers[0].kill();
            cluster.servers[1].kill();
            cluster.servers[1].restart();
            cluster.servers[2].kill();
            cluster.servers[2].restart();
            let guard = crate::support::eventually_async("the clients reconnect", || async {
                client.lock("job").try_acquire().await.ok().flatten()
            })
            .await;
            if persistence {
                assert!(
                    guard.fence().0 > last,
                    "with persistence the fence still increases"
                );
            } else {
                assert!(
                    guard.fence().0 < last,
                    "without persistence a fence repeats (documented)"
                );
            }
        }
    })
    .await
}

/// Validity and deadlines never read the wall clock: no `SystemTime` in
/// the library or its core, so wall-clock jumps cannot matter.
#[test]
fn no_wall_clock_in_the_library() {
    let roots = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/src"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../baton-core/src"),
    ];
    for root in roots {
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !text.contains("SystemTime") && !text.contains("UNIX_EPOCH"),
                    "{}",
                    path.display()
                );
            }
        }
    }
}

/// Counters that disagree are settled before the lease is handed out: one
/// node is far ahead, the won fence is its value, and the next holder —
/// whose quorum leaves that node out — still gets a larger fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disagreeing_counters_are_settled_on_a_quorum() {
    within(async {
        let mut cluster = Cluster::start(3);
        let fence_key = baton_core::Keys::new("baton:", "job").unwrap().fence;
        cluster.servers[0].cmd::<()>(&["SET", &fence_key, "100"]);
        let client = cluster.client(TIMEOUT).await;
        // With node 2 down, the quorum is nodes 0 and 1, which disagree.
        cluster.servers[2].kill();
        let first = client
            .lock("job")
            .try_acquire()
            .await
            .unwrap()
            .expect("2 of 3");
        assert_eq!(first.fence().0, 101);
        let counter: u64 = cluster.servers[1].cmd(&["GET", &fence_key]);
        assert_eq!(counter, 101, "node 1 raised to the fence");
        let first = {
            let fence = first.fence();
            first.release().await.unwrap();
            fence
        };
        // The next quorum leaves node 0 out: nodes 1 and 2 (restarted empty).
        cluster.servers[0].kill();
        cluster.servers[2].restart();
        let second =
            crate::support::eventually_async("the client reconnects to node 2", || async {
                client.lock("job").try_acquire().await.ok().flatten()
            })
            .await;
        assert!(second.fence() > first, "{} after {first}", second.fence());
    })
    .await
}

/// A waiter on three nodes is woken by the release notification (its
/// fallback retry is 30 s), whichever node's announcement comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_redlock_waiter_at_once() {
    within(async {
        let cluster = Cluster::start(3);
        let (holder, waiter) = (cluster.client(TIMEOUT).await, cluster.client(TIMEOUT).await);
        let held = holder
            .lock("job")
            .ttl(Duration::from_secs(60))
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let lock = waiter
            .lock("job")
            .ttl(Duration::from_secs(60))
            .retry_interval(Duration::from_secs(30));
        let task = crate::support::spawn_waiter(lock);
        let channel = baton_core::Keys::new("baton:", "job").unwrap().channel;
        crate::support::eventually("the waiter subscribes on every node", || {
            cluster
                .servers
                .iter()
                .all(|s| s.cmd::<(String, i64)>(&["PUBSUB", "NUMSUB", &channel]).1 == 1)
        })
        .await;
        let woke = crate::support::wake_after_release(held, task).await;
        assert!(
            woke < crate::support::NOTIFIED,
            "woke after {woke:?}: not by the notification"
        );
    })
    .await
}

/// A holder has a quorum that leaves one node free: a waiter does not take
/// that for a split vote and hammer the nodes; it waits on the holder and
/// wakes nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_behind_a_quorum_holder_does_not_spin() {
    within(async {
        let cluster = Cluster::start(3);
        let client = cluster.client(TIMEOUT).await;
        // (No warm-up straggler may land after the reset below.)
        cluster.warm_up(&client).await;
        for server in &cluster.servers[1..] {
            server.cmd::<()>(&["SET", KEY, FOREIGN, "PX", "60000"]);
        }
        for server in &cluster.servers {
            server.cmd::<()>(&["CONFIG", "RESETSTAT"]);
        }
        let err = client
            .lock("job")
            .retry_interval(Duration::from_secs(30))
            .wait(Duration::from_secs(1))
            .acquire()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        // Attempts: the first, one after subscribing, one when the bounded
        // wait ends at the deadline; each is taken back on node 0. (A split
        // backoff would make dozens.)
        let calls = command_calls(&cluster.servers[0], "evalsha");
        assert!(
            calls <= 3 * 2,
            "no spinning: {calls} script calls on the free node"
        );
        assert!(
            cluster
                .servers
                .iter()
                .all(|s| command_calls(s, "publish") == 0),
            "taking back a lost attempt wakes nobody"
        );
    })
    .await
}

/// A won round's straggling request (a NOSCRIPT resend through a slow link)
/// lands after the release, which returned at the quorum of the two fast
/// nodes: it takes its node back, so nothing of ours remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_straggler_landing_after_the_release_takes_itself_back() {
    within(async {
        let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
        let proxy = FaultProxy::start(servers[2].addr()).await;
        let urls = [servers[0].url(), servers[1].url(), proxy.url()];
        let client = Client::builder()
            .node(&urls.join(","))
            .node_timeout(Duration::from_millis(300))
            .build()
            .await
            .unwrap();
        hold(&client, "warm", Duration::from_secs(2))
            .await
            .release()
            .await
            .unwrap();
        // Node 2 forgot the acquire script (as after a restart): its acquire
        // needs a resend, which lands after the round is won by nodes 0, 1.
        servers[2].flush_scripts();
        servers[2].cmd::<String>(&["SCRIPT", "LOAD", baton_core::scripts::RELEASE.source]);
        proxy.set_mode(Mode::Delay(Duration::from_millis(30)));
        let guard = client
            .lock("job")
            .ttl(Duration::from_secs(20))
            .auto_renew(false)
            .try_acquire()
            .await
            .unwrap()
            .expect("2 of 3");
        assert_eq!(guard.release().await.unwrap(), baton::Released::Released);
        crate::support::eventually("released everywhere, the straggler's node included", || {
            servers
                .iter()
                .all(|s| s.cmd::<Option<String>>(&["GET", KEY]).is_none())
        })
        .await;
        // And it stays that way: nothing lands later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(servers
            .iter()
            .all(|s| s.cmd::<Option<String>>(&["GET", KEY]).is_none()));
    })
    .await
}

/// A multi-lock over a Redlock: each server takes every name or none, and
/// the quorum is of servers that took all of them. A name held by another
/// on one server leaves that server out (and untouched); names held on two
/// different servers leave no quorum, and nothing of ours behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_locks_quorum_is_of_servers_holding_every_name() {
    within(async {
        let cluster = Cluster::start(3);
        let client = cluster.client(TIMEOUT).await;
        let get = |i: usize, key: &str| cluster.servers[i].cmd::<Option<String>>(&["GET", key]);
        cluster.servers[0].cmd::<()>(&["SET", "baton:b", FOREIGN, "PX", "60000"]);
        let lot = client.multi_lock(&["a", "b"]).auto_renew(false);
        let held = lot
            .try_acquire()
            .await
            .unwrap()
            .expect("2 of 3 servers take both");
        crate::support::eventually("both names set on servers 1 and 2", || {
            (1..3).all(|i| get(i, "baton:a").is_some() && get(i, "baton:b").is_some())
        })
        .await;
        assert_eq!(get(0, "baton:a"), None, "server 0 took no name");
        assert_eq!(
            get(0, "baton:b").as_deref(),
            Some(FOREIGN),
            "the foreign key untouched"
        );
        for i in 1..3 {
            assert_eq!(
                get(i, "baton:a"),
                get(i, "baton:b"),
                "server {i}: both names, one token"
            );
        }
        assert_eq!(held.release().await.unwrap(), Released::Released);
        cluster.servers[1].cmd::<()>(&["SET", "baton:a", FOREIGN, "PX", "60000"]);
        assert!(
            lot.try_acquire().await.unwrap().is_none(),
            "only server 2 could take both"
        );
        crate::support::eventually("nothing of ours left on any server", || {
            (0..3).all(|i| {
                ["baton:a", "baton:b"]
                    .iter()
                    .all(|k| get(i, k).is_none_or(|v| v == FOREIGN))
            })
        })
        .await;
    })
    .await
}
