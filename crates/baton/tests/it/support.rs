//! The backends every behaviour test runs against, and small helpers.
//!
//! `both!` turns one test body into two tests: one against a private
//! `redis-server` process, one against the in-memory store on tokio's
//! paused clock. Every test body runs under a deadline, so a bug fails
//! instead of hanging.

use std::future::Future;
use std::time::Duration;

use baton::{Client, MemoryStore};
use baton_test_support::RedisServer;

/// How long any one test may take before it fails.
pub const TEST_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `fut` under the test deadline.
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, fut)
        .await
        .expect("the test did not finish within its deadline")
}

/// The calls of `command` (lower case, e.g. `evalsha`) that `server` has
/// served, from `INFO commandstats`.
pub fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// A lock backend under test, with raw access to its keys for assertions.
pub enum Backend {
    Redis(RedisServer),
    /// A private server reached through another URL: an ACL user, RESP3.
    RedisVia(RedisServer, String),
    Memory(MemoryStore),
}

impl Backend {
    pub fn redis() -> Backend {
        Backend::Redis(RedisServer::start())
    }

    /// A private server, reached as a user with exactly the rights of
    /// `baton::acl_rules` for the default prefix (the README's line).
    pub fn redis_least_privilege() -> Backend {
        let server = RedisServer::start();
        let rules = baton::acl_rules("baton:");
        let mut args = vec!["ACL", "SETUSER", "locker", "on", ">locker-pw"];
        args.extend(rules.split(' '));
        server.cmd::<()>(&args);
        let url = format!("redis://locker:locker-pw@127.0.0.1:{}/", server.port());
        Backend::RedisVia(server, url)
    }

    /// A private server, spoken to in RESP3 (pub/sub as pushes).
    pub fn redis_resp3() -> Backend {
        let server = RedisServer::start();
        let url = format!("{}?protocol=resp3", server.url());
        Backend::RedisVia(server, url)
    }

    pub fn memory() -> Backend {
        Backend::Memory(MemoryStore::new())
    }

    /// A new client with a connection of its own.
    pub async fn client(&self) -> Client {
        match self {
            Backend::Redis(server) => Client::connect(&server.url()).await.expect("connect"),
            Backend::RedisVia(_, url) => Client::connect(url).await.expect("connect"),
            Backend::Memory(store) => store.client(),
        }
    }

    pub fn server(&self) -> &RedisServer {
        match self {
            Backend::Redis(server) | Backend::RedisVia(server, _) => server,
            Backend::Memory(_) => panic!("this test needs a redis server"),
        }
    }

