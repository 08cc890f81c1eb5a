//! How a [`crate::RedisServer`] is configured.

/// Options for [`crate::RedisServer::start_with`]; `Default` is no password
/// and no persistence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Sets `requirepass`; [`crate::RedisServer::url`] then carries it.
    pub password: Option<String>,
    /// `true`: `appendonly yes` + `appendfsync always`, so every acknowledged
    /// write survives a kill and restart. `false`: nothing is written to
    /// disk, so a restart comes back empty.
    pub persistence: bool,
}

impl ServerOptions {
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
}
