//! Renewal batches of a [`RedisNode`]: one pipeline per server (per
//! master in a Cluster), the native extend (`SET … IFEQ … PX`) where the
//! server has it, and the commands that came back `NOSCRIPT` or refused
//! sent again as the script.
//!
//! A path of its own beside the single script calls, hence its own file; a
//! child of the script transport so that it reaches the node's state (what
//! it learnt about the native extend, its acknowledgement) without that
//! state being opened to the rest of the crate.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use baton_core::{scripts, Kind};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

use super::{invocation, on_lock_keys, redis_error, sized_command, Decimal, RedisNode};
use crate::acknowledge::{confirmation, wait_command, Confirmation};
use crate::error::Result;
use crate::node::{Link, Renewal};

impl<C: Link> RedisNode<C> {
    /// A renewal batch as one pipeline per cluster master (by the link's
    /// slot table; per slot where it knows none), sent concurrently; one
    /// pipeline for one server. Results in the order of `renewals`.
    pub(super) async fn extend_per_slot(&self, renewals: &[Renewal<'_>]) -> Vec<Result<bool>> {
        if !C::CLUSTER {
            return self.extend_batch(renewals).await;
        }
        let mut slots: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for (i, (keys, _, _)) in renewals.iter().enumerate() {
            let slot = baton_core::name::hash_slot(keys.lock.as_bytes());
            let shard = self
                .conn
                .master_of_slot(slot)
                .unwrap_or_else(|| format!("slot {slot}"));
            slots.entry(shard).or_default().push(i);
        }
        if slots.len() <= 1 {
            return self.extend_batch(renewals).await;
        }
        let batches = slots.into_values().map(|which| async move {
            let batch: Vec<Renewal<'_>> = which.iter().map(|&i| renewals[i]).collect();
            (which, self.extend_batch(&batch).await)
        });
        let mut out: Vec<Option<Result<bool>>> = renewals.iter().map(|_| None).collect();
        for (which, results) in futures_util::future::join_all(batches).await {
            for (i, result) in which.into_iter().zip(results) {
                out[i] = Some(result);
            }
        }
        out.into_iter()
            .map(|r| r.expect("every renewal is in one slot's batch"))
            .collect()
    }

    /// One renewal pipeline. On one server it uses the native extend when
    /// the server has not refused it (`SET key token IFEQ token PX ttl`:
    /// token-checked and atomic like the script, never creating a key,
    /// about a quarter of the script's server time), else the extend
    /// script. A cluster's renewals stay scripts: its redirect handling
    /// resends scripts only.
    async fn extend_batch(&self, renewals: &[Renewal<'_>]) -> Vec<Result<bool>> {
        let ttls: Vec<Decimal> = renewals.iter().map(|r| Decimal::new(r.2)).collect();
        let native = !C::CLUSTER && !self.native_extend_refused.load(Ordering::Relaxed);
        let build = |form: ExtendForm, which: &[usize]| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in which {
                let (keys, token, _) = renewals[i];
                let (script, fair) = extend_script(keys.kind);
                let ttl = ttls[i].as_str();
                let all = [token.as_str(), ttl, "fair"];
                let args = &all[..if fair { 3 } else { 2 }];
                pipe.add_command(match (form, keys.kind) {
                    (ExtendForm::Native, Kind::Lock) => {
                        native_extend(&keys.lock, token.as_str(), ttl)
                    }
                    // Permits and fair locks have no native form: their
                    // script, by SHA first.
                    (ExtendForm::Native, _) => {
                        on_lock_keys(keys, |locks| invocation(script, true, locks, args))
                    }
                    (ExtendForm::Script { use_sha }, _) => {
                        on_lock_keys(keys, |locks| invocation(script, use_sha, locks, args))
                    }
                });
            }
            if let Some(wait) = self.acknowledge {
                pipe.add_command(wait_command(wait));
            }
            pipe
        };
        let first = if native {
            ExtendForm::Native
        } else {
            ExtendForm::Script { use_sha: true }
        };
        let waits = usize::from(self.acknowledge.is_some());
        let all: Vec<usize> = (0..renewals.len()).collect();
        let mut sent = self
            .run_pipeline(build(first, &all), all.len() + waits)
            .await;
        if matches!(&sent, Err(e) if e.is_connection_dropped()) {
            // Extends are safe to repeat: send again on a fresh connection.
            sent = self
                .run_pipeline(build(first, &all), all.len() + waits)
                .await;
        }
        let mut replies = match sent {
            Ok(replies) => replies,
            Err(e) => return all.iter().map(|_| Err(self.shared_error(&e))).collect(),
        };
        let mut confirmed = self.confirmed_by(waits, &mut replies);
        // Redis does not fall back to EVAL inside a pipeline: resend the
        // commands that came back NOSCRIPT as EVAL (which loads the script),
        // and those a server without the native extend refused (it changed
        // nothing: a syntax error is refused before it runs).
        let is_native = |i: usize| native && renewals[i].0.kind == Kind::Lock;
        let missing: Vec<usize> = all
            .into_iter()
            .filter(|&i| match &replies[i] {
                Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript) => true,
                Value::ServerError(e) if is_native(i) && refuses_native_extend(e) => {
                    if !self.native_extend_refused.swap(true, Ordering::Relaxed) {
                        tracing::debug!(node = %self.name, error = ?e, "no native extend (SET … IFEQ): renewing with the script");
                    }
                    true
                }
                _ => false,
            })
            .collect();
        let mut out: Vec<Result<bool>> = replies
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                if is_native(i) {
                    self.parse_native_extend(value)
                } else {
                    self.parse_extend(value)
                }
            })
            .collect();
        if !missing.is_empty() {
            match self
                .run_pipeline(
                    build(ExtendForm::Script { use_sha: false }, &missing),
                    missing.len() + waits,
                )
                .await
            {
                Ok(mut again) => {
                    confirmed = self.confirmed_by(waits, &mut again);
                    for (i, value) in missing.into_iter().zip(again) {
                        out[i] = self.parse_extend(value);
                    }
                }
                Err(e) => {
                    for i in missing {
                        out[i] = Err(self.shared_error(&e));
                    }
                }
            }
        }
        // An extend the replicas did not confirm does not count (a refusal
        // still does: the key is not ours, whatever the replicas have).
        if let Some(Confirmation::Failed(e)) = &confirmed {
            tracing::warn!(node = %self.name, error = %e, "WAIT/WAITAOF failed: renewals cannot be confirmed");
        }
        for reply in out.iter_mut().filter(|r| matches!(r, Ok(true))) {
            if let Some(fewer) = self.unconfirmed(confirmed.as_ref()) {
                *reply = Err(fewer);
            }
        }
        out
    }

    /// Takes the `WAIT`/`WAITAOF` reply off the end of a pipeline's
    /// replies, when one was sent.
    fn confirmed_by(&self, waits: usize, replies: &mut Vec<Value>) -> Option<Confirmation> {
        let wait = self.acknowledge.filter(|_| waits > 0)?;
        Some(confirmation(wait, replies.pop()?))
    }

    async fn run_pipeline(
        &self,
        pipe: redis::Pipeline,
        expected: usize,
    ) -> std::result::Result<Vec<Value>, Arc<RedisError>> {
        let mut conn = self.connection().await.map_err(Arc::new)?;
        match pipe.query_async::<Vec<Value>>(&mut conn).await {
            Ok(replies) if replies.len() == expected => Ok(replies),
            Ok(_) => Err(Arc::new(RedisError::from((
                ErrorKind::Parse,
                "pipeline reply count mismatch",
            )))),
            Err(e) => Err(Arc::new(e)),
        }
    }

    /// `SET … IFEQ` answers `OK` when the key held our token (and now
    /// expires in the TTL), nil when it did not (nothing changed).
    fn parse_native_extend(&self, value: Value) -> Result<bool> {
        match value.extract_error() {
            Ok(Value::Okay) => Ok(true),
            Ok(Value::Nil) => Ok(false),
            Ok(other) => Err(redis_error(
                &self.name,
                RedisError::from((
                    ErrorKind::Parse,
                    "unexpected reply to SET … IFEQ",
                    format!("{other:?}"),
                )),
            )),
            Err(e) => Err(redis_error(&self.name, e)),
        }
    }

    fn parse_extend(&self, value: Value) -> Result<bool> {
        value
            .extract_error()
            .and_then(|v| Ok(redis::from_redis_value::<i64>(v)?))
            .map(|n| n == 1)
            .map_err(|e| redis_error(&self.name, e))
    }
}

