//! The allocation budget of a steady-state acquire + release cycle: at most
//! `BUDGET` heap allocations per cycle in Baton's own code, beyond what
//! redis-rs does for a plain `SET NX PX` + `DEL` on the same connection
//! kind. One test in its own binary, because the counting allocator is the
//! whole process's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use baton_test_support::RedisServer;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is the only addition.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CYCLES: u64 = 2_000;

/// Allocations per cycle of `cycle`, after a warm-up of the same length.
async fn per_cycle<F: std::future::Future<Output = ()>>(mut cycle: impl FnMut(u64) -> F) -> f64 {
    for i in 0..CYCLES {
        cycle(i).await;
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..CYCLES {
        cycle(i).await;
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / CYCLES as f64
}

#[test]
fn a_cycle_allocates_within_budget_beyond_the_raw_client() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let raw = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let raw_cost = per_cycle(|_| {
            let mut conn = raw.clone();
            async move { baton_test_support::raw_lock_cycle(&mut conn, "raw").await }
        })
        .await;
        let client = baton::Client::connect(&server.url()).await.unwrap();
        let lock = client.lock("job");
        let baton_cost = per_cycle(|_| {
            let lock = &lock;
            async move {
                lock.acquire().await.unwrap().release().await.unwrap();
            }
        })
        .await;
        println!("allocations per cycle: raw {raw_cost:.2}, baton {baton_cost:.2}");
        // Every cycle released: only the fence counter is left.
        let left = server.cmd::<Vec<String>>(&["KEYS", "*job*"]);
        assert!(
            left.len() == 1 && left[0].ends_with("fence"),
            "left behind: {left:?}"
        );
        assert!(
            baton_cost - raw_cost <= BUDGET,
            "a cycle allocates {baton_cost:.2} times, the raw client {raw_cost:.2}: more than {BUDGET} beyond it"
        );
    });
}

const BUDGET: f64 = 4.0;
