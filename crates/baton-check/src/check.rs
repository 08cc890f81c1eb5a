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
//!    B's `AcquireOk` (such regressions are reported in the note, outside
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
//!    window are counted in the note (stale reads), not as violations.
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
//!
//! Times in messages are seconds since `Meta.t` (or, without `Meta`, since
//! the first event), with millisecond precision: `12.345s`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::history::{Event, Op};

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
    /// One line of relevant counts.
    pub note: String,
}

impl CheckResult {
    fn new(name: &'static str) -> CheckResult {
        CheckResult {
            name,
            violations: 0,
            examples: Vec::new(),
            note: String::new(),
        }
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
                c.note
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
            fences(&h),
            exclusion(&h),
            stale_writes(&h),
            no_lost_update(&h),
            lease_hygiene(&h),
            nothing_left(&h),
            liveness(&h),
            clients(&h),
        ],
        ops: h.ops.clone(),
        faults: h.faults.clone(),
    }
}

/// The run's parameters, from [`Op::Meta`].
#[derive(Debug, Clone, Copy)]
struct Meta {
    t: u64,
    nodes: usize,
    ttl_ns: u64,
    settle_ns: u64,
}

/// One lease, from its `AcquireOk` and the events of the same process and
/// fence after it.
#[derive(Debug)]
struct Lease<'a> {
    process: &'a str,
    fence: u64,
    /// The `AcquireInvoke` this `AcquireOk` answered.
    invoked: Option<u64>,
    acquired: u64,
    /// The latest `valid_until` given (acquire or renewals).
    valid_until: u64,
    /// The first `Lost`.
    lost: Option<u64>,
    /// The first `ReleaseInvoke`.
    release_invoked: Option<u64>,
    /// The first `ReleaseOk` / `ReleaseInfo`.
    released: Option<u64>,
}

impl Lease<'_> {
    /// The end of the validity window.
    fn end(&self) -> u64 {
        [self.lost, self.release_invoked]
            .into_iter()
            .flatten()
            .fold(self.valid_until, u64::min)
    }

    /// Whether the window has no extent (never overlaps anything).
    fn empty(&self) -> bool {
        self.end() <= self.acquired
    }
}

/// A store event, in arrival order.
#[derive(Debug)]
struct StoreOp<'a> {
    t: u64,
    client: &'a str,
    fence: u64,
    value: u64,
    accepted: bool,
    write: bool,
    /// The lease it belongs to, if the history has it.
    lease: Option<usize>,
}

