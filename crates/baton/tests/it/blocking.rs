//! The blocking API, from plain threads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use baton::blocking::Client;

/// Eight threads, each with its own blocking client, read-modify-write a
/// value under the lock: nothing is lost, nobody overlaps.
#[test]
fn threads_exclude_each_other() {
    let server = baton_test_support::RedisServer::start();
    let value = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let client = Client::connect(&server.url()).unwrap();
            let (value, inside) = (value.clone(), inside.clone());
            std::thread::spawn(move || {
                let lock = client.lock("counter").wait(Duration::from_secs(30));
                for _ in 0..20 {
                    let guard = lock.acquire().unwrap();
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders at once"
                    );
                    let read = value.load(Ordering::SeqCst);
                    std::thread::yield_now();
                    value.store(read + 1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(guard); // releases, synchronously
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(value.load(Ordering::SeqCst), 160);
    assert_eq!(server.keys().len(), 1, "only the fence counter is left");
}

/// A blocking guard is renewed while its thread works, and run() hands the
/// lease to the work.
#[test]
fn a_blocking_lease_is_renewed_while_the_thread_works() {
    let server = baton_test_support::RedisServer::start();
    let client = Client::connect(&server.url()).unwrap();
    let lock = client.lock("job").ttl(Duration::from_millis(300));
    let fence = lock
        .run(|lease| {
            std::thread::sleep(Duration::from_millis(1000));
            assert!(lease.is_held(), "renewed by the client's runtime meanwhile");
            lease.fence()
        })
        .unwrap();
    assert_eq!(fence.0, 1);
    let guard = lock.try_acquire().unwrap().expect("released by run");
    assert!(!guard.wait_lost(Duration::from_millis(10)));
    assert_eq!(guard.release().unwrap(), baton::Released::Released);
}
