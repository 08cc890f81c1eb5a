//! The history: every operation of every process, one JSON object per line,
//! stamped with the system-wide monotonic clock so that the lines of
//! different processes can be ordered against each other.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Nanoseconds on `CLOCK_MONOTONIC`: the same clock in every process of the
/// machine, never set back.
pub fn now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, [`now_ns`].
    pub t: u64,
    /// Who: a client process `c<i>.<incarnation>`, `store`, `nemesis` or `checker`.
    pub process: String,
    /// What.
    #[serde(flatten)]
    pub op: Op,
}

/// What happened. A lease is identified by its process and fence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The run's parameters (first line, by the checker).
    Meta {
        /// Redis nodes (1 = single server, more = Redlock).
        nodes: usize,
        /// Client processes contending at any time.
        clients: usize,
        /// The lock's TTL.
        ttl_ms: u64,
        /// How long after every fault has healed acquisitions must succeed again.
        settle_ms: u64,
        /// Nodes started without persistence.
        volatile: usize,
        /// What the clients contend for (absent in older histories: a lock).
        #[serde(default)]
        primitive: Primitive,
        /// A semaphore's permits (0 for the other primitives).
        #[serde(default)]
        permits: usize,
    },
    /// A client starts an acquire.
    AcquireInvoke,
    /// The acquire succeeded: a lease with this fence, valid until
    /// `valid_until`; `side` says whether it is exclusive (absent: it is).
    AcquireOk {
        fence: u64,
        valid_until: u64,
        #[serde(default, skip_serializing_if = "Side::is_exclusive")]
        side: Side,
    },
    /// A fair lock's waiter is about to queue (its next attempt, sent
    /// straight after, puts it in the queue or refreshes its entry).
    Queued,
    /// The acquire definitely did not take the lock (busy, or the wait ran out).
    AcquireFail { reason: String },
    /// The acquire failed with an error: the lock was not granted to us, but
    /// a key may linger on some node until its TTL.
    AcquireInfo { error: String },
    /// The library sent a renewal of the lease, decided when it had
    /// `valid_for_ns` of validity left (by its own clock).
    Renewing {
        fence: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valid_for_ns: Option<u64>,
    },
    /// A renewal came back: the lease is now valid until `valid_until`.
    Renewed { fence: u64, valid_until: u64 },
    /// The lease was reported lost (`Lease::lost` resolved before release).
    Lost { fence: u64 },
    /// The client read the resource under the lease: `value`, or `None` if
    /// the store refused the fence as stale.
    Read { fence: u64, value: Option<u64> },
    /// The client sends a write of `value` under the lease; it had checked
    /// the lease was held before its work (a pause may have come since).
    WriteInvoke { fence: u64, value: u64 },
    /// The store's answer to the write.
    WriteOk { fence: u64, accepted: bool },
    /// The client starts releasing the lease.
    ReleaseInvoke { fence: u64 },
    /// The release returned; `released` false = the key had already gone.
    /// `renewing` = `Client::renewing()` right after (must be 0).
    ReleaseOk {
        fence: u64,
        released: bool,
        renewing: usize,
    },
    /// The release returned an error; `renewing` as for [`Op::ReleaseOk`].
    ReleaseInfo {
        fence: u64,
        error: String,
        renewing: usize,
    },
    /// The store received a read (in arrival order): accepted unless a
    /// higher fence had been seen.
    StoreRead {
        client: String,
        fence: u64,
        value: u64,
        accepted: bool,
    },
    /// The store received a write (in arrival order).
    StoreWrite {
        client: String,
        fence: u64,
        value: u64,
        accepted: bool,
    },
    /// The nemesis starts a fault.
    FaultStart { fault: String, target: String },
    /// The nemesis heals a fault (instant faults have a start and an end at once).
    FaultEnd { fault: String, target: String },
    /// The clients are told to stop: the end of the last quiet period.
    Stop,
    /// After the run: the resource's final value.
    Final { value: u64 },
    /// After the run and a TTL's wait: lock keys still on a node (must be none).
    Leftover { node: usize, keys: Vec<String> },
    /// A client process ended: `clean` when it exited with status 0 after
    /// being told to stop, or was killed by the nemesis; `status` says how.
    Exited {
        client: String,
        status: String,
        clean: bool,
    },
}

