//! `rediss://` end to end, against TLS-only servers whose certificates the
//! harness makes at test time: verification on by default, a CA of the
//! user's, mutual TLS, `#insecure`, and the errors of each way it can fail.

use std::time::Duration;

use baton::{Client, Error, Released};
use baton_test_support::{ClientAuth, RedisServer, ServerCert, ServerOptions, TlsMode};
use tokio::time::Instant;

use crate::support::{hold, spawn_waiter, within, LogCapture};

fn tls_server(mode: TlsMode) -> RedisServer {
    RedisServer::start_with(ServerOptions::default().tls(mode))
}

/// A client that trusts the server's test CA.
async fn trusting(server: &RedisServer) -> Result<Client, Error> {
    Client::builder()
        .node(&server.url())
        .tls_ca(server.pki().ca_pem())
        .build()
        .await
}

/// Over TLS: exclusion, fences, renewal, release and a waiter woken by the
/// release notification (the pub/sub connection is TLS too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_work_over_tls_with_the_users_ca() {
    within(async {
        let server = RedisServer::start_tls();
        assert!(server.url().starts_with("rediss://"));
        let (a, b) = (
            trusting(&server).await.unwrap(),
            trusting(&server).await.unwrap(),
        );
        let first = hold(&a, "job", Duration::from_millis(300)).await;
        assert!(
            b.lock("job").try_acquire().await.unwrap().is_none(),
            "excluded"
        );
        tokio::time::sleep(Duration::from_millis(700)).await; // renewed meanwhile
        assert!(first.is_held());
        let waiter = spawn_waiter(b.lock("job").retry_interval(Duration::from_secs(30)));
        let woke = crate::support::wake_after_release(first, waiter).await;
        assert!(
            woke < crate::support::NOTIFIED,
            "woke after {woke:?}: not by the notification"
        );
        let next = hold(&a, "job", Duration::from_secs(5)).await;
        assert!(
            next.fence().0 >= 3,
            "fences keep counting: {}",
            next.fence()
        );
        assert_eq!(next.release().await.unwrap(), Released::Released);
    })
    .await
}

/// Without a CA of the user's, certificates are verified against the
/// system roots, which do not know the test CA: refused, saying why. So is
/// a CA that did not sign the server's certificate.
#[tokio::test]
async fn an_unknown_ca_is_refused_by_default_and_with_another_ca() {
    within(async {
        let server = RedisServer::start_tls();
        let err = Client::connect(&server.url()).await.unwrap_err();
        assert!(err.is_backend(), "{err:?}");
        assert!(format!("{err}").contains("UnknownIssuer"), "{err}");
        let err = Client::builder()
            .node(&server.url())
            .tls_ca(server.pki().other_ca_pem())
            .build()
            .await
            .unwrap_err();
        assert!(format!("{err}").contains("UnknownIssuer"), "{err}");
    })
    .await
}

/// A certificate for another host name is refused, naming both names; with
/// `#insecure` it is accepted, and a warning says verification is off.
#[tokio::test]
async fn a_wrong_hostname_is_refused_and_insecure_skips_the_check() {
    within(async {
        let server = tls_server(TlsMode::default().server_cert(ServerCert::WrongHost));
        let err = trusting(&server).await.unwrap_err();
        let shown = format!("{err}");
        assert!(
            shown.contains("localhost") && shown.contains(ServerCert::WRONG_HOSTNAME),
            "{shown}"
        );
        let logs = LogCapture::start();
        let insecure = format!("{}#insecure", server.url());
        let client = Client::connect(&insecure).await.unwrap();
        let guard = hold(&client, "job", Duration::from_secs(5)).await;
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        Client::connect(&insecure).await.unwrap();
        let warned = logs.text();
        assert_eq!(
            warned.matches("verification is off").count(),
            1,
            "warned once: {warned}"
        );
    })
    .await
}

/// Mutual TLS: a server that asks for client certificates refuses a client
/// without one and serves a client with one.
#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    within(async {
        let server = tls_server(TlsMode::default().client_auth(ClientAuth::Required));
        let err = trusting(&server).await.unwrap_err();
        assert!(err.is_backend(), "{err:?}");
        let pki = server.pki();
        let client = Client::builder()
            .node(&server.url())
            .tls_ca(pki.ca_pem())
            .tls_client_cert(pki.client_cert_pem(), pki.client_key_pem())
            .build()
            .await
            .unwrap();
        let guard = hold(&client, "job", Duration::from_secs(5)).await;
        assert_eq!(guard.release().await.unwrap(), Released::Released);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("PRIVATE KEY"), "no key material in errors");
    })
    .await
}

/// A plain client on a TLS port is refused at once; a TLS client on a
/// plain port gets no answer to its handshake (the server waits for the end
/// of a "command"), so it fails at the connect budget, saying so. Neither
/// hangs.
#[tokio::test]
async fn a_plain_client_on_tls_and_a_tls_client_on_plain_fail_saying_why() {
    within(async {
        let tls = RedisServer::start_tls();
        let plain = RedisServer::start();
        let node_timeout = Duration::from_millis(500);
        let started = Instant::now();
        let on_tls = format!("redis://127.0.0.1:{}/", tls.port());
        let err = Client::builder()
            .node(&on_tls)
            .node_timeout(node_timeout)
            .build()
            .await
            .unwrap_err();
        assert!(err.is_backend(), "plain client on a TLS port: {err:?}");
        assert!(
            started.elapsed() < node_timeout,
            "refused at once: {:?}",
            started.elapsed()
        );
        let on_plain = format!("rediss://localhost:{}/", plain.port());
        let err = Client::builder()
            .node(&on_plain)
            .node_timeout(node_timeout)
            .tls_ca(tls.pki().ca_pem())
            .build()
            .await
            .unwrap_err();
        assert!(err.is_backend(), "TLS client on a plain port: {err:?}");
        assert!(format!("{err}").contains("TLS handshake"), "{err}");
        assert!(
            started.elapsed() < node_timeout * 4,
            "within the connect budget"
        );
    })
    .await
}

/// TLS material that is no PEM is bad input, typed, before anything is sent.
#[tokio::test]
async fn pem_without_certificates_is_refused_before_connecting() {
    let err = Client::builder()
        .node("rediss://localhost:1")
        .tls_ca("not a certificate")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTls { .. }), "{err:?}");
    let err = Client::builder()
        .node("rediss://localhost:1")
        .tls_client_cert("-----BEGIN CERTIFICATE-----", "no key here")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTls { .. }), "{err:?}");
    assert!(!err.is_retryable());
}
