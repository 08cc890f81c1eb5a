//! Opening a node from a URL: the TLS material, TCP keepalive, the
//! command connection's settings, and the server checks made once at
//! connect.
//!
//! Apart from the script transport because it runs once per server, not
//! per call, and is shared by every deployment: one server, each master a
//! Sentinel names, and a Cluster's seeds all take their TLS material,
//! socket settings and `maxmemory-policy` warning from here.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{socket2, TcpSettings};

use crate::acknowledge::{check_wait_aof, Acknowledge};
use crate::error::{Error, Result};
use crate::node::{Node, Notifications};
use crate::pubsub::PubSubLink;
use crate::redact::{invalid_url, redact_url};
use crate::script::{redis_error, RedisNode};

/// The TLS material for `rediss://` URLs (see
/// [`ClientBuilder::tls_ca`](crate::ClientBuilder::tls_ca)): PEM bytes,
/// checked by [`Tls::check`] before any server is asked.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    /// Trust these CAs instead of the system roots.
    pub(crate) ca: Option<Vec<u8>>,
    /// Present this certificate chain and key (mutual TLS).
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Refuses PEM that holds nothing of what it should: a CA or
    /// certificate file without a certificate, a key file without a key.
    /// (redis-rs reads the PEM only when a client is built, and an empty CA
    /// list would fail every handshake with a misleading "unknown issuer".)
    pub(crate) fn check(&self) -> Result<()> {
        let has = |pem: &[u8], what: &str| {
            String::from_utf8_lossy(pem).contains(&format!("-----BEGIN {what}"))
        };
        let refuse = |reason: &str| {
            Err(Error::InvalidTls {
                reason: reason.to_owned(),
            })
        };
        if self
            .ca
            .as_deref()
            .is_some_and(|ca| !has(ca, "CERTIFICATE-----"))
        {
            return refuse("the CA holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
        if let Some((cert, key)) = &self.client {
            if !has(cert, "CERTIFICATE-----") {
                return refuse("the client certificate holds no PEM certificate");
            }
            if !has(key, "PRIVATE KEY-----") {
                return refuse("the client key holds no PEM private key");
            }
        }
        Ok(())
    }
}

/// `rediss://…#insecure` turns certificate verification off: said once per
/// process, as a warning, since it is meant for tests.
pub(crate) fn warn_insecure_once(url: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            url = %redact_url(url),
            "TLS certificate verification is off (#insecure): anyone on the path can pose as the server"
        );
    });
}

/// TCP keepalive on every connection: probes after this much idle time
/// keep NAT and load-balancer state alive (their idle cut-offs are minutes)
/// and find a dead peer without waiting for a command to time out.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;
/// Unacknowledged data for this long breaks the connection (Linux
/// `TCP_USER_TIMEOUT`), so a peer gone silent mid-command is noticed.
#[cfg(target_os = "linux")]
const USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens a Redis node from a URL: a reconnecting connection for commands,
/// and (lazily) a separate pub/sub connection for release notifications.
pub(crate) async fn connect(
    url: &str,
    timeout: Duration,
    tls: &Tls,
    acknowledge: Option<Acknowledge>,
) -> Result<Arc<dyn Node>> {
    let client = open_client(url, tls)?;
    let notifications = PubSubLink::new(client.clone(), timeout);
    connect_client(client, timeout, acknowledge, notifications).await
}

/// Opens a node on `client` whose release notifications come through
/// `notifications`, which may be shared: a Sentinel's link follows the
/// master from server to server, so its waiters stay subscribed.
pub(crate) async fn connect_client(
    client: redis::Client,
    timeout: Duration,
    acknowledge: Option<Acknowledge>,
    notifications: Arc<PubSubLink>,
) -> Result<Arc<dyn Node>> {
    let is_tls = matches!(
        client.get_connection_info().addr(),
        redis::ConnectionAddr::TcpTls { .. }
    );
    let name = client.get_connection_info().addr().to_string();
    let connect_for = timeout.saturating_mul(3);
    let conn = tokio::time::timeout(
        connect_for,
        ConnectionManager::new_with_config(client.clone(), manager_config(timeout)),
    )
    .await
    .map_err(|_| Error::NodeTimeout {
        node: name.clone(),
        timeout: connect_for,
    })?
    .map_err(|e| match e.is_timeout() && is_tls {
        // A plain server reads a TLS hello as a command that never ends,
        // and answers nothing: say what that silence most likely means.
        true => redis_error(
            &name,
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer to the TLS handshake: is the server speaking TLS on this port \
                 (rediss://), or plain Redis (redis://)?",
            ),
        ),
        false => redis_error(&name, e),
    })?;
    warn_if_fences_can_be_evicted(&conn, &name, timeout).await;
    check_wait_aof(&conn, &name, timeout, acknowledge).await?;
    let notifications: Arc<dyn Notifications> = notifications;
    Ok(Arc::new(RedisNode::new(
        conn,
        name,
        Some(notifications),
        acknowledge,
    )))
}

