//! How a [`crate::RedisServer`] is configured.

use crate::TlsMode;

/// Options for [`crate::RedisServer::start_with`]; `Default` is no password,
/// no persistence, no TLS and no cluster mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Sets `requirepass`; [`crate::RedisServer::url`] then carries it.
    pub password: Option<String>,
    /// `true`: `appendonly yes` + `appendfsync always`, so every acknowledged
    /// write survives a kill and restart. `false`: nothing is written to
    /// disk, so a restart comes back empty.
    pub persistence: bool,
    /// `Some`: the server speaks TLS only, with certificates from its own
    /// [`crate::TestPki`], and [`crate::RedisServer::url`] is
    /// `rediss://localhost:PORT/`. `None`: plain TCP.
    pub tls: Option<TlsMode>,
    /// `Some(port)`: a replica of the server on `127.0.0.1:port`
    /// (`--replicaof`), which it syncs from in the background; over TLS
    /// when [`ServerOptions::tls`] is set, which needs both started with
    /// one PKI ([`crate::RedisServer::start_with_pki`]).
    pub replica_of: Option<u16>,
    /// `true`: a Redis Cluster node (`cluster-enabled yes`, its
    /// `nodes.conf` in its own directory, so a restart keeps its identity),
    /// on a port whose cluster bus port (port + 10000) was free too. It
    /// starts alone, owning no slots: [`crate::LocalCluster`] joins nodes
    /// into a cluster. Not with [`ServerOptions::replica_of`] (a cluster
    /// node refuses `replicaof`).
    pub cluster: bool,
}

impl ServerOptions {
    /// Sets [`ServerOptions::replica_of`].
    pub fn replica_of(mut self, master_port: u16) -> Self {
        self.replica_of = Some(master_port);
        self
    }

    /// Sets [`ServerOptions::cluster`].
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Sets [`ServerOptions::password`].
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets [`ServerOptions::persistence`].
    pub fn persistence(mut self, persistence: bool) -> Self {
        self.persistence = persistence;
        self
    }

    /// Sets [`ServerOptions::tls`]: a TLS-only server, e.g.
    /// `ServerOptions::default().tls(TlsMode::default().client_auth(ClientAuth::Required))`.
    /// See [`crate::RedisServer::start_tls`] for an example.
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = Some(mode);
        self
    }
}
