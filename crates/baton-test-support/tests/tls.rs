//! TLS `RedisServer`s and their `TestPki` against a real redis-server.
//!
//! Each client here is built the way a library or CLI test would build one:
//! from `url()` and the PEMs of `pki()`, verifying the server.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use baton_test_support::{
    unique_name, ClientAuth, FaultProxy, RedisServer, ServerCert, ServerOptions, TestPki, TlsMode,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn tls_server(mode: TlsMode) -> RedisServer {
    RedisServer::start_with(ServerOptions::default().tls(mode))
}

/// A client of `url` that trusts `ca` and offers `client` (cert, key), if any.
fn client(url: &str, ca: &str, client: Option<(&str, &str)>) -> redis::Client {
    let certs = redis::TlsCertificates {
        client_tls: client.map(|(cert, key)| redis::ClientTlsConfig {
            client_cert: cert.as_bytes().to_vec(),
            client_key: key.as_bytes().to_vec(),
        }),
        root_cert: Some(ca.as_bytes().to_vec()),
    };
    redis::Client::build_with_tls(url, certs).expect("a valid TLS client configuration")
}

/// Connects with `client` and PINGs, all under [`TIMEOUT`].
fn ping(client: &redis::Client) -> redis::RedisResult<String> {
    let mut conn = client.get_connection_with_timeout(TIMEOUT)?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    conn.set_write_timeout(Some(TIMEOUT))?;
    redis::cmd("PING").query(&mut conn)
}

/// The test client certificate of `pki`, as [`client`] takes it.
fn cert_of(pki: &TestPki) -> Option<(&str, &str)> {
    Some((pki.client_cert_pem(), pki.client_key_pem()))
}

/// The server's view of one `CONFIG GET` parameter.
fn config(server: &RedisServer, name: &str) -> String {
    let (_, value): (String, String) = server.cmd(&["CONFIG", "GET", name]);
    value
}

#[test]
fn a_tls_server_listens_on_tls_only_and_the_harness_speaks_it() {
    let server = RedisServer::start_tls();
    assert!(server.is_tls());
    assert_ne!(server.port(), 6379);
    assert_eq!(
        server.url(),
        format!("rediss://localhost:{}/", server.port())
    );
    assert_eq!(server.url(), server.url_without_password());
    assert_eq!(config(&server, "tls-port"), server.port().to_string());
    assert_eq!(config(&server, "port"), "0");
    assert_eq!(config(&server, "tls-auth-clients"), "no");

    // The harness's helpers all work over TLS.
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
    server.cmd::<()>(&["SET", "k", "v"]);
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "k"]).as_deref(),
        Some("v")
    );
    assert!(server.try_cmd::<String>(&["NOT-A-COMMAND"]).is_err());
    assert_eq!(server.keys(), ["k"]);
    let sha: String = server.cmd(&["SCRIPT", "LOAD", "return 1"]);
    server.flush_scripts();
    let err = server.try_cmd::<i64>(&["EVALSHA", &sha, "0"]).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("noscript"),
        "{err:?}"
    );
    let mut conn = server.conn();
    assert_eq!(
        redis::cmd("GET")
            .arg("k")
            .query::<String>(&mut conn)
            .unwrap(),
        "v"
    );

    // A client given only the URL and the CA verifies the server.
    let pki = server.pki();
    assert_eq!(
        ping(&client(&server.url(), pki.ca_pem(), None)).unwrap(),
        "PONG"
    );

    // The port takes connections but no plain Redis: the server hangs up
    // on a plaintext PING instead of answering it.
    let mut raw = TcpStream::connect(server.addr()).unwrap();
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    raw.write_all(b"PING\r\n").unwrap();
    let mut reply = Vec::new();
    match raw.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server should have hung up: {e:?}"),
    }
    assert!(
        !String::from_utf8_lossy(&reply).contains("PONG"),
        "{reply:?}"
    );
}

