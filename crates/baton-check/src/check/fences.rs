//! Check 1, fences: the store accepts only increasing fences, and fences are
//! issued in real-time order.

use crate::history::Side;

use super::digest::{History, StoreOp};
use super::CheckResult;

/// Check 1: accepted writes' fences increase; issued fences increase in
/// real time (a sweep over acquisitions in time order against invocations
/// in time order, keeping the greatest fence acquired so far).
pub(super) fn fences(h: &History) -> CheckResult {
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
        // A reader carries the last write's fence (readers share it): it
        // may equal an earlier lease's, never be below it.
        let shares = h.leases[b].side == Side::Read;
        let Some(a) = greatest.filter(|&a| {
            let (earlier, later) = (h.leases[a].fence, h.leases[b].fence);
            earlier > later || (earlier == later && !shares)
        }) else {
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
