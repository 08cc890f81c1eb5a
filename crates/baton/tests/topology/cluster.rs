//! Redis Cluster (`redis+cluster://`) against a real local cluster of three
//! masters with a replica each: renewals per slot, a slot migrated and a
//! replica promoted under held leases, sharded release notifications, and
//! the connect errors.
//!
//! One cluster serves every test that runs while another holds it (tests
//! run two at a time, and these sort together, so it is in practice built
//! once per binary); the last test to let go kills it, so nothing outlives
//! the binary. Tests that move slots or masters, and those whose assertions
//! a move would disturb, take `SERIAL`; each test uses its own key prefix.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use baton::{Client, Error, Guard, Released};
use baton_core::Keys;
use baton_test_support::{unique_name, LocalCluster, RedisServer};
use futures_util::FutureExt;

use crate::support::{eventually, within};

/// Serialises the tests that move slots or masters, or would be disturbed
/// by a move.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cluster shared by the tests running now (started if none is).
async fn cluster() -> Arc<LocalCluster> {
    static SHARED: Mutex<Weak<LocalCluster>> = Mutex::new(Weak::new());
    tokio::task::spawn_blocking(|| {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(LocalCluster::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    })
    .await
    .expect("start the cluster")
}

/// A client of `cluster` under `prefix`, trusting its test CA if it is a
/// TLS cluster.
async fn client(cluster: &LocalCluster, prefix: &str) -> Client {
    let mut builder = Client::builder().node(&cluster.seeds_url()).prefix(prefix);
    if cluster.is_tls() {
        builder = builder.tls_ca(cluster.pki().ca_pem());
    }
    builder.build().await.expect("connect to the cluster")
}

fn prefix() -> String {
    format!("{}:", unique_name("c"))
}

/// The key of `name` under `prefix`, and the master holding it now.
fn lock_key(prefix: &str, name: &str) -> String {
    Keys::new(prefix, name).unwrap().lock
}

/// The masters holding the locks of `names` under `prefix` now.
fn masters_of(cluster: &LocalCluster, prefix: &str, names: &[String]) -> HashSet<u16> {
    names
        .iter()
        .map(|n| {
            let slot = LocalCluster::slot_of(&lock_key(prefix, n));
            cluster.master_of_slot(slot).port()
        })
        .collect()
}

fn pttl(cluster: &LocalCluster, key: &str) -> i64 {
    cluster
        .master_of_slot(LocalCluster::slot_of(key))
        .cmd(&["PTTL", key])
}

/// Not lost: `lost()` has not resolved and the lease is held.
fn assert_held(guard: &Guard) {
    assert!(guard.is_held(), "{} lost", guard.name());
    assert!(
        guard.lease().lost().now_or_never().is_none(),
        "{}: lost() fired",
        guard.name()
    );
}

/// A blocking step of the cluster harness, without stalling the runtime's
/// other tasks (the renewer).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// 1,000 names over every master: acquired, renewed in per-slot batches
/// (each key outlives its TTL several times over), released; only the
/// fence counters are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_leases_over_every_master_are_renewed_and_released() {
    within(async {
        let cluster = cluster().await;
        let _serial = SERIAL.lock().await;
        let prefix = prefix();
        let client = client(&cluster, &prefix).await;
        let names: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
        assert_eq!(
            masters_of(&cluster, &prefix, &names).len(),
            3,
            "the names cover all three masters"
        );

        let ttl = Duration::from_millis(900);
        // 64 at a time: a realistic load (a thousand at once in a debug
        // build on two cores takes longer than the node timeout).
        use futures_util::StreamExt;
        let guards: Vec<Guard> = futures_util::stream::iter(names.iter().map(|n| {
            let lock = client.lock(n).ttl(ttl);
            let client = client.clone();
            async move {
                match lock.try_acquire().await.expect("try_acquire") {
                    Some(g) => g,
                    None => panic!("{n} busy: {:?}", client.status(n).await),
                }
            }
        }))
        .buffered(64)
        .collect()
        .await;
        tokio::time::sleep(ttl * 3).await; // about nine renewal periods
        for guard in &guards {
            assert_held(guard);
        }
        let present: HashSet<String> = cluster.keys().into_iter().collect();
        for name in &names {
            assert!(present.contains(&lock_key(&prefix, name)), "{name} expired");
        }
        for name in names.iter().step_by(50) {
            let left = pttl(&cluster, &lock_key(&prefix, name));
            assert!(
                left > 0 && left <= 900,
                "{name}: PTTL {left} reset by renewals"
            );
        }

        // 64 at a time too: a lease stops being renewed once its release
        // starts.
        let released: Vec<_> = futures_util::stream::iter(guards.into_iter().map(Guard::release))
            .buffered(64)
            .collect()
            .await;
        for r in released {
            assert_eq!(r.expect("release"), Released::Released);
        }
        let fences: HashSet<String> = names
            .iter()
            .map(|n| Keys::new(&prefix, n).unwrap().fence)
            .collect();
        let ours: HashSet<String> = cluster
            .keys()
            .into_iter()
            .filter(|k| k.contains(prefix.as_str()))
            .collect();
        assert_eq!(ours, fences, "only the fence counters are left");
    })
    .await
}

