//! `FaultProxy` in front of a real redis-server. Every await is under a
//! timeout so a bug fails the test instead of hanging it.

use std::future::Future;
use std::time::{Duration, Instant};

use baton_test_support::{FaultProxy, Mode, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Bound for any step that is expected to complete.
const STEP: Duration = Duration::from_secs(5);
/// How long we listen to be sure that nothing arrives.
const SILENCE: Duration = Duration::from_millis(300);

async fn step<T>(what: &str, fut: impl Future<Output = T>) -> T {
    timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    step("connect", TcpStream::connect(proxy.addr()))
        .await
        .expect("connect to the proxy")
}

/// Sends a raw PING and returns what comes back (empty on close).
async fn ping(stream: &mut TcpStream) -> Vec<u8> {
    step("write PING", stream.write_all(b"PING\r\n"))
        .await
        .expect("write");
    read_some(stream).await
}

async fn read_some(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = [0; 64];
    match step("read", stream.read(&mut buf)).await {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Asserts that the connection is closed (EOF or reset), not just silent.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    match step("read on a closed connection", stream.read(&mut buf)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("still open, got {:?}", String::from_utf8_lossy(&buf[..n])),
    }
}

async fn assert_silent(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    let got = timeout(SILENCE, stream.read(&mut buf)).await;
    assert!(got.is_err(), "expected silence, got {got:?}");
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    step(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_relays_a_redis_client() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    assert_eq!(proxy.url(), format!("redis://127.0.0.1:{}/", proxy.port()));
    assert_eq!(proxy.mode(), Mode::Pass);
    let client = redis::Client::open(proxy.url()).unwrap();
    let mut conn = step("connect", client.get_multiplexed_async_connection())
        .await
        .unwrap();
    let mut set = redis::cmd("SET");
    set.arg("k").arg("v");
    step("SET", set.query_async::<()>(&mut conn)).await.unwrap();
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "k"]).as_deref(),
        Some("v")
    );
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_with_password_reaches_a_password_server() {
    let server =
        RedisServer::start_with(baton_test_support::ServerOptions::default().password("pw"));
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let client = redis::Client::open(proxy.url_with_password("pw")).unwrap();
    let mut conn = step("connect", client.get_multiplexed_async_connection())
        .await
        .unwrap();
    let pong = step("PING", redis::cmd("PING").query_async::<String>(&mut conn)).await;
    assert_eq!(pong.unwrap(), "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ping_and_connection_count() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let mut stream = connect(&proxy).await;
    assert_eq!(ping(&mut stream).await, b"+PONG\r\n");
    assert_eq!(proxy.connections(), 1);
    drop(stream);
    eventually("the connection is gone", || proxy.connections() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_back_both_directions() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    proxy.set_mode(Mode::Delay(Duration::from_millis(150)));
    let mut stream = connect(&proxy).await;
    let started = Instant::now();
    assert_eq!(ping(&mut stream).await, b"+PONG\r\n");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_answers_nothing_then_pass_works_again() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let mut stream = connect(&proxy).await;
    assert_eq!(ping(&mut stream).await, b"+PONG\r\n");
    proxy.set_mode(Mode::Blackhole);
    step("write", stream.write_all(b"SET k v\r\n"))
        .await
        .unwrap();
    assert_silent(&mut stream).await;
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "k"]),
        None,
        "nothing was forwarded"
    );
    // New connections are accepted but blackholed too.
    let mut other = connect(&proxy).await;
    step("write", other.write_all(b"PING\r\n")).await.unwrap();
    assert_silent(&mut other).await;

    proxy.set_mode(Mode::Pass);
    // The old connections lost bytes: they are reset rather than desynchronised.
    assert_closed(&mut stream).await;
    assert_closed(&mut other).await;
    assert_eq!(ping(&mut connect(&proxy).await).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_idle_silences_an_idle_connection_without_closing_it() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let mut idle = connect(&proxy).await;
    assert_eq!(ping(&mut idle).await, b"+PONG\r\n");
    proxy.set_mode(Mode::ForgetIdle(Duration::from_millis(50)));
    eventually("the idle connection is forgotten", || {
        proxy.forgotten() == 1
    })
    .await;
    step("write", idle.write_all(b"SET k v\r\n")).await.unwrap();
    assert_silent(&mut idle).await;
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "k"]),
        None,
        "nothing was forwarded"
    );
    proxy.set_mode(Mode::Pass);
    assert_silent(&mut idle).await;
    assert_eq!(proxy.connections(), 1, "still open: no FIN, no RST");
    assert_eq!(
        ping(&mut connect(&proxy).await).await,
        b"+PONG\r\n",
        "new ones pass"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_idle_ends_an_idle_connection_with_a_fin() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let mut idle = connect(&proxy).await;
    assert_eq!(ping(&mut idle).await, b"+PONG\r\n");
    proxy.set_mode(Mode::CloseIdle(Duration::from_millis(50)));
    eventually("the idle connection is closed", || proxy.closed_idle() == 1).await;
    let mut buf = [0u8; 16];
    let n = step("read", idle.read(&mut buf))
        .await
        .expect("a clean close, not a reset");
    assert_eq!(n, 0, "end of stream");
    proxy.set_mode(Mode::Pass);
    assert_eq!(
        ping(&mut connect(&proxy).await).await,
        b"+PONG\r\n",
        "new ones pass"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_replies_runs_commands_but_swallows_replies() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let mut stream = connect(&proxy).await;
    proxy.set_mode(Mode::DropReplies);
    step("write", stream.write_all(b"SET k v\r\n"))
        .await
        .unwrap();
    assert_silent(&mut stream).await;
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "k"]).as_deref(),
        Some("v")
    );
    // Requests keep flowing on the same connection.
    step("write", stream.write_all(b"SET k2 v2\r\n"))
        .await
        .unwrap();
    eventually("the second SET runs", || {
        server.cmd::<Option<String>>(&["GET", "k2"]).is_some()
    })
    .await;

    proxy.set_mode(Mode::Pass);
    assert_closed(&mut stream).await;
    assert_eq!(ping(&mut connect(&proxy).await).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_closes_live_and_new_connections_until_pass() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let mut stream = connect(&proxy).await;
    assert_eq!(ping(&mut stream).await, b"+PONG\r\n");
    proxy.set_mode(Mode::Reset);
    assert_closed(&mut stream).await;
    eventually("no live connections", || proxy.connections() == 0).await;
    // New connections are reset at once: connect itself may see the reset.
    if let Ok(mut late) = step("connect", TcpStream::connect(proxy.addr())).await {
        assert_closed(&mut late).await;
    }

    proxy.set_mode(Mode::Pass);
    assert_eq!(ping(&mut connect(&proxy).await).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_cuts_live_ones_once() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let (mut a, mut b) = (connect(&proxy).await, connect(&proxy).await);
    assert_eq!(ping(&mut a).await, b"+PONG\r\n");
    assert_eq!(ping(&mut b).await, b"+PONG\r\n");
    proxy.reset_connections();
    assert_closed(&mut a).await;
    assert_closed(&mut b).await;
    assert_eq!(proxy.mode(), Mode::Pass);
    assert_eq!(ping(&mut connect(&proxy).await).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_client_reconnects_after_a_reset() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let client = redis::Client::open(proxy.url()).unwrap();
    let mut conn = step("connect", redis::aio::ConnectionManager::new(client))
        .await
        .unwrap();
    proxy.reset_connections();
    let mut pongs = 0;
    for _ in 0..50 {
        if let Ok(Ok(pong)) =
            timeout(STEP, redis::cmd("PING").query_async::<String>(&mut conn)).await
        {
            assert_eq!(pong, "PONG");
            pongs += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pongs, 1, "the connection manager came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_everything() {
    let server = RedisServer::start();
    let proxy = step("start", FaultProxy::start(server.addr())).await;
    let addr = proxy.addr();
    let mut stream = connect(&proxy).await;
    assert_eq!(ping(&mut stream).await, b"+PONG\r\n");
    drop(proxy);
    assert_closed(&mut stream).await;
    step("the listener closes", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
