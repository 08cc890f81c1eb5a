//! Fan-out: every operation goes to all nodes in parallel, each under its
//! own timeout, and the replies feed the pure decisions of
//! [`baton_core::quorum`].
//!
//! One server is the case N = 1 of the same code: one round trip, no extra
//! work. This module decides nothing itself; it only asks and counts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use baton_core::acquire::{Attempt, Reply, Request, Stragglers};
use baton_core::quorum::{self, Extension};
use baton_core::release::{Answer, Release};
use baton_core::vote::{Ballot, Found, Vote};
use baton_core::{Keys, Token};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::error::{Error, NodeError, NodeFailure, Result};
use crate::node::{BoxFuture, Node, Renewal};
use crate::wait::Subscription;

/// The configured nodes of a client and their per-node timeout.
pub(crate) struct Nodes {
    list: Vec<Arc<dyn Node>>,
    timeout: Duration,
}

/// Per-node replies to one extend: the core's vote, and who said what for
/// the error of an unknown verdict.
struct Tally {
    vote: Vote,
    refused: Vec<usize>,
    errors: Vec<(usize, Error)>,
}

/// What one acquire attempt came to, with the errors met on the way.
pub(crate) struct AttemptOutcome {
    /// The core's machine, decided ([`Attempt::poll_outcome`] is `Some`).
    pub(crate) attempt: Attempt,
    /// The nodes that failed, with their errors.
    pub(crate) errors: Vec<(usize, Error)>,
    /// The nodes where another holds the key.
    pub(crate) busy: Vec<usize>,
    /// Set once the lease of a won attempt is being released: a straggling
    /// request that lands after that takes its node back itself. `None`
    /// when no request was left out (one server's case): nobody to tell.
    pub(crate) ended: Option<Arc<AtomicBool>>,
}

/// A reply to one of an attempt's requests.
enum AttemptAnswer {
    Acquire(Result<Reply>),
    Raise(Result<bool>),
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

