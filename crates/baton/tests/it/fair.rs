//! Fair locks: waiters served in arrival order, the lock handed straight to
//! the next one, dead waiters skipped, bounded server work.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::{Client, Error, Kind, Released};
use baton_test_support::RedisServer;

use crate::support::{assert_only_the_fence_counter_left, both, command_calls, eventually};

/// Waits until fair lock `name`'s queue holds `n` waiters.
async fn queued(b: &crate::support::Backend, name: &str, n: usize) {
    eventually(&format!("{n} waiters queued"), || b.queue_len(name) == n).await;
}

both! {
    /// Waiters are served in the order they queued, each handed the lock
    /// by the release before it, with fences in that order too; nothing but
    /// the fence counter is left.
    async fn waiters_are_served_in_arrival_order(b: Backend) {
        let client = b.client().await;
        let lock = client.lock("fifo").fair(true).ttl(Duration::from_secs(30));
        let held = lock.try_acquire().await.unwrap().expect("free");
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (lock, served) = (lock.clone().wait(Duration::from_secs(30)), Arc::clone(&served));
            tasks.push(tokio::spawn(async move {
                let guard = lock.acquire().await.expect("served");
                served.lock().unwrap().push((i, guard.fence().0));
                guard.release().await.unwrap();
            }));
            queued(&b, "fifo", i + 1).await; // the next one arrives after this one queued
        }
        let first_fence = held.fence().0;
        assert_eq!(held.release().await.unwrap(), Released::Released);
        for task in tasks {
            task.await.unwrap();
        }
        let served = served.lock().unwrap().clone();
        let order: Vec<usize> = served.iter().map(|&(i, _)| i).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4], "FIFO");
        let fences: Vec<u64> = served.iter().map(|&(_, f)| f).collect();
        assert!(fences[0] > first_fence && fences.windows(2).all(|w| w[0] < w[1]), "{fences:?}");
        assert_only_the_fence_counter_left(&b, "fifo");
    }

    /// A release hands the lock to the waiter at once: the releaser asking
    /// again right away (the barging that unfair locks allow) is refused,
    /// and `try_acquire` never jumps the queue.
    async fn a_release_hands_off_and_nobody_barges(b: Backend) {
        let (holder, other) = (b.client().await, b.client().await);
        let lock = holder.lock("handoff").fair(true);
        let held = lock.try_acquire().await.unwrap().expect("free");
        let waiting = {
            let lock = other.lock("handoff").fair(true).wait(Duration::from_secs(30));
            tokio::spawn(async move { lock.acquire().await })
        };
        queued(&b, "handoff", 1).await;
        held.release().await.unwrap();
        assert!(lock.try_acquire().await.unwrap().is_none(), "handed on: no barging");
        let got = waiting.await.unwrap().expect("the waiter has it");
        assert!(got.is_held());
        assert!(lock.try_acquire().await.unwrap().is_none(), "held by the waiter now");
        got.release().await.unwrap();
        let again = lock.try_acquire().await.unwrap().expect("free with an empty queue");
        again.release().await.unwrap();
        assert_only_the_fence_counter_left(&b, "handoff");
    }

    /// A waiter that dies in the queue is skipped once its entry lapses: the
    /// one behind it is served, and the queue is not stuck.
    async fn a_dead_waiter_is_skipped(b: Backend) {
        let client = b.client().await;
        let lock = client.lock("stuck").fair(true).ttl(Duration::from_secs(30));
        let held = lock.try_acquire().await.unwrap().expect("free");
        let lock_of_the_dying = lock.clone();
        let mut dying = Box::pin(lock_of_the_dying.acquire());
        tokio::select! {
            _ = &mut dying => panic!("the lock is held"),
            () = queued(&b, "stuck", 1) => {}
        }
        // Dies in the queue, as a crashed process does: it never looks
        // again, and nothing of it runs to leave the queue.
        std::mem::forget(dying);
        let alive = {
            let lock = lock.clone().wait(Duration::from_secs(30));
            tokio::spawn(async move { lock.acquire().await })
        };
        queued(&b, "stuck", 2).await;
        held.release().await.unwrap(); // handed to the dead waiter, which never takes it
        let got = alive.await.unwrap().expect("served after the dead waiter's entry lapsed");
        got.release().await.unwrap();
        assert_only_the_fence_counter_left(&b, "stuck");
    }

    /// A waiter that leaves (its future dropped, or its wait run out)
    /// takes its entry out of the queue at once, so the next release hands
    /// the lock to a waiter that is still there.
    async fn a_waiter_that_leaves_takes_its_place_out(b: Backend) {
        let client = b.client().await;
        let lock = client.lock("leave").fair(true).ttl(Duration::from_secs(30));
        let held = lock.try_acquire().await.unwrap().expect("free");
        let cancelled = {
            let lock = lock.clone();
            tokio::spawn(async move { lock.acquire().await })
        };
        queued(&b, "leave", 1).await;
        cancelled.abort();
        let _ = cancelled.await;
        queued(&b, "leave", 0).await;
        let err = lock.clone().wait(Duration::from_millis(300)).acquire().await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        queued(&b, "leave", 0).await;
        let staying = {
            let lock = lock.clone().wait(Duration::from_secs(30));
            tokio::spawn(async move { lock.acquire().await })
        };
        queued(&b, "leave", 1).await;
        held.release().await.unwrap();
        let got = staying.await.unwrap().expect("handed to the waiter still there");
        got.release().await.unwrap();
        assert_only_the_fence_counter_left(&b, "leave");
    }

    /// Fair and unfair use of one name refuse each other, by name.
    async fn fair_and_unfair_use_of_a_name_are_refused(b: Backend) {
        let client = b.client().await;
        let fair = client.lock("mixed").fair(true).try_acquire().await.unwrap().expect("free");
        let err = client.lock("mixed").try_acquire().await.unwrap_err();
        assert!(matches!(err, Error::WrongKind { used_as: Kind::Lock, .. }), "{err:?}");
        fair.release().await.unwrap();
        let unfair = client.lock("mixed").try_acquire().await.unwrap().expect("free");
        let err = client.lock("mixed").fair(true).try_acquire().await.unwrap_err();
        assert!(matches!(err, Error::WrongKind { used_as: Kind::Fair { .. }, .. }), "{err:?}");
        assert!(err.to_string().contains("fair lock"), "{err}");
        unfair.release().await.unwrap();
    }

    /// A fair lease is renewed past its TTL and lost when its key goes.
    async fn a_fair_lease_is_renewed_and_lost_loudly(b: Backend) {
        let client = b.client().await;
        let guard = client
            .lock("renewed")
            .fair(true)
            .ttl(Duration::from_millis(300))
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        tokio::time::sleep(Duration::from_millis(1_000)).await; // three TTLs
        assert!(guard.is_held());
        b.del("baton:renewed");
        guard.lease().lost().await;
        assert_eq!(guard.release().await.unwrap(), Released::AlreadyExpired);
    }
}

