//! Waiting: woken by release notifications, following a vanished holder's
//! expiry, bounded by the wait limit.

use std::time::Duration;

use baton::Error;
use tokio::time::Instant;

use crate::support::{both, eventually, hold, key, Backend};

/// Far longer than any wake-up these tests accept, so a waiter that is
/// woken promptly can only have been woken by a notification or expiry.
const SLOW_RETRY: Duration = Duration::from_secs(30);

both! {
    /// A waiter whose fallback retry is 30 s is woken within a second of the
    /// release: proof that the notification arrives.
    async fn a_release_wakes_a_waiter_at_once(b: Backend) {
        let (holder_client, waiter_client) = (b.client().await, b.client().await);
        let held = hold(&holder_client, "job", Duration::from_secs(60)).await;
        let lock = waiter_client.lock("job").ttl(Duration::from_secs(60)).retry_interval(SLOW_RETRY);
        let waiter = crate::support::spawn_waiter(lock);
        crate::support::wait_for_a_subscriber(&b, "job").await;
        let woke = crate::support::wake_after_release(held, waiter).await;
        assert!(woke < crate::support::NOTIFIED, "woke after {woke:?}: not by the notification");
    }

    /// A holder that vanishes without releasing (a crash: no notification)
    /// is followed when its key expires, not after the 30 s fallback.
    async fn a_vanished_holder_is_followed_at_its_expiry(b: Backend) {
        b.set_foreign(&key("job"), "crashed-holder", Some(Duration::from_millis(500)));
        let client = b.client().await;
        let start = Instant::now();
        let guard = client.lock("job").retry_interval(SLOW_RETRY).acquire().await.unwrap();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(400), "not before the holder's expiry: {waited:?}");
        assert!(waited < Duration::from_secs(5), "promptly after it: {waited:?}");
        guard.release().await.unwrap();
    }

    /// A bounded wait that runs out is a Timeout, and leaves the holder be.
    async fn a_bounded_wait_times_out(b: Backend) {
        let client = b.client().await;
        let held = client.lock("job").try_acquire().await.unwrap().expect("free");
        let token = b.get(&key("job"));
        let err = client.lock("job").wait(Duration::from_millis(300)).acquire().await.unwrap_err();
        assert!(matches!(err, Error::Timeout { ref name, waited } if name == "job" && waited >= Duration::from_millis(300)), "{err}");
        assert!(err.is_retryable());
        assert_eq!(b.get(&key("job")), token);
        held.release().await.unwrap();
    }

    /// A zero wait is one attempt.
    async fn a_zero_wait_is_one_attempt(b: Backend) {
        let client = b.client().await;
        let _held = client.lock("job").try_acquire().await.unwrap().expect("free");
        let start = Instant::now();
        let err = client.lock("job").wait(Duration::ZERO).acquire().await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}

/// Without pub/sub (a user's own connection), waiting still works on the
/// fallback, bounded by the holder's expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_a_users_connection_waits_on_the_fallback() {
    crate::support::within(async {
        let b = Backend::redis();
        let conn = redis::Client::open(b.server().url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let client = baton::Client::from_connection(conn);
        let held = client
            .lock("job")
            .ttl(Duration::from_millis(400))
            .auto_renew(false)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let next = client
            .lock("job")
            .retry_interval(Duration::from_millis(50))
            .acquire()
            .await
            .unwrap();
        assert!(next.fence() > held.fence());
        assert_eq!(
            held.release().await.unwrap(),
            baton::Released::AlreadyExpired
        );
        next.release().await.unwrap();
    })
    .await
}

/// The pub/sub connection is killed under a waiter: it is reopened and the
/// waiter's channel subscribed again, so the release still wakes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_resubscribed_after_its_connection_drops() {
    crate::support::within(async {
        let b = Backend::redis();
        let (holder_client, waiter_client) = (b.client().await, b.client().await);
        let held = hold(&holder_client, "job", Duration::from_secs(60)).await;
        let lock = waiter_client
            .lock("job")
            .ttl(Duration::from_secs(60))
            .retry_interval(SLOW_RETRY);
        let waiter = crate::support::spawn_waiter(lock);
        crate::support::wait_for_a_subscriber(&b, "job").await;
        let pubsub_clients = || -> String { b.server().cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]) };
        let before = pubsub_clients();
        let killed: i64 = b.server().cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert_eq!(killed, 1);
        // A new pub/sub connection (another client id), subscribed again.
        eventually("a new pub/sub connection", || {
            let now = pubsub_clients();
            !now.is_empty() && now.split(' ').next() != before.split(' ').next()
        })
        .await;
        crate::support::wait_for_a_subscriber(&b, "job").await;
        let woke = crate::support::wake_after_release(held, waiter).await;
        assert!(
            woke < crate::support::NOTIFIED,
            "woke after {woke:?}: not by the notification"
        );
    })
    .await
}