/// A slot moves (ASK while its keys are on the target, then MOVED) while
/// leases in it are held: renewals follow it, no lease is lost, the keys
/// now live on the target and no second client takes any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_a_slot_migration_and_renew_on_the_target() {
    within(async {
        let cluster = cluster().await;
        let _serial = SERIAL.lock().await;
        let prefix = prefix();
        let (client, rival) = (
            client(&cluster, &prefix).await,
            client(&cluster, &prefix).await,
        );
        // One hash tag: every name in one slot.
        let names: Vec<String> = (0..20).map(|i| format!("{{mig}}{i}")).collect();
        let ttl = Duration::from_millis(1500);
        let mut guards = Vec::new();
        for name in &names {
            guards.push(crate::support::hold(&client, name, ttl).await);
        }
        let key0 = lock_key(&prefix, &names[0]);
        let slot = LocalCluster::slot_of(&key0);
        let source = cluster.master_of_slot(slot).port();
        let target = cluster
            .masters()
            .into_iter()
            .map(RedisServer::port)
            .find(|&p| p != source)
            .unwrap();

        let migration = blocking(|| cluster.begin_migration(slot, target));
        let moved = blocking(|| migration.move_keys());
        assert!(moved >= 2 * names.len(), "the locks' keys moved ({moved})");
        // Now the source answers ASK for every key of the slot.
        for name in &names {
            let taken = rival.lock(name).try_acquire().await.expect("try_acquire");
            assert!(taken.is_none(), "{name} taken mid-migration");
        }
        tokio::time::sleep(ttl * 2).await; // renewals through ASK
        for guard in &guards {
            assert_held(guard);
        }
        // Held past twice the TTL: the renewals (pipelines the source
        // answered ASK, sent again per script behind ASKING) reached the
        // keys on the target, where a plain PTTL would only get MOVED.
        let on_target: i64 =
            cluster
                .node(target)
                .cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
        assert!(
            on_target >= 2 * names.len() as i64,
            "the keys are on the target ({on_target})"
        );

        blocking(|| migration.finish());
        tokio::time::sleep(ttl * 2).await; // renewals after MOVED
        for guard in &guards {
            assert_held(guard);
        }
        assert_eq!(cluster.master_of_slot(slot).port(), target);
        let left: i64 = cluster.node(target).cmd(&["PTTL", &key0]);
        assert!(left > 0, "renewed on the new owner: PTTL {left}");
        for name in &names {
            let taken = rival.lock(name).try_acquire().await.expect("try_acquire");
            assert!(taken.is_none(), "{name} taken after the move");
        }
        let status = client.status(&names[0]).await.expect("status");
        assert_eq!(status.answered_by, [format!("127.0.0.1:{target}")]);
        for guard in guards {
            assert_eq!(guard.release().await.unwrap(), Released::Released);
        }
    })
    .await
}

