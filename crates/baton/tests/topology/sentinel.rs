//! Sentinel (`redis+sentinel://`): a master, two replicas and three real
//! Sentinels, one set shared by the tests (see `set()`). They fail it over,
//! so they take turns, and each leaves two replicas linked.

use std::sync::{Arc, Weak};
use std::time::Duration;

use baton::{Client, Error, Released};
use baton_test_support::{unique_name, SentinelSet};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::support::{eventually, spawn_waiter, within};

type Shared = OwnedMutexGuard<SentinelSet>;

/// The set, for this test alone. One set serves every test that runs or
/// waits while another holds it (they sort together, so in practice it is
/// built once per binary), and the last one to let go kills it: a static
/// set would outlive the binary, its processes orphaned. (Started on a
/// blocking thread: it waits for processes, which a runtime thread should
/// not.)
async fn set() -> Shared {
    static SHARED: Slot = std::sync::Mutex::new(Weak::new());
    shared(&SHARED, SentinelSet::start).await
}

/// The TLS set (`SentinelSet::start_tls`), shared as `set()` is.
async fn tls_set() -> Shared {
    static SHARED: Slot = std::sync::Mutex::new(Weak::new());
    shared(&SHARED, SentinelSet::start_tls).await
}

/// Where a shared set is found while a test holds it.
type Slot = std::sync::Mutex<Weak<Mutex<SentinelSet>>>;

/// The set in `slot`, started with `start` if no test holds one now.
async fn shared(slot: &'static Slot, start: fn() -> SentinelSet) -> Shared {
    let set = tokio::task::spawn_blocking(move || {
        let mut shared = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = shared.upgrade() {
            return set;
        }
        let set = Arc::new(Mutex::new(start()));
        *shared = Arc::downgrade(&set);
        set
    })
    .await
    .expect("the Sentinel set starts");
    set.lock_owned().await
}

/// Runs a blocking step of the set (a failover, a restart) off the runtime.
async fn blocking<T: Send + 'static>(
    set: Shared,
    step: impl FnOnce(&mut SentinelSet) -> T + Send + 'static,
) -> (Shared, T) {
    tokio::task::spawn_blocking(move || {
        let mut set = set;
        let out = step(&mut set);
        (set, out)
    })
    .await
    .expect("the step ran")
}

/// A client of `set` through its URL, trusting its test CA if it is a TLS
/// set, confirming writes on `replicas` replicas.
async fn client(set: &SentinelSet, replicas: usize) -> Client {
    let mut builder = Client::builder()
        .node(&set.url())
        .min_replicas(replicas, Duration::from_millis(200));
    if set.is_tls() {
        builder = builder.tls_ca(set.pki().ca_pem());
    }
    builder
        .build()
        .await
        .expect("connects through the Sentinels")
}

fn key(name: &str) -> String {
    format!("baton:{name}")
}

/// Through the Sentinels, the lock works as on one server: on the master
/// the Sentinels name, which `status` says answered; a second client is
/// refused while it is held; the builder's form reaches the same master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_work_on_the_master_the_sentinels_name() {
    within(async {
        let set = set().await;
        let name = unique_name("sentinel-basic");
        let a = client(&set, 0).await;
        let addrs: Vec<String> = set.sentinel_addrs().iter().map(|a| a.to_string()).collect();
        let b = Client::builder()
            .sentinel(&addrs, set.master_name())
            .build()
            .await
            .unwrap();
        let guard = a.lock(&name).try_acquire().await.unwrap().expect("free");
        assert!(b.lock(&name).try_acquire().await.unwrap().is_none());
        let master = set.master();
        assert_eq!(
            master
                .cmd::<Option<String>>(&["EXISTS", &key(&name)])
                .as_deref(),
            Some("1")
        );
        let status = b.status(&name).await.unwrap();
        assert!(status.holder.is_some());
        assert_eq!(status.answered_by, [format!("127.0.0.1:{}", master.port())]);
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        assert!(b.lock(&name).try_acquire().await.unwrap().is_some());
    })
    .await
}

/// Through the Sentinels, a semaphore, a fair lock and a read-write lock
/// work as on one server, on the master the Sentinels name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphores_fair_and_read_write_locks_work_through_the_sentinels() {
    within(async {
        let set = set().await;
        let (a, b) = (client(&set, 0).await, client(&set, 0).await);
        let name = unique_name("sentinel-kinds");
        let sem = a.semaphore(&name, 2);
        let permits = (
            sem.try_acquire().await.unwrap(),
            sem.try_acquire().await.unwrap(),
        );
        assert!(permits.0.is_some() && permits.1.is_some());
        assert!(b.semaphore(&name, 2).try_acquire().await.unwrap().is_none());
        let master = set.master();
        assert_eq!(
            master.cmd::<i64>(&["ZCARD", &key(&name)]),
            2,
            "on the master"
        );
        drop(permits);

        let fair = format!("{name}-fair");
        let held = a
            .lock(&fair)
            .fair(true)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let waiting = {
            let lock = b.lock(&fair).fair(true).wait(Duration::from_secs(20));
            tokio::spawn(async move { lock.acquire().await })
        };
        let first = held.fence();
        held.release().await.unwrap();
        let got = waiting.await.unwrap().expect("served");
        assert!(got.fence() > first);
        got.release().await.unwrap();

        let rw = a.rw_lock(&format!("{name}-rw"));
        let reader = rw.read().try_acquire().await.unwrap().expect("a reader");
        assert!(b
            .rw_lock(&format!("{name}-rw"))
            .write()
            .try_acquire()
            .await
            .unwrap()
            .is_none());
        reader.release().await.unwrap();
    })
    .await
}

