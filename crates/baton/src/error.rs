//! The one error type of the library.

use std::time::Duration;

use baton_core::{Kind, NameError};

/// A boxed error from a backend (kept as the `source` of [`Error::Redis`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong with a lock.
///
/// An outcome callers branch on is a variant, not a string. "Held by
/// another" is not an error: [`Lock::try_acquire`](crate::Lock::try_acquire)
/// returns `Ok(None)` for it. Messages never contain a password: servers
/// are named by `host:port`.
///
/// ```
/// # async fn demo() -> Result<(), baton::Error> {
/// let client = baton::Client::in_memory();
/// match client.lock("").try_acquire().await {
///     Err(baton::Error::InvalidName { .. }) => {}
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock name is empty, too long or contains a control character.
    #[error("invalid lock name {name:?}: it {reason}")]
    InvalidName {
        /// The refused name (cut to 64 characters).
        name: String,
        /// Why it was refused.
        reason: NameError,
    },
    /// The key prefix is too long or contains a control character.
    #[error("invalid key prefix {prefix:?}: it {reason}")]
    InvalidPrefix {
        /// The refused prefix.
        prefix: String,
        /// Why it was refused.
        reason: NameError,
    },
    /// A lease length is zero, too short or too long.
    #[error("invalid ttl {ttl:?}: {reason}")]
    InvalidTtl {
        /// The refused duration.
        ttl: Duration,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A client option is out of range: the node timeout, the replica
    /// timeout.
    #[error("invalid {option} {value:?}: {reason}")]
    InvalidConfig {
        /// The option, as the builder names it.
        option: &'static str,
        /// The refused value.
        value: Duration,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The blocking API could not start its runtime (threads or I/O driver
    /// refused by the operating system).
    #[error("could not start the blocking API's runtime: {source}")]
    Runtime {
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A Redis URL could not be used.
    #[error("invalid redis url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The TLS material given (a CA, a client certificate or key) cannot be
    /// used: it is not PEM or holds no certificate or key.
    #[error("invalid tls configuration: {reason}")]
    InvalidTls {
        /// Why it was refused (never the key itself).
        reason: String,
    },
    /// A Redis server failed: cannot connect, refused the password, or
    /// answered an error.
    #[error("redis at {node}: {source}")]
    Redis {
        /// The server, as `host:port` (never with a password).
        node: String,
        /// What the client library reported.
        source: BoxError,
    },
    /// A `redis+cluster://` seed answered, but is not a member of a Redis
    /// Cluster (`cluster-enabled no`): use a `redis://` URL for one server.
    #[error("redis at {node} is not a cluster node (cluster support is disabled there): use redis:// for a single server")]
    NotACluster {
        /// The seed, as `host:port`.
        node: String,
    },
    /// A Redis server did not answer within the node timeout.
    #[error("redis at {node} did not answer within {timeout:?}")]
    NodeTimeout {
        /// The server, as `host:port`.
        node: String,
        /// The node timeout that passed.
        timeout: Duration,
    },
    /// Replica acknowledgement is on
    /// ([`ClientBuilder::min_replicas`](crate::ClientBuilder::min_replicas))
    /// and fewer replicas confirmed a write in time, or AOF acknowledgement
    /// is on ([`ClientBuilder::wait_aof`](crate::ClientBuilder::wait_aof))
    /// and the master's own append-only file or fewer replicas' fsynced it
    /// in time: the write does not count (an acquire is taken back).
    #[error("redis at {node}: {}", not_replicated(*.confirmed, *.needed, *.fsynced))]
    #[non_exhaustive]
    NotReplicated {
        /// The server, as `host:port`.
        node: String,
        /// How many replicas confirmed (with `wait_aof`: fsynced it to
        /// their append-only files).
        confirmed: usize,
        /// How many must.
        needed: usize,
        /// `None` without `wait_aof` (`WAIT`: replicas' memory only);
        /// with it (`WAITAOF`), whether the master fsynced the write to its
        /// own append-only file in time.
        fsynced: Option<bool>,
    },
    /// AOF acknowledgement is on
    /// ([`ClientBuilder::wait_aof`](crate::ClientBuilder::wait_aof)) and the
    /// server cannot give it: it has no `WAITAOF` (Redis before 7.2), or its
    /// append-only file is off (`appendonly no`). Found at connect where the
    /// server lets us ask (`COMMAND INFO`, `CONFIG GET`), else by the first
    /// write. Not transient: the server's version or configuration must
    /// change, or `wait_aof` be left off.
    #[error("redis at {node} cannot confirm writes on disk (wait_aof): {reason}")]
    AofUnavailable {
        /// The server, as `host:port`.
        node: String,
        /// What is missing, and what would provide it.
        reason: String,
    },
    /// Redlock: too many nodes failed for a quorum to be possible (to
    /// acquire, extend, release or read the lock). Each node that did not
    /// agree is listed with what it said.
    #[error("no quorum for lock {name:?}: {acquired} of {nodes_total} nodes agreed, {quorum} needed ({})", list(.nodes))]
    NoQuorum {
        /// The lock name.
        name: String,
        /// How many nodes agreed: said yes to an acquire, an extend or a
        /// release, or answered a read.
        acquired: usize,
        /// How many must.
        quorum: usize,
        /// How many nodes are configured.
        nodes_total: usize,
        /// The nodes that did not say yes, and why.
        nodes: Vec<NodeError>,
    },
    /// [`Lock::acquire`](crate::Lock::acquire) waited as long as it was
    /// allowed to and the lock stayed taken.
    #[error("lock {name:?} still held by another after waiting {waited:?}")]
    Timeout {
        /// The lock name.
        name: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The lease is no longer ours: it expired, or its key was deleted or
    /// taken by another. Work under it may have overlapped another holder's.
    #[error("lease on lock {name:?} was lost")]
    Lost {
        /// The lock name.
        name: String,
    },
    /// A semaphore's permit count is out of range.
    #[error("invalid permits {permits}: {reason}")]
    InvalidPermits {
        /// The refused count.
        permits: u64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The name's key holds another kind of lock than the one asked for: a
    /// lock, a fair lock or a semaphore share a name (fair and unfair use
    /// of one name included). Nothing was changed. For a multi-lock, `key`
    /// lists its keys (the server does not say which one it was).
    #[error("key {key:?} holds another kind of lock than {}: locks, fair locks and semaphores cannot share a name", kind_name(*.used_as))]
    WrongKind {
        /// The key.
        key: String,
        /// The kind it was asked as.
        used_as: Kind,
    },
    /// A multi-lock's names fall in different Redis Cluster slots, which one
    /// script cannot touch together. Nothing was changed.
    #[error("the multi-lock keys {first:?} and {second:?} are in different Redis Cluster slots: \
             give every name one hash tag (for example {{job}}a and {{job}}b), or put one in the client's prefix")]
    CrossSlot {
        /// One of the keys.
        first: String,
        /// A key in another slot than `first`.
        second: String,
    },
    /// A primitive is not offered on this client's deployment.
    #[error("{what} is not offered over {deployment}: {reason}")]
    NotOffered {
        /// The primitive.
        what: &'static str,
        /// The deployment, e.g. "a Redlock of 3 servers".
        deployment: String,
        /// Why not.
        reason: &'static str,
    },
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Lock => "a lock",
        Kind::Semaphore { .. } => "a semaphore",
        Kind::Fair { .. } => "a fair lock",
        Kind::Read => "a read-write lock's reader",
        Kind::Write { .. } => "a read-write lock's writer",
        Kind::Multi => "a multi-lock's lock",
    }
}

impl Error {
    /// True for failures that may pass if the same call is made again later:
    /// a transient server failure (see [`Error::is_transient`]) or a wait
    /// that ran out. False for bad input, for a lost lease (retrying does not
    /// bring a lease back) and for server errors that stay (a refused
    /// password, a missing ACL permission).
    ///
    /// ```
    /// let e = baton::Error::Lost { name: "x".into() };
    /// assert!(!e.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        self.is_transient() || matches!(self, Error::Timeout { .. })
    }

    /// True for a server failure that passes by itself, which
    /// [`Lock::acquire`](crate::Lock::acquire) rides out within its wait
    /// budget: a node that did not answer in time, a connection refused,
    /// reset or closed, a server still loading its data (`LOADING`), a
    /// read-only former master after a failover (`READONLY`), `MASTERDOWN`,
    /// `TRYAGAIN` and `CLUSTERDOWN`; over several nodes, a
    /// [`Error::NoQuorum`] whose failed nodes all failed that way.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::NodeTimeout { .. } | Error::NotReplicated { .. } => true,
            Error::Redis { source, .. } => crate::script::is_transient(source.as_ref()),
            Error::NoQuorum { nodes, .. } => nodes.iter().all(|n| match &n.failure {
                NodeFailure::TakenByAnother => true,
                NodeFailure::Error(e) => e.is_transient(),
            }),
            _ => false,
        }
    }

    /// True when the lease was lost ([`Error::Lost`]).
    pub fn is_lost(&self) -> bool {
        matches!(self, Error::Lost { .. })
    }

    /// True when the error comes from reaching or talking to servers
    /// ([`Error::Redis`], [`Error::NodeTimeout`], [`Error::NoQuorum`],
    /// [`Error::NotReplicated`], [`Error::AofUnavailable`]), as
    /// opposed to bad input or a lock outcome.
    pub fn is_backend(&self) -> bool {
        matches!(
            self,
            Error::Redis { .. }
                | Error::NodeTimeout { .. }
                | Error::NoQuorum { .. }
                | Error::NotReplicated { .. }
                | Error::AofUnavailable { .. }
        )
    }

    /// `what` refused over a Redlock of `nodes` servers, saying why.
    pub(crate) fn not_over_redlock(
        what: &'static str,
        nodes: usize,
        reason: &'static str,
    ) -> Error {
        Error::NotOffered {
            what,
            deployment: format!("a Redlock of {nodes} servers"),
            reason,
        }
    }

    pub(crate) fn invalid_name(name: &str, reason: NameError) -> Error {
        Error::InvalidName {
            name: name.chars().take(64).collect(),
            reason,
        }
    }
}

/// What one node said to a Redlock attempt that did not win it.
#[derive(Debug)]
pub struct NodeError {
    /// The node, as `host:port`.
    pub node: String,
    /// What it said.
    pub failure: NodeFailure,
}

/// Why one node did not say yes.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeFailure {
    /// Another token holds the key there.
    TakenByAnother,
    /// It failed or did not answer in time ([`Error::Redis`] or
    /// [`Error::NodeTimeout`]).
    Error(Box<Error>),
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            NodeFailure::TakenByAnother => write!(f, "{}: taken by another", self.node),
            NodeFailure::Error(e) => e.fmt(f),
        }
    }
}

/// [`Error::NotReplicated`]'s message: who confirmed the write, and how.
fn not_replicated(confirmed: usize, needed: usize, fsynced: Option<bool>) -> String {
    match fsynced {
        None => format!("{confirmed} of {needed} replicas confirmed the write in time"),
        Some(fsynced) => format!(
            "the write was not fsynced to the append-only files in time (the master's: {}; \
             replicas': {confirmed} of {needed})",
            if fsynced { "yes" } else { "no" }
        ),
    }
}

fn list(nodes: &[NodeError]) -> String {
    nodes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