    /// One acquire attempt on every node, driven by the core's
    /// [`Attempt`]: it sends what the machine asks for (the acquires, then
    /// the raises that settle a fence) and feeds back what comes in, until
    /// the machine decides.
    ///
    /// Requests still out when the attempt is decided go the way the
    /// machine's [`Stragglers`] says: after a win they finish in the
    /// background, and one that lands after the lease's release began
    /// (`ended`, set before the release is sent) takes its node back, so no
    /// key of ours outlives the release.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        keys: &Arc<Keys>,
        token: &Token,
        ttl: Duration,
        grant: Option<&Arc<str>>,
    ) -> AttemptOutcome {
        let ttl_ms = ttl.as_millis() as u64;
        let mut attempt = Attempt::new(self.len(), ttl, now());
        let mut errors = Vec::new();
        let mut busy = Vec::new();
        let mut pending = InFlight::default();
        loop {
            while let Some(request) = attempt.poll_transmit() {
                pending.push(Box::pin(self.send(keys, token, ttl_ms, grant, request)));
            }
            if attempt.poll_outcome().is_some() {
                break;
            }
            let deadline = attempt.poll_timeout();
            let answer = tokio::select! {
                answer = pending.next() => answer,
                () = sleep_until_some(deadline) => None,
            };
            let at = now();
            match answer {
                Some((i, AttemptAnswer::Acquire(reply))) => {
                    let reply = reply.unwrap_or_else(|e| {
                        errors.push((i, e));
                        Reply::Failed
                    });
                    if matches!(reply, Reply::Busy { .. }) {
                        busy.push(i);
                    }
                    attempt.handle_reply(i, reply, at);
                }
                Some((i, AttemptAnswer::Raise(raised))) => {
                    attempt.handle_raise(i, matches!(raised, Ok(true)), at)
                }
                None => attempt.handle_timeout(at),
            }
        }
        let mut ended = None;
        if attempt.poll_stragglers() == Some(Stragglers::Finish) && !pending.is_empty() {
            let flag = Arc::new(AtomicBool::new(false));
            ended = Some(Arc::clone(&flag));
            let (nodes, keys, token, ended, attempt) = (
                Arc::clone(self),
                Arc::clone(keys),
                token.clone(),
                flag,
                attempt.clone(),
            );
            tokio::spawn(async move {
                while let Some((i, answer)) = pending.next().await {
                    let AttemptAnswer::Acquire(Ok(reply)) = answer else {
                        continue;
                    };
                    if attempt.take_back_straggler(reply, ended.load(Ordering::SeqCst)) {
                        nodes.take_back(&keys, &token, &[i]).await;
                    }
                }
            });
        }
        AttemptOutcome {
            attempt,
            errors,
            busy,
            ended,
        }
    }

    /// Sends one of an attempt's requests, under the node timeout, as a
    /// `'static` future (so that stragglers can finish in the background).
    fn send(
        self: &Arc<Self>,
        keys: &Arc<Keys>,
        token: &Token,
        ttl_ms: u64,
        grant: Option<&Arc<str>>,
        request: Request,
    ) -> impl Future<Output = (usize, AttemptAnswer)> + Send + 'static {
        let (nodes, keys, token) = (Arc::clone(self), Arc::clone(keys), token.clone());
        let grant = grant.cloned();
        async move {
            match request {
                Request::Acquire { node } => {
                    let reply = nodes
                        .ask(node, |n| n.acquire(&keys, &token, ttl_ms, grant.as_deref()))
                        .await;
                    (node, AttemptAnswer::Acquire(reply))
                }
                Request::Raise { node, fence } => {
                    let raised = nodes.ask(node, |n| n.raise(&keys, &token, fence.0)).await;
                    (node, AttemptAnswer::Raise(raised))
                }
            }
        }
    }

    /// Releases a held lease on every node and announces it. `Ok(true)` if
    /// a quorum of the configured nodes deleted our key, `Ok(false)` if too
    /// many found it gone or another's for that, an error if too many failed
    /// to say. `held`: the lease was valid when the release was sent, so a
    /// key that a repeated release found gone was ours (see
    /// [`Found::Unclear`]).
    ///
    /// Decided as soon as the replies allow: a slow node's release finishes
    /// in the background (under the node timeout), delaying nobody.
    pub(crate) async fn release(
        self: &Arc<Self>,
        keys: &Arc<Keys>,
        token: &Token,
        held: bool,
    ) -> Result<bool> {
        let release = Release::on_every_node(self.len(), held);
        let mut releasing = Releasing::new(self, keys, token, release, true);
        let verdict = loop {
            if let Some(verdict) = releasing.release.poll_verdict() {
                break verdict;
            }
            if !releasing.step().await {
                unreachable!("with every reply in, a release's verdict is certain")
            }
        };
        let error = (verdict == Extension::Unknown).then(|| releasing.errors.swap_remove(0));
        releasing.finish_in_background();
        match verdict {
            Extension::Extended => Ok(true),
            Extension::Refused => Ok(false),
            Extension::Unknown => Err(error.expect("an unknown verdict has a failure")),
        }
    }

    /// Takes back what a lost attempt may have left on `which` nodes,
    /// without waking waiters (the real holder, if any, still holds). True
    /// if every node answered, so none can still hold the token.
    pub(crate) async fn take_back(
        self: &Arc<Self>,
        keys: &Arc<Keys>,
        token: &Token,
        which: &[usize],
    ) -> bool {
        let release = Release::new(self.len(), which, false);
        let mut releasing = Releasing::new(self, keys, token, release, false);
        while releasing.step().await {}
        releasing.release.all_answered()
    }

    /// Extends each renewal on every node (one pipeline per node), each
    /// under the node timeout. Per renewal: the quorum's verdict, and for an
    /// unknown one the error that explains it.
    pub(crate) async fn extend(
        &self,
        name_of: impl Fn(usize) -> String,
        renewals: &[Renewal<'_>],
    ) -> Vec<(Extension, Option<Error>)> {
        let timeout = self.timeout;
        let n = self.len();
        let mut per_node: FuturesUnordered<_> = self
            .list
            .iter()
            .enumerate()
            .map(|(i, node)| async move {
                let replies = match tokio::time::timeout(timeout, node.extend(renewals)).await {
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
                };
                (i, replies)
            })
            .collect();
        let mut tallies: Vec<Tally> = renewals
            .iter()
            .map(|_| Tally {
                vote: Vote::new(n),
                refused: Vec::new(),
                errors: Vec::new(),
            })
            .collect();
        while let Some((i, replies)) = per_node.next().await {
            for (tally, reply) in tallies.iter_mut().zip(replies) {
                match reply {
                    Ok(true) => tally.vote.handle(Ballot::Yes),
                    Ok(false) => {
                        tally.vote.handle(Ballot::No);
                        tally.refused.push(i);
                    }
                    Err(e) => {
                        tally.vote.handle(Ballot::Failed);
                        tally.errors.push((i, e));
                    }
                }
            }
            if tallies.iter().all(|t| t.vote.poll_verdict().is_some()) {
                // A slow node's pipeline is not waited for once every
                // verdict is certain. If its extends land, they reset keys
                // that still hold our tokens to the same TTLs, behind what
                // went before on that node's one connection.
                break;
            }
        }
        tallies
            .into_iter()
            .enumerate()
            .map(|(r, t)| {
                // A node that never answered counts as failed.
                let verdict = t.vote.verdict();
                let error = (verdict == Extension::Unknown)
                    .then(|| self.no_quorum(&name_of(r), t.errors, t.refused, t.vote.yes()));
                (verdict, error)
            })
            .collect()
    }

    /// The error for an operation that failures made impossible to settle:
    /// on one node, its own error; on several, which node said what.
    pub(crate) fn no_quorum(
        &self,
        name: &str,
        mut errors: Vec<(usize, Error)>,
        refused: Vec<usize>,
        agreed: usize,
    ) -> Error {
        if self.len() == 1 && !errors.is_empty() {
            return errors.swap_remove(0).1;
        }
        let mut failures: Vec<(usize, NodeFailure)> = refused
            .into_iter()
            .map(|i| (i, NodeFailure::TakenByAnother))
            .chain(
                errors
                    .into_iter()
                    .map(|(i, e)| (i, NodeFailure::Error(Box::new(e)))),
            )
            .collect();
        failures.sort_by_key(|(i, _)| *i);
        Error::NoQuorum {
            name: name.to_owned(),
            acquired: agreed,
            quorum: quorum::quorum(self.len()),
            nodes_total: self.len(),
            nodes: failures
                .into_iter()
                .map(|(i, failure)| NodeError {
                    node: self.name(i).to_owned(),
                    failure,
                })
                .collect(),
        }
    }

    /// Subscribes to the lock's release channels (one; a multi-lock's, one
    /// per name, heard as one per node) on every node that can notify.
    /// Best effort: a node that fails is left to the timed fallback.
    ///
    /// Returns once a quorum of nodes has subscribed (every holder's quorum
    /// then shares a node with ours, so its release is heard) or every node
    /// has answered; slower nodes' subscriptions arrive on the second value
    /// as they come, so a slow node delays no waiter.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        channels: &Arc<[Arc<str>]>,
    ) -> (Vec<Subscription>, Option<LateSubscriptions>) {
        let mut pending: FuturesUnordered<_> = (0..self.len())
            .map(|i| {
                let (nodes, channels) = (Arc::clone(self), Arc::clone(channels));
                async move { nodes.ask(i, |n| subscribe_all(n, channels)).await }
            })
            .collect();
        let mut subscriptions = Vec::new();
        let need = quorum::quorum(self.len());
        while subscriptions.len() < need {
            match pending.next().await {
                None => return (subscriptions, None),
                Some(Ok(Some(s))) => subscriptions.push(s),
                Some(Ok(None)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "no release notifications from a node"),
            }
        }
        if pending.is_empty() {
            return (subscriptions, None);
        }
        let (late, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(reply) = pending.next().await {
                if let Ok(Some(s)) = reply {
                    if late.send(s).is_err() {
                        return; // the waiter is gone
                    }
                }
            }
        });
        (subscriptions, Some(receiver))
    }

    /// Inspects the lock on node `i` (under the node timeout).
    pub(crate) async fn inspect(&self, i: usize, keys: &Keys) -> Result<crate::node::Inspection> {
        self.ask(i, |n| n.inspect(keys)).await
    }

    /// Force-releases the lock on node `i` (under the node timeout).
    pub(crate) async fn force_release(&self, i: usize, keys: &Keys) -> Result<Option<Vec<u8>>> {
        self.ask(i, |n| n.force_release(keys)).await
    }

    /// Node `i`'s name (`host:port`).
    pub(crate) fn name(&self, i: usize) -> &str {
        self.list[i].name()
    }

    /// The server answering for `keys` on node `i` now (see [`Node::server_for`]).
    pub(crate) async fn server_for(&self, i: usize, keys: &Keys) -> String {
        self.list[i].server_for(keys).await
    }
}

