//! Check 9, queue order: a fair lock serves its live waiters in the order
//! they queued.

use crate::history::Primitive;

use super::digest::History;
use super::CheckResult;

/// Check 9 (fair locks only): if waiter A queued (its last
/// [`Op::Queued`](crate::history::Op::Queued) before its grant) more than a
/// TTL before B's acquire was invoked (and B arrived while A still waited),
/// B must not be served before A — B
/// can only have queued behind A (its first attempt does not jump a queue),
/// and a release hands the lock to the head. Pairs are checked only when
/// no fault is active from A's queuing to B's grant: a paused or killed
/// waiter's entry lapses (it is skipped, as it should be), and a node fault
/// can fail the attempt that queues it. The TTL's margin covers the queuing
/// attempt's round trip after the event.
pub(super) fn queue_order(h: &History) -> CheckResult {
    let mut r = CheckResult::new("queue order");
    let (Some(meta), Some(stop)) = (h.meta, h.stop) else {
        return r;
    };
    if meta.primitive != Primitive::Fair {
        return r;
    }
    let quiet = h.quiet_periods(meta, stop);
    let calm = |from: u64, to: u64| quiet.iter().any(|&(a, b)| a <= from && to <= b);
    let (mut checked, mut exempt) = (0usize, 0usize);
    for (ai, a) in h.leases.iter().enumerate() {
        let Some(queued) = a.queued else { continue };
        for (bi, b) in h.leases.iter().enumerate() {
            let Some(invoked) = b.invoked else { continue };
            // B arrived a margin after A queued, while A still waited.
            let arrived_behind =
                invoked > queued.saturating_add(meta.ttl_ns) && invoked < a.acquired;
            if b.process == a.process || !arrived_behind {
                continue;
            }
            if !calm(queued, b.acquired.min(a.acquired)) {
                exempt += 1;
                continue;
            }
            checked += 1;
            if b.acquired > a.acquired {
                continue; // served after A: in order
            }
            r.violation(|| {
                format!(
                    "{} was served before {}, which had queued at {}, before it was invoked at {}",
                    h.lease(bi),
                    h.lease(ai),
                    h.at(queued),
                    h.at(invoked)
                )
            });
        }
    }
    r.count(
        "waiters queued",
        h.leases.iter().filter(|l| l.queued.is_some()).count(),
    );
    r.count("pairs checked", checked);
    r.count("pairs under faults or past the stop (not checked)", exempt);
    r
}
