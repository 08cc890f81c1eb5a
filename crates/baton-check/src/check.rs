//! The checks: a pure function from a history (see [`crate::history`]) to a
//! [`Report`]. No I/O, no clock.
//!
//! # Leases and their validity windows
//!
//! A lease is identified by the process and fence of its
//! [`Op::AcquireOk`]; its later events (renewals, loss, reads, writes,
//! release) carry the same process and fence, and the store's events carry
//! the process as `client`. The *validity window* of a lease is
//! `[AcquireOk.t, end]`, where `end` is the earliest of
//!
//! - its [`Op::Lost`] (if any),
//! - its [`Op::ReleaseInvoke`] (if any),
//! - the latest `valid_until` it was given: the maximum over its
//!   `AcquireOk.valid_until` and every [`Op::Renewed`]`.valid_until`.
//!
//! A window whose end is not after its start (the lease had already expired
//! when the client learnt of it) is *empty*: it never overlaps anything.
//!
//! # The checks
//!
//! 1. **fences** — (a) the store's accepted writes have strictly increasing
//!    fences, in arrival order; (b) fences are issued in real-time order:
//!    if lease A was acquired (`AcquireOk.t`) before lease B's acquire was
//!    invoked (the `AcquireInvoke` of B's process answered by B's
//!    `AcquireOk`), then B's fence is greater than A's. Part (b) holds only
//!    if no node lost its data: it is not enforced for a pair when a
//!    `kill-volatile` fault started after A's acquire was invoked and before
//!    B's `AcquireOk` (such regressions are counted, outside
//!    the stated assumptions).
//!    One violation per offending write (a) or per offending lease B (b).
//! 2. **exclusion** — no two validity windows overlap (touching endpoints
//!    is fine). One violation per window that begins while an earlier one
//!    is still open, reported with the latest-ending such earlier window.
//! 3. **stale writes** — a write is *lapsed* if it reached the store after
//!    its lease's window ended. A lapsed write must be rejected if any
//!    accepted store event (read or write) with a greater fence reached the
//!    store before it: a later holder had fenced it out. A lapsed write that
//!    no later holder had fenced out may be accepted (nothing was lost:
//!    check 4 confirms it). Reads that reached the store after their
//!    window are counted (stale reads), not as violations.
//! 4. **no lost update** — the accepted writes' values, in arrival order,
//!    are 1, 2, 3, … (each the previous plus one), and `Final.value` is the
//!    number of accepted writes. One violation per write that is not its
//!    predecessor plus one, one for a wrong or missing [`Op::Final`].
//! 5. **lease hygiene** — (a) every [`Op::ReleaseOk`] / [`Op::ReleaseInfo`]
//!    reports `renewing == 0`; (b) no [`Op::Renewing`] of a lease comes after
//!    that lease's [`Op::Lost`], its [`Op::ReleaseInvoke`] (a client's
//!    runtime is single-threaded and the release stops renewal before it
//!    yields), or its deadline as known then (plus the drift allowance). One violation per
//!    offending event.
//! 6. **nothing left** — every key of every [`Op::Leftover`] is a violation
//!    (the runner scans every node, reporting an empty list when clean);
//!    fewer scanned nodes than `Meta.nodes` is one more violation.
//! 7. **liveness** — faults are the intervals from each
//!    [`Op::FaultStart`] to the matching [`Op::FaultEnd`] (same fault and
//!    target; an unmatched start lasts until [`Op::Stop`]). The quiet
//!    periods are the maximal intervals of `[Meta.t, Stop.t]` during which no
//!    fault is active (an instant fault, starting and ending at once, splits
//!    a period). Each quiet period is checked from `settle_ms` after its
//!    start to its end; if that part is at least `ttl_ms` long it must
//!    contain an [`Op::AcquireOk`], otherwise the period is skipped. One
//!    violation per checked period without an acquisition; a history
//!    without `Meta` or `Stop` cannot be checked and is one violation.
//! 8. **clients** — every client process ran until told to stop (or was
//!    killed by the nemesis) and exited cleanly ([`Op::Exited`]).
//! 9. **queue order** (fair locks, `Meta.primitive = fair`) — if waiter A
//!    last queued ([`Op::Queued`]) more than a TTL before B's acquire was
//!    invoked, B is not served before A, for every such pair with no fault
//!    active from A's queuing to B's grant. One violation per pair.
//!
//! Other primitives change what checks 1 and 2 demand, by each lease's
//! `side` ([`Op::AcquireOk`]): a read-write lock's reader may overlap other
//! readers (never a writer), and carries the last write's fence, which may
//! equal an earlier lease's but never be below it; a semaphore's permits may
//! overlap, at most `Meta.permits` at once.
//!
//! Times in messages are seconds since `Meta.t` (or, without `Meta`, since
//! the first event), with millisecond precision: `12.345s`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::history::Event;
#[cfg(doc)]
use crate::history::Op;

