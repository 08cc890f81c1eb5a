//! Replica acknowledgement (`ClientBuilder::min_replicas`) on a real master
//! with a real replica: a lease counts only once the replica has it.

use std::time::Duration;

use baton::{Client, Error, Released};
use baton_test_support::{RedisServer, ServerOptions};

use crate::support::{hold, within};

const KEY: &str = "baton:job";

/// A master and one replica in sync with it.
fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(ServerOptions::default().replica_of(master.port()));
    (master, replica)
}

async fn acknowledged(master: &RedisServer, replicas: usize) -> Client {
    Client::builder()
        .node(&master.url())
        .min_replicas(replicas, Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

/// Confirmed by the replica: when acquire returns, the replica already
/// holds our token (no waiting for replication afterwards), and renewal
/// and release work as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_lease_is_on_the_replica_when_acquire_returns() {
    within(async {
        let (master, replica) = master_and_replica();
        master.wait_for_replica();
        let client = acknowledged(&master, 1).await;
        let guard = hold(&client, "job", Duration::from_millis(300)).await;
        let on_master: Option<String> = master.cmd(&["GET", KEY]);
        let on_replica: Option<String> = replica.cmd(&["GET", KEY]);
        assert!(on_master.is_some());
        assert_eq!(on_replica, on_master, "the replica has the lease already");
        tokio::time::sleep(Duration::from_millis(900)).await; // three renewal periods
        assert!(guard.is_held(), "renewals are confirmed too");
        assert_eq!(guard.release().await.unwrap(), Released::Released);
    })
    .await
}

/// With the replica stopped, an acquire is not confirmed: it fails saying
/// how many replicas confirmed, and the key it set on the master is taken
/// back. Asking for more replicas than there are fails the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_acquire_fails_and_is_taken_back() {
    within(async {
        let (master, replica) = master_and_replica();
        master.wait_for_replica();
        // (A whole second for the one replica to answer WAIT's GETACK, so
        // that `confirmed` is 1 on a loaded machine too.)
        let too_many = Client::builder()
            .node(&master.url())
            .node_timeout(Duration::from_secs(5))
            .min_replicas(2, Duration::from_secs(1))
            .build()
            .await
            .unwrap();
        let err = too_many.lock("job").try_acquire().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotReplicated {
                    confirmed: 1,
                    needed: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            master.cmd::<Option<String>>(&["GET", KEY]),
            None,
            "taken back"
        );

        let client = acknowledged(&master, 1).await;
        replica.pause();
        let err = client.lock("job").try_acquire().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotReplicated {
                    confirmed: 0,
                    needed: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_transient(), "a lagging replica passes");
        assert_eq!(
            master.cmd::<Option<String>>(&["GET", KEY]),
            None,
            "taken back"
        );
        replica.resume();
        master.wait_for_replica();
        let guard = hold(&client, "job", Duration::from_secs(5)).await;
        assert_eq!(guard.release().await.unwrap(), Released::Released);
    })
    .await
}

/// An extend the replica does not confirm does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_extend_is_an_error() {
    within(async {
        let (master, replica) = master_and_replica();
        master.wait_for_replica();
        let client = acknowledged(&master, 1).await;
        let mut guard = client
            .lock("job")
            .ttl(Duration::from_secs(5))
            .auto_renew(false)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        replica.pause();
        let err = guard.extend(Duration::from_secs(60)).await.unwrap_err();
        assert!(matches!(err, Error::NotReplicated { .. }), "{err:?}");
        assert!(
            guard.lease().remaining() <= Duration::from_secs(5),
            "the deadline did not move with an unconfirmed extend"
        );
        replica.resume();
    })
    .await
}

/// A replica timeout that is zero (WAIT would block forever) or not
/// shorter than the node timeout is refused.
#[tokio::test]
async fn a_replica_timeout_must_fit_in_the_node_timeout() {
    for wait in [
        Duration::ZERO,
        Duration::from_secs(1),
        Duration::from_secs(5),
    ] {
        let err = Client::builder()
            .node("redis://127.0.0.1:1")
            .min_replicas(1, wait)
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTtl { .. }), "{wait:?}: {err:?}");
    }
}
