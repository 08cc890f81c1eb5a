//! Fan-out: every operation goes to all nodes in parallel, each under its
//! own timeout, and the replies feed the pure decisions of
//! [`baton_core::quorum`].
//!
//! One server is the case N = 1 of the same code: one round trip, no extra
//! work. This module decides nothing itself; it only asks and counts.

use std::sync::Arc;
use std::time::Duration;

use baton_core::quorum::{self, Decision, Extension, Reply, Round};
use baton_core::{Keys, Token};
use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::error::{Error, Result};
use crate::node::{Node, Renewal};
use crate::wait::Subscription;

/// The configured nodes of a client and their per-node timeout.
pub(crate) struct Nodes {
    list: Vec<Arc<dyn Node>>,
    timeout: Duration,
}

/// What one acquire round came to, with the errors met on the way.
pub(crate) struct RoundOutcome {
    pub(crate) decision: Decision,
    pub(crate) errors: Vec<Error>,
    /// When the round's requests went out: the lease's clock starts here.
    pub(crate) started: std::time::Instant,
}

impl Nodes {
    pub(crate) fn new(list: Vec<Arc<dyn Node>>, timeout: Duration) -> Nodes {
        assert!(!list.is_empty(), "a client has at least one node");
        Nodes { list, timeout }
    }

    /// The number of configured nodes.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Runs `f` against node `i` under the node timeout.
    async fn ask<'a, T, F>(&'a self, i: usize, f: F) -> Result<T>
    where
        F: FnOnce(&'a dyn Node) -> crate::node::BoxFuture<'a, Result<T>>,
    {
        let node = &*self.list[i];
        match tokio::time::timeout(self.timeout, f(node)).await {
            Ok(result) => result,
            Err(_) => Err(Error::NodeTimeout {
                node: node.name().to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    /// One acquire attempt on every node, decided as early as it is certain.
    pub(crate) async fn acquire(&self, keys: &Keys, token: &Token, ttl: Duration) -> RoundOutcome {
        let started = now();
        let ttl_ms = ttl.as_millis() as u64;
        let mut round = Round::new(self.len(), ttl, started);
        let mut errors = Vec::new();
        let mut replies: FuturesUnordered<_> = (0..self.len())
            .map(|i| async move { (i, self.ask(i, |n| n.acquire(keys, token, ttl_ms)).await) })
            .collect();
        while let Some((i, reply)) = replies.next().await {
            let reply = reply.unwrap_or_else(|e| {
                errors.push(e);
                Reply::Failed
            });
            round.reply(i, reply);
            let decision = round.decide(now());
            if decision != Decision::Pending {
                return RoundOutcome {
                    decision,
                    errors,
                    started,
                };
            }
        }
        unreachable!("a round with every reply in is decided")
    }

    /// Releases on `which` nodes. `Ok(true)` if a quorum of the configured
    /// nodes deleted our key, `Ok(false)` if too many found it gone or
    /// another's for that, an error if too many failed to say.
    pub(crate) async fn release(
        &self,
        keys: &Keys,
        token: &Token,
        which: &[usize],
    ) -> Result<bool> {
        let replies = join_all(
            which
                .iter()
                .map(|&i| self.ask(i, |n| n.release(keys, token))),
        )
        .await;
        let mut released = 0;
        let mut refused = self.len() - which.len();
        let mut first_error = None;
        for reply in replies {
            match reply {
                Ok(true) => released += 1,
                Ok(false) => refused += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "release failed on a node");
                    first_error.get_or_insert(e);
                }
            }
        }
        match quorum::extension(self.len(), released, refused) {
            Extension::Extended => Ok(true),
            Extension::Refused => Ok(false),
            Extension::Unknown => Err(first_error.expect("unknown means some node failed")),
        }
    }

    /// Every node, for a release after a won round or a guard.
    pub(crate) fn all(&self) -> Vec<usize> {
        (0..self.len()).collect()
    }

    /// Extends each renewal on every node (one pipeline per node), with at
    /// most `timeout` per node. Per renewal: the quorum's verdict and the
    /// first error met, if any.
    pub(crate) async fn extend(
        &self,
        renewals: &[Renewal<'_>],
        timeout: Duration,
    ) -> Vec<(Extension, Option<Error>)> {
        let per_node = join_all(self.list.iter().map(|node| async move {
            match tokio::time::timeout(timeout, node.extend(renewals)).await {
                Ok(replies) => replies,
                Err(_) => renewals
                    .iter()
                    .map(|_| {
                        Err(Error::NodeTimeout {
                            node: node.name().to_owned(),
                            timeout,
                        })
                    })
                    .collect(),
            }
        }))
        .await;
        let mut tallies: Vec<(usize, usize, Option<Error>)> =
            renewals.iter().map(|_| (0, 0, None)).collect();
        for replies in per_node {
            for (tally, reply) in tallies.iter_mut().zip(replies) {
                match reply {
                    Ok(true) => tally.0 += 1,
                    Ok(false) => tally.1 += 1,
                    Err(e) => {
                        tally.2.get_or_insert(e);
                    }
                }
            }
        }
        tallies
            .into_iter()
            .map(|(extended, refused, error)| {
                (quorum::extension(self.len(), extended, refused), error)
            })
            .collect()
    }

    /// Subscribes to `channel` on every node that can notify. Best effort:
    /// a node that fails is left to the timed fallback.
    pub(crate) async fn subscribe(&self, channel: &str) -> Vec<Subscription> {
        let subscriptions =
            join_all((0..self.len()).map(|i| self.ask(i, |n| n.subscribe(channel)))).await;
        subscriptions
            .into_iter()
            .filter_map(|s| match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "no release notifications from a node");
                    None
                }
            })
            .collect()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The monotonic clock, as the core takes it. Tokio's clock, so that tests
/// of the in-memory backend can pause it.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
