//! Check 2, exclusion: no exclusive lease's validity window overlaps any
//! other's (a reader's overlaps only other readers'), and no more than
//! `Meta.permits` of a semaphore's permits are valid at once.

use crate::history::Side;

use super::digest::History;
use super::CheckResult;

/// Check 2: an exclusive window overlaps nothing, a reader's no exclusive
/// one (a sweep in acquisition order, keeping the latest-ending window of
/// each kind: for every overlapping pair, the later one meets the earlier
/// there); permits: a sweep over window ends and starts, counting.
pub(super) fn exclusion(h: &History) -> CheckResult {
    let mut r = CheckResult::new("exclusion");
    let (mut any, mut exclusive): (Option<usize>, Option<usize>) = (None, None);
    let mut empty = 0;
    let (mut permits, mut reads) = (Vec::new(), Vec::new());
    for (b, lease) in h.leases.iter().enumerate() {
        if lease.empty() {
            empty += 1;
            continue;
        }
        let against = match lease.side {
            Side::Exclusive => any,
            Side::Read => {
                reads.push((lease.acquired, lease.end()));
                exclusive
            }
            Side::Permit => {
                permits.push((lease.acquired, lease.end()));
                None
            }
        };
        if let Some(a) = against.filter(|&a| h.leases[a].end() > lease.acquired) {
            r.violation(|| format!("{} overlaps {}", h.lease(a), h.lease(b)));
        }
        let later = |open: Option<usize>| open.is_none_or(|a| lease.end() > h.leases[a].end());
        if lease.side != Side::Permit && later(any) {
            any = Some(b);
        }
        if lease.side == Side::Exclusive && later(exclusive) {
            exclusive = Some(b);
        }
    }
    let allowed = h.meta.map_or(0, |m| m.permits);
    let most = at_once(&permits, |valid, t| {
        if valid > allowed {
            r.violation(|| format!("{valid} permits valid at {} (at most {allowed})", h.at(t)));
        }
    });
    r.count("leases", h.leases.len());
    r.count("expired before acquisition was recorded", empty);
    if !permits.is_empty() {
        r.count("most permits valid at once", most);
    }
    if !reads.is_empty() {
        r.count("read leases", reads.len());
        r.count("most readers at once", at_once(&reads, |_, _| {}));
    }
    r
}

/// Counts the windows open at each moment (an end before a start at the
/// same time: touching windows do not overlap), calling `opened` with the
/// count and time at each start. Returns the most open at once.
fn at_once(windows: &[(u64, u64)], mut opened: impl FnMut(usize, u64)) -> usize {
    let mut edges: Vec<(u64, bool)> = windows
        .iter()
        .flat_map(|&(start, end)| [(start, true), (end, false)])
        .collect();
    edges.sort_by_key(|&(t, start)| (t, start));
    let (mut open, mut most) = (0usize, 0usize);
    for (t, start) in edges {
        if !start {
            open -= 1;
            continue;
        }
        open += 1;
        most = most.max(open);
        opened(open, t);
    }
    most
}
