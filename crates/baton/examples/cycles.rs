//! Runs N acquire + release cycles against a server on a current-thread
//! runtime, for profilers (`heaptrack`, `perf`, `strace -c`); `raw` runs the
//! raw redis-rs client's `SET NX PX` + `DEL` instead, to compare with:
//! `cargo run --release --example cycles -- redis://… 20000 [raw]`.
fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: cycles URL [N] [raw]");
    let n: u64 = args
        .next()
        .map_or(20_000, |n| n.parse().expect("N is a count"));
    let raw = args.next().as_deref() == Some("raw");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        if raw {
            let mut conn = redis::Client::open(url.as_str())
                .expect("a URL")
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            for _ in 0..n {
                baton_test_support::raw_lock_cycle(&mut conn, "cycles").await;
            }
            return;
        }
        let client = baton::Client::connect(&url).await.expect("connect");
        let lock = client.lock("cycles");
        for _ in 0..n {
            let guard = lock.acquire().await.expect("acquire");
            guard.release().await.expect("release");
        }
    });
}