/// Over a Redlock a fair lock is refused, saying why.
#[tokio::test]
async fn a_fair_lock_over_a_redlock_is_not_offered() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let client = Client::connect(&urls.join(",")).await.unwrap();
    let err = client.lock("q").fair(true).try_acquire().await.unwrap_err();
    assert!(matches!(err, Error::NotOffered { .. }), "{err:?}");
    let err = client
        .semaphore("q", 2)
        .into_lock()
        .fair(true)
        .try_acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOffered { .. }), "{err:?}");
}

/// The server's work per acquisition stays bounded however many wait: with
/// 8 and with 200 waiters on one name, each taking the lock once, the
/// scripts run per acquisition (`INFO commandstats`) stay at 4 or fewer:
/// the first look and the queued look after subscribing (2 to queue), then
/// the release that hands the lock on (the grant needs no look of the
/// waiter's own), and now and then a waiter's refresh. No thundering herd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_work_per_acquisition_is_bounded_by_waiters() {
    crate::support::within(async {
        for waiters in [8_usize, 200] {
            let server = RedisServer::start();
            let client = Client::connect(&server.url()).await.unwrap();
            let lock = client.lock("herd").fair(true).wait(Duration::from_secs(50));
            let held = lock.try_acquire().await.unwrap().expect("free");
            let tasks: Vec<_> = (0..waiters)
                .map(|_| {
                    let lock = lock.clone();
                    tokio::spawn(async move {
                        let guard = lock.acquire().await.expect("served");
                        guard.release().await.unwrap();
                    })
                })
                .collect();
            eventually("every waiter queued", || {
                server.cmd::<usize>(&["LLEN", &baton_core::Keys::new("baton:", "herd").unwrap().fair().queue])
                    == waiters
            })
            .await;
            let before = command_calls(&server, "evalsha") + command_calls(&server, "eval");
            held.release().await.unwrap();
            for task in tasks {
                task.await.unwrap();
            }
            let after = command_calls(&server, "evalsha") + command_calls(&server, "eval");
            // From the first release on: each release that hands the lock on
            // (every waiter's first two looks came before), plus refreshes.
            let per_acquisition = (after - before) as f64 / waiters as f64;
            assert!(
                per_acquisition <= 2.0,
                "{waiters} waiters: {per_acquisition:.2} script calls per acquisition after queueing"
            );
            let queueing = before as f64 / (waiters + 1) as f64;
            eprintln!("{waiters} waiters: {queueing:.2} script calls each to queue, {per_acquisition:.2} per acquisition after");
            assert!(queueing <= 2.0, "{waiters} waiters: {queueing:.2} calls each to queue");
        }
    })
    .await
}