/// A replica is promoted (`CLUSTER FAILOVER`) while leases are held with
/// replica acknowledgement: the leases survive, renewals continue on the
/// new master, and no second client takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_a_failover_with_replica_acknowledgement() {
    within(async {
        let cluster = cluster().await;
        let _serial = SERIAL.lock().await;
        let prefix = prefix();
        let acknowledged = |cluster: &LocalCluster| {
            Client::builder()
                .node(&cluster.seeds_url())
                .prefix(&prefix)
                .min_replicas(1, Duration::from_millis(500))
                .build()
        };
        let client = acknowledged(&cluster).await.expect("connect");
        let rival = acknowledged(&cluster).await.expect("connect");
        let names: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
        let ttl = Duration::from_millis(1500);
        let mut guards = Vec::new();
        for name in &names {
            guards.push(crate::support::hold(&client, name, ttl).await);
        }
        let key0 = lock_key(&prefix, &names[0]);
        let slot = LocalCluster::slot_of(&key0);
        let promoted = blocking(|| cluster.failover_master_of_slot(slot));
        tokio::time::sleep(ttl * 2).await; // renewals on the new master
        for guard in &guards {
            assert_held(guard);
        }
        let left: i64 = cluster.node(promoted).cmd(&["PTTL", &key0]);
        assert!(
            left > 0 && left <= 1500,
            "renewed on the promoted master: PTTL {left}"
        );
        for name in &names {
            let taken = rival.lock(name).try_acquire().await.expect("try_acquire");
            assert!(taken.is_none(), "{name} taken after the failover");
        }
        for guard in guards {
            assert_eq!(guard.release().await.expect("release"), Released::Released);
        }
    })
    .await
}

/// A waiter is woken by another client's release through sharded pub/sub
/// (`SSUBSCRIBE` on the slot's master), long before its timed fallback; on
/// Redis 6, which has no sharded pub/sub, through plain `SUBSCRIBE`, the
/// release script announcing with `PUBLISH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_another_clients_release() {
    within(async {
        let cluster = cluster().await;
        let _serial = SERIAL.lock().await;
        let prefix = prefix();
        let (holder, waiter) = (
            client(&cluster, &prefix).await,
            client(&cluster, &prefix).await,
        );
        let held = crate::support::hold(&holder, "w", Duration::from_secs(5)).await;
        let waiting = crate::support::spawn_waiter(
            waiter
                .lock("w")
                .wait(Duration::from_secs(20))
                .retry_interval(Duration::from_secs(10)),
        );
        let keys = Keys::new(&prefix, "w").unwrap();
        let master = cluster.master_of_slot(LocalCluster::slot_of(&keys.lock));
        eventually("the waiter subscribes to the release channel", || {
            cluster.channel_subscribers(&keys.channel) == 1
        })
        .await;
        let announcements = || {
            (
                crate::support::command_calls(master, "spublish"),
                crate::support::command_calls(master, "publish"),
            )
        };
        let (sharded_before, plain_before) = announcements();
        let woke = crate::support::wake_after_release(held, waiting).await;
        assert!(
            woke < crate::support::NOTIFIED,
            "woke after {woke:?}: not by the notification"
        );
        let (sharded, plain) = announcements();
        if cluster.has_sharded_pubsub() {
            assert!(sharded > sharded_before, "announced with SPUBLISH");
            assert_eq!(plain, plain_before, "and not broadcast with PUBLISH too");
        } else {
            assert!(plain > plain_before, "announced with PUBLISH (Redis 6)");
        }
    })
    .await
}

