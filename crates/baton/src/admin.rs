//! The operator's view of a lock: who holds it, and breaking a stuck one.
//!
//! Nothing here takes part in locking: these calls read a lock or delete it
//! regardless of its owner, for status pages and command-line tools.

use std::time::Duration;

use std::sync::Arc;

use baton_core::quorum::{Extension, Reading};
use baton_core::token::fingerprint;
use baton_core::vote::{Ballot, Read, Vote};
use baton_core::{Fence, Keys};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::fanout::finish_in_background;
use crate::node::Inspection;

/// What a lock looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockStatus {
    /// The holder, if a quorum of the nodes (the one node, on one server)
    /// holds the same token.
    pub holder: Option<Holder>,
    /// The highest fence counter among the nodes that answered (a quorum
    /// at least, so never below the latest fence handed out): the fence of
    /// the latest acquire (`None` if the lock was never taken).
    pub fence: Option<Fence>,
    /// The servers whose answers made this status (`host:port`, in the
    /// order they answered): the one server, or a quorum of a Redlock's.
    pub answered_by: Vec<String>,
}

/// The current holder of a lock, as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The first 8 characters of its token: enough to tell holders apart,
    /// not enough to act as the owner. A foreign value that is not UTF-8 is
    /// decoded lossily (U+FFFD for each bad byte); control characters are
    /// kept as they are, so escape them before printing to a terminal.
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
    ///
    /// Over several nodes it returns as soon as the answers decide it (a
    /// quorum holds one value, or no value can reach one), without waiting
    /// for a slow node.
    pub async fn status(&self, name: &str) -> Result<LockStatus> {
        let keys = self.keys_of(name)?;
        let nodes = &self.inner.nodes;
        let n = nodes.len();
        let keys = &keys;
        let mut replies: FuturesUnordered<_> = (0..n)
            .map(|i| async move { (i, nodes.inspect(i, keys).await) })
            .collect();
        let mut seen: Vec<Inspection> = Vec::new();
        let mut read = Read::new(n);
        let mut answered_by = Vec::new();
        let mut errors = Vec::new();
        let reading = loop {
            match replies.next().await {
                Some((i, Ok(inspection))) => {
                    read.handle(Ok(inspection.holder.clone()));
                    seen.push(inspection);
                    answered_by.push(nodes.server_for(i, keys).await);
                }
                Some((i, Err(e))) => {
                    read.handle(Err(()));
                    errors.push((i, e));
                }
                None => unreachable!("with every reply in, a reading is certain"),
            }
            if let Some(reading) = read.poll_reading() {
                break reading;
            }
        };
        drop(replies); // reads only: a slow node's answer is not needed
        if reading == Reading::NoQuorum {
            return Err(nodes.no_quorum(name, errors, Vec::new(), seen.len()));
        }
        let fence = seen.iter().filter_map(|s| s.fence).max().map(Fence);
        let holder = read.holder().map(|value| Holder {
            fingerprint: shown(value),
            remaining: seen
                .iter()
                .filter(|s| s.holder.as_ref() == Some(value))
                .map(|s| s.pttl)
                .min()
                .filter(|&ms| ms >= 0)
                .map(|ms| Duration::from_millis(ms as u64)),
        });
        Ok(LockStatus {
            holder,
            fence,
            answered_by,
        })
    }

    /// Breaks lock `name` whoever holds it, on every node, and wakes its
    /// waiters: for an operator facing a stuck lock. Returns the
    /// fingerprints of the tokens removed (empty if it was free). Succeeds
    /// once a quorum of the nodes answered (a slow node's copy is removed in
    /// the background; a silent one keeps it until its TTL, which no longer
    /// makes a quorum).
    ///
    /// The holder is not told: its guard will find the lease lost at its next
    /// renewal, and until then it may still believe it holds the lock. Its
    /// fence does not change, so a fenced store refuses it once the next
    /// holder has written.
    pub async fn force_release(&self, name: &str) -> Result<Vec<String>> {
        let keys = Arc::new(self.keys_of(name)?);
        let nodes = &self.inner.nodes;
        let n = nodes.len();
        let mut replies: FuturesUnordered<_> = (0..n)
            .map(|i| {
                let (nodes, keys) = (Arc::clone(nodes), Arc::clone(&keys));
                async move { (i, nodes.force_release(i, &keys).await) }
            })
            .collect();
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        // Every answer is a yes: the vote is won once a quorum answered.
        let mut vote = Vote::new(n);
        loop {
            match replies.next().await {
                Some((_, Ok(value))) => {
                    vote.handle(Ballot::Yes);
                    removed.extend(value.as_deref().map(shown));
                }
                Some((i, Err(e))) => {
                    vote.handle(Ballot::Failed);
                    errors.push((i, e));
                }
                None => unreachable!("with every reply in, a vote is certain"),
            }
            match vote.poll_verdict() {
                None => {}
                Some(Extension::Extended) => break,
                Some(_) => return Err(nodes.no_quorum(name, errors, Vec::new(), vote.yes())),
            }
        }
        // A quorum answered: the lock is broken (no one can hold a quorum
        // of it now), though a silent node may keep its copy until its TTL.
        for (i, e) in errors {
            tracing::warn!(node = nodes.name(i), error = %e, "force release did not reach a node");
        }
        finish_in_background(replies);
        removed.sort();
        removed.dedup();
        Ok(removed)
    }

    fn keys_of(&self, name: &str) -> Result<Keys> {
        Keys::new(self.prefix(), name).map_err(|reason| Error::invalid_name(name, reason))
    }
}

/// The fingerprint of a stored value, which may be any bytes.
fn shown(value: &[u8]) -> String {
    fingerprint(&String::from_utf8_lossy(value)).to_owned()
}
