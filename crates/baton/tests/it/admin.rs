//! The operator's view: status, and breaking a stuck lock.

use std::time::Duration;

use crate::support::{both, hold, key, Backend};

both! {
    /// Status shows free, then the holder (fingerprint, TTL) and the fence;
    /// it changes nothing.
    async fn status_shows_the_holder_and_the_fence(b: Backend) {
        let client = b.client().await;
        let free = client.status("job").await.unwrap();
        assert_eq!(free.answered_by.len(), 1, "the one server answered: {:?}", free.answered_by);
        assert_eq!((free.holder, free.fence), (None, None));
        let guard = hold(&client, "job", Duration::from_secs(30)).await;
        let token = b.get(&key("job")).unwrap();
        let status = client.status("job").await.unwrap();
        let holder = status.holder.expect("held");
        assert_eq!(holder.fingerprint, token[..8]);
        assert!(holder.remaining.is_some_and(|r| r <= Duration::from_secs(30) && r > Duration::from_secs(25)));
        assert_eq!(status.fence, Some(guard.fence()));
        assert_eq!(b.get(&key("job")), Some(token), "status touched nothing");
        guard.release().await.unwrap();
        let after = client.status("job").await.unwrap();
        assert_eq!((after.holder, after.fence), (None, Some(guard_fence(1))));
    }

    /// Breaking a stuck lock removes it whoever holds it, says whose it
    /// was, wakes waiters, and the old holder learns it lost the lease.
    async fn force_release_breaks_a_stuck_lock(b: Backend) {
        let (holder, operator) = (b.client().await, b.client().await);
        let guard = hold(&holder, "job", Duration::from_millis(600)).await;
        let token = b.get(&key("job")).unwrap();
        assert_eq!(operator.force_release("job").await.unwrap(), vec![token[..8].to_owned()]);
        assert_eq!(b.get(&key("job")), None);
        guard.lost().await;
        assert!(operator.force_release("job").await.unwrap().is_empty(), "nothing left to break");
        let next = hold(&operator, "job", Duration::from_secs(5)).await;
        assert!(next.fence() > guard.fence(), "the fence still moves on");
    }
}

both! {
    /// A fair lock's status shows its holder and fence; breaking it
    /// removes it, and the holder learns it lost the lease.
    async fn a_fair_lock_shows_its_holder_and_can_be_broken(b: Backend) {
        let (holder, operator) = (b.client().await, b.client().await);
        let guard = holder
            .lock("fair")
            .fair(true)
            .ttl(Duration::from_millis(600))
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        let status = operator.status("fair").await.unwrap();
        let shown = status.holder.expect("held").fingerprint;
        assert_eq!(status.fence, Some(guard.fence()));
        assert_eq!(operator.force_release("fair").await.unwrap(), vec![shown]);
        guard.lost().await;
        assert!(operator.status("fair").await.unwrap().holder.is_none());
    }
}

fn guard_fence(n: u64) -> baton::Fence {
    baton::Fence(n)
}

/// A foreign lock without a TTL: status shows it held with no expiry.
#[tokio::test]
async fn status_of_a_foreign_lock_without_ttl() {
    crate::support::within(async {
        let b = Backend::redis();
        b.set_foreign(&key("job"), "another-library-token", None);
        let status = b.client().await.status("job").await.unwrap();
        let holder = status.holder.expect("held");
        assert_eq!(
            (holder.fingerprint.as_str(), holder.remaining),
            ("another-", None)
        );
        assert_eq!(status.fence, None);
    })
    .await
}
