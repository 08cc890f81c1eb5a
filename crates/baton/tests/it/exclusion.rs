//! Mutual exclusion, fence order, and what a lock leaves behind.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{assert_only_the_fence_counter_left, both, key, Backend};

const TASKS: usize = 32;
const ROUNDS: u64 = 50;

both! {
    /// 32 tasks, each on its own client (its own connection), each doing a
    /// read-modify-write of an unprotected value 50 times under the lock.
    /// Without exclusion, updates are lost across the yield between read
    /// and write; with it the count is exact, no two holders ever overlap,
    /// and fences grow in the order the critical sections ran.
    async fn read_modify_write_under_the_lock_loses_nothing(b: Backend) {
        let value = Arc::new(AtomicU64::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let fences = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let client = b.client().await;
            let (value, inside, fences) = (value.clone(), inside.clone(), fences.clone());
            tasks.push(tokio::spawn(async move {
                let lock = client.lock("counter").ttl(Duration::from_secs(5));
                for _ in 0..ROUNDS {
                    let guard = lock.acquire().await.expect("acquire");
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                    fences.lock().unwrap().push(guard.fence().0);
                    let read = value.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    value.store(read + 1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(guard.release().await.expect("release"), baton::Released::Released);
                }
            }));
        }
        for task in tasks {
            task.await.expect("worker");
        }
        assert_eq!(value.load(Ordering::SeqCst), TASKS as u64 * ROUNDS);
        let fences = fences.lock().unwrap();
        assert!(fences.windows(2).all(|w| w[0] < w[1]), "fences strictly increase in holding order");
        assert_only_the_fence_counter_left(&b, "counter");
    }

    /// Successive holders, through different clients, get strictly
    /// increasing fences; releasing leaves only the counter behind.
    async fn fences_increase_across_holders_and_only_the_counter_remains(b: Backend) {
        let (a, c) = (b.client().await, b.client().await);
        let mut last = 0;
        for i in 0..10 {
            let client = if i % 2 == 0 { &a } else { &c };
            let guard = client.lock("fenced").try_acquire().await.unwrap().expect("free");
            assert!(guard.fence().0 > last, "fence {} after {last}", guard.fence());
            last = guard.fence().0;
            guard.release().await.unwrap();
        }
        assert_eq!(last, 10);
        assert_only_the_fence_counter_left(&b, "fenced");
    }

    /// "Skip if busy": a second try_acquire gets None and changes nothing.
    async fn try_acquire_skips_a_held_lock(b: Backend) {
        let client = b.client().await;
        let held = client.lock("job").try_acquire().await.unwrap().expect("free");
        let token = b.get(&key("job")).expect("key set");
        assert_eq!(token.len(), 32, "a 128-bit token in hex");
        assert!(client.lock("job").try_acquire().await.unwrap().is_none());
        assert!(b.client().await.lock("job").try_acquire().await.unwrap().is_none());
        assert_eq!(b.get(&key("job")), Some(token), "the holder's key is untouched");
        drop(held);
        crate::support::eventually("drop releases", || b.get(&key("job")).is_none()).await;
    }

    /// Another library's lock (plain `SET key token NX PX`) excludes ours,
    /// and ours excludes theirs.
    async fn interoperates_with_plain_set_nx_locks(b: Backend) {
        b.set_foreign(&key("shared"), "their-token", Some(Duration::from_secs(30)));
        let client = b.client().await;
        assert!(client.lock("shared").try_acquire().await.unwrap().is_none());
        assert_eq!(b.get(&key("shared")).as_deref(), Some("their-token"));
        b.del(&key("shared"));
        let ours = client.lock("shared").try_acquire().await.unwrap().expect("free");
        if let Backend::Redis(server) | Backend::RedisVia(server, _) = &b {
            let theirs: Option<String> = server.cmd(&["SET", &key("shared"), "their-token", "NX", "PX", "30000"]);
            assert_eq!(theirs, None, "their SET NX fails while we hold it");
        }
        ours.release().await.unwrap();
    }
}
