//! [`Client`]: a handle to one lock backend, and its builder.

use std::sync::Arc;
use std::time::Duration;

use baton_core::name::{validate_prefix, DEFAULT_PREFIX};

use crate::acknowledge::Acknowledge;
use crate::connect::{self, Tls};
use crate::error::{Error, Result};
use crate::fanout::Nodes;
use crate::lock::Lock;
use crate::memory::MemoryStore;
use crate::node::{Connection, Node};
use crate::renew::Renewer;
use crate::rwlock::RwLock;
use crate::semaphore::Semaphore;
use crate::topology;

/// The default per-node timeout: how long one Redis command may take before
/// the node counts as failed for that call.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long [`ClientBuilder::wait_aof`] waits for the master's fsync
/// when [`ClientBuilder::min_replicas`] gives no timeout.
const DEFAULT_AOF_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest per-node timeout accepted.
pub const MAX_NODE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A handle to a lock backend: cheap to clone, shared by every lock and
/// guard made from it.
///
/// All leases held through one client are renewed by a single background
/// task, started by the first lease, parked while no lease is held, and
/// stopped when the client (and every guard made from it) is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), baton::Error> {
/// let client = baton::Client::connect("redis://127.0.0.1:6379").await?;
/// if let Some(guard) = client.lock("nightly-report").try_acquire().await? {
///     // ... the work only one worker may do ...
///     guard.release().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) nodes: Arc<Nodes>,
    pub(crate) renewer: Renewer,
    pub(crate) prefix: Arc<str>,
    /// Fair waiters' grant channels kept subscribed for reuse.
    pub(crate) idle_grants: crate::wait::IdleGrants,
}

