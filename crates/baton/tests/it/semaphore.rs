//! Semaphores: at most N leased permits at once, each its own lease.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton::{Client, Error, Kind, Released};
use baton_test_support::RedisServer;

use crate::support::{assert_only_the_fence_counter_left, both, key};

both! {
    /// N permits and no more; each has a fence above every earlier one; a
    /// released permit is taken again; when all are released nothing but
    /// the fence counter is left.
    async fn at_most_n_permits_with_increasing_fences(b: Backend) {
        let client = b.client().await;
        let exports = client.semaphore("exports", 3);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(exports.try_acquire().await.unwrap().expect("a free permit"));
        }
        assert!(exports.try_acquire().await.unwrap().is_none(), "three at most");
        let fences: Vec<u64> = held.iter().map(|p| p.fence().0).collect();
        assert!(fences.windows(2).all(|w| w[0] < w[1]), "{fences:?}");
        let first = held.remove(0);
        assert_eq!(first.release().await.unwrap(), Released::Released);
        let again = exports.try_acquire().await.unwrap().expect("the returned permit");
        assert!(again.fence().0 > fences[2]);
        assert!(exports.try_acquire().await.unwrap().is_none(), "three again");
        held.push(again);
        for permit in held {
            assert_eq!(permit.release().await.unwrap(), Released::Released);
        }
        assert_only_the_fence_counter_left(&b, "exports");
    }

    /// Many tasks through a semaphore of 3: never more than 3 inside at
    /// once, and every task gets its turn.
    async fn never_more_than_n_holders_at_once(b: Backend) {
        let client = b.client().await;
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let sem = client.semaphore("pool", 3).wait(Duration::from_secs(30));
                let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
                tokio::spawn(async move {
                    sem.run(|permit| async move {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        assert!(permit.is_held());
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().expect("every task gets a permit");
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=3).contains(&most), "{most} holders at once");
        assert_only_the_fence_counter_left(&b, "pool");
    }

    /// A holder that dies (never renews, never releases) gives its permit
    /// back when its lease lapses; a waiter then gets it.
    async fn a_dead_holders_permit_returns_when_its_lease_lapses(b: Backend) {
        let client = b.client().await;
        let dead = client
            .semaphore("slots", 1)
            .ttl(Duration::from_millis(300))
            .auto_renew(false)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let fence = dead.fence();
        std::mem::forget(dead); // no release, no renewal: a crashed holder
        let other = b.client().await;
        let next = other
            .semaphore("slots", 1)
            .wait(Duration::from_secs(20))
            .acquire()
            .await
            .expect("the lapsed permit returns");
        assert!(next.fence() > fence);
        next.release().await.unwrap();
        assert_only_the_fence_counter_left(&b, "slots");
    }

    /// A permit is renewed past its TTL while held, and still counts.
    async fn a_held_permit_is_renewed_and_counts(b: Backend) {
        let client = b.client().await;
        let sem = client.semaphore("renewed", 1).ttl(Duration::from_millis(300));
        let permit = sem.try_acquire().await.unwrap().expect("free");
        tokio::time::sleep(Duration::from_millis(1_000)).await; // three TTLs
        assert!(permit.is_held());
        let other = b.client().await;
        assert!(other.semaphore("renewed", 1).try_acquire().await.unwrap().is_none());
        assert_eq!(client.renewing(), 1);
        assert_eq!(permit.release().await.unwrap(), Released::Released);
        assert_eq!(client.renewing(), 0);
    }

    /// Permits whose set is deleted under them are lost, loudly, at the
    /// next renewal; their release then says so.
    async fn a_permit_taken_away_is_lost(b: Backend) {
        let client = b.client().await;
        let sem = client.semaphore("gone", 2).ttl(Duration::from_millis(300));
        let permit = sem.try_acquire().await.unwrap().expect("free");
        b.del(&key("gone"));
        permit.lease().lost().await;
        assert!(!permit.is_held());
        assert_eq!(permit.release().await.unwrap(), Released::AlreadyExpired);
    }

    /// An extend moves a permit's deadline; one on a lost permit fails.
    async fn a_permit_is_extended(b: Backend) {
        let client = b.client().await;
        let sem = client
            .semaphore("extended", 1)
            .ttl(Duration::from_millis(500))
            .auto_renew(false);
        let mut permit = sem.try_acquire().await.unwrap().expect("free");
        permit.extend(Duration::from_secs(30)).await.unwrap();
        assert!(permit.lease().remaining() > Duration::from_secs(20));
        b.del(&key("extended"));
        let err = permit.extend(Duration::from_secs(30)).await.unwrap_err();
        assert!(err.is_lost(), "{err:?}");
    }

    /// A waiter is woken by a release, not by its fallback: the holder's
    /// lease and the retry interval are far longer than the wait.
    async fn a_release_wakes_a_waiter(b: Backend) {
        let client = b.client().await;
        let sem = client.semaphore("woken", 1).ttl(Duration::from_secs(600));
        let held = sem.try_acquire().await.unwrap().expect("free");
        let waiter = b.client().await;
        let waiting = tokio::spawn(async move {
            waiter
                .semaphore("woken", 1)
                .wait(Duration::from_secs(30))
                .retry_interval(Duration::from_secs(60))
                .acquire()
                .await
        });
        crate::support::wait_for_a_subscriber(&b, "woken").await;
        held.release().await.unwrap();
        let permit = waiting.await.unwrap().expect("woken by the release");
        permit.release().await.unwrap();
    }

    /// A name is a lock or a semaphore, not both: each refuses the other's
    /// key by name, and changes nothing.
    async fn a_lock_and_a_semaphore_cannot_share_a_name(b: Backend) {
        let client = b.client().await;
        let lock = client.lock("shared").try_acquire().await.unwrap().expect("free");
        let err = client.semaphore("shared", 2).try_acquire().await.unwrap_err();
        assert!(
            matches!(&err, Error::WrongKind { key, used_as: Kind::Semaphore { .. } } if key == "baton:shared"),
            "{err:?}"
        );
        assert!(err.to_string().contains("cannot share a name"), "{err}");
        assert!(lock.is_held());
        lock.release().await.unwrap();
        let permit = client.semaphore("shared", 2).try_acquire().await.unwrap().expect("free now");
        let err = client.lock("shared").try_acquire().await.unwrap_err();
        assert!(matches!(&err, Error::WrongKind { used_as: Kind::Lock, .. }), "{err:?}");
        assert_eq!(permit.release().await.unwrap(), Released::Released);
    }

    /// No permits is bad input, with a typed error and nothing sent.
    async fn zero_permits_is_refused(b: Backend) {
        let client = b.client().await;
        let err = client.semaphore("none", 0).try_acquire().await.unwrap_err();
        assert!(matches!(err, Error::InvalidPermits { permits: 0, .. }), "{err:?}");
        assert!(b.keys().is_empty(), "nothing was written");
    }
}

/// Over a Redlock a semaphore is refused, saying why (quorums of different
/// permits need not meet), before anything is written.
#[tokio::test]
async fn a_semaphore_over_a_redlock_is_not_offered() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let client = Client::connect(&urls.join(",")).await.unwrap();
    let err = client
        .semaphore("exports", 2)
        .try_acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOffered { .. }), "{err:?}");
    assert!(err.to_string().contains("Redlock of 3 servers"), "{err}");
    for server in &servers {
        assert!(server.keys().is_empty());
    }
}
