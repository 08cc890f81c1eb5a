//! Redis Sentinel: the master that a set of Sentinels names, followed
//! across failovers.
//!
//! `redis+sentinel://[user:pass@]host[:port][,host[:port]…]/MASTER[/db]`
//! (default port 26379; `rediss+sentinel://` for TLS to Sentinels and data
//! nodes alike). The credentials, the database and `?protocol=` are the
//! data nodes'; Sentinels that want a password of their own get it from
//! `?sentinel_username=…&sentinel_password=…`.
//!
//! A [`SentinelNode`] is one [`Node`] to the lock logic: it forwards every
//! call to the master it knows, a plain [`connect::connect`] node. It asks the
//! Sentinels again (`SENTINEL get-master-addr-by-name`) when a call fails
//! in a way a failover explains (a transient error, or a call abandoned by
//! its timeout) and when a Sentinel announces `+switch-master`; a new
//! address gets a new node, and later calls go there. A call is never
//! re-sent by this module: every caller already retries (acquire within
//! its wait, the renewer on its schedule), and re-sending here would hide
//! how long the master was away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use baton_core::acquire::Reply;

use baton_core::vote::Found;
use baton_core::{Keys, Token};
use futures_util::StreamExt;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::acknowledge::Acknowledge;
use crate::connect::{self, Tls};
use crate::error::{Error, Result};
use crate::node::{BoxFuture, Inspection, Node, Renewal};
use crate::pubsub::PubSubLink;
use crate::script;
use crate::topology::HostList;
use crate::wait::Subscription;

/// Sentinel's own port, for hosts given without one.
const DEFAULT_PORT: u16 = 26379;
/// At most one round of questions to the Sentinels this often: a burst of
/// failing calls (a renewal batch, many waiters) asks once.
const REFRESH_GAP: Duration = Duration::from_millis(100);
/// Between tries of the next Sentinel for `+switch-master` announcements.
const WATCH_RETRY: Duration = Duration::from_millis(200);
/// The channel on which Sentinels announce a new master.
const SWITCH_MASTER: &str = "+switch-master";

/// Connects to the master that the Sentinels of `url` name.
pub(crate) async fn connect(
    url: &str,
    timeout: Duration,
    tls: &Tls,
    acknowledge: Option<Acknowledge>,
) -> Result<Arc<dyn Node>> {
    let list = HostList::parse(url, DEFAULT_PORT)?;
    let invalid = |reason: String| Error::InvalidUrl {
        url: crate::redact::redact_url(url),
        reason,
    };
    let (master, db) = match list.path.split_once('/') {
        Some((master, db)) => (master, Some(db)),
        None => (list.path.as_str(), None),
    };
    if master.is_empty() {
        return Err(invalid(
            "no master name: redis+sentinel://HOST[:PORT][,…]/MASTER_NAME[/DB]".to_owned(),
        ));
    }
    if let Some(db) = db.filter(|db| db.parse::<u16>().is_err()) {
        return Err(invalid(format!("the database {db:?} is not a number")));
    }
    let sentinels = Sentinels {
        userinfo: sentinel_userinfo(&list),
        master: crate::redact::percent_decode(master),
        db: db.map(str::to_owned),
        list,
        tls: tls.clone(),
        timeout,
    };
    let address = sentinels.ask().await?;
    let client = sentinels.client_of_master(&address)?;
    let notifications = PubSubLink::new(client.clone(), timeout);
    let current =
        connect::connect_client(client, timeout, acknowledge, Arc::clone(&notifications)).await?;
    let name = format!("{} (via Sentinel)", sentinels.master);
    let node = Arc::new_cyclic(|me: &Weak<SentinelNode>| SentinelNode {
        me: me.clone(),
        name,
        acknowledge,
        current: RwLock::new(Master {
            address,
            node: current,
        }),
        notifications,
        refreshing: AtomicBool::new(false),
        last_refresh: std::sync::Mutex::new(Instant::now()),
        watcher: std::sync::Mutex::new(None),
        sentinels,
    });
    let watcher = tokio::spawn(watch_switches(Arc::downgrade(&node)));
    *lock(&node.watcher) = Some(watcher.abort_handle());
    Ok(node)
}

/// The Sentinels of one master, and how to reach them and the data nodes.
struct Sentinels {
    list: HostList,
    /// `?sentinel_username=…&sentinel_password=…`, as userinfo.
    userinfo: Option<String>,
    master: String,
    db: Option<String>,
    tls: Tls,
    timeout: Duration,
}

impl Sentinels {
    /// A redis-rs client for Sentinel `host`.
    fn client(&self, host: &(String, u16)) -> Result<redis::Client> {
        let url = self
            .list
            .server_url((&host.0, host.1), self.userinfo.as_deref(), None, |key| {
                key == "protocol"
            });
        connect::open_client(&url, &self.tls)
    }