impl Client {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host:port[/db]`),
    /// or, given several comma-separated URLs, to each of them as one
    /// Redlock (see [`ClientBuilder::node`]).
    ///
    /// Fails with [`Error::InvalidUrl`] for a URL that cannot be used, and
    /// [`Error::Redis`] or [`Error::NodeTimeout`] when the server cannot be
    /// reached or refuses the password. Once connected, the client
    /// reconnects by itself after the server comes back.
    pub async fn connect(url: &str) -> Result<Client> {
        Client::builder().node(url).build().await
    }

    /// A client on a redis-rs connection you already have: a
    /// `ConnectionManager` (which reconnects) or a `MultiplexedConnection`.
    ///
    /// Such a client cannot open a pub/sub connection of its own, so waiters
    /// are not woken by release notifications: they retry on the timed
    /// fallback (bounded by the holder's remaining TTL and
    /// [`Lock::retry_interval`]). Use [`Client::connect`] for prompt wake-ups.
    pub fn from_connection(conn: impl Into<Connection>) -> Client {
        Client::from_nodes(vec![conn.into().into_node()])
    }

    /// A client of a fresh in-process store: the same semantics as Redis,
    /// for tests and single-process applications. To share one store between
    /// several clients, use [`MemoryStore`].
    pub fn in_memory() -> Client {
        MemoryStore::new().client()
    }

    /// Options beyond a single URL: key prefix, node timeout.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A lock named `name` (stored at key `prefix + name`). Cheap: nothing is
    /// sent until it is acquired, and an invalid name is reported then.
    pub fn lock(&self, name: &str) -> Lock {
        Lock::new(self.clone(), name)
    }

    /// A counting semaphore named `name`: at most `permits` leased
    /// [`Permit`](crate::Permit)s at once (stored at key `prefix + name`, a
    /// sorted set; a name is a lock or a semaphore, not both). Cheap, as
    /// [`lock`](Client::lock).
    pub fn semaphore(&self, name: &str, permits: u32) -> Semaphore {
        Semaphore::new(self.clone(), name, permits)
    }

    /// A read-write lock named `name`: many readers or one writer (see
    /// [`RwLock`]). Cheap, as [`lock`](Client::lock).
    pub fn rw_lock(&self, name: &str) -> RwLock {
        RwLock::new(self.clone(), name)
    }

    /// A multi-lock: the plain locks of every one of `names`, taken all or
    /// none by one script per server, as one lease. Its [`Guard`](crate::Guard)
    /// holds them all, renews them together and releases them all; the
    /// lease is lost when any one of them is (expired, deleted, broken by
    /// an operator). Cheap, as [`lock`](Client::lock).
    ///
    /// Each name is an ordinary lock: a multi-lock excludes, and is
    /// excluded by, plain locks of any of its names and other multi-locks
    /// that share a name. Its one fence is above every earlier fence of
    /// each name, and every later fence of each name is above it, so one
    /// number guards writes to all of the resources. A name given twice
    /// counts once; no names, an invalid one or more than
    /// [`MAX_MULTI_NAMES`](crate::MAX_MULTI_NAMES) fail with
    /// [`Error::InvalidName`].
    ///
    /// On a Cluster the names must share a slot: give them one hash tag
    /// (`{job}a`, `{job}b`), or else acquiring fails with
    /// [`Error::CrossSlot`]. Over a Redlock each server takes all the names
    /// or none, and the quorum is of servers that took all of them. It is
    /// not fair ([`Lock::fair`] is refused with [`Error::NotOffered`]): a
    /// waiter is woken by the release of any of its names and tries for
    /// all of them again.
    ///
    /// ```
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::in_memory();
    /// let transfer = client.multi_lock(&["account-17", "account-42"]);
    /// let guard = transfer.try_acquire().await?.expect("both free");
    /// assert!(client.lock("account-42").try_acquire().await?.is_none(), "taken with the other");
    /// guard.release().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn multi_lock(&self, names: &[&str]) -> Lock {
        Lock::multi(self.clone(), names)
    }

    /// The key prefix of this client's locks.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// How many of this client's leases are being renewed in the background
    /// right now: held with auto-renewal, not released, not lost. For
    /// metrics, and to check that nothing keeps a released or lost lease
    /// alive.
    ///
    /// ```
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::in_memory();
    /// let guard = client.lock("job").acquire().await?;
    /// assert_eq!(client.renewing(), 1);
    /// guard.release().await?;
    /// assert_eq!(client.renewing(), 0);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn renewing(&self) -> usize {
        self.inner.renewer.len()
    }

    /// What this client's renewal task has sent so far: batches, the
    /// renewals in them and the largest batch. For benchmarks and
    /// dashboards; two relaxed counters per batch.
    ///
    /// ```
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::in_memory();
    /// let stats = client.renewal_stats();
    /// assert!(stats.renewals >= stats.batches);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn renewal_stats(&self) -> crate::RenewalStats {
        self.inner.renewer.stats()
    }

    pub(crate) fn from_nodes(nodes: Vec<Arc<dyn Node>>) -> Client {
        Client::assemble(nodes, DEFAULT_PREFIX, DEFAULT_NODE_TIMEOUT)
    }

    pub(crate) fn assemble(nodes: Vec<Arc<dyn Node>>, prefix: &str, timeout: Duration) -> Client {
        let nodes = Arc::new(Nodes::new(nodes, timeout));
        Client {
            inner: Arc::new(Inner {
                renewer: Renewer::new(Arc::clone(&nodes)),
                nodes,
                prefix: prefix.into(),
                idle_grants: Default::default(),
            }),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.inner.nodes.len())
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

/// Builds a [`Client`] with options.
///
/// ```no_run
/// # async fn demo() -> Result<(), baton::Error> {
/// let client = baton::Client::builder()
///     .node("redis://127.0.0.1:6379")
///     .prefix("myapp:locks:")
///     .node_timeout(std::time::Duration::from_millis(200))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct ClientBuilder {
    urls: Vec<String>,
    connections: Vec<Connection>,
    prefix: Option<String>,
    node_timeout: Option<Duration>,
    tls: Tls,
    min_replicas: Option<(usize, Duration)>,
    wait_aof: bool,
}

impl ClientBuilder {
    /// Adds a Redis server by URL. A comma-separated list adds several.
    ///
    /// Several servers make a Redlock: each acquire, extend and release goes
    /// to every server in parallel, and holds when a majority of the
    /// configured servers agrees. The servers must be independent masters
    /// (not replicas of each other).
    ///
    /// A Sentinel URL (`redis+sentinel://host[:port][,host[:port]…]/MASTER[/db]`)
    /// or a Cluster URL (`redis+cluster://host:port[,host:port…]`) lists its
    /// hosts with commas too: a piece without a scheme continues such a URL.
    /// Either must be the only URL of the client (see [`ClientBuilder::sentinel`]
    /// and [`ClientBuilder::cluster`]).
    pub fn node(mut self, url: &str) -> ClientBuilder {
        for piece in url.split(',').map(str::trim) {
            match self.urls.last_mut() {
                Some(last) if !piece.contains("://") && topology::lists_hosts(last) => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => self.urls.push(piece.to_owned()),
            }
        }
        self
    }