use digest::History;

mod digest;
mod exclusion;
mod fences;
mod hygiene;
mod liveness;
mod order;
mod teardown;
mod writes;

/// How many example messages a check keeps.
pub const MAX_EXAMPLES: usize = 5;

/// The outcome of every check on one history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One result per check, in the order of the module documentation.
    pub checks: Vec<CheckResult>,
    /// Client operations by kind (`acquire_ok`, `acquire_fail`, `lost`,
    /// `write_accepted`, `release_ok`, `renewing`, …).
    pub ops: BTreeMap<String, usize>,
    /// Faults started, by kind (`kill`, `pause`, …).
    pub faults: BTreeMap<String, usize>,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The check's name, e.g. `"exclusion"`.
    pub name: &'static str,
    /// How many offences were found (0 = the check passed).
    pub violations: usize,
    /// Human-readable descriptions of the first [`MAX_EXAMPLES`] offences.
    pub examples: Vec<String>,
    /// What the check counted on the way, in the order [`CheckResult::note`]
    /// shows them.
    pub counts: Vec<Count>,
}

/// One thing a check counted: what, and how many (`None` when the history
/// does not say, e.g. no final value was recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// What was counted, e.g. `"accepted writes"`.
    pub what: &'static str,
    /// How many.
    pub value: Option<u64>,
}

impl CheckResult {
    fn new(name: &'static str) -> CheckResult {
        CheckResult {
            name,
            violations: 0,
            examples: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Records a count.
    fn count(&mut self, what: &'static str, value: impl TryInto<u64>) {
        let value = value.try_into().ok();
        self.counts.push(Count { what, value });
    }

    /// Records a count only when it is not zero (an anomaly worth a word).
    fn count_if_any(&mut self, what: &'static str, value: usize) {
        if value > 0 {
            self.count(what, value);
        }
    }

    /// The count of `what`, if the check recorded it (and it is known).
    pub fn counted(&self, what: &str) -> Option<u64> {
        self.counts
            .iter()
            .find(|c| c.what == what)
            .and_then(|c| c.value)
    }

    /// The counts as one line: `what: n; what: n` (`missing` for an unknown
    /// value).
    pub fn note(&self) -> String {
        let shown: Vec<String> = self
            .counts
            .iter()
            .map(|c| match c.value {
                Some(n) => format!("{}: {n}", c.what),
                None => format!("{}: missing", c.what),
            })
            .collect();
        shown.join("; ")
    }

    /// Counts one offence; `message` is built only if it is kept.
    fn violation(&mut self, message: impl FnOnce() -> String) {
        self.violations += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(message());
        }
    }

    /// Whether the check passed.
    pub fn ok(&self) -> bool {
        self.violations == 0
    }
}

impl Report {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(CheckResult::ok)
    }

    /// The result of the check called `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// A plain-text summary: a header, one row per check (number, name,
    /// violations, note), then one line of client operations and one of
    /// faults. Every line ends with a newline.
    pub fn table(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .chain(["check".len()])
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>2}  {:<width$}  {:>10}  note",
            "#", "check", "violations"
        );
        for (i, c) in self.checks.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:>2}  {:<width$}  {:>10}  {}",
                i + 1,
                c.name,
                c.violations,
                c.note()
            );
        }
        let _ = writeln!(out, "ops: {}", counts(&self.ops));
        let _ = writeln!(out, "faults: {}", counts(&self.faults));
        out
    }
}

/// `a=1, b=2`, or `none`.
fn counts(map: &BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs every check on `events` (any order: they are ordered by `t`,
/// keeping the given order among equal times).
pub fn check(events: &[Event]) -> Report {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.t);
    let h = History::new(&sorted);
    Report {
        checks: vec![
            fences::fences(&h),
            exclusion::exclusion(&h),
            writes::stale_writes(&h),
            writes::no_lost_update(&h),
            hygiene::lease_hygiene(&h),
            teardown::nothing_left(&h),
            liveness::liveness(&h),
            teardown::clients(&h),
            order::queue_order(&h),
        ],
        ops: h.ops.clone(),
        faults: h.faults.clone(),
    }
}

#[cfg(test)]
mod tests;