/// The extend script for a lease of `kind`, and whether it is told the
/// lock is fair.
fn extend_script(kind: Kind) -> (&'static scripts::Script, bool) {
    match kind {
        Kind::Lock | Kind::Write { .. } | Kind::Multi => (&scripts::EXTEND, false),
        Kind::Fair { .. } => (&scripts::EXTEND, true),
        Kind::Semaphore { .. } | Kind::Read => (&scripts::PERMIT_EXTEND, false),
    }
}

/// How a renewal pipeline extends each lease.
#[derive(Clone, Copy)]
enum ExtendForm {
    /// `SET key token IFEQ token PX ttl` (Valkey ≥ 8.1).
    Native,
    /// The extend script, by SHA or (after `NOSCRIPT`) by source.
    Script { use_sha: bool },
}

/// The native extend: sets the key to the token it already holds, with a
/// new expiry, only if it holds that token.
fn native_extend(key: &str, token: &str, ttl_ms: &str) -> redis::Cmd {
    sized_command(["SET", key, token, "IFEQ", token, "PX", ttl_ms].into_iter())
}

/// Whether a server refused `SET … IFEQ` for want of the option: a
/// syntax error, which changed nothing. (An ACL user that may run Baton
/// at all may `SET`: the acquire script calls it.)
fn refuses_native_extend(e: &redis::ServerError) -> bool {
    e.to_string().contains("syntax error")
}