#[test]
fn the_pem_files_hold_the_pem_strings() {
    let server = RedisServer::start_tls();
    let pki = server.pki();
    for (path, pem) in [
        (pki.ca_path(), pki.ca_pem()),
        (pki.client_cert_path(), pki.client_cert_pem()),
        (pki.client_key_path(), pki.client_key_pem()),
        (pki.other_ca_path(), pki.other_ca_pem()),
        (
            pki.server_cert_path(ServerCert::Localhost),
            pki.server_cert_pem(ServerCert::Localhost),
        ),
        (
            pki.server_key_path(ServerCert::Localhost),
            pki.server_key_pem(ServerCert::Localhost),
        ),
        (
            pki.server_cert_path(ServerCert::WrongHost),
            pki.server_cert_pem(ServerCert::WrongHost),
        ),
        (
            pki.server_key_path(ServerCert::WrongHost),
            pki.server_key_pem(ServerCert::WrongHost),
        ),
    ] {
        assert!(path.starts_with(pki.dir()), "{}", path.display());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            pem,
            "{}",
            path.display()
        );
    }
    assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(pki
        .client_key_pem()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    // Every server gets a PKI of its own.
    let other = RedisServer::start_tls();
    assert_ne!(other.pki().ca_pem(), pki.ca_pem());
    assert_ne!(other.pki().dir(), pki.dir());
}

#[test]
fn required_client_certificates_refuse_a_client_without_one() {
    let server = tls_server(TlsMode::default().client_auth(ClientAuth::Required));
    assert_eq!(config(&server, "tls-auth-clients"), "yes");
    let pki = server.pki();
    // The server refuses the handshake with TLS 1.3's certificate_required
    // alert.
    let without = ping(&client(&server.url(), pki.ca_pem(), None)).unwrap_err();
    assert!(
        without.to_string().contains("CertificateRequired"),
        "{without:?}"
    );
    // The same client with the test client certificate gets in, and so do
    // the harness's helpers.
    let with = client(&server.url(), pki.ca_pem(), cert_of(pki));
    assert_eq!(ping(&with).unwrap(), "PONG");
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");

    // A client certificate signed by another CA is refused too.
    let stranger = RedisServer::start_tls();
    let foreign = ping(&client(
        &server.url(),
        pki.ca_pem(),
        cert_of(stranger.pki()),
    ))
    .unwrap_err();
    assert!(foreign.to_string().contains("UnknownCA"), "{foreign:?}");
}

#[test]
fn optional_client_certificates_are_checked_only_when_sent() {
    let server = tls_server(TlsMode::default().client_auth(ClientAuth::Optional));
    assert_eq!(config(&server, "tls-auth-clients"), "optional");
    let pki = server.pki();
    let url = server.url();
    assert_eq!(ping(&client(&url, pki.ca_pem(), None)).unwrap(), "PONG");
    assert_eq!(
        ping(&client(&url, pki.ca_pem(), cert_of(pki))).unwrap(),
        "PONG"
    );
    let stranger = RedisServer::start_tls();
    let foreign = ping(&client(&url, pki.ca_pem(), cert_of(stranger.pki()))).unwrap_err();
    assert!(foreign.to_string().contains("UnknownCA"), "{foreign:?}");
}

#[test]
fn the_wrong_hostname_certificate_does_not_verify_for_localhost() {
    let server = tls_server(
        TlsMode::default()
            .server_cert(ServerCert::WrongHost)
            .client_auth(ClientAuth::Required),
    );
    // The harness still reaches it (without verifying it, but with its
    // client certificate).
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
    assert_eq!(
        server.url(),
        format!("rediss://localhost:{}/", server.port())
    );
    let pki = server.pki();
    // Signed by the trusted CA, so the refusal is about the name alone.
    let err = ping(&client(&server.url(), pki.ca_pem(), cert_of(pki))).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("not valid for name \"localhost\"")
            && shown.contains(ServerCert::WRONG_HOSTNAME),
        "{err:?}"
    );
    assert!(!shown.contains("UnknownIssuer"), "{err:?}");
}