/// Holds a lease with replica acknowledgement across `failover`, then
/// checks what matters: it was never lost, no other client could take it
/// at any point, it lives on the new master, and renewals continue there
/// (it outlives several TTLs after the failover).
async fn a_lease_survives(
    set: Shared,
    ttl: Duration,
    failover: impl FnOnce(&mut SentinelSet) -> u16 + Send + 'static,
    restore: impl FnOnce(&mut SentinelSet, u16) + Send + 'static,
) {
    let name = unique_name("sentinel-survives");
    let holder = client(&set, 1).await;
    let other = client(&set, 0).await;
    let guard = holder
        .lock(&name)
        .ttl(ttl)
        .try_acquire()
        .await
        .unwrap()
        .expect("free");
    let old = set.master_port();
    // Another client keeps trying for the whole failover: it must never get in.
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let contender = {
        let (lock, stop) = (other.lock(&name), stop.clone());
        tokio::spawn(async move {
            let mut tries = 0u32;
            loop {
                tokio::select! {
                    _ = stop.notified() => return tries,
                    got = lock.try_acquire() => {
                        if let Ok(Some(_)) = got {
                            panic!("a second client took the lease during the failover");
                        }
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        })
    };
    let (set, new) = blocking(set, failover).await;
    assert_ne!(new, old);
    // The renewer carries on on the new master: its TTL there is reset.
    let first: i64 = set.node(new).cmd(&["PTTL", &key(&name)]);
    assert!(first > 0, "the lease is on the new master (pttl {first})");
    eventually("a renewal on the new master", || {
        set.node(new).cmd::<i64>(&["PTTL", &key(&name)]) > first
    })
    .await;
    stop.notify_one();
    let tries = contender.await.expect("the contender never got in");
    assert!(tries > 0);
    assert!(guard.is_held(), "the lease was not lost");
    let on_new: Option<String> = set.node(new).cmd(&["GET", &key(&name)]);
    assert!(on_new.is_some(), "the lease lives on the new master");
    let pttl: i64 = set.node(new).cmd(&["PTTL", &key(&name)]);
    assert!(pttl > 0 && pttl as u128 <= ttl.as_millis(), "pttl {pttl}");
    assert_eq!(guard.release().await.unwrap(), Released::Released);
    assert!(other.lock(&name).try_acquire().await.unwrap().is_some());
    blocking(set, move |set| restore(set, old)).await;
}

/// `SENTINEL FAILOVER` while a lease is held with `min_replicas(1, …)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_lease_survives_a_forced_failover() {
    // (TTLs outlast the failover: a forced one takes about 3 s here, one
    // after a death about 5 s.)
    within(async {
        a_lease_survives(
            set().await,
            Duration::from_secs(6),
            |set| set.failover(),
            |_, _| {},
        )
        .await
    })
    .await
}

/// SIGKILL of the master while a lease is held with `min_replicas(1, …)`:
/// the Sentinels promote a replica (after their 1 s down-after), and the
/// lease carries on there. The killed node comes back as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_lease_survives_the_masters_death() {
    within(async {
        a_lease_survives(
            set().await,
            Duration::from_secs(10),
            |set| set.kill_master(),
            |set, old| set.restart_node(old),
        )
        .await
    })
    .await
}

/// `rediss+sentinel://`: Sentinels and data nodes speak TLS only, and the
/// client verifies both against the CA it is given. Without that CA (the
/// system roots) it is refused, naming the unknown issuer; a plain client
/// on the TLS Sentinels is refused, not left hanging. With it, the lock
/// works on the master the Sentinels name, and an acknowledged lease
/// survives a forced failover (renewed on the new master, never taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_both_hops_are_verified_and_a_lease_survives_a_failover() {
    within(async {
        let set = tls_set().await;
        let url = set.url();
        assert!(url.starts_with("rediss+sentinel://"), "{url}");
        let err = Client::connect(&url).await.unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        let plain = url.replacen("rediss+", "redis+", 1);
        let err = Client::builder()
            .node(&plain)
            .node_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap_err();
        assert!(err.is_backend(), "plain client on TLS Sentinels: {err:?}");

        let name = unique_name("sentinel-tls");
        let (a, b) = (client(&set, 1).await, client(&set, 0).await);
        let guard = a.lock(&name).try_acquire().await.unwrap().expect("free");
        assert!(b.lock(&name).try_acquire().await.unwrap().is_none());
        let status = b.status(&name).await.unwrap();
        assert!(status.holder.is_some());
        assert_eq!(
            status.answered_by,
            [format!("127.0.0.1:{}", set.master_port())]
        );
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        a_lease_survives(set, Duration::from_secs(6), |set| set.failover(), |_, _| {}).await;
    })
    .await
}