/// A lock handed over by a release is the waiter's at once, on the short
/// hand-off lease, and its renewal then extends it to the waiter's own TTL:
/// the key's TTL grows past the hand-off lease while the guard holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_lock_is_renewed_to_the_waiters_ttl() {
    crate::support::within(async {
        let server = RedisServer::start();
        let (holder, waiter) = (
            Client::connect(&server.url()).await.unwrap(),
            Client::connect(&server.url()).await.unwrap(),
        );
        let held = holder
            .lock("handed")
            .fair(true)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let lock = waiter
            .lock("handed")
            .fair(true)
            .ttl(Duration::from_secs(30));
        let waiting = tokio::spawn(async move { lock.acquire().await });
        let queue = baton_core::Keys::new("baton:", "handed")
            .unwrap()
            .fair()
            .queue;
        eventually("the waiter queued", || {
            server.cmd::<usize>(&["LLEN", &queue]) == 1
        })
        .await;
        held.release().await.unwrap();
        let guard = waiting.await.unwrap().expect("handed over");
        let hand_off = 3 * baton::FAIR_RETRY_INTERVAL.as_millis() as i64;
        assert!(
            server.cmd::<i64>(&["PTTL", "baton:handed"]) <= hand_off,
            "the hand-off lease first"
        );
        // (The client's view moves once the renewal's verdict is in, a
        // moment after the server applied it.)
        eventually("renewed to the waiter's ttl", || {
            guard.lease().remaining() > Duration::from_secs(20)
        })
        .await;
        assert!(guard.is_held());
        assert!(server.cmd::<i64>(&["PTTL", "baton:handed"]) > hand_off);
        assert_eq!(guard.release().await.unwrap(), Released::Released);
    })
    .await
}

/// A waiter that won keeps its grant channel subscribed for its client's
/// next waiter of the lock: later waits send no `SUBSCRIBE`, and each is
/// still handed the lock by the release before it (a grant meant for an
/// earlier user of the channel is not taken for a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_won_waiters_grant_channel_serves_the_next_waiter_without_a_subscribe() {
    crate::support::within(async {
        let server = RedisServer::start();
        let (holder, waiter) = (
            Client::connect(&server.url()).await.unwrap(),
            Client::connect(&server.url()).await.unwrap(),
        );
        let queue = baton_core::Keys::new("baton:", "reuse")
            .unwrap()
            .fair()
            .queue;
        let mut subscribes = None;
        let mut fences = Vec::new();
        for round in 0..4 {
            let held = holder
                .lock("reuse")
                .fair(true)
                .try_acquire()
                .await
                .unwrap()
                .expect("free");
            let lock = waiter
                .lock("reuse")
                .fair(true)
                .wait(Duration::from_secs(30));
            let waiting = tokio::spawn(async move { lock.acquire().await });
            eventually("the waiter queued", || {
                server.cmd::<usize>(&["LLEN", &queue]) == 1
            })
            .await;
            held.release().await.unwrap();
            let got = waiting.await.unwrap().expect("handed over");
            assert!(got.is_held());
            assert!(
                holder
                    .lock("reuse")
                    .fair(true)
                    .try_acquire()
                    .await
                    .unwrap()
                    .is_none(),
                "round {round}: the waiter holds it"
            );
            fences.push(got.fence().0);
            got.release().await.unwrap();
            let now = command_calls(&server, "subscribe");
            match subscribes {
                None => subscribes = Some(now),
                Some(first) => assert_eq!(now, first, "round {round}: no SUBSCRIBE"),
            }
        }
        assert!(fences.windows(2).all(|w| w[0] < w[1]), "{fences:?}");
    })
    .await
}
