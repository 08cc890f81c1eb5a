//! Checks 3 and 4, on the store's events: lapsed writes are fenced out
//! (stale writes), and the accepted writes lose no update.

use super::digest::{History, StoreOp};
use super::{CheckResult, Count};

/// Check 3: lapsed writes are rejected once a later holder has reached the
/// store; stale reads are counted.
pub(super) fn stale_writes(h: &History) -> CheckResult {
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
pub(super) fn no_lost_update(h: &History) -> CheckResult {
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
