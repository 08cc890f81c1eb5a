//! Read-write locks: many readers or one writer, never both; writers
//! preferred.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton::{Client, Error, Released};
use baton_test_support::RedisServer;

use crate::support::both;

both! {
    /// Readers share; a writer waits for them and excludes everyone; write
    /// fences increase, and readers see the last write's; nothing is left
    /// but the fence counter.
    async fn readers_share_and_a_writer_excludes_everyone(b: Backend) {
        let client = b.client().await;
        let config = client.rw_lock("config");
        let r1 = config.read().try_acquire().await.unwrap().expect("a reader");
        let r2 = config.read().try_acquire().await.unwrap().expect("another reader");
        assert!(config.write().try_acquire().await.unwrap().is_none(), "no writer beside readers");
        r1.release().await.unwrap();
        assert!(config.write().try_acquire().await.unwrap().is_none(), "one reader left");
        assert_eq!(r2.release().await.unwrap(), Released::Released);
        let w1 = config.write().try_acquire().await.unwrap().expect("free for a writer");
        assert!(config.read().try_acquire().await.unwrap().is_none(), "no reader beside the writer");
        assert!(config.write().try_acquire().await.unwrap().is_none(), "one writer");
        let first = w1.fence();
        w1.release().await.unwrap();
        let reader = config.read().try_acquire().await.unwrap().expect("free");
        assert_eq!(reader.fence(), first, "a reader sees the last write's fence");
        reader.release().await.unwrap();
        let w2 = config.write().try_acquire().await.unwrap().expect("free");
        assert!(w2.fence() > first, "write fences increase");
        w2.release().await.unwrap();
        crate::support::assert_only_the_fence_counter_left(&b, "config");
    }

    /// A waiting writer holds new readers back (writers do not starve), and
    /// gets the lock once the readers in it leave.
    async fn a_waiting_writer_holds_new_readers_back(b: Backend) {
        let client = b.client().await;
        let rw = client.rw_lock("pref");
        let reader = rw.read().try_acquire().await.unwrap().expect("a reader");
        let writing = {
            let write = rw.write().wait(Duration::from_secs(30));
            tokio::spawn(async move { write.acquire().await })
        };
        // Until the writer has marked itself waiting, readers still get in.
        eventually_async_refused(&rw).await;
        reader.release().await.unwrap();
        let writer = writing.await.unwrap().expect("the writer gets it");
        assert!(writer.is_held());
        assert!(rw.read().try_acquire().await.unwrap().is_none());
        writer.release().await.unwrap();
        assert!(rw.read().try_acquire().await.unwrap().is_some(), "readers again");
    }

    /// Under load, never a writer alongside anyone: 6 readers and 2 writers
    /// loop on one name, counting who is inside.
    async fn never_a_writer_alongside_anyone(b: Backend) {
        let client = b.client().await;
        let rw = client.rw_lock("load");
        let (readers, writers) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let write = i < 2;
            let lock = if write { rw.write() } else { rw.read() }.wait(Duration::from_secs(30));
            let (readers, writers) = (Arc::clone(&readers), Arc::clone(&writers));
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    lock.run(|_| async {
                        if write {
                            assert_eq!(writers.fetch_add(1, Ordering::SeqCst), 0, "two writers");
                            assert_eq!(readers.load(Ordering::SeqCst), 0, "a writer beside readers");
                        } else {
                            readers.fetch_add(1, Ordering::SeqCst);
                            assert_eq!(writers.load(Ordering::SeqCst), 0, "a reader beside a writer");
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if write {
                            writers.fetch_sub(1, Ordering::SeqCst);
                        } else {
                            readers.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                    .await
                    .expect("every turn is taken");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        crate::support::assert_only_the_fence_counter_left(&b, "load");
    }

    /// Both sides are leases: renewed past their TTL, lost loudly.
    async fn read_and_write_leases_are_renewed(b: Backend) {
        let client = b.client().await;
        let rw = client.rw_lock("renewed");
        let reader = rw.read().ttl(Duration::from_millis(300)).try_acquire().await.unwrap().expect("free");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(reader.is_held());
        assert!(rw.write().try_acquire().await.unwrap().is_none());
        reader.release().await.unwrap();
        let writer = rw.write().ttl(Duration::from_millis(300)).try_acquire().await.unwrap().expect("free");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(writer.is_held());
        b.del("baton:renewed");
        writer.lease().lost().await;
        assert_eq!(writer.release().await.unwrap(), Released::AlreadyExpired);
    }
}

/// Waits until a new reader is refused: the waiting writer's mark is in.
async fn eventually_async_refused(rw: &baton::RwLock) {
    crate::support::eventually_async("the waiting writer holds readers back", || async {
        match rw.read().try_acquire().await.unwrap() {
            Some(guard) => {
                guard.release().await.unwrap();
                None
            }
            None => Some(()),
        }
    })
    .await
}

/// Over a Redlock a read-write lock is refused, saying why.
#[tokio::test]
async fn a_rw_lock_over_a_redlock_is_not_offered() {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let client = Client::connect(&urls.join(",")).await.unwrap();
    for lock in [client.rw_lock("x").read(), client.rw_lock("x").write()] {
        let err = lock.try_acquire().await.unwrap_err();
        assert!(matches!(err, Error::NotOffered { .. }), "{err:?}");
    }
}
