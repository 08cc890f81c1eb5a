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
        // (A whole second for the replica to confirm the setup acquire, so
        // that a loaded machine does not fail the test before its point.)
        let client = Client::builder()
            .node(&master.url())
            .node_timeout(Duration::from_secs(5))
            .min_replicas(1, Duration::from_secs(1))
            .build()
            .await
            .unwrap();
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
        assert!(
            matches!(err, Error::InvalidConfig { option: "replica timeout", value, .. } if value == wait),
            "{wait:?}: {err:?}"
        );
    }
}

/// AOF acknowledgement (`ClientBuilder::wait_aof`), asserted as each server
/// has it: Redis before 7.2 has no `WAITAOF`, and is refused at connect;
/// Valkey (and Redis ≥ 7.2) confirm a write once it is fsynced on the
/// master and the replicas asked for.
mod wait_aof {
    use super::*;

    /// Whether `server` knows `WAITAOF` (`COMMAND INFO` answers nil for a
    /// command it does not know).
    fn has_waitaof(server: &RedisServer) -> bool {
        let info: Vec<redis::Value> = server.cmd(&["COMMAND", "INFO", "WAITAOF"]);
        !matches!(info.first(), None | Some(redis::Value::Nil))
    }

    /// The replica's fsync is confirmed by its periodic acknowledgement,
    /// once a second, more often than right after the write (Valkey 9.1:
    /// acquires took 1.0 s each here), so the replica timeout is longer
    /// than that, and the lease longer still.
    const REPLICA_TIMEOUT: Duration = Duration::from_millis(1500);
    const ON_DISK_TTL: Duration = Duration::from_secs(5);

    async fn on_disk(master: &RedisServer, replicas: usize) -> baton::Result<Client> {
        let mut builder = Client::builder()
            .node(&master.url())
            .node_timeout(Duration::from_secs(3))
            .wait_aof(true);
        if replicas > 0 {
            builder = builder.min_replicas(replicas, REPLICA_TIMEOUT);
        }
        builder.build().await
    }