/// A redis-rs client for one server's URL: TCP keepalive on, and for
/// `rediss://` the TLS material given (`#insecure` warned about once).
/// Nothing is sent yet.
pub(crate) fn open_client(url: &str, tls: &Tls) -> Result<redis::Client> {
    let info =
        redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| invalid_url(url, &e))?;
    let info = info.set_tcp_settings(tcp_settings());
    Ok(match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure, .. } => {
            if *insecure {
                warn_insecure_once(url);
            }
            let certificates = redis::TlsCertificates {
                client_tls: tls.client.clone().map(|(client_cert, client_key)| {
                    redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }
                }),
                root_cert: tls.ca.clone(),
            };
            redis::Client::build_with_tls(info, certificates).map_err(|e| Error::InvalidTls {
                reason: e.to_string(),
            })?
        }
        _ => redis::Client::open(info).map_err(|e| invalid_url(url, &e))?,
    })
}

/// Which server a URL names, for telling duplicates apart: its address
/// (`host:port`, the host without case, or the socket path as it is). The
/// database is left out on purpose: two databases of one server are still
/// one server, and would give it two votes.
pub(crate) fn server_of(url: &str) -> Result<String> {
    let info =
        redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| invalid_url(url, &e))?;
    Ok(match info.addr() {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{}:{port}", host.to_ascii_lowercase())
        }
        other => other.to_string(),
    })
}

/// Says once, at connect, if the server may evict keys without a TTL:
/// under `allkeys-*` the fence counter can be evicted like any key, and the
/// next acquire then draws fence 1 again, after higher ones — a fenced store
/// would refuse the new, rightful holder. `volatile-*` only evicts keys with
/// a TTL: fence counters are safe, but a lock key may be evicted under
/// memory pressure (a second holder gets in; its higher fence still
/// protects a fenced store). A server that refuses `CONFIG` (an ACL, a
/// managed service) is left at that, with a debug line.
pub(crate) async fn warn_if_fences_can_be_evicted<C: ConnectionLike + Clone>(
    conn: &C,
    name: &str,
    timeout: Duration,
) {
    let mut conn = conn.clone();
    let asked = tokio::time::timeout(
        timeout,
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            // A map in RESP3, pairs in RESP2: both read as a map.
            .query_async::<std::collections::HashMap<String, String>>(&mut conn),
    )
    .await;
    match asked {
        Ok(Ok(reply)) => match reply.get("maxmemory-policy").map(String::as_str) {
            Some(policy) if policy.starts_with("allkeys-") => tracing::warn!(
                node = %name,
                policy,
                "maxmemory-policy {policy} can evict fence counters, after which fences start again at 1 \
                 and a fenced store refuses the rightful holder: use noeviction (or a volatile-* policy)"
            ),
            Some(policy) if policy.starts_with("volatile-") => tracing::info!(
                node = %name,
                policy,
                "maxmemory-policy {policy} can evict lock keys under memory pressure (fences stay safe): \
                 noeviction keeps locks too"
            ),
            _ => {}
        },
        Ok(Err(e)) => tracing::debug!(node = %name, error = %e, "cannot read maxmemory-policy"),
        Err(_) => tracing::debug!(node = %name, "no answer reading maxmemory-policy"),
    }
}

pub(crate) fn tcp_settings() -> TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(USER_TIMEOUT);
    settings
}

/// The settings of every command connection.
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    // redis-rs's own response timeout is a backstop behind ours (which
    // reports `NodeTimeout`), never in front of it.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout.saturating_mul(2)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(500))
}