    /// The master's address as the first Sentinel that knows it says.
    async fn ask(&self) -> Result<(String, u16)> {
        let mut failure = None;
        for host in &self.list.hosts {
            let sentinel = format!("{}:{}", host.0, host.1);
            let asked = tokio::time::timeout(self.timeout, async {
                let mut conn = self
                    .client(host)?
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| script::redis_error(&sentinel, e))?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
                    .map_err(|e| script::redis_error(&sentinel, e))
            })
            .await
            .unwrap_or_else(|_| {
                Err(Error::NodeTimeout {
                    node: sentinel.clone(),
                    timeout: self.timeout,
                })
            });
            match asked {
                Ok(Some(address)) => return Ok(address),
                Ok(None) => {
                    tracing::debug!(%sentinel, master = %self.master, "this Sentinel knows no such master");
                }
                Err(e) => {
                    tracing::debug!(%sentinel, error = %e, "Sentinel did not answer");
                    failure = Some(e);
                }
            }
        }
        Err(failure.unwrap_or_else(|| Error::InvalidUrl {
            url: crate::redact::redact_url(&self.list.server_url(
                (&self.list.hosts[0].0, self.list.hosts[0].1),
                None,
                None,
                |_| false,
            )),
            reason: format!(
                "none of the Sentinels ({}) knows a master named {:?}",
                self.hosts(),
                self.master
            ),
        }))
    }

    /// A client of the data server at `address`, with the URL's
    /// credentials, database and protocol.
    fn client_of_master(&self, address: &(String, u16)) -> Result<redis::Client> {
        let url = self.list.server_url(
            (&address.0, address.1),
            self.list.userinfo.as_deref(),
            self.db.as_deref(),
            |key| !key.starts_with("sentinel_"),
        );
        connect::open_client(&url, &self.tls)
    }

    fn hosts(&self) -> String {
        self.list
            .hosts
            .iter()
            .map(|(host, port)| format!("{host}:{port}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `user:password` for the Sentinels, from the query (still encoded).
fn sentinel_userinfo(list: &HostList) -> Option<String> {
    let raw = |key: &str| {
        list.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    match (raw("sentinel_username"), raw("sentinel_password")) {
        (None, None) => None,
        (user, password) => Some(format!(
            "{}:{}",
            user.unwrap_or_default(),
            password.unwrap_or_default()
        )),
    }
}

/// The master a Sentinel set names, as a [`Node`].
pub(crate) struct SentinelNode {
    me: Weak<SentinelNode>,
    name: String,
    sentinels: Sentinels,
    acknowledge: Option<Acknowledge>,
    current: RwLock<Master>,
    /// The one pub/sub link of every master in turn: waiters' subscriptions
    /// outlive a move to a new master.
    notifications: Arc<PubSubLink>,
    /// A refresh is under way: others wait for its outcome instead of
    /// asking too.
    refreshing: AtomicBool,
    last_refresh: std::sync::Mutex<Instant>,
    watcher: std::sync::Mutex<Option<AbortHandle>>,
}

struct Master {
    address: (String, u16),
    node: Arc<dyn Node>,
}

impl SentinelNode {
    fn master(&self) -> Arc<dyn Node> {
        Arc::clone(&read(&self.current).node)
    }

    /// Asks the Sentinels again, in the background (see [`REFRESH_GAP`]).
    fn suspect(&self) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (Some(me), Ok(runtime)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(async move {
            let not_before = *lock(&me.last_refresh) + REFRESH_GAP;
            tokio::time::sleep_until(not_before).await;
            me.refresh().await;
            *lock(&me.last_refresh) = Instant::now();
            me.refreshing.store(false, Ordering::Release);
        });
    }

    /// Moves to the master the Sentinels name, if it is another.
    async fn refresh(&self) {
        let address = match self.sentinels.ask().await {
            Ok(address) => address,
            Err(e) => {
                tracing::debug!(master = %self.sentinels.master, error = %e, "cannot ask the Sentinels");
                return;
            }
        };
        if read(&self.current).address == address {
            return;
        }
        let opened = async {
            let client = self.sentinels.client_of_master(&address)?;
            let node = connect::connect_client(
                client.clone(),
                self.sentinels.timeout,
                self.acknowledge,
                Arc::clone(&self.notifications),
            )
            .await?;
            Ok::<_, Error>((client, node))
        };
        match opened.await {
            Ok((client, node)) => {
                let to = format!("{}:{}", address.0, address.1);
                let old = std::mem::replace(&mut *write(&self.current), Master { address, node });
                tracing::info!(
                    master = %self.sentinels.master,
                    from = %format_args!("{}:{}", old.address.0, old.address.1),
                    %to,
                    "the Sentinels name a new master: following it"
                );
                self.notifications.retarget(client).await;
            }
            Err(e) => {
                tracing::warn!(master = %self.sentinels.master, error = %e, "cannot reach the new master yet");
            }
        }
    }

    /// Runs one call on the current master, suspecting a failover if it
    /// fails transiently or is abandoned before it ends (its caller's
    /// timeout dropped it).
    async fn on_master<'a, T>(
        &'a self,
        call: impl FnOnce(Arc<dyn Node>) -> BoxFuture<'a, T>,
        failed: impl FnOnce(&T) -> bool,
    ) -> T {
        let mut watch = Watch {
            node: self,
            armed: true,
        };
        let outcome = call(self.master()).await;
        watch.armed = failed(&outcome);
        outcome
    }
}

/// Suspects a failover when dropped armed.
struct Watch<'a> {
    node: &'a SentinelNode,
    armed: bool,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.node.suspect();
        }
    }
}