/// Node `node`'s subscriptions to every one of `channels`, as one (`None`
/// if it cannot notify).
fn subscribe_all(
    node: &dyn Node,
    channels: Arc<[Arc<str>]>,
) -> crate::node::BoxFuture<'_, Result<Option<Subscription>>> {
    Box::pin(async move {
        let each = channels.iter().map(|channel| node.subscribe(channel));
        let mut each = futures_util::future::try_join_all(each).await?.into_iter();
        let Some(first) = each.next().flatten() else {
            return Ok(None);
        };
        Ok(each.try_fold(first, |all, one| one.map(|one| all.and(one))))
    })
}

/// A release or take-back in progress: the core's [`Release`] machine and
/// the requests it asked for, as `'static` futures so that what is left
/// after the verdict can finish in the background, through the machine
/// (a timed-out node is still asked again).
struct Releasing {
    nodes: Arc<Nodes>,
    keys: Arc<Keys>,
    token: Token,
    announce: bool,
    release: Release,
    pending: InFlight<BoxFuture<'static, (usize, bool, Result<Found>)>>,
    /// The nodes' final failures, in the order they came.
    errors: Vec<Error>,
}

impl Releasing {
    fn new(
        nodes: &Arc<Nodes>,
        keys: &Arc<Keys>,
        token: &Token,
        release: Release,
        announce: bool,
    ) -> Releasing {
        Releasing {
            nodes: Arc::clone(nodes),
            keys: Arc::clone(keys),
            token: token.clone(),
            announce,
            release,
            pending: InFlight::default(),
            errors: Vec::new(),
        }
    }

