//! The operator's view of a lock: who holds it, and breaking a stuck one.
//!
//! Nothing here takes part in locking: these calls read a lock or delete it
//! regardless of its owner, for status pages and command-line tools.

use std::time::Duration;

use baton_core::quorum::quorum;
use baton_core::token::fingerprint;
use baton_core::{Fence, Keys};
use futures_util::future::join_all;

use crate::client::Client;
use crate::error::{Error, Result};

/// What a lock looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockStatus {
    /// The holder, if a quorum of the nodes (the one node, on one server)
    /// holds the same token.
    pub holder: Option<Holder>,
    /// The highest fence counter on any node: the fence of the latest
    /// acquire (`None` if the lock was never taken).
    pub fence: Option<Fence>,
}

/// The current holder of a lock, as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The first 8 characters of its token: enough to tell holders apart,
    /// not enough to act as the owner.
    pub fingerprint: String,
    /// How long its lease has left on the server (the shortest among the
    /// nodes that hold it); `None` if the key has no expiry (a lock taken
    /// by another library without a TTL).
    pub remaining: Option<Duration>,
}

impl Client {
    /// Who holds lock `name`, for how long, and its latest fence. One round
    /// trip (per node, in parallel); changes nothing.
    ///
    /// ```
    /// # async fn demo() -> Result<(), baton::Error> {
    /// let client = baton::Client::in_memory();
    /// assert_eq!(client.status("job").await?.holder, None);
    /// let guard = client.lock("job").try_acquire().await?.expect("free");
    /// let status = client.status("job").await?;
    /// assert!(status.holder.is_some());
    /// assert_eq!(status.fence, Some(guard.fence()));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn status(&self, name: &str) -> Result<LockStatus> {
        let keys = self.keys_of(name)?;
        let nodes = &self.inner.nodes;
        let replies = join_all((0..nodes.len()).map(|i| nodes.inspect(i, &keys))).await;
        let mut seen = Vec::new();
        let mut errors = Vec::new();
        for (i, reply) in replies.into_iter().enumerate() {
            match reply {
                Ok(inspection) => seen.push(inspection),
                Err(e) => errors.push((i, e)),
            }
        }
        let need = quorum(nodes.len());
        if seen.len() < need {
            return Err(nodes.no_quorum(name, errors, Vec::new(), seen.len()));
        }
        let fence = seen.iter().filter_map(|s| s.fence).max().map(Fence);
        let holder = seen
            .iter()
            .filter_map(|s| s.holder.as_deref())
            .find(|value| {
                seen.iter()
                    .filter(|s| s.holder.as_deref() == Some(*value))
                    .count()
                    >= need
            })
            .map(|value| Holder {
                fingerprint: fingerprint(value).to_owned(),
                remaining: seen
                    .iter()
                    .filter(|s| s.holder.as_deref() == Some(value))
                    .map(|s| s.pttl)
                    .min()
                    .filter(|&ms| ms >= 0)
                    .map(|ms| Duration::from_millis(ms as u64)),
            });
        Ok(LockStatus { holder, fence })
    }

    /// Breaks lock `name` whoever holds it, on every node, and wakes its
    /// waiters: for an operator facing a stuck lock. Returns the
    /// fingerprints of the tokens removed (empty if it was free). Succeeds
    /// when a quorum of the nodes answered (a silent node keeps its copy
    /// until its TTL, which no longer makes a quorum).
    ///
    /// The holder is not told: its guard will find the lease lost at its next
    /// renewal, and until then it may still believe it holds the lock. Its
    /// fence does not change, so a fenced store refuses it once the next
    /// holder has written.
    pub async fn force_release(&self, name: &str) -> Result<Vec<String>> {
        let keys = self.keys_of(name)?;
        let nodes = &self.inner.nodes;
        let replies = join_all((0..nodes.len()).map(|i| nodes.force_release(i, &keys))).await;
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for (i, reply) in replies.into_iter().enumerate() {
            match reply {
                Ok(Some(value)) => removed.push(fingerprint(&value).to_owned()),
                Ok(None) => {}
                Err(e) => errors.push((i, e)),
            }
        }
        let answered = nodes.len() - errors.len();
        if answered < quorum(nodes.len()) {
            return Err(nodes.no_quorum(name, errors, Vec::new(), answered));
        }
        // A quorum answered: the lock is broken (no one can hold a quorum
        // of it now), though a silent node may keep its copy until its TTL.
        for (i, e) in errors {
            tracing::warn!(node = nodes.name(i), error = %e, "force release did not reach a node");
        }
        removed.sort();
        removed.dedup();
        Ok(removed)
    }

    fn keys_of(&self, name: &str) -> Result<Keys> {
        Keys::new(self.prefix(), name).map_err(|reason| Error::invalid_name(name, reason))
    }
}