    /// A server without `WAITAOF`: the client is refused at connect, with
    /// a typed error that names the server and what it lacks.
    async fn assert_refused_for_no_waitaof(master: &RedisServer) {
        let err = on_disk(master, 0).await.unwrap_err();
        match &err {
            Error::AofUnavailable { node, reason } => {
                assert_eq!(node, &format!("127.0.0.1:{}", master.port()));
                assert!(reason.contains("WAITAOF"), "{reason}");
                assert!(reason.contains("7.2"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.is_transient(), "the server must change: {err}");
        assert!(err.to_string().contains("Valkey"), "{err}");
    }

    /// Waits until the replica fsyncs a probe write to its append-only
    /// file: after a full sync it rewrites that file first, and reports
    /// no fsync until the rewrite is done, well after `WAIT` counts it.
    fn wait_for_replica_aof(master: &RedisServer) {
        master.wait_for_replica();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // One connection: WAITAOF waits for that connection's last write.
        let mut conn = master.conn();
        while std::time::Instant::now() < deadline {
            redis::cmd("SET")
                .arg("baton-test:aof-probe")
                .arg("1")
                .query::<()>(&mut conn)
                .unwrap();
            let (_, replicas): (i64, i64) = redis::cmd("WAITAOF")
                .arg(0)
                .arg(1)
                .arg(100)
                .query(&mut conn)
                .unwrap();
            if replicas == 1 {
                master.cmd::<()>(&["DEL", "baton-test:aof-probe"]);
                return;
            }
        }
        panic!("the replica fsynced no write within 30 s");
    }

    /// A master and a replica, both with `appendonly yes` and `appendfsync always`.
    fn persistent_master_and_replica() -> (RedisServer, RedisServer) {
        let master = RedisServer::start_with(ServerOptions::default().persistence(true));
        let replica = RedisServer::start_with(
            ServerOptions::default()
                .persistence(true)
                .replica_of(master.port()),
        );
        (master, replica)
    }

    /// With `WAITAOF`: a lease confirmed on the master's disk alone, and one
    /// confirmed on the replica's disk too (the replica holds it when
    /// acquire returns); renewals are confirmed the same way. Without it:
    /// refused at connect.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_on_disk_is_on_the_replica_when_acquire_returns() {
        within(async {
            let (master, replica) = persistent_master_and_replica();
            if !has_waitaof(&master) {
                assert_refused_for_no_waitaof(&master).await;
                return;
            }
            wait_for_replica_aof(&master);
            let local = on_disk(&master, 0).await.unwrap();
            let guard = hold(&local, "job", Duration::from_millis(300)).await;
            assert_eq!(guard.release().await.unwrap(), Released::Released);

            let client = on_disk(&master, 1).await.unwrap();
            let guard = hold(&client, "job", ON_DISK_TTL).await;
            let on_master: Option<String> = master.cmd(&["GET", KEY]);
            let on_replica: Option<String> = replica.cmd(&["GET", KEY]);
            assert!(on_master.is_some());
            assert_eq!(on_replica, on_master, "the replica has the lease already");
            // Past the give-up point of a lease whose renewals all failed.
            tokio::time::sleep(ON_DISK_TTL).await;
            assert!(guard.is_held(), "renewals are confirmed too");
            assert_eq!(guard.release().await.unwrap(), Released::Released);
        })
        .await
    }

    /// With `WAITAOF` and the replica paused: the acquire is not confirmed
    /// (the master fsynced it, no replica did), fails transiently, and is
    /// taken back. Without it: refused at connect.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acquire_the_replica_did_not_fsync_fails_and_is_taken_back() {
        within(async {
            let (master, replica) = persistent_master_and_replica();
            if !has_waitaof(&master) {
                assert_refused_for_no_waitaof(&master).await;
                return;
            }
            wait_for_replica_aof(&master);
            let client = on_disk(&master, 1).await.unwrap();
            replica.pause();
            let err = client.lock("job").try_acquire().await.unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::NotReplicated {
                        confirmed: 0,
                        needed: 1,
                        fsynced: Some(true),
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.is_transient(), "a lagging replica passes");
            assert!(err.to_string().contains("fsynced"), "{err}");
            assert_eq!(
                master.cmd::<Option<String>>(&["GET", KEY]),
                None,
                "taken back"
            );
            replica.resume();
            wait_for_replica_aof(&master);
            let guard = hold(&client, "job", ON_DISK_TTL).await;
            assert_eq!(guard.release().await.unwrap(), Released::Released);
        })
        .await
    }

    /// A master with `appendonly no`: refused at connect when `CONFIG GET`
    /// is allowed; behind an ACL that refuses it, the first acquire fails
    /// with the same typed error, not transient (so `acquire()` does not
    /// ride it out), and its key is taken back. A server without
    /// `WAITAOF` is refused for that instead, or, where the ACL hides
    /// `COMMAND INFO` too, at the first acquire.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_master_without_an_append_only_file_is_refused_clearly() {
        within(async {
            let master = RedisServer::start();
            let waitaof = has_waitaof(&master);
            if waitaof {
                let err = on_disk(&master, 0).await.unwrap_err();
                assert!(
                    matches!(&err, Error::AofUnavailable { reason, .. } if reason.contains("appendonly")),
                    "{err:?}"
                );
                assert!(!err.is_transient());
            } else {
                assert_refused_for_no_waitaof(&master).await;
            }

            // An ACL user with the lock rights (and WAITAOF, where the
            // server knows it) but neither COMMAND nor CONFIG.
            let mut rules = baton::acl_rules("baton:");
            if waitaof {
                rules.push_str(" +waitaof");
            }
            let mut args = vec!["ACL", "SETUSER", "locker", "on", ">locker-pw"];
            args.extend(rules.split(' '));
            master.cmd::<()>(&args);
            let url = format!("redis://locker:locker-pw@127.0.0.1:{}/", master.port());
            let client = Client::builder()
                .node(&url)
                .wait_aof(true)
                .build()
                .await
                .expect("nothing to be learnt at connect");
            let started = std::time::Instant::now();
            let err = client
                .lock("job")
                .wait(Duration::from_secs(5))
                .acquire()
                .await
                .unwrap_err();
            let reason = match &err {
                Error::AofUnavailable { reason, .. } => reason.clone(),
                other => panic!("{other:?}"),
            };
            if waitaof {
                assert!(reason.contains("appendonly"), "{reason}");
            } else {
                assert!(reason.contains("7.2"), "{reason}");
            }
            assert!(!err.is_transient(), "{err}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "not ridden out: {:?}",
                started.elapsed()
            );
            assert_eq!(
                master.cmd::<Option<String>>(&["GET", KEY]),
                None,
                "taken back"
            );
        })
        .await
    }
}
