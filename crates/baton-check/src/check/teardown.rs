//! Checks 6 and 8, on how the run ended: no lock key left on any node
//! (nothing left), and every client process exited cleanly (clients).

use std::collections::BTreeSet;

use super::digest::History;
use super::CheckResult;

/// Check 8: every client process ran until told to stop (or was killed by
/// the nemesis) and then exited cleanly: a crash or a panic would otherwise
/// just leave fewer contenders.
pub(super) fn clients(h: &History) -> CheckResult {
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
pub(super) fn nothing_left(h: &History) -> CheckResult {
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