    /// Sends what the machine asks for, then feeds it the next answer.
    /// False once nothing is left in flight.
    async fn step(&mut self) -> bool {
        while let Some(request) = self.release.poll_transmit() {
            let (nodes, keys, token) = (
                Arc::clone(&self.nodes),
                Arc::clone(&self.keys),
                self.token.clone(),
            );
            let announce = self.announce;
            // A second try goes on the same connection, behind the first, so
            // when it answers the first has been applied or dropped: a
            // take-back that answered leaves no release of its token in flight.
            self.pending.push(Box::pin(async move {
                let found = nodes
                    .ask(request.node, |n| n.release(&keys, &token, announce))
                    .await;
                (request.node, request.again, found)
            }));
        }
        let Some((node, again, found)) = self.pending.next().await else {
            return false;
        };
        let answer = match found {
            Ok(found) => Answer::Found(found),
            Err(Error::NodeTimeout { .. }) if !again => Answer::TimedOut,
            Err(e) => {
                tracing::debug!(error = %e, "release failed on a node");
                self.errors.push(e);
                Answer::Failed
            }
        };
        self.release.handle_answer(node, answer);
        true
    }

    /// Lets the nodes still to answer finish on their own.
    fn finish_in_background(mut self) {
        if !self.release.is_finished() {
            tokio::spawn(async move { while self.step().await {} });
        }
    }
}

/// Subscriptions of slow nodes, arriving after [`Nodes::subscribe`] returned.
pub(crate) type LateSubscriptions = tokio::sync::mpsc::UnboundedReceiver<Subscription>;

/// Drives a fan-out's remaining requests to completion on their own,
/// once the caller has its answer.
pub(crate) fn finish_in_background<F>(mut rest: FuturesUnordered<F>)
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    if !rest.is_empty() {
        tokio::spawn(async move { while rest.next().await.is_some() {} });
    }
}

/// The requests of one operation still out, answered in any order.
///
/// The first is held on its own and only a second one makes a
/// `FuturesUnordered`, whose queue costs two allocations to build and one
/// per request: one server's operations (the common case) have one request
/// out at a time.
pub(crate) struct InFlight<F> {
    one: Option<F>,
    more: Option<FuturesUnordered<F>>,
}

impl<F> Default for InFlight<F> {
    fn default() -> Self {
        InFlight {
            one: None,
            more: None,
        }
    }
}

impl<F: Future + Unpin> InFlight<F> {
    pub(crate) fn push(&mut self, request: F) {
        if self.one.is_none() {
            self.one = Some(request);
        } else {
            self.more
                .get_or_insert_with(FuturesUnordered::new)
                .push(request);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.one.is_none() && self.more.as_ref().is_none_or(FuturesUnordered::is_empty)
    }

    /// The next answer, or `None` once nothing is out.
    pub(crate) async fn next(&mut self) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            if let Some(request) = &mut self.one {
                if let Poll::Ready(answer) = Pin::new(request).poll(cx) {
                    self.one = None;
                    return Poll::Ready(Some(answer));
                }
            }
            if let Some(more) = &mut self.more {
                if let Poll::Ready(Some(answer)) = more.poll_next_unpin(cx) {
                    return Poll::Ready(Some(answer));
                }
            }
            if self.is_empty() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The monotonic clock, as the core takes it. Tokio's clock, so that tests
/// of the in-memory backend can pause it.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