/// Connect errors are typed and never show the password: a seed that is
/// not a cluster node, a seed that is down, a bad URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_are_typed_and_hide_the_password() {
    within(async {
        let single = RedisServer::start();
        let url = format!("redis+cluster://u:s3cret@127.0.0.1:{}", single.port());
        let err = Client::builder().node(&url).build().await.unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let plain = format!("redis+cluster://127.0.0.1:{}", single.port());
        let err = Client::builder().node(&plain).build().await.unwrap_err();
        assert!(matches!(err, Error::NotACluster { .. }), "{err:?}");
        assert!(err.to_string().contains("not a cluster"), "{err}");

        let mut gone = RedisServer::start();
        let down = gone.port();
        gone.kill();
        let url = format!("redis+cluster://:s3cret@127.0.0.1:{down}");
        let err = Client::builder()
            .node(&url)
            .node_timeout(Duration::from_millis(300))
            .build()
            .await
            .unwrap_err();
        assert!(err.is_backend(), "{err:?}");
        assert!(!err.to_string().contains("s3cret"), "{err}");

        for bad in [
            "redis+cluster://u:s3cret@127.0.0.1:0",
            "redis+cluster://u:s3cret@127.0.0.1:7000/3",
            "redis+cluster://u:s3cret@127.0.0.1:7000?protocol=resp9",
        ] {
            let err = Client::builder().node(bad).build().await.unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}: {err:?}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    })
    .await
}

/// Through a least-privilege ACL user (`baton::acl_rules`, set on every
/// node: a cluster does not share its users) the whole lease works on a
/// cluster: acquire, renewal past the TTL, status, a waiter woken through
/// sharded pub/sub, release; and only fence counters are left.
/// Semaphores on every master: two permits each and no third, renewed in
/// the per-slot batches beside locks (each permit's score moves on), and
/// released; only the fence counters are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphores_on_every_master_hold_their_count_and_renew() {
    within(async {
        let cluster = cluster().await;
        let _serial = SERIAL.lock().await;
        let prefix = prefix();
        let client = client(&cluster, &prefix).await;
        let names: Vec<String> = (0..24).map(|i| format!("sem-{i}")).collect();
        assert_eq!(
            masters_of(&cluster, &prefix, &names).len(),
            cluster.masters().len(),
            "the names cover every master"
        );
        let ttl = Duration::from_millis(600);
        let mut permits = Vec::new();
        for name in &names {
            let sem = client.semaphore(name, 2).ttl(ttl);
            permits.push(sem.try_acquire().await.unwrap().expect("a first permit"));
            permits.push(sem.try_acquire().await.unwrap().expect("a second permit"));
            assert!(
                sem.try_acquire().await.unwrap().is_none(),
                "{name}: two at most"
            );
        }
        let key = lock_key(&prefix, &names[0]);
        let master = cluster.master_of_slot(LocalCluster::slot_of(&key));
        let scores = || -> Vec<String> { master.cmd(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]) };
        let first = scores();
        eventually("a permit renewal moves its score", || scores() != first).await;
        for permit in &permits {
            assert_held(permit);
        }
        for permit in permits {
            assert_eq!(permit.release().await.unwrap(), baton::Released::Released);
        }
        let fences: HashSet<String> = names
            .iter()
            .map(|n| Keys::new(&prefix, n).unwrap().fence)
            .collect();
        let left: HashSet<String> = cluster
            .keys()
            .into_iter()
            .filter(|k| k.contains(prefix.trim_end_matches(':')))
            .collect();
        assert_eq!(left, fences, "only the fence counters are left");
    })
    .await
}

/// A fair lock on a Cluster: waiters queue in the lock's slot and are
/// handed the lock in arrival order (grants by sharded pub/sub there); and
/// a read-write lock keeps readers and its writer apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_and_read_write_locks_work_on_a_cluster() {
    within(async {
        let cluster = cluster().await;
        let prefix = prefix();
        let client = client(&cluster, &prefix).await;
        let lock = client.lock("fifo").fair(true).wait(Duration::from_secs(30));
        let held = lock.try_acquire().await.unwrap().expect("free");
        let queue = Keys::new(&prefix, "fifo").unwrap().fair().queue;
        let master = cluster.master_of_slot(LocalCluster::slot_of(&queue));
        let served = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (lock, served) = (lock.clone(), Arc::clone(&served));
            tasks.push(tokio::spawn(async move {
                let guard = lock.acquire().await.expect("served");
                served.lock().unwrap().push(i);
                guard.release().await.unwrap();
            }));
            eventually("the waiter queued", || {
                master.cmd::<usize>(&["LLEN", &queue]) == i + 1
            })
            .await;
        }
        held.release().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*served.lock().unwrap(), vec![0, 1, 2], "FIFO");

        let rw = client.rw_lock("config");
        let reader = rw.read().try_acquire().await.unwrap().expect("a reader");
        assert!(rw.write().try_acquire().await.unwrap().is_none());
        reader.release().await.unwrap();
        let writer = rw.write().try_acquire().await.unwrap().expect("a writer");
        assert!(rw.read().try_acquire().await.unwrap().is_none());
        writer.release().await.unwrap();
    })
    .await
}

