//! Multi-locks: several names taken all or none, as one lease with one
//! fence that is valid for every name.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton::{Error, Kind, NameError, Released, MAX_MULTI_NAMES};
use baton_core::Keys;

use crate::support::{both, key, spawn_waiter, wake_after_release, NOTIFIED};

/// The fence counter of `name` (under the default prefix).
fn fence_key(name: &str) -> String {
    Keys::new("baton:", name).unwrap().fence
}

/// The fence counters of `names`, sorted as `Backend::keys` sorts.
fn fence_keys(names: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = names.iter().map(|n| fence_key(n)).collect();
    keys.sort();
    keys
}

both! {
    /// Every name is taken with one token and one fence above each name's
    /// earlier fences; plain locks of those names are excluded while it is
    /// held; the release frees them all, leaves only fence counters, and
    /// later fences of each name are above it.
    async fn all_names_with_one_fence_above_each_names_history(b: Backend) {
        let client = b.client().await;
        for _ in 0..3 {
            let a = client.lock("a").try_acquire().await.unwrap().expect("free");
            a.release().await.unwrap();
        }
        let held = client
            .multi_lock(&["c", "a", "b"])
            .try_acquire()
            .await
            .unwrap()
            .expect("all free");
        let fence = held.fence().0;
        assert!(fence > 3, "above a's three earlier fences: {fence}");
        let token = b.get(&key("a")).expect("a is held");
        for name in ["b", "c"] {
            assert_eq!(b.get(&key(name)).as_deref(), Some(&*token), "{name}: the one token");
        }
        for name in ["a", "b", "c"] {
            assert_eq!(
                b.get(&fence_key(name)),
                Some(fence.to_string()),
                "{name}'s counter raised to the lease's fence"
            );
            assert!(
                client.lock(name).try_acquire().await.unwrap().is_none(),
                "{name} is held by the multi-lock"
            );
        }
        assert_eq!(held.release().await.unwrap(), Released::Released);
        assert_eq!(b.keys(), fence_keys(&["a", "b", "c"]), "only fence counters left");
        for name in ["a", "b", "c"] {
            let later = client.lock(name).try_acquire().await.unwrap().expect("free again");
            assert!(later.fence().0 > fence, "{name}: later fences are above the lease's");
            later.release().await.unwrap();
        }
    }

    /// One name held by another: the multi-lock takes nothing at all, and
    /// draws no fence.
    async fn one_held_name_and_nothing_is_taken(b: Backend) {
        let client = b.client().await;
        let other = client.lock("y").try_acquire().await.unwrap().expect("free");
        let lot = client.multi_lock(&["x", "y", "z"]);
        assert!(lot.try_acquire().await.unwrap().is_none(), "y is another's");
        let mut left = vec![key("y"), fence_key("y")];
        left.sort();
        assert_eq!(b.keys(), left, "x and z untouched, no fence drawn");
        other.release().await.unwrap();
        let all = lot.try_acquire().await.unwrap().expect("free now");
        all.release().await.unwrap();
    }

    /// A waiter is woken by the release of whichever name blocked it (here
    /// not the first), not by its fallback retry.
    async fn a_waiter_is_woken_by_the_release_of_any_name(b: Backend) {
        let client = b.client().await;
        let held = client
            .lock("q2")
            .ttl(Duration::from_secs(30))
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let lot = client
            .multi_lock(&["q1", "q2"])
            .retry_interval(Duration::from_secs(30))
            .wait(Duration::from_secs(60));
        let waiter = spawn_waiter(lot);
        crate::support::wait_for_a_subscriber(&b, "q2").await;
        let woken_after = wake_after_release(held, waiter).await;
        assert!(woken_after < NOTIFIED, "woken after {woken_after:?}");
        assert_eq!(b.keys(), fence_keys(&["q1", "q2"]));
    }

    /// Renewed together beyond the TTL; the lease is lost when any one
    /// name is broken, and the release then takes the rest.
    async fn renewed_together_and_lost_with_any_name(b: Backend) {
        let client = b.client().await;
        let held = client
            .multi_lock(&["r1", "r2"])
            .ttl(Duration::from_millis(300))
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(held.is_held(), "renewed past three TTLs");
        for name in ["r1", "r2"] {
            assert!(b.pttl(&key(name)).is_some_and(|ms| ms > 0), "{name} kept alive");
        }
        b.del(&key("r2"));
        tokio::time::timeout(Duration::from_secs(5), held.lease().lost())
            .await
            .expect("lost once a name is gone");
        assert_eq!(held.release().await.unwrap(), Released::AlreadyExpired);
        assert_eq!(b.keys(), fence_keys(&["r1", "r2"]), "r1 released with it");
    }

    /// Overlapping multi-locks and plain locks, in every order: a name is
    /// never held twice at once, and nobody deadlocks.
    async fn overlapping_sets_exclude_each_other_without_deadlock(b: Backend) {
        const NAMES: [&str; 4] = ["m0", "m1", "m2", "m3"];
        let inside: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
        let overlaps = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for t in 0..8usize {
            let client = b.client().await;
            let (inside, overlaps) = (Arc::clone(&inside), Arc::clone(&overlaps));
            tasks.push(tokio::spawn(async move {
                for round in 0..6usize {
                    // Pairs in both orders, a triple, and single names.
                    let which: Vec<usize> = match (t + round) % 4 {
                        0 => vec![t % 4, (t + 1) % 4],
                        1 => vec![(t + 1) % 4, t % 4],
                        2 => vec![t % 4, (t + 2) % 4, (t + 3) % 4],
                        _ => vec![t % 4],
                    };
                    let names: Vec<&str> = which.iter().map(|&i| NAMES[i]).collect();
                    let lock = client.multi_lock(&names).wait(Duration::from_secs(60));
                    lock.run(|_| async {
                        for &i in &which {
                            if inside[i].fetch_add(1, Ordering::SeqCst) != 0 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        for &i in &which {
                            inside[i].fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                    .await
                    .expect("every round is served");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(overlaps.load(Ordering::SeqCst), 0, "a name held twice at once");
        assert_eq!(b.keys(), fence_keys(&NAMES));
    }

    /// Bad input gets a typed error and touches nothing: no names, an
    /// invalid or surplus name, a fair multi-lock, a name that is another
    /// kind of lock.
    async fn bad_input_is_refused_and_touches_nothing(b: Backend) {
        let client = b.client().await;
        let refused = |e: Error| match e {
            Error::InvalidName { reason, .. } => reason,
            other => panic!("not InvalidName: {other:?}"),
        };
        let e = client.multi_lock(&[]).try_acquire().await.unwrap_err();
        assert_eq!(refused(e), NameError::NoNames);
        let e = client.multi_lock(&["a", ""]).acquire().await.unwrap_err();
        assert_eq!(refused(e), NameError::Empty);
        let many: Vec<String> = (0..=MAX_MULTI_NAMES).map(|i| format!("n{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = client.multi_lock(&many).try_acquire().await.unwrap_err();
        assert_eq!(refused(e), NameError::TooManyNames { count: MAX_MULTI_NAMES + 1 });
        let e = client.multi_lock(&["a", "b"]).fair(true).try_acquire().await.unwrap_err();
        assert!(matches!(e, Error::NotOffered { what: "a fair multi-lock", .. }), "{e:?}");
        assert!(b.keys().is_empty(), "nothing written: {:?}", b.keys());

        let permit = client.semaphore("pool", 2).try_acquire().await.unwrap().expect("free");
        let e = client.multi_lock(&["free", "pool"]).try_acquire().await.unwrap_err();
        assert!(
            matches!(&e, Error::WrongKind { key, used_as: Kind::Multi } if key.contains("baton:pool")),
            "{e:?}"
        );
        assert!(b.get(&key("free")).is_none(), "the free name was not taken");
        assert!(permit.is_held());
        permit.release().await.unwrap();
    }
}
