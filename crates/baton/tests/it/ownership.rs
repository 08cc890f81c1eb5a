//! Only the owner can release or extend; expired leases stay expired.

use std::time::Duration;

use baton::{Error, Released};

use crate::support::{both, key};

both! {
    /// A lease that expired is taken by another; the old guard's release
    /// reports it expired and leaves the new holder's key alone, and its
    /// extend returns Lost without touching or re-creating anything.
    async fn an_expired_lease_is_taken_and_the_old_guard_cannot_touch_it(b: Backend) {
        let (a, c) = (b.client().await, b.client().await);
        let mut old = a.lock("job").ttl(Duration::from_millis(200)).auto_renew(false)
            .try_acquire().await.unwrap().expect("free");
        // Waiting follows the holder's expiry: no sleep needed.
        let new = c.lock("job").ttl(Duration::from_secs(30)).acquire().await.unwrap();
        assert!(new.fence() > old.fence());
        assert!(!old.is_held());
        let theirs = b.get(&key("job")).expect("new holder's key");
        assert!(matches!(old.extend(Duration::from_secs(60)).await, Err(Error::Lost { .. })));
        let pttl = b.pttl(&key("job")).unwrap();
        assert!(pttl > 25_000 && pttl <= 30_000, "the new holder's TTL is untouched: {pttl}");
        assert_eq!(old.release().await.unwrap(), Released::AlreadyExpired);
        assert_eq!(b.get(&key("job")), Some(theirs), "the new holder's key is untouched");
        assert_eq!(new.release().await.unwrap(), Released::Released);
    }

    /// Extend after an external DEL is Lost and does not recreate the key.
    async fn extend_after_an_external_delete_is_lost(b: Backend) {
        let client = b.client().await;
        let mut guard = client.lock("job").auto_renew(false).try_acquire().await.unwrap().expect("free");
        b.del(&key("job"));
        let err = guard.extend(Duration::from_secs(10)).await.unwrap_err();
        assert!(err.is_lost(), "{err}");
        assert_eq!(b.get(&key("job")), None, "extend never re-creates the key");
        assert!(!guard.is_held());
        assert_eq!(guard.release().await.unwrap(), Released::AlreadyExpired);
    }

    /// Extend after expiry is Lost, without a round trip that could revive it.
    async fn extend_after_expiry_is_lost(b: Backend) {
        let client = b.client().await;
        let mut guard = client.lock("job").ttl(Duration::from_millis(50)).auto_renew(false)
            .try_acquire().await.unwrap().expect("free");
        guard.lost().await;
        assert!(guard.extend(Duration::from_secs(10)).await.unwrap_err().is_lost());
        // The local deadline comes a drift allowance before the server's
        // expiry: the key may linger for those few ms, but is not extended.
        let pttl = b.pttl(&key("job"));
        assert!(pttl.is_none_or(|ms| (0..=50).contains(&ms)), "not revived: {pttl:?}");
    }

    /// A held lease is extended in place: a longer TTL on the server, and
    /// renewals carry on with the new TTL.
    async fn extend_resets_the_ttl_of_our_key(b: Backend) {
        let client = b.client().await;
        let mut guard = client.lock("job").ttl(Duration::from_secs(2)).auto_renew(false)
            .try_acquire().await.unwrap().expect("free");
        guard.extend(Duration::from_secs(60)).await.unwrap();
        let pttl = b.pttl(&key("job")).unwrap();
        assert!(pttl > 55_000, "{pttl}");
        assert!(guard.lease().remaining() > Duration::from_secs(55));
        guard.release().await.unwrap();
    }

    /// A foreign holder's key: our try fails and its value and TTL stay.
    async fn a_foreign_key_is_left_untouched(b: Backend) {
        b.set_foreign(&key("job"), "someone-else", Some(Duration::from_secs(5)));
        let client = b.client().await;
        assert!(client.lock("job").try_acquire().await.unwrap().is_none());
        assert_eq!(b.get(&key("job")).as_deref(), Some("someone-else"));
        let pttl = b.pttl(&key("job")).unwrap();
        assert!(pttl > 4_000 && pttl <= 5_000, "TTL not reset: {pttl}");
    }
}

/// The release and extend scripts themselves refuse a token that is not the
/// key's: key and TTL stay as they were.
#[tokio::test]
async fn the_scripts_refuse_a_foreign_token() {
    use baton_core::scripts::{EXTEND, RELEASE};
    let server = baton_test_support::RedisServer::start();
    server.cmd::<()>(&["SET", "baton:job", "owner-token", "PX", "5000"]);
    let released: i64 = server.cmd(&[
        "EVAL",
        RELEASE.source,
        "1",
        "baton:job",
        "not-the-owner",
        "chan",
    ]);
    let extended: i64 = server.cmd(&[
        "EVAL",
        EXTEND.source,
        "1",
        "baton:job",
        "not-the-owner",
        "60000",
    ]);
    assert_eq!((released, extended), (0, 0));
    assert_eq!(
        server
            .cmd::<Option<String>>(&["GET", "baton:job"])
            .as_deref(),
        Some("owner-token")
    );
    let pttl: i64 = server.cmd(&["PTTL", "baton:job"]);
    assert!(pttl > 4_000 && pttl <= 5_000, "{pttl}");
}