/// What replica acknowledgement is for. The replicas are cut off (stopped,
/// their links closed) so the lock's write reaches only the master, which
/// then dies. Without acknowledgement the acquire succeeded, the
/// Sentinels promote a replica that never saw it, and a second client
/// takes the same lock while the first lease, as granted, is still valid:
/// two holders, with no higher fence for the second (the counter's write
/// was lost too), until the first one's renewal finds its key gone and
/// reports the lease lost. With acknowledgement, the acquire fails instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_acknowledgement_a_failover_can_give_the_lock_to_two_holders() {
    within(async {
        let set = set().await;
        let name = unique_name("sentinel-lost-write");
        let unsafe_client = client(&set, 0).await;
        let safe_client = client(&set, 1).await;
        let ttl = Duration::from_secs(10);
        let old = set.master_port();
        for replica in set.replicas() {
            replica.pause();
        }
        set.master()
            .cmd::<i64>(&["CLIENT", "KILL", "TYPE", "replica"]);
        let asked = tokio::time::Instant::now();
        let first = unsafe_client
            .lock(&name)
            .ttl(ttl)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        // The first lease is valid until at least here, as it was granted.
        let first_valid_until = asked + ttl;
        // (Another name: the refused attempt is taken back in the background.)
        let refused = safe_client
            .lock(&unique_name("sentinel-refused"))
            .ttl(ttl)
            .try_acquire()
            .await
            .unwrap_err();
        assert!(
            matches!(refused, Error::NotReplicated { confirmed: 0, .. }),
            "{refused:?}"
        );
        let (set, new) = blocking(set, |set| {
            let old = set.master_port();
            set.node_mut(old).kill();
            for replica in set.replicas() {
                replica.resume();
            }
            set.wait_for_new_master(old)
        })
        .await;
        assert_ne!(new, old);
        let second = unsafe_client
            .lock(&name)
            .ttl(ttl)
            .try_acquire()
            .await
            .unwrap()
            .expect("the new master never saw the first lease: the lock is free there");
        assert!(
            tokio::time::Instant::now() < first_valid_until,
            "the second holder got in while the first lease, as granted, was still valid"
        );
        // Fences do not tell them apart either: the counter's increment
        // was lost with the lock's write.
        assert!(
            second.fence() <= first.fence(),
            "{:?} then {:?}",
            first.fence(),
            second.fence()
        );
        // Loud, not silent: the first holder's renewal on the new master
        // finds its key gone, and its lease is reported lost.
        tokio::time::timeout(ttl, first.lost())
            .await
            .expect("the first lease is reported lost");
        assert!(!first.is_held());
        assert_eq!(second.release().await.unwrap(), Released::Released);
        blocking(set, move |set| set.restart_node(old)).await;
    })
    .await
}

/// A waiter that started before a failover is woken by a release made on
/// the new master (its fallback is too long to be what woke it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_a_release_after_a_failover() {
    within(async {
        let set = set().await;
        let name = unique_name("sentinel-waiter");
        let holder = client(&set, 1).await;
        let waiter_client = client(&set, 0).await;
        let held = holder
            .lock(&name)
            .ttl(Duration::from_secs(30))
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let waiter = spawn_waiter(
            waiter_client
                .lock(&name)
                .wait(Duration::from_secs(60))
                .retry_interval(Duration::from_secs(30)),
        );
        let (_set, _) = blocking(set, |set| set.failover()).await;
        let woke = crate::support::wake_after_release(held, waiter).await;
        assert!(
            woke < crate::support::NOTIFIED,
            "woke after {woke:?}: not by the notification"
        );
    })
    .await
}

/// Bad input is refused with a typed error that names the problem and
/// never shows a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sentinel_urls_are_refused_saying_why() {
    within(async {
        let set = set().await;
        let sentinels: Vec<String> = set.sentinel_addrs().iter().map(|a| a.to_string()).collect();
        let hosts = sentinels.join(",");
        let cases = [
            (
                format!("redis+sentinel://:hunter2@{hosts}/"),
                "no master name",
            ),
            (
                format!("redis+sentinel://:hunter2@{hosts}/no-such-master"),
                "knows a master named",
            ),
            (
                format!("redis+sentinel://:hunter2@{hosts}/{}/x", set.master_name()),
                "not a number",
            ),
            (format!("redis+sentinel://:hunter2@{hosts}:x/m"), "port"),
        ];
        for (url, says) in cases {
            let err = Client::connect(&url).await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        // A Sentinel URL beside another URL would be a Redlock of sets.
        let err = Client::builder()
            .node(&set.url())
            .node("redis://127.0.0.1:1")
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
        // No Sentinel listening: an error, not a hang.
        let dead = format!(
            "redis+sentinel://127.0.0.1:1/{}?sentinel_password=hunter2",
            set.master_name()
        );
        let err = Client::connect(&dead).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    })
    .await
}
