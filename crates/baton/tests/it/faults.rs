//! Real faults on a real server: it dies, it comes back, it forgets scripts.

use std::time::Duration;

use baton::{Client, Error};
use baton_test_support::RedisServer;

use crate::support::{eventually_async, within, Backend};

/// Server down: a clean backend error naming the server. Server back: the
/// same client works again, with no new client needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_a_clean_error_and_server_back_works_again() {
    within(async {
        let mut b = Backend::redis();
        let client = b.client().await;
        let lock = client.lock("job");
        lock.try_acquire()
            .await
            .unwrap()
            .expect("free")
            .release()
            .await
            .unwrap();

        b.server_mut().kill();
        let err = lock.try_acquire().await.unwrap_err();
        assert!(err.is_backend() && err.is_retryable(), "{err:?}");
        let port = b.server().port().to_string();
        assert!(err.to_string().contains(&port), "names the server: {err}");

        b.server_mut().restart();
        let guard = eventually_async("the client reconnects", || async {
            lock.try_acquire().await.ok().flatten()
        })
        .await;
        assert_eq!(guard.release().await.unwrap(), baton::Released::Released);
    })
    .await
}

/// Connecting to a server that is not there fails at once with the address.
#[tokio::test]
async fn connecting_to_nothing_is_a_clean_error() {
    within(async {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = baton::Client::connect(&format!("redis://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Redis { ref node, .. } if node.ends_with(&port.to_string())),
            "{err:?}"
        );
    })
    .await
}

/// A server that accepts connections but never answers: the call fails
/// after the node timeout instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_costs_the_node_timeout() {
    within(async {
        let (_server, proxy, client) = crate::support::behind_proxy(Duration::from_millis(200)).await;
        proxy.set_mode(baton_test_support::Mode::Blackhole);
        let err = client.lock("job").try_acquire().await.unwrap_err();
        assert!(matches!(err, Error::NodeTimeout { timeout, .. } if timeout == Duration::from_millis(200)), "{err:?}");
        proxy.set_mode(baton_test_support::Mode::Pass);
    })
    .await
}

/// The scripts are flushed between acquire and release (NOSCRIPT): both
/// still work, through EVAL.
#[tokio::test]
async fn scripts_are_reloaded_after_a_flush() {
    within(async {
        let b = Backend::redis();
        let client = b.client().await;
        b.server().flush_scripts();
        let guard = client
            .lock("job")
            .auto_renew(false)
            .try_acquire()
            .await
            .unwrap()
            .expect("free");
        b.server().flush_scripts();
        assert_eq!(guard.release().await.unwrap(), baton::Released::Released);
        crate::support::assert_only_the_fence_counter_left(&b, "job");
    })
    .await
}

/// A waiter rides out a server that dies and comes back inside its wait
/// budget: its attempts fail with connection errors, it keeps trying with
/// backoff, and it takes the lock once the server is back.
#[tokio::test]
async fn a_waiter_rides_out_a_server_restart() {
    within(async {
        let logs = crate::support::LogCapture::start();
        let mut server = RedisServer::start();
        let client = Client::connect(&server.url()).await.unwrap();
        server.kill();
        let lock = client.lock("job").wait(Duration::from_secs(30));
        let waiter = tokio::spawn(async move { lock.acquire().await });
        crate::support::eventually("the waiter met the dead server", || {
            logs.text().contains("transient error while waiting")
        })
        .await;
        server.restart();
        let guard = waiter
            .await
            .unwrap()
            .expect("acquired once the server was back");
        assert!(guard.is_held());
        let holder: Option<String> = server.cmd(&["GET", "baton:job"]);
        assert!(holder.is_some(), "held on the restarted server");
    })
    .await
}

/// With the server down for the whole budget, the wait ends with the last
/// server error (retryable), not with a timeout; `try_acquire` is one
/// attempt; a refused permission is not ridden out.
#[tokio::test]
async fn a_budget_spent_on_a_dead_server_returns_its_error() {
    within(async {
        let mut server = RedisServer::start();
        let client = Client::connect(&server.url()).await.unwrap();
        server.kill();
        let err = client.lock("job").try_acquire().await.unwrap_err();
        assert!(err.is_transient() && err.is_retryable(), "{err:?}");
        let err = client
            .lock("job")
            .wait(Duration::from_millis(300))
            .acquire()
            .await
            .unwrap_err();
        assert!(err.is_transient() && err.is_backend(), "{err:?}");

        let server = RedisServer::start();
        server.cmd::<()>(&[
            "ACL", "SETUSER", "noeval", "on", ">pw", "~*", "&*", "+@all", "-evalsha", "-eval",
        ]);
        let url = format!("redis://noeval:pw@127.0.0.1:{}/", server.port());
        let client = Client::connect(&url).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = client
            .lock("job")
            .wait(Duration::from_secs(30))
            .acquire()
            .await
            .unwrap_err();
        assert!(!err.is_transient() && !err.is_retryable(), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ridden out"
        );
    })
    .await
}
