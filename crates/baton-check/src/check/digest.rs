//! The history digested once for every check: the run's parameters, the
//! leases with their validity windows, the store's events tied to their
//! leases, and what the messages need (times relative to the run's start).

use std::collections::{BTreeMap, HashMap};

use crate::history::{Event, Op, Primitive, Side};

/// The run's parameters, from [`Op::Meta`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) t: u64,
    pub(super) nodes: usize,
    pub(super) ttl_ns: u64,
    pub(super) settle_ns: u64,
    pub(super) primitive: Primitive,
    pub(super) permits: usize,
}

/// One lease, from its `AcquireOk` and the events of the same process and
/// fence after it.
#[derive(Debug)]
pub(super) struct Lease<'a> {
    pub(super) process: &'a str,
    pub(super) fence: u64,
    pub(super) side: Side,
    /// The `AcquireInvoke` this `AcquireOk` answered.
    pub(super) invoked: Option<u64>,
    /// The last `Queued` between that invocation and this `AcquireOk`: when
    /// the waiter last joined a fair lock's queue.
    pub(super) queued: Option<u64>,
    pub(super) acquired: u64,
    /// The latest `valid_until` given (acquire or renewals).
    valid_until: u64,
    /// The first `Lost`.
    pub(super) lost: Option<u64>,
    /// The first `ReleaseInvoke`.
    pub(super) release_invoked: Option<u64>,
    /// The first `ReleaseOk` / `ReleaseInfo`.
    released: Option<u64>,
}

impl Lease<'_> {
    /// The end of the validity window.
    pub(super) fn end(&self) -> u64 {
        [self.lost, self.release_invoked]
            .into_iter()
            .flatten()
            .fold(self.valid_until, u64::min)
    }

    /// Whether the window has no extent (never overlaps anything).
    pub(super) fn empty(&self) -> bool {
        self.end() <= self.acquired
    }
}

/// A store event, in arrival order.
#[derive(Debug)]
pub(super) struct StoreOp<'a> {
    pub(super) t: u64,
    pub(super) client: &'a str,
    pub(super) fence: u64,
    pub(super) value: u64,
    pub(super) accepted: bool,
    pub(super) write: bool,
    /// The lease it belongs to, if the history has it.
    pub(super) lease: Option<usize>,
}

/// The history digested for the checks.
pub(super) struct History<'a> {
    pub(super) meta: Option<Meta>,
    /// The origin of the times in messages.
    t0: u64,
    /// The first `Stop`.
    pub(super) stop: Option<u64>,
    /// In `AcquireOk` order.
    pub(super) leases: Vec<Lease<'a>>,
    pub(super) store: Vec<StoreOp<'a>>,
    /// `Renewing` events: time, lease, its `valid_until` at that time, and
    /// the validity the library said it had left when it decided.
    pub(super) renewings: Vec<(u64, usize, u64, Option<u64>)>,
    /// `ReleaseOk` / `ReleaseInfo`: time, process, fence, `renewing`.
    pub(super) releases: Vec<(u64, &'a str, u64, usize)>,
    /// Lease events (after `AcquireOk`) whose lease the history lacks.
    pub(super) orphans: usize,
    /// `FaultStart` / `FaultEnd`, in order: time, start?, fault, target.
    pub(super) fault_events: Vec<(u64, bool, &'a str, &'a str)>,
    /// The starts of `kill-volatile` faults, in order.
    pub(super) kill_volatile: Vec<u64>,
    /// The last `Final`.
    pub(super) final_value: Option<u64>,
    /// `Leftover`: node and keys.
    pub(super) leftovers: Vec<(usize, &'a [String])>,
    /// `Exited`: client, status, clean.
    pub(super) exits: Vec<(&'a str, &'a str, bool)>,
    pub(super) ops: BTreeMap<String, usize>,
    pub(super) faults: BTreeMap<String, usize>,
}

impl<'a> History<'a> {
    /// Digests `events`, sorted by time.
    pub(super) fn new(events: &[&'a Event]) -> History<'a> {
        let meta = events.iter().find_map(|e| match e.op {
            Op::Meta {
                nodes,
                ttl_ms,
                settle_ms,
                primitive,
                permits,
                ..
            } => Some(Meta {
                t: e.t,
                nodes,
                ttl_ns: ttl_ms.saturating_mul(1_000_000),
                settle_ns: settle_ms.saturating_mul(1_000_000),
                primitive,
                permits,
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
        // Each waiting process's last `Queued` since its invocation.
        let mut queued: HashMap<&'a str, u64> = HashMap::new();

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
                    queued.remove(process);
                }
                Op::Queued => {
                    queued.insert(process, t);
                }
                Op::AcquireOk {
                    fence,
                    valid_until,
                    side,
                } => {
                    ids.insert((process, *fence), h.leases.len());
                    h.leases.push(Lease {
                        process,
                        fence: *fence,
                        side: *side,
                        queued: queued.remove(process),
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
                    queued.remove(process);
                }
                Op::Renewing {
                    fence,
                    valid_for_ns,
                } => {
                    if let Some(i) = lease_of(*fence, &mut h) {
                        let valid_until = h.leases[i].valid_until;
                        h.renewings.push((t, i, valid_until, *valid_for_ns));
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

    /// The quiet periods of `[meta.t, stop]`: the maximal intervals during
    /// which no fault is active (a sweep of the fault events, counting the
    /// open ones; an instant fault, starting and ending at once, splits a
    /// period).
    pub(super) fn quiet_periods(&self, meta: Meta, stop: u64) -> Vec<(u64, u64)> {
        let mut open: HashMap<(&str, &str), usize> = HashMap::new();
        let mut active = 0usize;
        let mut quiet_since = Some(meta.t);
        let mut periods = Vec::new();
        for &(t, start, fault, target) in self.fault_events.iter().filter(|f| f.0 <= stop) {
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
        periods
    }

    /// `t` as seconds since the origin: `12.345s`.
    pub(super) fn at(&self, t: u64) -> String {
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
    pub(super) fn lease(&self, i: usize) -> String {
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
        Op::Queued => "queued",
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