    /// Reaches the master that the Sentinels at `sentinels` (`host[:port]`
    /// each, default port 26379) name `master_name`, and follows it when
    /// they fail over: the same as the URL
    /// `redis+sentinel://HOST:PORT,…/MASTER_NAME`, which also takes
    /// credentials, TLS (`rediss+sentinel://`) and a database.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::builder()
    ///     .sentinel(["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"], "locks")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn sentinel<S: AsRef<str>>(
        self,
        sentinels: impl IntoIterator<Item = S>,
        master_name: &str,
    ) -> ClientBuilder {
        let hosts = join_hosts(sentinels);
        self.node(&format!("redis+sentinel://{hosts}/{master_name}"))
    }

    /// Reaches the Redis Cluster that the seed nodes `seeds` (`host:port`
    /// each) belong to: the same as the URL
    /// `redis+cluster://HOST:PORT,…`, which also takes credentials and TLS
    /// (`rediss+cluster://`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::builder()
    ///     .cluster(["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"])
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster<S: AsRef<str>>(self, seeds: impl IntoIterator<Item = S>) -> ClientBuilder {
        let hosts = join_hosts(seeds);
        self.node(&format!("redis+cluster://{hosts}"))
    }

    /// Adds a Redis server through a redis-rs connection you already have
    /// (see [`Client::from_connection`] for what that costs).
    pub fn connection(mut self, conn: impl Into<Connection>) -> ClientBuilder {
        self.connections.push(conn.into());
        self
    }

    /// The key prefix (default `baton:`; `""` for bare names). At most 128
    /// bytes, no control characters.
    pub fn prefix(mut self, prefix: &str) -> ClientBuilder {
        self.prefix = Some(prefix.to_owned());
        self
    }

    /// For `rediss://` URLs: verify the servers' certificates against these
    /// CA certificates (PEM, one or more) instead of the system roots.
    /// Plain `redis://` URLs are not affected.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::builder()
    ///     .node("rediss://redis.internal:6380")
    ///     .tls_ca(std::fs::read("/etc/redis/ca.pem").expect("the CA file"))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls_ca(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.tls.ca = Some(pem.into());
        self
    }

    /// For `rediss://` URLs: present this client certificate (mutual TLS,
    /// `tls-auth-clients yes` on the server): the certificate chain and its
    /// private key, both PEM. The key is never shown in errors or logs.
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> ClientBuilder {
        self.tls.client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Replica acknowledgement, against losing a lease in a failover: an
    /// acquire, extend or renewal counts only once `replicas` replicas
    /// confirm it within `timeout` (`WAIT replicas timeout`, in the same
    /// round trip as the write). Unconfirmed, an acquire is taken back and
    /// fails with [`Error::NotReplicated`] (which
    /// [`Lock::acquire`](crate::Lock::acquire) rides out within its wait);
    /// an unconfirmed renewal is retried like a failed one.
    ///
    /// `WAIT` is not consensus: a confirmed write is on that many replicas
    /// now, in memory. A failover still loses it if it promotes a replica
    /// that did not confirm, or if the replicas restart without
    /// persistence before one of them is promoted
    /// ([`ClientBuilder::wait_aof`] asks for the disk too). The timeout
    /// must be positive and shorter than the node timeout.
    pub fn min_replicas(mut self, replicas: usize, timeout: Duration) -> ClientBuilder {
        self.min_replicas = Some((replicas, timeout));
        self
    }

    /// Acknowledgement on disk, against losing a lease when every node
    /// restarts (a power cut, a crash of the whole set): an acquire, extend
    /// or renewal counts only once the master has fsynced it to its
    /// append-only file, and so have the replicas of
    /// [`ClientBuilder::min_replicas`] (`WAITAOF 1 replicas timeout`
    /// instead of `WAIT`, in the same round trip as the write). The timeout
    /// is `min_replicas`'s, or without it 100 ms (at most half the node
    /// timeout). Unconfirmed, a write fails as with `min_replicas`, with
    /// [`Error::NotReplicated`] (`fsynced` says whether the master's file
    /// had it).
    ///
    /// Needs `WAITAOF` (Redis ≥ 7.2 or Valkey) and `appendonly yes` on the
    /// master (and on the replicas counted): a server without either is
    /// refused at connect with [`Error::AofUnavailable`] (or, if an ACL
    /// hides `COMMAND INFO` or `CONFIG GET`, at the first write, with the
    /// same error). With `appendfsync everysec` a write waits for the next
    /// fsync, up to a second, so the timeout must allow for it; with
    /// `appendfsync always` the master's fsync is done when the write
    /// returns. It does not apply to [`ClientBuilder::connection`]s, as
    /// `min_replicas` does not. An ACL user needs `+waitaof` besides
    /// [`acl_rules`](crate::acl_rules).
    pub fn wait_aof(mut self, wait_aof: bool) -> ClientBuilder {
        self.wait_aof = wait_aof;
        self
    }

    /// How long one command to one server may take (default 1 s, at most 1 h).
    pub fn node_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.node_timeout = Some(timeout);
        self
    }

    /// Validates the options and connects to every URL (in parallel). Every
    /// server must be reachable to build the client.
    pub async fn build(self) -> Result<Client> {
        let prefix = self.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
        validate_prefix(prefix).map_err(|reason| Error::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        })?;
        let timeout = self.node_timeout.unwrap_or(DEFAULT_NODE_TIMEOUT);
        if timeout.is_zero() || timeout > MAX_NODE_TIMEOUT {
            return Err(Error::InvalidConfig {
                option: "node timeout",
                value: timeout,
                reason: "it must be positive and at most 1h",
            });
        }
        let count = self.urls.len() + self.connections.len();
        if count == 0 {
            return Err(Error::InvalidUrl {
                url: String::new(),
                reason: "no redis url given".to_owned(),
            });
        }
        if let Some(url) = self.urls.iter().find(|url| topology::lists_hosts(url)) {
            if count > 1 {
                return Err(Error::InvalidUrl {
                    url: crate::redact::redact_url(url),
                    reason: "a Sentinel or Cluster URL must be the client's only URL \
                             (Redlock over Sentinel sets or clusters is not offered)"
                        .to_owned(),
                });
            }
        } else {
            refuse_duplicates(&self.urls)?;
        }
        self.tls.check()?;
        let acknowledge = match self.min_replicas {
            None | Some((0, _)) if self.wait_aof => Some(Acknowledge {
                replicas: 0,
                timeout_ms: (DEFAULT_AOF_TIMEOUT.min(timeout / 2).as_millis() as u64).max(1),
                aof: true,
            }),
            None | Some((0, _)) => None,
            Some((_, wait)) if wait.is_zero() || wait >= timeout => {
                return Err(Error::InvalidConfig {
                    option: "replica timeout",
                    value: wait,
                    reason: "it must be positive and shorter than the node timeout",
                })
            }
            Some((replicas, wait)) => Some(Acknowledge {
                replicas,
                timeout_ms: (wait.as_millis() as u64).max(1),
                aof: self.wait_aof,
            }),
        };
        let tls = &self.tls;
        let connected = futures_util::future::join_all(
            self.urls
                .iter()
                .map(|url| topology::connect(url, timeout, tls, acknowledge)),
        )
        .await;
        let mut nodes = connected
            .into_iter()
            .collect::<Result<Vec<Arc<dyn Node>>>>()?;
        nodes.extend(self.connections.into_iter().map(Connection::into_node));
        Ok(Client::assemble(nodes, prefix, timeout))
    }
}

fn join_hosts<S: AsRef<str>>(hosts: impl IntoIterator<Item = S>) -> String {
    hosts
        .into_iter()
        .map(|host| host.as_ref().trim().to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// Two URLs naming one server would make one server count twice towards a
/// Redlock quorum (with `A,A,B` and B down, A alone would be a "majority").
fn refuse_duplicates(urls: &[String]) -> Result<()> {
    let mut seen: Vec<(String, &str)> = Vec::with_capacity(urls.len());
    for url in urls {
        let server = connect::server_of(url)?;
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == server) {
            return Err(Error::InvalidUrl {
                url: crate::redact::redact_url(url),
                reason: format!(
                    "it names the same server as {} ({server}): Redlock nodes must be independent servers",
                    crate::redact::redact_url(first)
                ),
            });
        }
        seen.push((server, url));
    }
    Ok(())
}
