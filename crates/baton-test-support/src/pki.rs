//! Certificates made at test time, for TLS servers and their clients.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::ServerCert;

const CA_FILE: &str = "ca.crt";
const OTHER_CA_FILE: &str = "other-ca.crt";
const SERVER_CERT_FILE: &str = "server.crt";
const SERVER_KEY_FILE: &str = "server.key";
const WRONG_HOST_CERT_FILE: &str = "wrong-host.crt";
const WRONG_HOST_KEY_FILE: &str = "wrong-host.key";
const CLIENT_CERT_FILE: &str = "client.crt";
const CLIENT_KEY_FILE: &str = "client.key";

/// A fresh private PKI, generated when made and written as PEM files into
/// one directory: a test CA, server certificates it signed, a client
/// certificate it signed (for mutual TLS), and an unrelated CA.
///
/// Every TLS [`crate::RedisServer`] has its own (see
/// [`crate::RedisServer::pki`]), in its directory, kept across restarts.
/// All keys are ECDSA P-256; certificates are valid from 1975 to 4096, so
/// the clock never matters.
///
/// | what | PEM | file |
/// | --- | --- | --- |
/// | test CA | [`ca_pem`](Self::ca_pem) | [`ca_path`](Self::ca_path) |
/// | client certificate and key (signed by the test CA) | [`client_cert_pem`](Self::client_cert_pem), [`client_key_pem`](Self::client_key_pem) | [`client_cert_path`](Self::client_cert_path), [`client_key_path`](Self::client_key_path) |
/// | server certificates and keys (signed by the test CA) | [`server_cert_pem`](Self::server_cert_pem), [`server_key_pem`](Self::server_key_pem) | [`server_cert_path`](Self::server_cert_path), [`server_key_path`](Self::server_key_path) |
/// | an unrelated CA (signed nothing here) | [`other_ca_pem`](Self::other_ca_pem) | [`other_ca_path`](Self::other_ca_path) |
#[derive(Clone)]
pub struct TestPki {
    dir: PathBuf,
    ca: String,
    other_ca: String,
    server: CertAndKey,
    wrong_host: CertAndKey,
    client: CertAndKey,
}

#[derive(Clone)]
struct CertAndKey {
    cert: String,
    key: String,
}

impl TestPki {
    /// Generates a new PKI and writes its PEM files into `dir` (created if
    /// missing; files of an earlier PKI there are replaced). The files last
    /// as long as `dir`.
    ///
    /// # Panics
    /// If a certificate cannot be made or a file cannot be written.
    pub fn new_in(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let ca = new_ca("Baton test CA");
        let other_ca = new_ca("Baton unrelated test CA");
        let pki = Self {
            server: new_leaf(&ca, ServerCert::Localhost.names(), Role::Server),
            wrong_host: new_leaf(&ca, ServerCert::WrongHost.names(), Role::Server),
            client: new_leaf(&ca, &["baton-test-client"], Role::Client),
            ca: ca.pem(),
            other_ca: other_ca.pem(),
            dir,
        };
        pki.write();
        pki
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The test CA's certificate, PEM: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca
    }

    /// The file holding [`TestPki::ca_pem`].
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// The client certificate (signed by the test CA, for `tls-auth-clients`),
    /// PEM.
    pub fn client_cert_pem(&self) -> &str {
        &self.client.cert
    }

    /// The file holding [`TestPki::client_cert_pem`].
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.join(CLIENT_CERT_FILE)
    }

    /// The client certificate's private key, PEM (PKCS #8).
    pub fn client_key_pem(&self) -> &str {
        &self.client.key
    }

    /// The file holding [`TestPki::client_key_pem`].
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.join(CLIENT_KEY_FILE)
    }

    /// A CA certificate, PEM, unrelated to everything else here: a client
    /// that trusts only it must refuse the servers' certificates.
    pub fn other_ca_pem(&self) -> &str {
        &self.other_ca
    }

    /// The file holding [`TestPki::other_ca_pem`].
    pub fn other_ca_path(&self) -> PathBuf {
        self.dir.join(OTHER_CA_FILE)
    }

    /// The server certificate `which`, PEM (its names:
    /// [`ServerCert::names`]).
    pub fn server_cert_pem(&self, which: ServerCert) -> &str {
        &self.server(which).cert
    }

    /// The file holding [`TestPki::server_cert_pem`].
    pub fn server_cert_path(&self, which: ServerCert) -> PathBuf {
        self.dir.join(match which {
            ServerCert::Localhost => SERVER_CERT_FILE,
            ServerCert::WrongHost => WRONG_HOST_CERT_FILE,
        })
    }

    /// The private key of the server certificate `which`, PEM (PKCS #8).
    pub fn server_key_pem(&self, which: ServerCert) -> &str {
        &self.server(which).key
    }

    /// The file holding [`TestPki::server_key_pem`].
    pub fn server_key_path(&self, which: ServerCert) -> PathBuf {
        self.dir.join(match which {
            ServerCert::Localhost => SERVER_KEY_FILE,
            ServerCert::WrongHost => WRONG_HOST_KEY_FILE,
        })
    }

    /// For `redis::Client::build_with_tls`: trust the test CA and offer the
    /// client certificate. Set `client_tls` to `None` for a client without
    /// one.
    pub fn redis_tls(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: self.client.cert.clone().into_bytes(),
                client_key: self.client.key.clone().into_bytes(),
            }),
            root_cert: Some(self.ca.clone().into_bytes()),
        }
    }

    fn server(&self, which: ServerCert) -> &CertAndKey {
        match which {
            ServerCert::Localhost => &self.server,
            ServerCert::WrongHost => &self.wrong_host,
        }
    }

    fn write(&self) {
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            panic!("cannot create {}: {e}", self.dir.display());
        }
        let files = [
            (self.ca_path(), &self.ca),
            (self.other_ca_path(), &self.other_ca),
            (self.client_cert_path(), &self.client.cert),
            (self.client_key_path(), &self.client.key),
        ];
        let servers = [ServerCert::Localhost, ServerCert::WrongHost].map(|which| {
            [
                (self.server_cert_path(which), &self.server(which).cert),
                (self.server_key_path(which), &self.server(which).key),
            ]
        });
        for (path, pem) in files.into_iter().chain(servers.into_iter().flatten()) {
            if let Err(e) = std::fs::write(&path, pem) {
                panic!("cannot write {}: {e}", path.display());
            }
        }
    }
}

/// Only the directory: the PEM strings would fill a panic message.
impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Role {
    Server,
    Client,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, new_key())
        .unwrap_or_else(|e| panic!("cannot make the test CA {name:?}: {e}"))
}

/// A certificate for `names` (DNS names or IP addresses) signed by `ca`.
fn new_leaf(ca: &CertifiedIssuer<'_, KeyPair>, names: &[&str], role: Role) -> CertAndKey {
    let sans: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(sans)
        .unwrap_or_else(|e| panic!("bad test certificate names {names:?}: {e}"));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].to_owned());
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match role {
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    let key = new_key();
    let cert = params
        .signed_by(&key, ca)
        .unwrap_or_else(|e| panic!("cannot sign a test certificate for {names:?}: {e}"));
    CertAndKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn new_key() -> KeyPair {
    KeyPair::generate().unwrap_or_else(|e| panic!("cannot generate a test key: {e}"))
}
