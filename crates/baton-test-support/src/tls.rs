//! What a TLS [`crate::RedisServer`] presents and asks for.

/// TLS settings for [`crate::ServerOptions::tls`]; `Default` is a server
/// certificate valid for `localhost` and no client certificates asked for.
///
/// A TLS server listens on TLS only (`--port 0 --tls-port PORT`), with
/// certificates from its own [`crate::TestPki`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsMode {
    /// Which certificate the server presents.
    pub server_cert: ServerCert,
    /// Whether the server asks for and checks client certificates
    /// (`tls-auth-clients`).
    pub client_auth: ClientAuth,
}

impl TlsMode {
    /// Sets [`TlsMode::server_cert`].
    pub fn server_cert(mut self, server_cert: ServerCert) -> Self {
        self.server_cert = server_cert;
        self
    }

    /// Sets [`TlsMode::client_auth`].
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }
}

/// The certificate a TLS server presents; both are signed by the test CA
/// ([`crate::TestPki::ca_pem`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerCert {
    /// Valid for `localhost`, `127.0.0.1` and `::1`: a client given
    /// [`crate::RedisServer::url`] and the test CA verifies it.
    #[default]
    Localhost,
    /// Valid only for [`ServerCert::WRONG_HOSTNAME`]: a client given
    /// [`crate::RedisServer::url`] (host `localhost`) and the test CA must
    /// refuse it as a hostname mismatch. The harness's own helpers skip
    /// verification for such a server (nothing could reach it otherwise).
    WrongHost,
}

impl ServerCert {
    /// The only name in [`ServerCert::WrongHost`]'s certificate. `.invalid`
    /// never resolves (RFC 2606).
    pub const WRONG_HOSTNAME: &'static str = "not-this-host.invalid";

    /// The subject alternative names in this certificate.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            ServerCert::Localhost => &["localhost", "127.0.0.1", "::1"],
            ServerCert::WrongHost => &[Self::WRONG_HOSTNAME],
        }
    }
}

/// Whether a TLS server asks for client certificates: redis-server's
/// `tls-auth-clients`. The harness's own connections always offer the test
/// client certificate ([`crate::TestPki::client_cert_pem`]), so they work
/// with all three.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `tls-auth-clients no`: no certificate is asked for.
    #[default]
    No,
    /// `tls-auth-clients optional`: a certificate is asked for and checked
    /// against the test CA if the client sends one, but none is needed.
    Optional,
    /// `tls-auth-clients yes`: a client without a certificate signed by the
    /// test CA is refused.
    Required,
}

impl ClientAuth {
    /// The value of redis-server's `--tls-auth-clients`.
    pub(crate) fn redis_arg(self) -> &'static str {
        match self {
            ClientAuth::No => "no",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "yes",
        }
    }
}
