//! Synchronous connections that can never hang a test: a paused server
//! accepts TCP connections (the kernel does) but never answers.

use std::time::Duration;

use crate::url::redis_url;
use crate::{ServerCert, ServerOptions, TestPki, TlsMode};

/// How the harness itself reaches one server: its URL and, for TLS, the
/// test CA to trust and the client certificate to offer.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    url: String,
    tls: Option<redis::TlsCertificates>,
}

impl Target {
    /// The harness's way to the server on `port` started with `opts` (and,
    /// if it is a TLS server, `pki`).
    pub(crate) fn new(port: u16, opts: &ServerOptions, pki: Option<&TestPki>) -> Self {
        let tls = tls_of(opts, pki);
        let mut url = redis_url(port, opts.password.as_deref(), tls.is_some());
        let tls = tls.map(|(mode, pki)| {
            // Its certificate names another host, so verifying it would
            // fail: the harness checks nothing, but still offers its client
            // certificate.
            if mode.server_cert == ServerCert::WrongHost {
                url.push_str("#insecure");
            }
            pki.redis_tls()
        });
        Self { url, tls }
    }

    /// A redis-rs client configured like the harness's connections. They
    /// send no `CLIENT SETINFO`: servers that know it (Redis ≥ 7.2, Valkey)
    /// would count the harness's own connections in the command statistics
    /// that tests read.
    pub(crate) fn client(&self) -> redis::RedisResult<redis::Client> {
        let info = redis::IntoConnectionInfo::into_connection_info(self.url.as_str())?;
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let info = info.set_redis_settings(settings);
        match &self.tls {
            None => redis::Client::open(info),
            Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
        }
    }

    /// Connects within `connect_timeout` (TCP connect, TLS handshake if any,
    /// and redis-rs's setup round trip with `AUTH`) and sets read and write
    /// timeouts of `io_timeout` on the connection.
    pub(crate) fn connect(
        &self,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> redis::RedisResult<redis::Connection> {
        let conn = self
            .client()?
            .get_connection_with_timeout(connect_timeout)?;
        conn.set_read_timeout(Some(io_timeout))?;
        conn.set_write_timeout(Some(io_timeout))?;
        Ok(conn)
    }
}

/// The TLS mode and PKI of a server started with `opts`, if it is a TLS
/// server.
///
/// # Panics
/// If `opts` asks for TLS but there is no PKI (a bug in this crate).
pub(crate) fn tls_of<'a>(
    opts: &ServerOptions,
    pki: Option<&'a TestPki>,
) -> Option<(TlsMode, &'a TestPki)> {
    opts.tls.map(|mode| {
        let pki = pki.expect("a TLS server needs its TestPki");
        (mode, pki)
    })
}