/// A multi-lock on a Cluster: names in one slot (one hash tag) are taken
/// all or none and renewed together, and a waiter is woken by the release
/// of its second name (sharded pub/sub in that slot); names in different
/// slots are refused with `CrossSlot` before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_lock_takes_one_slots_names_and_refuses_names_across_slots() {
    within(async {
        let cluster = cluster().await;
        let prefix = prefix();
        let client = client(&cluster, &prefix).await;
        let names = ["{t}a".to_owned(), "{t}b".to_owned()];
        let key_of = |name: &str| lock_key(&prefix, name);
        let master = cluster.master_of_slot(LocalCluster::slot_of(&key_of(&names[0])));
        let blocker = client
            .lock(&names[1])
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let lot = client
            .multi_lock(&[&names[0], &names[1]])
            .ttl(Duration::from_millis(300))
            .retry_interval(Duration::from_secs(30))
            .wait(Duration::from_secs(30));
        assert!(lot.try_acquire().await.unwrap().is_none(), "b is held");
        assert_eq!(
            master.cmd::<Option<String>>(&["GET", &key_of(&names[0])]),
            None
        );
        let waiting = {
            let lot = lot.clone();
            tokio::spawn(async move { lot.acquire().await })
        };
        let channel = Keys::new(&prefix, &names[1]).unwrap().channel;
        eventually("the waiter subscribes to b's channel", || {
            cluster.channel_subscribers(&channel) == 1
        })
        .await;
        let released = tokio::time::Instant::now();
        blocker.release().await.unwrap();
        let held = waiting.await.unwrap().expect("woken and served");
        assert!(
            released.elapsed() < Duration::from_secs(5),
            "by the release, not the 30 s retry"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_held(&held);
        for name in &names {
            assert!(pttl(&cluster, &key_of(name)) > 0, "{name} renewed");
        }
        held.release().await.unwrap();

        let slot_of = |name: &str| LocalCluster::slot_of(&key_of(name));
        let other = (0..)
            .map(|i| format!("y{i}"))
            .find(|name| slot_of(name) != slot_of("x"))
            .expect("a name in another slot");
        let apart = ["x".to_owned(), other];
        let e = client
            .multi_lock(&[&apart[0], &apart[1]])
            .try_acquire()
            .await
            .unwrap_err();
        assert!(matches!(e, baton::Error::CrossSlot { .. }), "{e:?}");
        assert!(e.to_string().contains("hash tag"), "{e}");
        for name in &apart {
            assert_eq!(pttl(&cluster, &key_of(name)), -2, "{name} untouched");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_user_can_do_everything_on_a_cluster() {
    within(async {
        let cluster = cluster().await;
        // It reads keys on the slot's master: no move may happen meanwhile.
        let _serial = SERIAL.lock().await;
        let prefix = prefix();
        let user = unique_name("locker");
        let mut rules = baton::acl_rules(&prefix);
        if !cluster.has_sharded_pubsub() {
            // The README's line for Redis 6, which refuses the whole
            // ACL SETUSER over a command it does not know.
            let sharded = " +spublish +ssubscribe +sunsubscribe";
            assert!(rules.contains(sharded), "{rules}");
            rules = rules.replace(sharded, "");
        }
        for node in cluster.nodes() {
            let mut args = vec!["ACL", "SETUSER", &user, "on", ">s3cret"];
            args.extend(rules.split(' '));
            node.cmd::<()>(&args);
        }
        let url = cluster
            .seeds_url()
            .replacen("://", &format!("://{user}:s3cret@"), 1);
        let connect = || Client::builder().node(&url).prefix(&prefix).build();
        let (holder, waiter) = (connect().await.unwrap(), connect().await.unwrap());
        let ttl = Duration::from_millis(600);
        let held = crate::support::hold(&holder, "acl", ttl).await;
        let keys = Keys::new(&prefix, "acl").unwrap();
        let master = cluster.master_of_slot(LocalCluster::slot_of(&keys.lock));
        let first: i64 = master.cmd(&["PTTL", &keys.lock]);
        eventually("a renewal through the ACL user", || {
            master.cmd::<i64>(&["PTTL", &keys.lock]) > first
        })
        .await;
        assert_held(&held);
        let status = waiter.status("acl").await.expect("status");
        assert!(status.holder.is_some());
        let waiting = crate::support::spawn_waiter(
            waiter
                .lock("acl")
                .wait(Duration::from_secs(20))
                .retry_interval(Duration::from_secs(10)),
        );
        eventually("the waiter subscribes to the release channel", || {
            cluster.channel_subscribers(&keys.channel) == 1
        })
        .await;
        let woke = crate::support::wake_after_release(held, waiting).await;
        assert!(
            woke < crate::support::NOTIFIED,
            "woke after {woke:?}: not by the notification"
        );
        let left: Vec<String> = cluster
            .keys()
            .into_iter()
            .filter(|k| k.contains(prefix.trim_end_matches(':')))
            .collect();
        assert_eq!(
            left,
            std::slice::from_ref(&keys.fence),
            "only the fence counter is left"
        );
        for node in cluster.nodes() {
            node.cmd::<i64>(&["ACL", "DELUSER", &user]);
        }
    })
    .await
}

/// `rediss+cluster://`: every node speaks TLS only, to clients and on its
/// cluster bus, and the client verifies each node it is sent to against
/// the CA it is given (without it, the system roots refuse the test CA).
/// Leases on every master are acquired, held past their TTL by per-slot
/// renewals, and released; a waiter is woken through sharded pub/sub over
/// TLS; only the fence counters are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_every_node_is_verified_and_locks_work_on_every_master() {
    within(async {
        let cluster = blocking(|| Arc::new(LocalCluster::start_tls()));
        let url = cluster.seeds_url();
        assert!(url.starts_with("rediss+cluster://"), "{url}");
        let err = Client::connect(&url).await.unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");

        let prefix = prefix();
        let (holder, other) = (
            client(&cluster, &prefix).await,
            client(&cluster, &prefix).await,
        );
        let names: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
        assert_eq!(
            masters_of(&cluster, &prefix, &names).len(),
            3,
            "the names cover all three masters"
        );
        let ttl = Duration::from_millis(600);
        let mut guards = Vec::new();
        for name in &names {
            guards.push(crate::support::hold(&holder, name, ttl).await);
            assert!(other.lock(name).try_acquire().await.unwrap().is_none());
        }
        tokio::time::sleep(ttl * 3).await; // several renewal periods
        for guard in &guards {
            assert_held(guard);
        }

        let waiting = crate::support::spawn_waiter(
            other
                .lock(&names[0])
                .wait(Duration::from_secs(20))
                .retry_interval(Duration::from_secs(10)),
        );
        let keys = Keys::new(&prefix, &names[0]).unwrap();
        eventually("the waiter subscribes to the release channel", || {
            cluster.channel_subscribers(&keys.channel) == 1
        })
        .await;
        let mut guards = guards.into_iter();
        let woke = crate::support::wake_after_release(guards.next().unwrap(), waiting).await;
        assert!(
            woke < crate::support::NOTIFIED,
            "woke after {woke:?}: not by the notification"
        );
        for guard in guards {
            assert_eq!(guard.release().await.unwrap(), Released::Released);
        }
        let fences: HashSet<String> = names
            .iter()
            .map(|n| Keys::new(&prefix, n).unwrap().fence)
            .collect();
        let ours: HashSet<String> = cluster.keys().into_iter().collect();
        assert_eq!(ours, fences, "only the fence counters are left");
    })
    .await
}
