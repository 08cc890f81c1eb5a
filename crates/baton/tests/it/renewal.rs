//! Automatic renewal, and the loud signal when a lease is lost.

use std::time::Duration;

use baton::Error;

use crate::support::{both, hold, key, Backend};

const TTL: Duration = Duration::from_millis(300);

both! {
    /// A 300 ms lease stays held for ten times its TTL while its guard lives:
    /// the key keeps our token and nobody else can take it meanwhile.
    async fn renewal_keeps_a_short_lease_held(b: Backend) {
        let (a, other) = (b.client().await, b.client().await);
        let guard = hold(&a, "long-job", TTL).await;
        assert_eq!(a.renewing(), 1);
        let token = b.get(&key("long-job")).unwrap();
        for _ in 0..10 {
            tokio::time::sleep(TTL).await;
            assert!(guard.is_held());
            assert!(other.lock("long-job").try_acquire().await.unwrap().is_none());
            assert_eq!(b.get(&key("long-job")).as_ref(), Some(&token));
        }
        guard.release().await.unwrap();
        assert_eq!(a.renewing(), 0, "renewal stops with the release");
    }

    /// Deleting the key under a holder is noticed at the next renewal.
    async fn lost_fires_when_the_key_is_deleted(b: Backend) {
        let client = b.client().await;
        let guard = hold(&client, "job", TTL).await;
        let deadline = tokio::time::Instant::now() + guard.lease().remaining();
        b.del(&key("job"));
        guard.lost().await;
        assert!(tokio::time::Instant::now() < deadline, "noticed by a renewal, not by the deadline passing");
        assert!(!guard.is_held());
        assert_eq!(client.renewing(), 0, "a lost lease is no longer renewed, though its guard lives");
        assert_eq!(b.get(&key("job")), None, "renewal never re-creates the key");
    }

    /// Taken by another (after an external delete): lost, and run() drops the work.
    async fn run_drops_the_work_when_the_lease_is_lost(b: Backend) {
        let client = b.client().await;
        let thief = b.client().await;
        let result = client.lock("job").ttl(TTL).run(|_lease| async {
            b.del(&key("job"));
            let _theirs = thief.lock("job").try_acquire().await.unwrap().expect("free after the delete");
            std::future::pending::<()>().await
        }).await;
        assert!(matches!(result, Err(Error::Lost { ref name }) if name == "job"), "{result:?}");
    }

    /// Without auto-renewal the lease ends at its deadline, and says so.
    async fn without_renewal_the_lease_ends_at_its_deadline(b: Backend) {
        let client = b.client().await;
        let guard = client.lock("job").ttl(TTL).auto_renew(false).try_acquire().await.unwrap().expect("free");
        let acquired = tokio::time::Instant::now();
        assert_eq!(client.renewing(), 0, "auto_renew(false): nothing to renew");
        guard.lost().await;
        assert!(acquired.elapsed() < TTL, "lost before the server's expiry");
        assert!(!guard.is_held());
    }

    /// run() releases when the work is done and returns its value.
    async fn run_returns_the_work_value_and_releases(b: Backend) {
        let client = b.client().await;
        let fence = client.lock("job").run(|lease| async move { lease.fence() }).await.unwrap();
        assert_eq!(fence.0, 1);
        assert_eq!(b.get(&key("job")), None);
    }
}

/// Killing the server: renewals fail, and lost() fires before the local
/// deadline passes (the holder hears of it while it can still stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fires_before_the_deadline_when_the_server_dies() {
    crate::support::within(async {
        let mut b = Backend::redis();
        let client = b.client().await;
        let guard = hold(&client, "job", Duration::from_secs(1)).await;
        b.server_mut().kill();
        let deadline = tokio::time::Instant::now() + guard.lease().remaining();
        guard.lost().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "lost() fired before the deadline"
        );
        assert!(!guard.is_held());
        assert_eq!(client.renewing(), 0, "renewal gave up with the loss");
    })
    .await
}

/// NOSCRIPT in a renewal pipeline: the scripts are flushed under a held
/// lease, renewals reload them and the lease stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_survives_a_script_flush() {
    crate::support::within(async {
        let b = Backend::redis();
        let client = b.client().await;
        let guard = hold(&client, "job", TTL).await;
        for _ in 0..5 {
            b.server().flush_scripts();
            tokio::time::sleep(TTL).await;
            assert!(guard.is_held());
        }
        b.server().flush_scripts();
        assert_eq!(guard.release().await.unwrap(), baton::Released::Released);
        b.server().flush_scripts();
        let again = client
            .lock("job")
            .try_acquire()
            .await
            .unwrap()
            .expect("acquire after a flush");
        again.release().await.unwrap();
    })
    .await
}

/// Connections cut under a held lease: the client reconnects and renewal
/// carries on — after each cut a renewal lands on the server (the key's
/// TTL goes back up) while the guard still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_survives_a_reconnect() {
    crate::support::within(async {
        let (server, proxy, client) =
            crate::support::behind_proxy(baton::DEFAULT_NODE_TIMEOUT).await;
        // A 3 s lease: renewed every second, with two seconds to reconnect
        // in, so a loaded machine does not lose it.
        let ttl = Duration::from_secs(3);
        let guard = hold(&client, "job", ttl).await;
        let pttl = || server.cmd::<i64>(&["PTTL", "baton:job"]);
        for _ in 0..3 {
            proxy.reset_connections();
            // A renewal resets the TTL: it rises between two looks.
            let mut last = pttl();
            crate::support::eventually("a renewal lands after the cut", || {
                let now = pttl();
                let renewed = now > last;
                last = now;
                renewed
            })
            .await;
            assert!(guard.is_held(), "still held after a reset");
        }
        assert_eq!(guard.release().await.unwrap(), baton::Released::Released);
    })
    .await
}