#[test]
fn an_unrelated_ca_does_not_verify_the_server() {
    let server = RedisServer::start_tls();
    let pki = server.pki();
    let err = ping(&client(&server.url(), pki.other_ca_pem(), None)).unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err:?}");
}

#[test]
fn restart_keeps_tls_its_certificates_and_its_data() {
    let mut server = RedisServer::start_with(
        ServerOptions::default()
            .persistence(true)
            .tls(TlsMode::default().client_auth(ClientAuth::Required)),
    );
    let (url, pid, ca) = (server.url(), server.pid(), server.pki().ca_pem().to_owned());
    let key = unique_name("kept");
    server.cmd::<()>(&["SET", &key, "v"]);
    server.restart();
    assert_ne!(server.pid(), pid);
    assert_eq!(server.url(), url);
    assert_eq!(server.pki().ca_pem(), ca);
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", &key]).as_deref(),
        Some("v")
    );
    assert_eq!(config(&server, "port"), "0");
    assert_eq!(config(&server, "tls-auth-clients"), "yes");
    let without = ping(&client(&url, &ca, None)).unwrap_err();
    assert!(
        without.to_string().contains("CertificateRequired"),
        "{without:?}"
    );
    assert_eq!(
        ping(&client(&url, &ca, cert_of(server.pki()))).unwrap(),
        "PONG"
    );
}

#[test]
fn a_password_rides_in_the_tls_url() {
    let password = "p@ss word:/%";
    let server = RedisServer::start_with(
        ServerOptions::default()
            .password(password)
            .tls(TlsMode::default()),
    );
    assert_eq!(
        server.url(),
        format!(
            "rediss://:p%40ss%20word%3A%2F%25@localhost:{}/",
            server.port()
        )
    );
    assert_eq!(
        server.url_without_password(),
        format!("rediss://localhost:{}/", server.port())
    );
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
    let ca = server.pki().ca_pem();
    assert_eq!(ping(&client(&server.url(), ca, None)).unwrap(), "PONG");
    let err = ping(&client(&server.url_without_password(), ca, None)).unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err:?}");
}

#[tokio::test]
async fn async_clients_reach_a_tls_server_directly_and_through_a_proxy() {
    let server = tls_server(TlsMode::default().client_auth(ClientAuth::Required));
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");

    let proxy = FaultProxy::start(server.addr()).await;
    assert_eq!(
        proxy.tls_url(),
        format!("rediss://localhost:{}/", proxy.port())
    );
    let through = redis::Client::build_with_tls(proxy.tls_url(), server.pki().redis_tls()).unwrap();
    let mut conn = through.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn a_plain_server_is_not_a_tls_server() {
    let server = RedisServer::start();
    assert!(!server.is_tls());
    assert!(
        server.url().starts_with("redis://127.0.0.1:"),
        "{}",
        server.url()
    );
}

#[test]
#[should_panic(expected = "has no TLS")]
fn a_plain_server_has_no_pki() {
    let _ = RedisServer::start().pki();
}

#[test]
fn a_pki_can_be_made_on_its_own() {
    let dir = std::env::temp_dir().join(unique_name("baton-pki"));
    let pki = TestPki::new_in(dir.join("nested"));
    assert_eq!(pki.dir(), dir.join("nested"));
    assert_eq!(
        std::fs::read_to_string(pki.ca_path()).unwrap(),
        pki.ca_pem()
    );
    let shown = format!("{pki:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tls_server_that_cannot_start_panics_with_its_log() {
    let mut server = RedisServer::start_tls();
    std::fs::remove_file(server.pki().server_key_path(ServerCert::Localhost)).unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.restart()))
        .expect_err("restart without the server key must fail");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("exited early") && message.contains("Failed to configure TLS"),
        "{message}"
    );
}
