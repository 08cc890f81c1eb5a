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

    r.count("accepted writes", writes);
    r.count("leases", h.leases.len());
    r.count(
        "fence regressions after volatile restarts (outside the stated assumptions)",
        exempt,
    );
    r.count_if_any("leases without their invocation", unknown_invoke);
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
    r.count("leases", h.leases.len());
    r.count("expired before acquisition was recorded", empty);
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
    r.count("lapsed writes", lapsed);
    r.count("lapsed writes rejected", rejected);
    r.count(
        "lapsed writes accepted (no later holder had reached the store)",
        unfenced,
    );
    r.count("stale reads", stale_reads);
    r.count("stale reads rejected", stale_reads_rejected);
    r.count_if_any("store events of unknown leases", unknown);
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
    r.count("accepted writes", writes);
    r.counts.push(Count {
        what: "final value",
        value: h.final_value,
    });
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
    r.count("releases", h.releases.len());
    r.count("renewals sent", h.renewings.len());
    r.count("renewals after loss, release or deadline", late);
    r.count_if_any("client events of unknown leases", h.orphans);
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
    r.count("processes", h.exits.len());
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
    r.count("nodes scanned", scanned.len());
    r.count("nodes", nodes);
    r.count("keys left", keys);
    r
}

/// Check 7: every long enough quiet period sees an acquisition.
fn liveness(h: &History) -> CheckResult {
    let mut r = CheckResult::new("liveness");
    let (Some(meta), Some(stop)) = (h.meta, h.stop) else {
        let missing = if h.meta.is_none() { "Meta" } else { "Stop" };
        r.violation(|| format!("no {missing} event: liveness cannot be checked"));
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
    r.count("quiet periods", periods.len());
    r.count("quiet periods checked", checked);
    r.count("quiet periods skipped (shorter than settle + ttl)", skipped);
    r
}

#[cfg(test)]
mod tests;
