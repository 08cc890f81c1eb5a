//! Cancellation safety: acquire, extend and release futures dropped at
//! random points, many times, on both runtime flavours, for locks, a
//! semaphore's permits and a fair lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton_test_support::RedisServer;

use crate::support::{eventually, within};

const TTL: Duration = Duration::from_millis(300);
const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// Counts panics anywhere in the process from the moment it is installed
/// (spawned tasks' panics are otherwise swallowed by tokio).
fn count_panics() -> &'static AtomicUsize {
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    &PANICS
}

/// A small deterministic generator: the same cuts on every run.
struct Cuts(u64);

impl Cuts {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn cut_futures_at_random(runtime: tokio::runtime::Runtime) {
    let panics = count_panics();
    let before = panics.load(Ordering::SeqCst);
    let server = RedisServer::start();
    runtime.block_on(within(async {
        let client = baton::Client::connect(&server.url()).await.unwrap();
        let mut cuts = Cuts(0x9e37_79b9_7f4a_7c15);
        let mut guards: Vec<baton::Guard> = Vec::new();
        let (mut taken, mut cut_off) = (0, 0);
        // Cuts up to twice a whole acquire's time here, measured first: on
        // a loaded machine a fixed span would cut nearly every future, and
        // on an idle one nearly none.
        let mut span = Duration::ZERO;
        for _ in 0..5 {
            let started = tokio::time::Instant::now();
            let guard = client.lock("span").try_acquire().await.unwrap().unwrap();
            span = span.max(started.elapsed());
            guard.release().await.unwrap();
        }
        let span_us = (span.as_micros() as u64 * 2).max(100);
        for _ in 0..400 {
            let cut = Duration::from_micros(cuts.next(span_us));
            // Every kind of lease: plain locks, a semaphore's permits, a
            // fair lock (whose cut waiters must leave its queue), a
            // multi-lock over a plain lock's name, a read-write lock's
            // readers and writer.
            let name = NAMES[cuts.next(6) as usize];
            let lock = match name {
                "c" => client.semaphore(name, 2).into_lock(),
                "d" => client.lock(name).fair(true),
                "e" => client.multi_lock(&["e", "a"]),
                "f" if cuts.next(2) == 0 => client.rw_lock(name).read(),
                "f" => client.rw_lock(name).write(),
                _ => client.lock(name),
            }
            .ttl(TTL);
            match cuts.next(4) {
                0 => {
                    let wait = lock.wait(Duration::from_millis(20));
                    match tokio::time::timeout(cut, wait.acquire()).await {
                        Ok(Ok(guard)) => {
                            taken += 1;
                            guards.push(guard);
                        }
                        Ok(Err(_)) => {}
                        Err(_) => cut_off += 1,
                    }
                }
                1 => {
                    if let Ok(Ok(Some(guard))) = tokio::time::timeout(cut, lock.try_acquire()).await
                    {
                        guards.push(guard);
                    }
                }
                2 => {
                    if !guards.is_empty() {
                        let guard = guards.swap_remove(cuts.next(guards.len() as u64) as usize);
                        if tokio::time::timeout(cut, guard.release()).await.is_err() {
                            cut_off += 1;
                        }
                    }
                }
                _ => {
                    if let Some(guard) = guards.last_mut() {
                        if tokio::time::timeout(cut, guard.extend(TTL)).await.is_err() {
                            cut_off += 1;
                        }
                    }
                }
            }
        }
        assert!(
            taken >= 5 && cut_off >= 5,
            "both outcomes exercised: {taken} taken, {cut_off} cut off"
        );
        drop(guards);
        // The client (and its renewal task) lives on: no lock key may
        // outlive its TTL, so nothing is renewing a dropped or cut lease.
        // Companions too (readers' set, writers' marks, a fair queue):
        // only fence counters stay.
        eventually("every lock key gone within its ttl", || {
            server.keys().iter().all(|k| k.ends_with("\u{1f}fence"))
        })
        .await;
        drop(client);
    }));
    assert_eq!(
        panics.load(Ordering::SeqCst),
        before,
        "nothing panicked, in any task"
    );
}

#[test]
fn cut_futures_on_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    cut_futures_at_random(runtime);
}

#[test]
fn cut_futures_on_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cut_futures_at_random(runtime);
}