/// The history digested for the checks.
struct History<'a> {
    meta: Option<Meta>,
    /// The origin of the times in messages.
    t0: u64,
    /// The first `Stop`.
    stop: Option<u64>,
    /// In `AcquireOk` order.
    leases: Vec<Lease<'a>>,
    store: Vec<StoreOp<'a>>,
    /// `Renewing` events: time, lease, and its `valid_until` at that time.
    renewings: Vec<(u64, usize, u64)>,
    /// `ReleaseOk` / `ReleaseInfo`: time, process, fence, `renewing`.
    releases: Vec<(u64, &'a str, u64, usize)>,
    /// Lease events (after `AcquireOk`) whose lease the history lacks.
    orphans: usize,
    /// `FaultStart` / `FaultEnd`, in order: time, start?, fault, target.
    fault_events: Vec<(u64, bool, &'a str, &'a str)>,
    /// The starts of `kill-volatile` faults, in order.
    kill_volatile: Vec<u64>,
    /// The last `Final`.
    final_value: Option<u64>,
    /// `Leftover`: node and keys.
    leftovers: Vec<(usize, &'a [String])>,
    /// `Exited`: client, status, clean.
    exits: Vec<(&'a str, &'a str, bool)>,
    ops: BTreeMap<String, usize>,
    faults: BTreeMap<String, usize>,
}

impl<'a> History<'a> {
    /// Digests `events`, sorted by time.
    fn new(events: &[&'a Event]) -> History<'a> {
        let meta = events.iter().find_map(|e| match e.op {
            Op::Meta {
                nodes,
                ttl_ms,
                settle_ms,
                ..
            } => Some(Meta {
                t: e.t,
                nodes,
                ttl_ns: ttl_ms.saturating_mul(1_000_000),
                settle_ns: settle_ms.saturating_mul(1_000_000),
            }),
            _ => None,
        });
        let mut h = History {
            meta,
            t0: meta.map_or_else(|| events.first().map_or(0, |e| e.t), |m| m.t),
            stop: None,
            leases: Vec::new(),
            store: Vec::new(),
            renewings: Vec::new(),
            releases: Vec::new(),
            orphans: 0,
            fault_events: Vec::new(),
            kill_volatile: Vec::new(),
            final_value: None,
            leftovers: Vec::new(),
            exits: Vec::new(),
            ops: BTreeMap::new(),
            faults: BTreeMap::new(),
        };
        // The lease each (process, fence) currently names: the latest
        // `AcquireOk` with it (there is only one in a sane history).
        let mut ids: HashMap<(&'a str, u64), usize> = HashMap::new();
        // Each process's `AcquireInvoke` not answered yet.
        let mut invoked: HashMap<&'a str, u64> = HashMap::new();

        for e in events {
            let process = e.process.as_str();
            let t = e.t;
            if let Some(kind) = op_kind(&e.op) {
                *h.ops.entry(kind.to_owned()).or_default() += 1;
            }
            // The lease a client event of `fence` belongs to.
            let lease_of = |fence: u64, h: &mut History<'a>| {
                let lease = ids.get(&(process, fence)).copied();
                if lease.is_none() {
                    h.orphans += 1;
                }
                lease
            };
            match &e.op {
                Op::Meta { .. } => {}
                Op::AcquireInvoke => {
                    invoked.insert(process, t);
                }
                Op::AcquireOk { fence, valid_until } => {
                    ids.insert((process, *fence), h.leases.len());
                    h.leases.push(Lease {
                        process,
                        fence: *fence,
                        invoked: invoked.remove(process),
                        acquired: t,
                        valid_until: *valid_until,
                        lost: None,
                        release_invoked: None,
                        released: None,
                    });
                }
                Op::AcquireFail { .. } | Op::AcquireInfo { .. } => {
                    invoked.remove(process);
                }
                Op::Renewing { fence } => {
                    if let Some(i) = lease_of(*fence, &mut h) {
                        let valid_until = h.leases[i].valid_until;
                        h.renewings.push((t, i, valid_until));
                    }
                }
                Op::Renewed { fence, valid_until } => {
                    if let Some(i) = lease_of(*fence, &mut h) {
                        let lease = &mut h.leases[i];
                        lease.valid_until = lease.valid_until.max(*valid_until);
                    }
                }
                Op::Lost { fence } => {
                    if let Some(i) = lease_of(*fence, &mut h) {
                        h.leases[i].lost.get_or_insert(t);
                    }
                }
                Op::Read { fence, .. }
                | Op::WriteInvoke { fence, .. }
                | Op::WriteOk { fence, .. } => {
                    lease_of(*fence, &mut h);
                }
                Op::ReleaseInvoke { fence } => {
                    if let Some(i) = lease_of(*fence, &mut h) {
                        h.leases[i].release_invoked.get_or_insert(t);
                    }
                }
                Op::ReleaseOk {
                    fence, renewing, ..
                }
                | Op::ReleaseInfo {
                    fence, renewing, ..
                } => {
                    if let Some(i) = lease_of(*fence, &mut h) {
                        h.leases[i].released.get_or_insert(t);
                    }
                    h.releases.push((t, process, *fence, *renewing));
                }
                Op::StoreRead {
                    client,
                    fence,
                    value,
                    accepted,
                }
                | Op::StoreWrite {
                    client,
                    fence,
                    value,
                    accepted,
                } => {
                    h.store.push(StoreOp {
                        t,
                        client,
                        fence: *fence,
                        value: *value,
                        accepted: *accepted,
                        write: matches!(e.op, Op::StoreWrite { .. }),
                        lease: ids.get(&(client.as_str(), *fence)).copied(),
                    });
                }
                Op::FaultStart { fault, target } => {
                    *h.faults.entry(fault.clone()).or_default() += 1;
                    if fault == "kill-volatile" {
                        h.kill_volatile.push(t);
                    }
                    h.fault_events.push((t, true, fault, target));
                }
                Op::FaultEnd { fault, target } => {
                    h.fault_events.push((t, false, fault, target));
                }
                Op::Stop => {
                    h.stop.get_or_insert(t);
                }
                Op::Final { value } => h.final_value = Some(*value),
                Op::Leftover { node, keys } => h.leftovers.push((*node, keys)),
                Op::Exited {
                    client,
                    status,
                    clean,
                } => h.exits.push((client, status, *clean)),
            }
        }
        h
    }

    /// `t` as seconds since the origin: `12.345s`.
    fn at(&self, t: u64) -> String {
        let (sign, d) = if t >= self.t0 {
            ("", t - self.t0)
        } else {
            ("-", self.t0 - t)
        };
        format!(
            "{sign}{}.{:03}s",
            d / 1_000_000_000,
            d % 1_000_000_000 / 1_000_000
        )
    }

    /// A lease and its window, for messages.
    fn lease(&self, i: usize) -> String {
        let l = &self.leases[i];
        format!(
            "{} fence {} [{}, {}]",
            l.process,
            l.fence,
            self.at(l.acquired),
            self.at(l.end())
        )
    }
}

/// The `Report::ops` key of a client operation.
fn op_kind(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::AcquireInvoke => "acquire_invoke",
        Op::AcquireOk { .. } => "acquire_ok",
        Op::AcquireFail { .. } => "acquire_fail",
        Op::AcquireInfo { .. } => "acquire_info",
        Op::Renewing { .. } => "renewing",
        Op::Renewed { .. } => "renewed",
        Op::Lost { .. } => "lost",
        Op::Read { value: Some(_), .. } => "read",
        Op::Read { value: None, .. } => "read_refused",
        Op::WriteInvoke { .. } => "write_invoke",
        Op::WriteOk { accepted: true, .. } => "write_accepted",
        Op::WriteOk {
            accepted: false, ..
        } => "write_rejected",
        Op::ReleaseInvoke { .. } => "release_invoke",
        Op::ReleaseOk { released: true, .. } => "release_ok",
        Op::ReleaseOk {
            released: false, ..
        } => "release_gone",
        Op::ReleaseInfo { .. } => "release_info",
        _ => return None,
    })
}

/// Check 1: accepted writes' fences increase; issued fences increase in
/// real time (a sweep over acquisitions in time order against invocations
/// in time order, keeping the greatest fence acquired so far).
fn fences(h: &History) -> CheckResult {
    let mut r = CheckResult::new("fences");

    // (a) The store's accepted writes.
    let mut writes = 0;
    let mut last: Option<&StoreOp> = None;
    for w in h.store.iter().filter(|s| s.write && s.accepted) {
        writes += 1;
        if let Some(prev) = last.filter(|p| w.fence <= p.fence) {
            r.violation(|| {
                format!(
                    "the store accepted a write of {} fence {} at {} after one of {} fence {} at {}",
                    w.client,
                    w.fence,
                    h.at(w.t),
                    prev.client,
                    prev.fence,
                    h.at(prev.t)
                )
            });
        }
        last = Some(w);
    }

    // (b) Issued fences. `h.leases` is in acquisition order.
    let mut by_invoke: Vec<usize> = (0..h.leases.len())
        .filter(|&i| h.leases[i].invoked.is_some())
        .collect();
    by_invoke.sort_by_key(|&i| h.leases[i].invoked);
    let unknown_invoke = h.leases.len() - by_invoke.len();
    let (mut next, mut greatest): (usize, Option<usize>) = (0, None);
    let mut exempt = 0;
    for &b in &by_invoke {
        let invoked = h.leases[b].invoked.unwrap_or_default();
        while next < h.leases.len() && h.leases[next].acquired < invoked {
            if greatest.is_none_or(|g| h.leases[next].fence > h.leases[g].fence) {
                greatest = Some(next);
            }
            next += 1;
        }
        let Some(a) = greatest.filter(|&a| h.leases[a].fence >= h.leases[b].fence) else {
            continue;
        };
        // Fences can repeat only if a node lost its counter after A's fence
        // was settled (during A's acquire) and before B's acquire completed.
        let since = h.leases[a].invoked.unwrap_or(h.leases[a].acquired);
        let enforced = !h
            .kill_volatile
            .iter()
            .any(|&k| since < k && k < h.leases[b].acquired);
        if !enforced {
            exempt += 1;
            continue;
        }
        r.violation(|| {
            format!(
                "{} fence {} (invoked at {}, acquired at {}) after {} fence {} had been acquired at {}",
                h.leases[b].process,
                h.leases[b].fence,
                h.at(invoked),
                h.at(h.leases[b].acquired),
                h.leases[a].process,
                h.leases[a].fence,
                h.at(h.leases[a].acquired)
            )
        });
    }

    r.note = format!(
        "accepted writes: {writes}; leases: {}; {exempt} fence regressions after volatile restarts (outside the stated assumptions)",
        h.leases.len()
    );
    if unknown_invoke > 0 {
        let _ = write!(r.note, "; {unknown_invoke} leases without their invocation");
    }
    r
}

/// Check 2: no two validity windows overlap (a sweep in acquisition order,
/// keeping the window that ends last).
fn exclusion(h: &History) -> CheckResult {
    let mut r = CheckResult::new("exclusion");
    let mut open: Option<usize> = None;
    let mut empty = 0;
    for (b, lease) in h.leases.iter().enumerate() {
        if lease.empty() {
            empty += 1;
            continue;
        }
        if let Some(a) = open.filter(|&a| h.leases[a].end() > lease.acquired) {
            r.violation(|| format!("{} overlaps {}", h.lease(a), h.lease(b)));
        }
        if open.is_none_or(|a| lease.end() > h.leases[a].end()) {
            open = Some(b);
        }
    }
    r.note = format!(
        "leases: {}; expired before acquisition was recorded: {empty}",
        h.leases.len()
    );
    r
}

/// Check 3: lapsed writes are rejected once a later holder has reached the
/// store; stale reads are counted.
fn stale_writes(h: &History) -> CheckResult {
    let mut r = CheckResult::new("stale writes");
    let (mut lapsed, mut rejected, mut unfenced, mut unknown) = (0, 0, 0, 0);
    let (mut stale_reads, mut stale_reads_rejected) = (0, 0);
    // The accepted store event with the greatest fence so far.
    let mut highest: Option<&StoreOp> = None;
    for op in &h.store {
        match op.lease {
            None => unknown += 1,
            Some(i) if op.t > h.leases[i].end() => {
                if !op.write {
                    stale_reads += 1;
                    stale_reads_rejected += usize::from(!op.accepted);
                } else {
                    lapsed += 1;
                    if !op.accepted {
                        rejected += 1;
                    } else if let Some(later) = highest.filter(|s| s.fence > op.fence) {
                        r.violation(|| {
                            format!(
                                "the store accepted at {} a write of {} after its window ended; {} fence {} had reached the store at {}",
                                h.at(op.t),
                                h.lease(i),
                                later.client,
                                later.fence,
                                h.at(later.t)
                            )
                        });
                    } else {
                        unfenced += 1;
                    }
                }
            }
            Some(_) => {}
        }
        if op.accepted && highest.is_none_or(|s| op.fence > s.fence) {
            highest = Some(op);
        }
    }
    r.note = format!(
        "lapsed writes: {lapsed}, rejected {rejected}, accepted {unfenced} (no later holder had reached the store); stale reads: {stale_reads}, rejected {stale_reads_rejected}"
    );
    if unknown > 0 {
        let _ = write!(r.note, "; {unknown} store events of unknown leases");
    }
    r
}

/// Check 4: the accepted writes count 1, 2, 3, … and the final value is
/// their number.
fn no_lost_update(h: &History) -> CheckResult {
    let mut r = CheckResult::new("no lost update");
    let mut writes = 0;
    let mut previous = 0;
    for w in h.store.iter().filter(|s| s.write && s.accepted) {
        writes += 1;
        if w.value != previous + 1 {
            r.violation(|| {
                format!(
                    "the store accepted {} from {} fence {} at {} after {previous}",
                    w.value,
                    w.client,
                    w.fence,
                    h.at(w.t)
                )
            });
        }
        previous = w.value;
    }
    match h.final_value {
        None => r.violation(|| "no Final event: the final value is unknown".to_owned()),
        Some(value) if value as usize != writes => r.violation(|| {
            format!("the final value is {value}, but the store accepted {writes} writes")
        }),
        Some(_) => {}
    }
    r.note = format!(
        "accepted writes: {writes}; final value: {}",
        h.final_value
            .map_or_else(|| "missing".to_owned(), |v| v.to_string())
    );
    r
}

/// Check 5: releases leave nothing renewing; no renewal after the loss or
/// the release of its lease.
fn lease_hygiene(h: &History) -> CheckResult {
    let mut r = CheckResult::new("lease hygiene");
    for &(t, process, fence, renewing) in &h.releases {
        if renewing != 0 {
            r.violation(|| {
                format!(
                    "{process} fence {fence}: {renewing} leases still renewing after the release returned at {}",
                    h.at(t)
                )
            });
        }
    }
    let mut late = 0;
    // Clock readings of the library and of the recorder differ by a few µs;
    // a renewal decided just before the deadline is fine.
    let tolerance = h.meta.map_or(0, |m| m.ttl_ns / 100 + 2_000_000);
    for &(t, i, valid_until) in &h.renewings {
        let lease = &h.leases[i];
        let after =
            |end: Option<u64>, what: &'static str| end.filter(|&e| e < t).map(|e| (e, what));
        if let Some((end, what)) = after(lease.lost, "lost")
            .or_else(|| after(lease.release_invoked, "being released"))
            .or_else(|| (t > valid_until + tolerance).then_some((valid_until, "past its deadline")))
        {
            late += 1;
            r.violation(|| {
                format!(
                    "{} fence {} renewing at {}, after it was {what} at {}",
                    lease.process,
                    lease.fence,
                    h.at(t),
                    h.at(end)
                )
            });
        }
    }
    r.note = format!(
        "releases: {}; renewals sent: {}, after loss, release or deadline: {late}",
        h.releases.len(),
        h.renewings.len()
    );
    if h.orphans > 0 {
        let _ = write!(r.note, "; {} client events of unknown leases", h.orphans);
    }
    r
}

/// Check 8: every client process ran until told to stop (or was killed by
/// the nemesis) and then exited cleanly: a crash or a panic would otherwise
/// just leave fewer contenders.
fn clients(h: &History) -> CheckResult {
    let mut r = CheckResult::new("clients");
    for &(client, status, clean) in &h.exits {
        if !clean {
            r.violation(|| format!("client {client} {status}"));
        }
    }
    r.note = format!("processes: {}", h.exits.len());
    r
}

/// Check 6: no lock key is left on any node.
fn nothing_left(h: &History) -> CheckResult {
    let mut r = CheckResult::new("nothing left");
    let mut scanned = BTreeSet::new();
    let mut keys = 0;
    for &(node, left) in &h.leftovers {
        scanned.insert(node);
        for key in left {
            keys += 1;
            r.violation(|| format!("node {node} still holds `{key}`"));
        }
    }
    let nodes = h.meta.map_or(0, |m| m.nodes);
    if scanned.len() < nodes {
        r.violation(|| format!("only {} of {nodes} nodes were scanned", scanned.len()));
    }
    r.note = format!(
        "nodes scanned: {} of {nodes}; keys left: {keys}",
        scanned.len()
    );
    r
}

/// Check 7: every long enough quiet period sees an acquisition.
fn liveness(h: &History) -> CheckResult {
    let mut r = CheckResult::new("liveness");
    let (Some(meta), Some(stop)) = (h.meta, h.stop) else {
        let missing = if h.meta.is_none() { "Meta" } else { "Stop" };
        r.violation(|| format!("no {missing} event: liveness cannot be checked"));
        r.note = format!("no {missing} event");
        return r;
    };

    // The quiet periods: sweep the fault events, counting the open ones.
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    let mut active = 0usize;
    let mut quiet_since = Some(meta.t);
    let mut periods = Vec::new();
    for &(t, start, fault, target) in h.fault_events.iter().filter(|f| f.0 <= stop) {
        let count = open.entry((fault, target)).or_default();
        if start {
            *count += 1;
            active += 1;
            if let Some(since) = quiet_since.take() {
                periods.push((since.max(meta.t), t));
            }
        } else if *count > 0 {
            *count -= 1;
            active -= 1;
            if active == 0 {
                quiet_since = Some(t);
            }
        }
    }
    if let Some(since) = quiet_since {
        periods.push((since.max(meta.t), stop));
    }
    periods.retain(|&(from, to)| to > from);

    let acquisitions: Vec<u64> = h.leases.iter().map(|l| l.acquired).collect();
    let (mut checked, mut skipped) = (0, 0);
    for &(from, to) in &periods {
        let check_from = from.saturating_add(meta.settle_ns);
        if check_from > to || to - check_from < meta.ttl_ns {
            skipped += 1;
            continue;
        }
        checked += 1;
        let first = acquisitions.partition_point(|&t| t < check_from);
        if acquisitions.get(first).is_none_or(|&t| t > to) {
            r.violation(|| {
                format!(
                    "no acquisition in the quiet period {} to {} (checked from {})",
                    h.at(from),
                    h.at(to),
                    h.at(check_from)
                )
            });
        }
    }
    r.note = format!(
        "quiet periods: {}, checked {checked}, skipped {skipped} (shorter than settle + ttl)",
        periods.len()
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const TTL: u64 = 1000;
    const SETTLE: u64 = 500;

    /// Builds histories with times in milliseconds; `Meta` at 0.
    #[derive(Clone)]
    struct H {
        events: Vec<Event>,
    }

    impl H {
        fn new(volatile: usize) -> H {
            let mut h = H { events: Vec::new() };
            h.at(
                0,
                "checker",
                Op::Meta {
                    nodes: 2,
                    clients: 3,
                    ttl_ms: TTL,
                    settle_ms: SETTLE,
                    volatile,
                },
            );
            h
        }

        fn at(&mut self, ms: u64, process: &str, op: Op) -> &mut H {
            self.events.push(Event {
                t: ms * MS,
                process: process.to_owned(),
                op,
            });
            self
        }

        /// `AcquireInvoke` at `invoke`, `AcquireOk` at `ok`, valid for a TTL.
        fn acquire(&mut self, p: &str, fence: u64, invoke: u64, ok: u64) -> &mut H {
            self.at(invoke, p, Op::AcquireInvoke);
            self.at(
                ok,
                p,
                Op::AcquireOk {
                    fence,
                    valid_until: (ok + TTL) * MS,
                },
            )
        }

        fn store_read(
            &mut self,
            ms: u64,
            client: &str,
            fence: u64,
            value: u64,
            ok: bool,
        ) -> &mut H {
            self.at(
                ms,
                "store",
                Op::StoreRead {
                    client: client.to_owned(),
                    fence,
                    value,
                    accepted: ok,
                },
            )
        }

        fn store_write(
            &mut self,
            ms: u64,
            client: &str,
            fence: u64,
            value: u64,
            ok: bool,
        ) -> &mut H {
            self.at(
                ms,
                "store",
                Op::StoreWrite {
                    client: client.to_owned(),
                    fence,
                    value,
                    accepted: ok,
                },
            )
        }

        fn release(&mut self, ms: u64, p: &str, fence: u64) -> &mut H {
            self.at(ms, p, Op::ReleaseInvoke { fence });
            self.at(
                ms + 1,
                p,
                Op::ReleaseOk {
                    fence,
                    released: true,
                    renewing: 0,
                },
            )
        }

        /// A clean round from `start`: acquire, read `value - 1`, write
        /// `value`, release. Window: `[start + 1, start + 7]`.
        fn round(&mut self, p: &str, fence: u64, start: u64, value: u64) -> &mut H {
            self.acquire(p, fence, start, start + 1);
            self.store_read(start + 2, p, fence, value - 1, true);
            self.at(
                start + 3,
                p,
                Op::Read {
                    fence,
                    value: Some(value - 1),
                },
            );
            self.at(start + 4, p, Op::WriteInvoke { fence, value });
            self.store_write(start + 5, p, fence, value, true);
            self.at(
                start + 6,
                p,
                Op::WriteOk {
                    fence,
                    accepted: true,
                },
            );
            self.release(start + 7, p, fence)
        }

        fn fault(&mut self, start: u64, end: Option<u64>, fault: &str, target: &str) -> &mut H {
            let (fault, target) = (fault.to_owned(), target.to_owned());
            self.at(
                start,
                "nemesis",
                Op::FaultStart {
                    fault: fault.clone(),
                    target: target.clone(),
                },
            );
            if let Some(end) = end {
                self.at(end, "nemesis", Op::FaultEnd { fault, target });
            }
            self
        }

        /// `Stop`, `Final` and a clean scan of both nodes.
        fn finish(&mut self, stop: u64, value: u64) -> &mut H {
            self.at(stop, "checker", Op::Stop);
            self.at(stop + 1, "checker", Op::Final { value });
            for node in 0..2 {
                self.at(stop + 2, "checker", Op::Leftover { node, keys: vec![] });
            }
            self
        }

        fn report(&self) -> Report {
            check(&self.events)
        }
    }

    /// Finishes `h` (stop at `stop`, final `value`), asserts every check
    /// passes, and returns the note of check `name`.
    fn passing_note(h: &mut H, stop: u64, value: u64, name: &str) -> String {
        let report = h.finish(stop, value).report();
        assert!(report.ok(), "{}", report.table());
        result(&report, name).note.clone()
    }

    fn result<'r>(report: &'r Report, name: &str) -> &'r CheckResult {
        report.get(name).expect("the check exists")
    }

    /// Asserts that only `name` failed, with `violations`.
    fn only(report: &Report, name: &str, violations: usize) {
        for c in &report.checks {
            let expected = if c.name == name { violations } else { 0 };
            assert_eq!(c.violations, expected, "{}: {:?}", c.name, c);
        }
    }

    /// Twenty-five rounds of three clients, 100 ms apart, with a renewal,
    /// a loss, faults and a script flush.
    fn clean() -> H {
        let mut h = H::new(0);
        let mut value = 0;
        for k in 0..25u64 {
            let p = format!("c{}.0", k % 3);
            let fence = 10 * (k + 1);
            let start = 100 * k + 50;
            if k == 7 {
                // Lost before it could write.
                h.acquire(&p, fence, start, start + 1);
                h.at(start + 2, &p, Op::Renewing { fence });
                h.at(
                    start + 3,
                    &p,
                    Op::Renewed {
                        fence,
                        valid_until: (start + 3 + TTL) * MS,
                    },
                );
                h.at(start + 4, &p, Op::Lost { fence });
                h.at(start + 5, &p, Op::ReleaseInvoke { fence });
                h.at(
                    start + 6,
                    &p,
                    Op::ReleaseOk {
                        fence,
                        released: false,
                        renewing: 0,
                    },
                );
                continue;
            }
            value += 1;
            h.round(&p, fence, start, value);
        }
        h.at(120, "c1.0", Op::AcquireInvoke);
        h.at(
            130,
            "c1.0",
            Op::AcquireFail {
                reason: "busy".into(),
            },
        );
        h.fault(600, Some(800), "pause", "node1");
        h.fault(1000, Some(1000), "script-flush", "node0");
        h.finish(2500, value);
        h
    }

    #[test]
    fn a_clean_history_passes_every_check() {
        let report = clean().report();
        assert!(report.ok(), "{}\n{report:#?}", report.table());
        let names: Vec<_> = report.checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "fences",
                "exclusion",
                "stale writes",
                "no lost update",
                "lease hygiene",
                "nothing left",
                "liveness",
                "clients"
            ]
        );
        assert_eq!(report.ops["acquire_ok"], 25);
        assert_eq!(report.ops["acquire_fail"], 1);
        assert_eq!(report.ops["lost"], 1);
        assert_eq!(report.ops["write_accepted"], 24);
        assert_eq!(report.ops["release_gone"], 1);
        assert_eq!(report.faults["pause"], 1);
        assert_eq!(report.faults["script-flush"], 1);
        // [0, 600] and [800, 1000] are too short; [1000, 2500] is checked.
        assert_eq!(
            result(&report, "liveness").note,
            "quiet periods: 3, checked 1, skipped 2 (shorter than settle + ttl)"
        );
        assert_eq!(
            result(&report, "nothing left").note,
            "nodes scanned: 2 of 2; keys left: 0"
        );
        let table = report.table();
        assert!(table.contains(" 1  fences"), "{table}");
        assert!(table.contains(" 7  liveness"), "{table}");
        assert!(table.contains("ops: acquire_fail=1, "), "{table}");
        assert!(
            table.contains("faults: pause=1, script-flush=1\n"),
            "{table}"
        );
    }

    #[test]
    fn the_order_of_the_input_does_not_matter() {
        let mut h = clean();
        let expected = h.report();
        // Scrambled, but events at equal times keep their order (the
        // script flush's start and end).
        h.events.sort_by_key(|e| (e.t % 7, std::cmp::Reverse(e.t)));
        assert_ne!(h.events, clean().events);
        assert_eq!(h.report(), expected);
    }

    #[test]
    fn accepted_write_fences_must_increase() {
        let mut h = H::new(0);
        h.acquire("c0.0", 1, 0, 1);
        h.acquire("c1.0", 2, 0, 10);
        // A broken store: 2, then 1, then 1 again are all accepted.
        h.store_write(5, "c0.0", 1, 1, true);
        h.store_write(11, "c1.0", 2, 2, true);
        h.store_write(12, "c0.0", 1, 3, true);
        h.store_write(13, "c0.0", 1, 4, true);
        let report = h.report();
        let r = result(&report, "fences");
        assert_eq!(r.violations, 2, "{r:?}");
        assert!(r.examples[0].contains("c0.0 fence 1 at 0.012s"), "{r:?}");
    }

    /// A fence 5 then, invoked after it, fence 3 (and later fence 4, also
    /// after fence 5 was acquired).
    fn regression(h: &mut H) -> &mut H {
        h.acquire("c0.0", 5, 100, 110);
        h.release(200, "c0.0", 5);
        // Invoked before fence 5 was acquired: no constraint.
        h.acquire("c2.0", 1, 105, 250);
        h.release(260, "c2.0", 1);
        h.acquire("c1.0", 3, 300, 310);
        h.release(320, "c1.0", 3);
        h.acquire("c1.0", 4, 400, 410);
        h.release(420, "c1.0", 4)
    }

    #[test]
    fn issued_fences_must_increase_in_real_time() {
        let report = regression(&mut H::new(0)).finish(3000, 0).report();
        let r = result(&report, "fences");
        assert_eq!(r.violations, 2, "{r:?}");
        assert!(
            r.examples[0].starts_with(
                "c1.0 fence 3 (invoked at 0.300s, acquired at 0.310s) after c0.0 fence 5"
            ),
            "{r:?}"
        );
        assert!(
            r.note.contains(" 0 fence regressions after volatile"),
            "{r:?}"
        );
    }

    #[test]
    fn volatile_nodes_that_were_never_killed_exempt_nothing() {
        let report = regression(&mut H::new(1)).finish(3000, 0).report();
        let r = result(&report, "fences");
        assert_eq!(r.violations, 2, "{r:?}");
        assert!(
            r.note.contains(
                "0 fence regressions after volatile restarts (outside the stated assumptions)"
            ),
            "{r:?}"
        );
    }

    #[test]
    fn fence_regressions_after_a_kill_volatile_are_only_noted() {
        let mut h = H::new(0);
        regression(&mut h).fault(305, Some(306), "kill-volatile", "node1");
        let report = h.finish(3000, 0).report();
        let r = result(&report, "fences");
        assert_eq!(r.violations, 0, "{r:?}");
        assert!(
            r.note.contains("2 fence regressions after volatile"),
            "{r:?}"
        );

        // A kill-volatile after the regressed lease was acquired exempts
        // only the later one.
        let mut h = H::new(0);
        regression(&mut h).fault(315, Some(316), "kill-volatile", "node1");
        let report = h.finish(3000, 0).report();
        let r = result(&report, "fences");
        assert_eq!(r.violations, 1, "{r:?}");
        assert!(
            r.note.contains(" 1 fence regressions after volatile"),
            "{r:?}"
        );
    }

    #[test]
    fn overlapping_windows_are_caught_once_each() {
        let mut h = H::new(0);
        // [10, 1010] (the TTL), [500, 600], [700, 800]: two overlaps.
        h.acquire("c0.0", 1, 0, 10);
        h.acquire("c1.0", 2, 400, 500);
        h.release(600, "c1.0", 2);
        h.acquire("c2.0", 3, 650, 700);
        h.release(800, "c2.0", 3);
        let report = h.finish(900, 0).report();
        only(&report, "exclusion", 2);
        let r = result(&report, "exclusion");
        assert_eq!(
            r.examples[0],
            "c0.0 fence 1 [0.010s, 1.010s] overlaps c1.0 fence 2 [0.500s, 0.600s]"
        );
        assert_eq!(
            r.examples[1],
            "c0.0 fence 1 [0.010s, 1.010s] overlaps c2.0 fence 3 [0.700s, 0.800s]"
        );
    }

    #[test]
    fn windows_end_at_loss_release_or_the_last_validity() {
        let mut h = H::new(0);
        // Valid until 1010 but lost at 300: [10, 300].
        h.acquire("c0.0", 1, 0, 10);
        h.at(300, "c0.0", Op::Lost { fence: 1 });
        // Touches it: fine. Valid until 1300, renewed until 2500, released
        // at 2000: [300, 2000].
        h.acquire("c1.0", 2, 200, 300);
        h.at(
            900,
            "c1.0",
            Op::Renewed {
                fence: 2,
                valid_until: 2500 * MS,
            },
        );
        h.release(2000, "c1.0", 2);
        // Overlaps it thanks to its renewal. Valid until 2200, then 2500,
        // then 2300: [1900, 2500].
        h.at(1800, "c2.0", Op::AcquireInvoke);
        h.at(
            1900,
            "c2.0",
            Op::AcquireOk {
                fence: 3,
                valid_until: 2200 * MS,
            },
        );
        for (t, until) in [(2100, 2500), (2200, 2300)] {
            h.at(
                t,
                "c2.0",
                Op::Renewed {
                    fence: 3,
                    valid_until: until * MS,
                },
            );
        }
        // Overlaps the latest validity of the previous one: [2400, 2600].
        h.acquire("c0.1", 4, 2000, 2400);
        h.release(2600, "c0.1", 4);
        // Touches it: fine.
        h.acquire("c1.1", 5, 2500, 2600);
        h.release(2700, "c1.1", 5);
        let report = h.finish(5000, 0).report();
        let r = result(&report, "exclusion");
        assert_eq!(r.violations, 2, "{r:?}");
        assert_eq!(
            r.examples,
            [
                "c1.0 fence 2 [0.300s, 2.000s] overlaps c2.0 fence 3 [1.900s, 2.500s]",
                "c2.0 fence 3 [1.900s, 2.500s] overlaps c0.1 fence 4 [2.400s, 2.600s]"
            ]
        );
    }

    #[test]
    fn a_lease_expired_on_arrival_overlaps_nothing() {
        let mut h = H::new(0);
        h.acquire("c0.0", 1, 0, 10);
        h.release(500, "c0.0", 1);
        h.at(100, "c1.0", Op::AcquireInvoke);
        h.at(
            200,
            "c1.0",
            Op::AcquireOk {
                fence: 2,
                valid_until: 150 * MS,
            },
        );
        let report = h.finish(600, 0).report();
        let r = result(&report, "exclusion");
        assert_eq!(r.violations, 0, "{r:?}");
        assert!(
            r.note
                .ends_with("expired before acquisition was recorded: 1"),
            "{r:?}"
        );
    }

    /// c0.0 fence 1: [10, 1010]; c1.0 fence 2 acquires at 1100.
    fn two_holders() -> H {
        let mut h = H::new(0);
        h.acquire("c0.0", 1, 0, 10);
        h.store_read(20, "c0.0", 1, 0, true);
        h.acquire("c1.0", 2, 500, 1100);
        h
    }

    #[test]
    fn a_lapsed_write_after_a_later_holder_must_be_rejected() {
        let mut h = two_holders();
        h.store_read(1150, "c1.0", 2, 0, true);
        // A broken store accepts the paused holder's write.
        h.store_write(1200, "c0.0", 1, 1, true);
        h.store_write(1250, "c1.0", 2, 2, true);
        let report = h.finish(3000, 2).report();
        only(&report, "stale writes", 1);
        let r = result(&report, "stale writes");
        assert_eq!(
            r.examples[0],
            "the store accepted at 1.200s a write of c0.0 fence 1 [0.010s, 1.010s] after its window ended; c1.0 fence 2 had reached the store at 1.150s"
        );
        assert!(
            r.note
                .starts_with("lapsed writes: 1, rejected 0, accepted 0 "),
            "{r:?}"
        );
    }

    #[test]
    fn a_lapsed_write_may_be_accepted_or_rejected_when_no_later_holder_reached_the_store() {
        // Accepted: the later holder reads afterwards and sees it.
        let mut h = two_holders();
        h.store_write(1050, "c0.0", 1, 1, true);
        h.store_read(1150, "c1.0", 2, 1, true);
        h.store_write(1250, "c1.0", 2, 2, true);
        assert_eq!(
            passing_note(&mut h, 3000, 2, "stale writes"),
            "lapsed writes: 1, rejected 0, accepted 1 (no later holder had reached the store); stale reads: 0, rejected 0"
        );

        // Rejected (after the later holder), and a stale read refused.
        let mut h = two_holders();
        h.store_read(1150, "c1.0", 2, 0, true);
        h.store_read(1160, "c0.0", 1, 0, false);
        h.store_write(1200, "c0.0", 1, 1, false);
        h.store_write(1250, "c1.0", 2, 1, true);
        assert_eq!(
            passing_note(&mut h, 3000, 1, "stale writes"),
            "lapsed writes: 1, rejected 1, accepted 0 (no later holder had reached the store); stale reads: 1, rejected 1"
        );
    }

    #[test]
    fn every_accepted_write_must_add_one() {
        let mut h = H::new(0);
        for (k, value) in [1, 2, 2, 3, 5, 6].into_iter().enumerate() {
            let k = k as u64;
            h.acquire("c0.0", k + 1, 100 * k, 100 * k + 1);
            h.store_write(100 * k + 5, "c0.0", k + 1, value, true);
            h.release(100 * k + 10, "c0.0", k + 1);
        }
        let report = h.finish(3000, 6).report();
        only(&report, "no lost update", 2);
        let r = result(&report, "no lost update");
        assert_eq!(
            r.examples,
            [
                "the store accepted 2 from c0.0 fence 3 at 0.205s after 2",
                "the store accepted 5 from c0.0 fence 5 at 0.405s after 3"
            ]
        );
        assert_eq!(r.note, "accepted writes: 6; final value: 6");
    }

    #[test]
    fn the_final_value_must_count_the_accepted_writes() {
        let mut h = H::new(0);
        h.round("c0.0", 1, 0, 1);
        h.round("c1.0", 2, 600, 2);
        let report = h.clone().finish(3000, 1).report();
        only(&report, "no lost update", 1);
        assert_eq!(
            result(&report, "no lost update").examples,
            ["the final value is 1, but the store accepted 2 writes"]
        );

        // No Final at all.
        h.at(3000, "checker", Op::Stop);
        for node in 0..2 {
            h.at(3002, "checker", Op::Leftover { node, keys: vec![] });
        }
        let report = h.report();
        only(&report, "no lost update", 1);
        let r = result(&report, "no lost update");
        assert_eq!(r.examples, ["no Final event: the final value is unknown"]);
        assert_eq!(r.note, "accepted writes: 2; final value: missing");
    }

    #[test]
    fn releases_must_leave_nothing_renewing() {
        let mut h = H::new(0);
        h.acquire("c0.0", 1, 0, 1);
        h.at(5, "c0.0", Op::ReleaseInvoke { fence: 1 });
        h.at(
            6,
            "c0.0",
            Op::ReleaseOk {
                fence: 1,
                released: true,
                renewing: 2,
            },
        );
        h.acquire("c1.0", 2, 10, 11);
        h.at(15, "c1.0", Op::ReleaseInvoke { fence: 2 });
        h.at(
            16,
            "c1.0",
            Op::ReleaseInfo {
                fence: 2,
                error: "timeout".into(),
                renewing: 1,
            },
        );
        h.round("c2.0", 3, 600, 1);
        let report = h.finish(3000, 1).report();
        only(&report, "lease hygiene", 2);
        assert_eq!(
            result(&report, "lease hygiene").examples,
            [
                "c0.0 fence 1: 2 leases still renewing after the release returned at 0.006s",
                "c1.0 fence 2: 1 leases still renewing after the release returned at 0.016s"
            ]
        );
    }

    #[test]
    fn no_renewal_after_loss_or_release() {
        let mut h = H::new(0);
        // Renewing before the loss: fine; twice after it: two violations.
        h.acquire("c0.0", 1, 0, 1);
        h.at(100, "c0.0", Op::Renewing { fence: 1 });
        h.at(200, "c0.0", Op::Lost { fence: 1 });
        h.at(300, "c0.0", Op::Renewing { fence: 1 });
        h.at(400, "c0.0", Op::Renewing { fence: 1 });
        h.release(500, "c0.0", 1);
        // Renewing after the release began: one each.
        h.acquire("c1.0", 2, 1000, 1001);
        h.at(1100, "c1.0", Op::ReleaseInvoke { fence: 2 });
        h.at(1101, "c1.0", Op::Renewing { fence: 2 });
        h.at(
            1102,
            "c1.0",
            Op::ReleaseOk {
                fence: 2,
                released: true,
                renewing: 0,
            },
        );
        h.at(1200, "c1.0", Op::Renewing { fence: 2 });
        // Another lease of the same process renewing: fine.
        h.acquire("c1.0", 3, 1300, 1301);
        h.at(1400, "c1.0", Op::Renewing { fence: 3 });
        h.release(1500, "c1.0", 3);
        // Renewing after the deadline (beyond the drift allowance): one.
        h.acquire("c2.0", 4, 1600, 1601);
        h.at(1601 + TTL + 50, "c2.0", Op::Renewing { fence: 4 });
        h.release(1601 + TTL + 60, "c2.0", 4);
        let report = h.finish(3000, 0).report();
        only(&report, "lease hygiene", 5);
        let r = result(&report, "lease hygiene");
        assert_eq!(
            r.examples,
            [
                "c0.0 fence 1 renewing at 0.300s, after it was lost at 0.200s",
                "c0.0 fence 1 renewing at 0.400s, after it was lost at 0.200s",
                "c1.0 fence 2 renewing at 1.101s, after it was being released at 1.100s",
                "c1.0 fence 2 renewing at 1.200s, after it was being released at 1.100s",
                "c2.0 fence 4 renewing at 2.651s, after it was past its deadline at 2.601s"
            ]
        );
        assert_eq!(
            r.note,
            "releases: 4; renewals sent: 7, after loss, release or deadline: 5"
        );
    }

    #[test]
    fn a_client_that_did_not_exit_cleanly_is_a_violation() {
        let mut h = H::new(0);
        h.round("c0.0", 1, 600, 1);
        let exit = |client: &str, status: &str, clean| Op::Exited {
            client: client.into(),
            status: status.into(),
            clean,
        };
        h.at(3100, "checker", exit("c0.0", "exited with status 0", true));
        h.at(
            3100,
            "checker",
            exit("c1.0", "died early: exit status: 101", false),
        );
        let report = h.finish(3000, 1).report();
        only(&report, "clients", 1);
        assert_eq!(
            result(&report, "clients").examples,
            ["client c1.0 died early: exit status: 101"]
        );
    }

    #[test]
    fn leftover_keys_are_violations() {
        let mut h = H::new(0);
        h.round("c0.0", 1, 600, 1);
        h.at(3000, "checker", Op::Stop);
        h.at(3001, "checker", Op::Final { value: 1 });
        h.at(
            3002,
            "checker",
            Op::Leftover {
                node: 0,
                keys: vec!["baton:lock".into(), "baton:lock:fence".into()],
            },
        );
        h.at(
            3002,
            "checker",
            Op::Leftover {
                node: 1,
                keys: vec![],
            },
        );
        let report = h.report();
        only(&report, "nothing left", 2);
        let r = result(&report, "nothing left");
        assert_eq!(
            r.examples,
            [
                "node 0 still holds `baton:lock`",
                "node 0 still holds `baton:lock:fence`"
            ]
        );
        assert_eq!(r.note, "nodes scanned: 2 of 2; keys left: 2");

        // A node not scanned.
        let mut h = H::new(0);
        h.round("c0.0", 1, 600, 1);
        h.at(3000, "checker", Op::Stop);
        h.at(3001, "checker", Op::Final { value: 1 });
        h.at(
            3002,
            "checker",
            Op::Leftover {
                node: 1,
                keys: vec![],
            },
        );
        let report = h.report();
        only(&report, "nothing left", 1);
        assert_eq!(
            result(&report, "nothing left").examples,
            ["only 1 of 2 nodes were scanned"]
        );
    }

    #[test]
    fn a_long_quiet_period_needs_an_acquisition() {
        let mut h = H::new(0);
        h.round("c0.0", 1, 600, 1);
        h.fault(100, Some(200), "kill", "node1");
        // Acquisitions fail from 200 to the stop.
        let report = h.finish(3000, 1).report();
        only(&report, "liveness", 1);
        let r = result(&report, "liveness");
        assert_eq!(
            r.examples,
            ["no acquisition in the quiet period 0.200s to 3.000s (checked from 0.700s)"]
        );
        assert_eq!(
            r.note,
            "quiet periods: 2, checked 1, skipped 1 (shorter than settle + ttl)"
        );

        // An acquisition at the very start of the checked part counts.
        let mut h = H::new(0);
        h.fault(100, Some(200), "kill", "node1");
        h.round("c0.0", 1, 699, 1);
        let report = h.finish(3000, 1).report();
        assert!(report.ok(), "{}", report.table());
    }

    #[test]
    fn short_quiet_periods_are_skipped() {
        let mut h = H::new(0);
        // [0, 1400] and [1600, 3000]: checked for 900 ms each, too short.
        h.fault(1400, Some(1600), "pause", "node0");
        assert_eq!(
            passing_note(&mut h, 3000, 0, "liveness"),
            "quiet periods: 2, checked 0, skipped 2 (shorter than settle + ttl)"
        );
    }

    #[test]
    fn an_unhealed_fault_lasts_until_the_stop() {
        let mut h = H::new(0);
        h.fault(1000, None, "blackhole", "node0");
        assert_eq!(
            passing_note(&mut h, 9000, 0, "liveness"),
            "quiet periods: 1, checked 0, skipped 1 (shorter than settle + ttl)"
        );
    }

    #[test]
    fn overlapping_and_instant_faults_split_quiet_periods_correctly() {
        let mut h = H::new(0);
        h.round("c0.0", 1, 600, 1);
        // Overlapping faults: one fault interval [1000, 1300]; then an
        // instant one at 3000.
        h.fault(1000, Some(1200), "delay", "node0");
        h.fault(1100, Some(1300), "pause-client", "c0.0");
        h.round("c0.0", 2, 1900, 2);
        h.fault(3000, Some(3000), "script-flush", "node1");
        // [0, 1000] short, [1300, 3000] with an acquisition, [3000, 4600]
        // without.
        let report = h.clone().finish(4600, 2).report();
        only(&report, "liveness", 1);
        let r = result(&report, "liveness");
        assert_eq!(
            r.examples,
            ["no acquisition in the quiet period 3.000s to 4.600s (checked from 3.500s)"]
        );
        assert_eq!(
            r.note,
            "quiet periods: 3, checked 2, skipped 1 (shorter than settle + ttl)"
        );
        assert_eq!(report.faults["pause-client"], 1);

        // Without the instant fault, [1300, 4600] has an acquisition.
        h.events.retain(|e| {
            !matches!(&e.op, Op::FaultStart { fault, .. } | Op::FaultEnd { fault, .. } if fault == "script-flush")
        });
        let report = h.finish(4600, 2).report();
        assert!(report.ok(), "{}", report.table());
    }

    #[test]
    fn liveness_needs_meta_and_stop() {
        let mut h = H::new(0);
        h.round("c0.0", 1, 0, 1);
        h.at(3001, "checker", Op::Final { value: 1 });
        let report = h.report();
        let r = result(&report, "liveness");
        assert_eq!(r.violations, 1);
        assert_eq!(r.examples, ["no Stop event: liveness cannot be checked"]);
    }

    #[test]
    fn a_long_history_is_checked_quickly() {
        let mut h = H::new(0);
        let n = 20_000u64;
        for k in 0..n {
            h.round(&format!("c{}.0", k % 5), k + 1, 10 * k, k + 1);
        }
        h.finish(10 * n + 100, n);
        assert!(h.events.len() > 180_000);
        let started = std::time::Instant::now();
        let report = h.report();
        assert!(report.ok(), "{}", report.table());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
