//! Replica and AOF acknowledgement: the `WAIT` or `WAITAOF` pipelined
//! behind each write that makes a lease, the one parser of its reply, and
//! the check at connect that a server can give `WAITAOF` at all.
//!
//! A file of its own because the command, the reading of its reply and the
//! refusal messages must agree wherever they are used (a script call, a
//! renewal pipeline, the connect of one server and of a Cluster): written
//! once here, they cannot drift apart.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{RedisError, Value};

use crate::error::{Error, Result};

/// Replica acknowledgement (see
/// [`ClientBuilder::min_replicas`](crate::ClientBuilder::min_replicas)
/// and [`ClientBuilder::wait_aof`](crate::ClientBuilder::wait_aof)):
/// `WAIT replicas timeout`, or `WAITAOF 1 replicas timeout`, pipelined
/// behind each write that makes a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acknowledge {
    /// Replicas that must confirm (0: only the master's AOF, with `aof`).
    pub(crate) replicas: usize,
    pub(crate) timeout_ms: u64,
    /// `WAITAOF`: the master and the replicas must have fsynced the write
    /// to their append-only files, not only hold it in memory.
    pub(crate) aof: bool,
}

/// What the `WAIT` or `WAITAOF` behind a write said (see
/// [`confirmation`]).
#[derive(Debug, Clone)]
pub(crate) enum Confirmation {
    /// Who has the write: the master's append-only file (`None` for
    /// `WAIT`, which does not ask) and how many replicas.
    Counted {
        local: Option<bool>,
        replicas: usize,
    },
    /// The command failed: refused by an ACL, sent to a replica, unknown
    /// to the server, or `WAITAOF` with `appendonly no`.
    Failed(Arc<RedisError>),
}

/// With AOF acknowledgement on, refuses a server that cannot give it, at
/// connect rather than at every write: one without `WAITAOF` (`COMMAND
/// INFO WAITAOF` answers nil before Redis 7.2), or one whose `appendonly`
/// is off (`WAITAOF` with numlocal 1 then fails every call). A server that
/// refuses either question (an ACL) or does not answer in time is left to
/// the first write, whose failed `WAITAOF` says the same
/// ([`Error::AofUnavailable`], from `RedisNode::unconfirmed`).
pub(crate) async fn check_wait_aof<C: ConnectionLike + Clone>(
    conn: &C,
    name: &str,
    timeout: Duration,
    acknowledge: Option<Acknowledge>,
) -> Result<()> {
    if !acknowledge.is_some_and(|a| a.aof) {
        return Ok(());
    }
    let mut conn = conn.clone();
    let info = tokio::time::timeout(
        timeout,
        redis::cmd("COMMAND")
            .arg("INFO")
            .arg("WAITAOF")
            .query_async::<Vec<Value>>(&mut conn),
    )
    .await;
    match info {
        Ok(Ok(info)) if matches!(info.first(), None | Some(Value::Nil)) => {
            return Err(aof_unavailable(name, NO_WAITAOF));
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(node = %name, error = %e, "cannot ask for WAITAOF"),
        Err(_) => tracing::debug!(node = %name, "no answer asking for WAITAOF"),
    }
    let config = tokio::time::timeout(
        timeout,
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async::<std::collections::HashMap<String, String>>(&mut conn),
    )
    .await;
    match config {
        Ok(Ok(reply)) if reply.get("appendonly").is_some_and(|v| v == "no") => {
            Err(aof_unavailable(name, APPENDONLY_OFF))
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(node = %name, error = %e, "cannot read appendonly");
            Ok(())
        }
        Err(_) => {
            tracing::debug!(node = %name, "no answer reading appendonly");
            Ok(())
        }
    }
}

pub(crate) const NO_WAITAOF: &str =
    "the server has no WAITAOF command, which needs Redis >= 7.2 or Valkey";
pub(crate) const APPENDONLY_OFF: &str = "its append-only file is off (appendonly no): turn it on \
     (CONFIG SET appendonly yes) or leave wait_aof off";

pub(crate) fn aof_unavailable(node: &str, reason: &str) -> Error {
    Error::AofUnavailable {
        node: node.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `WAIT replicas timeout`: how many replicas have every write so far; or
/// `WAITAOF 1 replicas timeout`: whether the master's append-only file and
/// how many replicas' have fsynced every write so far.
pub(crate) fn wait_command(wait: Acknowledge) -> redis::Cmd {
    let mut cmd = if wait.aof {
        let mut cmd = redis::cmd("WAITAOF");
        cmd.arg(1);
        cmd
    } else {
        redis::cmd("WAIT")
    };
    cmd.arg(wait.replicas).arg(wait.timeout_ms);
    cmd
}

/// Reads the reply of [`wait_command`], the one parser of it (acquire,
/// raise and renewal batches alike): `WAIT`'s replica count, or
/// `WAITAOF`'s `[local, replicas]`. An error reply, or one of another
/// shape, is [`Confirmation::Failed`].
pub(crate) fn confirmation(wait: Acknowledge, reply: Value) -> Confirmation {
    let counted = reply.extract_error().and_then(|v| {
        Ok(if wait.aof {
            let (local, replicas) = redis::from_redis_value::<(i64, i64)>(v)?;
            (Some(local > 0), replicas)
        } else {
            (None, redis::from_redis_value::<i64>(v)?)
        })
    });
    match counted {
        Ok((local, replicas)) => Confirmation::Counted {
            local,
            replicas: replicas.max(0) as usize,
        },
        Err(e) => Confirmation::Failed(Arc::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one parser of `WAIT` and `WAITAOF` replies: counts, the
    /// master's fsync, and failures (an error reply, or a reply of the
    /// other command's shape) kept as failures, never as zero replicas.
    #[test]
    fn wait_and_waitaof_replies_are_read_by_one_parser() {
        let wait = Acknowledge {
            replicas: 1,
            timeout_ms: 100,
            aof: false,
        };
        let waitaof = Acknowledge { aof: true, ..wait };
        let counted = |c: Confirmation| match c {
            Confirmation::Counted { local, replicas } => Some((local, replicas)),
            Confirmation::Failed(_) => None,
        };
        assert_eq!(counted(confirmation(wait, Value::Int(2))), Some((None, 2)));
        assert_eq!(
            counted(confirmation(
                waitaof,
                Value::Array(vec![Value::Int(1), Value::Int(0)])
            )),
            Some((Some(true), 0))
        );
        assert_eq!(
            counted(confirmation(
                waitaof,
                Value::Array(vec![Value::Int(0), Value::Int(3)])
            )),
            Some((Some(false), 3))
        );
        assert_eq!(counted(confirmation(waitaof, Value::Int(1))), None);
        let refused = redis::parse_redis_value(
            b"-ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.\r\n",
        )
        .expect("an error reply");
        assert_eq!(counted(confirmation(waitaof, refused)), None);
    }
}