fn transient<T>(outcome: &Result<T>) -> bool {
    outcome.as_ref().is_err_and(Error::is_transient)
}

impl Node for SentinelNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn server_for<'a>(&'a self, _keys: &'a Keys) -> BoxFuture<'a, String> {
        let (host, port) = &read(&self.current).address;
        Box::pin(std::future::ready(format!("{host}:{port}")))
    }

    fn acquire<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        ttl_ms: u64,
        grant: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Reply>> {
        Box::pin(self.on_master(
            move |n| Box::pin(async move { n.acquire(keys, token, ttl_ms, grant).await }),
            transient,
        ))
    }

    fn release<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        announce: bool,
    ) -> BoxFuture<'a, Result<Found>> {
        Box::pin(self.on_master(
            move |n| Box::pin(async move { n.release(keys, token, announce).await }),
            transient,
        ))
    }

    fn raise<'a>(
        &'a self,
        keys: &'a Keys,
        token: &'a Token,
        fence: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.on_master(
            move |n| Box::pin(async move { n.raise(keys, token, fence).await }),
            transient,
        ))
    }

    fn inspect<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Inspection>> {
        Box::pin(self.on_master(
            move |n| Box::pin(async move { n.inspect(keys).await }),
            transient,
        ))
    }

    fn force_release<'a>(&'a self, keys: &'a Keys) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(self.on_master(
            move |n| Box::pin(async move { n.force_release(keys).await }),
            transient,
        ))
    }

    fn extend<'a>(&'a self, renewals: &'a [Renewal<'a>]) -> BoxFuture<'a, Vec<Result<bool>>> {
        Box::pin(self.on_master(
            move |n| Box::pin(async move { n.extend(renewals).await }),
            |outcomes: &Vec<Result<bool>>| outcomes.iter().any(transient),
        ))
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Option<Subscription>>> {
        Box::pin(self.on_master(
            move |n| Box::pin(async move { n.subscribe(channel).await }),
            transient,
        ))
    }
}

impl Drop for SentinelNode {
    fn drop(&mut self) {
        if let Some(watcher) = lock(&self.watcher).take() {
            watcher.abort();
        }
    }
}

/// Listens for `+switch-master` on one Sentinel after another, for as long
/// as the node lives, and refreshes on each announcement for our master
/// (and once after every subscription, for one missed in between).
async fn watch_switches(node: Weak<SentinelNode>) {
    let mut next = 0;
    loop {
        let Some(strong) = node.upgrade() else { return };
        let hosts = &strong.sentinels.list.hosts;
        let host = hosts[next % hosts.len()].clone();
        next += 1;
        let sentinel = format!("{}:{}", host.0, host.1);
        let subscribed = async {
            let mut pubsub = strong
                .sentinels
                .client(&host)?
                .get_async_pubsub()
                .await
                .map_err(|e| script::redis_error(&sentinel, e))?;
            pubsub
                .subscribe(SWITCH_MASTER)
                .await
                .map_err(|e| script::redis_error(&sentinel, e))?;
            Ok::<_, Error>(pubsub)
        };
        let pubsub = tokio::time::timeout(strong.sentinels.timeout, subscribed).await;
        let Ok(Ok(pubsub)) = pubsub else {
            drop(strong);
            tokio::time::sleep(WATCH_RETRY).await;
            continue;
        };
        strong.suspect();
        let ours = format!("{} ", strong.sentinels.master);
        drop(strong);
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let announcement: String = message.get_payload().unwrap_or_default();
            if announcement.starts_with(&ours) {
                let Some(strong) = node.upgrade() else { return };
                tracing::debug!(%sentinel, %announcement, "Sentinel announces a new master");
                strong.suspect();
            }
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
