//! The raw redis-rs client's lock cycle, the baseline Baton is measured
//! against in tests and profiles.

/// One raw lock cycle on `key`: `SET key token NX PX 10000`, then `DEL key`,
/// through `conn` (panics on a server error: a baseline that fails measures
/// nothing).
pub async fn raw_lock_cycle(conn: &mut redis::aio::MultiplexedConnection, key: &str) {
    let _: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg("token")
        .arg("NX")
        .arg("PX")
        .arg(10_000)
        .query_async(conn)
        .await
        .expect("SET NX PX");
    let _: i64 = redis::cmd("DEL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("DEL");
}
