//! Runs N acquire + release cycles against a server, for profilers
//! (`heaptrack`, `perf`): `cargo run --example cycles -- redis://… 20000`.
fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: cycles URL [N]");
    let n: u64 = args
        .next()
        .map_or(20_000, |n| n.parse().expect("N is a count"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = baton::Client::connect(&url).await.expect("connect");
        let lock = client.lock("cycles");
        for _ in 0..n {
            lock.acquire()
                .await
                .expect("acquire")
                .release()
                .await
                .expect("release");
        }
    });
}