    pub fn server_mut(&mut self) -> &mut RedisServer {
        match self {
            Backend::Redis(server) | Backend::RedisVia(server, _) => server,
            Backend::Memory(_) => panic!("this test needs a redis server"),
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        match self {
            Backend::Redis(server) | Backend::RedisVia(server, _) => server.cmd(&["GET", key]),
            Backend::Memory(store) => store.get(key),
        }
    }

    /// The key's remaining TTL in ms: `None` if absent, `Some(-1)` if none.
    pub fn pttl(&self, key: &str) -> Option<i64> {
        match self {
            Backend::Redis(server) | Backend::RedisVia(server, _) => {
                match server.cmd::<i64>(&["PTTL", key]) {
                    -2 => None,
                    ms => Some(ms),
                }
            }
            Backend::Memory(store) => store
                .get(key)
                .map(|_| store.ttl(key).map_or(-1, |d| d.as_millis() as i64)),
        }
    }

    /// Sets a key as another library's lock would (`SET key value NX PX`).
    pub fn set_foreign(&self, key: &str, value: &str, ttl: Option<Duration>) {
        match self {
            Backend::Redis(server) | Backend::RedisVia(server, _) => {
                let mut args = vec!["SET", key, value];
                let ms = ttl.map(|t| t.as_millis().to_string());
                if let Some(ms) = &ms {
                    args.extend(["PX", ms]);
                }
                server.cmd::<()>(&args);
            }
            Backend::Memory(store) => store.set(key, value, ttl),
        }
    }

    pub fn del(&self, key: &str) {
        match self {
            Backend::Redis(server) | Backend::RedisVia(server, _) => {
                server.cmd::<()>(&["DEL", key])
            }
            Backend::Memory(store) => {
                store.delete(key);
            }
        }
    }

    /// How many waiters fair lock `name`'s queue holds.
    pub fn queue_len(&self, name: &str) -> usize {
        let queue = baton_core::Keys::new("baton:", name).unwrap().fair().queue;
        match self {
            Backend::Redis(server) | Backend::RedisVia(server, _) => {
                server.cmd::<usize>(&["LLEN", &queue])
            }
            Backend::Memory(store) => store.queue_len(&queue),
        }
    }

    /// Every key in the backend, sorted.
    pub fn keys(&self) -> Vec<String> {
        match self {
            Backend::Redis(server) | Backend::RedisVia(server, _) => server.keys(),
            Backend::Memory(store) => store.keys(),
        }
    }
}

/// One behaviour test per backend: `both! { async fn name(b: Backend) { ... } }`.
/// The memory variant runs on tokio's paused clock (time advances only when
/// every task is idle), the Redis ones on a multi-thread runtime in real
/// time: as the default user, as a least-privilege ACL user, and in RESP3.
macro_rules! both {
    ($($(#[doc = $doc:expr])* async fn $name:ident($b:ident: Backend) $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($b: $crate::support::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                $crate::support::within(body($crate::support::Backend::redis())).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_least_privilege() {
                $crate::support::within(body($crate::support::Backend::redis_least_privilege())).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_resp3() {
                $crate::support::within(body($crate::support::Backend::redis_resp3())).await
            }

            #[tokio::test(start_paused = true)]
            async fn memory() {
                $crate::support::within(body($crate::support::Backend::memory())).await
            }
        }
    )*};
}
pub(crate) use both;

/// The key of lock `name` under the default prefix.
pub fn key(name: &str) -> String {
    format!("baton:{name}")
}

/// Polls `cond` until it holds, for conditions no event announces (like a
/// subscriber count on a server). Fails after the test deadline.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < TEST_DEADLINE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// After every holder of `name` released: nothing but its fence counter.
pub fn assert_only_the_fence_counter_left(b: &Backend, name: &str) {
    let keys = baton_core::Keys::new("baton:", name).expect("valid name");
    assert_eq!(
        b.keys(),
        vec![keys.fence],
        "only the fence counter of {name:?} is left"
    );
}

/// Retries `attempt` until it yields something, for recoveries that no
/// event announces (a client reconnecting). Fails after the test deadline.
pub async fn eventually_async<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(start.elapsed() < TEST_DEADLINE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private server behind a fault proxy, and a client that reaches the
/// server only through the proxy (with the given node timeout).
pub async fn behind_proxy(
    node_timeout: Duration,
) -> (RedisServer, baton_test_support::FaultProxy, Client) {
    let server = RedisServer::start();
    let proxy = baton_test_support::FaultProxy::start(server.addr()).await;
    let client = Client::builder()
        .node(&proxy.url())
        .node_timeout(node_timeout)
        .build()
        .await
        .expect("connect through the proxy");
    (server, proxy, client)
}

/// Takes lock `name` with `ttl` (auto-renewed) through `client`; it must be free.
pub async fn hold(client: &Client, name: &str, ttl: Duration) -> baton::Guard {
    client
        .lock(name)
        .ttl(ttl)
        .try_acquire()
        .await
        .expect("try_acquire")
        .unwrap_or_else(|| panic!("{name} should be free"))
}

/// A task waiting to acquire `lock`; yields its guard and when it got it.
pub type Waiting = tokio::task::JoinHandle<baton::Result<(baton::Guard, tokio::time::Instant)>>;

/// Starts a task waiting to acquire `lock`.
pub fn spawn_waiter(lock: baton::Lock) -> Waiting {
    tokio::spawn(async move {
        lock.acquire()
            .await
            .map(|g| (g, tokio::time::Instant::now()))
    })
}

/// Within this of a release, a waiter whose fallback retry is many seconds
/// away was woken by the release notification.
pub const NOTIFIED: Duration = Duration::from_secs(1);

/// Releases `held`, lets `waiter` acquire, releases its guard too, and
/// returns how long after the release it acquired (see [`NOTIFIED`]).
pub async fn wake_after_release(held: baton::Guard, waiter: Waiting) -> Duration {
    let released_at = tokio::time::Instant::now();
    held.release().await.expect("release");
    let (guard, acquired_at) = waiter.await.expect("waiter task").expect("acquired");
    guard.release().await.expect("release");
    acquired_at - released_at
}

/// The library's log lines (debug and up) on this thread while it lives:
/// for a current-thread test, everything the client does.
pub struct LogCapture {
    buffer: LogBuffer,
    _default: tracing::subscriber::DefaultGuard,
}

#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> LogCapture {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        LogCapture {
            buffer,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.0.lock().unwrap()).into_owned()
    }
}

/// Waits until a waiter has subscribed to the lock's release channel: on
/// Redis by asking the server; in memory, by letting every task run (the
/// paused clock only moves when all are idle).
pub async fn wait_for_a_subscriber(b: &Backend, name: &str) {
    match b {
        Backend::Redis(server) | Backend::RedisVia(server, _) => {
            let channel = baton_core::Keys::new("baton:", name).unwrap().channel;
            eventually("the waiter subscribes", || {
                let (_, count): (String, i64) = server.cmd(&["PUBSUB", "NUMSUB", &channel]);
                count == 1
            })
            .await;
        }
        Backend::Memory(_) => tokio::time::sleep(Duration::from_secs(1)).await,
    }
}