/// What the clients contend for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Primitive {
    /// A plain lock: one holder.
    #[default]
    Lock,
    /// A fair lock: one holder, waiters served in arrival order.
    Fair,
    /// A semaphore: at most `Meta.permits` holders.
    Semaphore,
    /// A read-write lock: many readers or one writer.
    Rwlock,
}

impl Primitive {
    /// The name `--primitive` takes.
    pub fn name(self) -> &'static str {
        match self {
            Primitive::Lock => "lock",
            Primitive::Fair => "fair",
            Primitive::Semaphore => "semaphore",
            Primitive::Rwlock => "rwlock",
        }
    }

    /// Parses a `--primitive` value.
    pub fn parse(text: &str) -> Result<Primitive, String> {
        [
            Primitive::Lock,
            Primitive::Fair,
            Primitive::Semaphore,
            Primitive::Rwlock,
        ]
        .into_iter()
        .find(|p| p.name() == text)
        .ok_or_else(|| format!("unknown primitive {text:?}; known: lock, fair, semaphore, rwlock"))
    }
}

/// Which kind of lease an acquire granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Excludes every other lease: a lock's, a fair lock's, a writer's.
    #[default]
    Exclusive,
    /// A read-write lock's reader: excludes writers only, and carries the
    /// last write's fence.
    Read,
    /// A semaphore's permit: at most `Meta.permits` at once.
    Permit,
}

impl Side {
    fn is_exclusive(&self) -> bool {
        *self == Side::Exclusive
    }
}

/// Appends events to a history file, one `write` per line, so a process
/// killed mid-run leaves whole lines behind.
#[derive(Clone)]
pub struct Recorder {
    process: Arc<str>,
    file: Arc<Mutex<File>>,
}

impl Recorder {
    /// Appends to `path` (created if missing) as `process`.
    pub fn open(path: &Path, process: &str) -> std::io::Result<Recorder> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder {
            process: process.into(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Records `op` now.
    pub fn record(&self, op: Op) {
        self.record_at(now_ns(), op);
    }

    /// Records `op` at `t`.
    pub fn record_at(&self, t: u64, op: Op) {
        let event = Event {
            t,
            process: self.process.to_string(),
            op,
        };
        let mut line = serde_json::to_string(&event).expect("events serialize");
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // A failed history write makes the run unverifiable: stop loudly.
        file.write_all(line.as_bytes())
            .expect("cannot write the history file");
    }
}

/// Reads the history files, sorted by time. Only a file's last line may be
/// torn (its process killed mid-write; it is skipped): any other line that
/// does not parse is an error, so a history can never be checked half-read.
pub fn load(paths: &[impl AsRef<Path>]) -> std::io::Result<Vec<Event>> {
    let mut events = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let lines: Vec<String> = BufReader::new(File::open(path)?)
            .lines()
            .collect::<Result<_, _>>()?;
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<Event>(line) {
                Ok(event) => events.push(event),
                Err(_) if i + 1 == lines.len() => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} line {}: {e}", path.display(), i + 1),
                    ))
                }
            }
        }
    }
    events.sort_by_key(|e| e.t);
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_torn_last_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("baton-check-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c0.0.jsonl");
        let good = r#"{"t":2,"process":"c0.0","op":"acquire_invoke"}"#;
        let earlier = r#"{"t":1,"process":"c0.0","op":"stop"}"#;
        std::fs::write(&path, format!("{good}\n{earlier}\n{{\"t\":3,\"pro")).unwrap();
        let events = load(&[&path]).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].op, Op::Stop, "sorted by time");
        std::fs::write(&path, format!("{good}\nnot json\n{earlier}\n")).unwrap();
        let err = load(&[&path]).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
