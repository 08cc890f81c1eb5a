//! The checks' own tests: each check against histories built to pass
//! and to fail it.

use super::*;
use crate::history::{Op, Primitive, Side};

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
        H::of(volatile, Primitive::Lock, 0)
    }

    /// A history of `primitive`'s clients (`permits` for a semaphore).
    fn of(volatile: usize, primitive: Primitive, permits: usize) -> H {
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
                primitive,
                permits,
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
                side: Side::Exclusive,
            },
        )
    }

    fn store_read(&mut self, ms: u64, client: &str, fence: u64, value: u64, ok: bool) -> &mut H {
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

    fn store_write(&mut self, ms: u64, client: &str, fence: u64, value: u64, ok: bool) -> &mut H {
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

    /// `AcquireInvoke` at `invoke`, an `AcquireOk` of `side` at `ok` valid
    /// until `until`, and its release at `release`.
    fn hold(
        &mut self,
        p: &str,
        fence: u64,
        side: Side,
        (invoke, ok, until): (u64, u64, u64),
        release: u64,
    ) -> &mut H {
        self.at(invoke, p, Op::AcquireInvoke);
        self.at(
            ok,
            p,
            Op::AcquireOk {
                fence,
                valid_until: until * MS,
                side,
            },
        );
        self.release(release, p, fence)
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
/// passes, and returns the counts of check `name`.
fn passing_counts(h: &mut H, stop: u64, value: u64, name: &str) -> Vec<(&'static str, u64)> {
    let report = h.finish(stop, value).report();
    assert!(report.ok(), "{}", report.table());
    counts(result(&report, name))
}

/// A check's counts, as (what, how many); an unknown value is `u64::MAX`.
fn counts(r: &CheckResult) -> Vec<(&'static str, u64)> {
    r.counts
        .iter()
        .map(|c| (c.what, c.value.unwrap_or(u64::MAX)))
        .collect()
}

/// The quiet periods liveness counted: all, checked, skipped.
fn quiet(all: u64, checked: u64, skipped: u64) -> Vec<(&'static str, u64)> {
    vec![
        ("quiet periods", all),
        ("quiet periods checked", checked),
        ("quiet periods skipped (shorter than settle + ttl)", skipped),
    ]
}

/// The lapsed writes and stale reads the stale-writes check counted.
fn stale(
    (lapsed, rejected, accepted): (u64, u64, u64),
    (reads, reads_rejected): (u64, u64),
) -> Vec<(&'static str, u64)> {
    vec![
        ("lapsed writes", lapsed),
        ("lapsed writes rejected", rejected),
        (
            "lapsed writes accepted (no later holder had reached the store)",
            accepted,
        ),
        ("stale reads", reads),
        ("stale reads rejected", reads_rejected),
    ]
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
            h.at(
                start + 2,
                &p,
                Op::Renewing {
                    fence,
                    valid_for_ns: None,
                },
            );
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
            "clients",
            "queue order"
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
    assert_eq!(counts(result(&report, "liveness")), quiet(3, 1, 2));
    assert_eq!(
        counts(result(&report, "nothing left")),
        [("nodes scanned", 2), ("nodes", 2), ("keys left", 0)]
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
        r.examples[0]
            .starts_with("c1.0 fence 3 (invoked at 0.300s, acquired at 0.310s) after c0.0 fence 5"),
        "{r:?}"
    );
    assert_eq!(
        r.counted("fence regressions after volatile restarts (outside the stated assumptions)"),
        Some(0),
        "{r:?}"
    );
}

#[test]
fn volatile_nodes_that_were_never_killed_exempt_nothing() {
    let report = regression(&mut H::new(1)).finish(3000, 0).report();
    let r = result(&report, "fences");
    assert_eq!(r.violations, 2, "{r:?}");
    assert_eq!(
        r.counted("fence regressions after volatile restarts (outside the stated assumptions)"),
        Some(0),
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
    assert_eq!(
        r.counted("fence regressions after volatile restarts (outside the stated assumptions)"),
        Some(2),
        "{r:?}"
    );

    // A kill-volatile after the regressed lease was acquired exempts
    // only the later one.
    let mut h = H::new(0);
    regression(&mut h).fault(315, Some(316), "kill-volatile", "node1");
    let report = h.finish(3000, 0).report();
    let r = result(&report, "fences");
    assert_eq!(r.violations, 1, "{r:?}");
    assert_eq!(
        r.counted("fence regressions after volatile restarts (outside the stated assumptions)"),
        Some(1),
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
            side: Side::Exclusive,
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
            side: Side::Exclusive,
        },
    );
    let report = h.finish(600, 0).report();
    let r = result(&report, "exclusion");
    assert_eq!(r.violations, 0, "{r:?}");
    assert_eq!(
        r.counted("expired before acquisition was recorded"),
        Some(1),
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
    assert_eq!(&counts(r)[..3], &stale((1, 0, 0), (0, 0))[..3], "{r:?}");
}

#[test]
fn a_lapsed_write_may_be_accepted_or_rejected_when_no_later_holder_reached_the_store() {
    // Accepted: the later holder reads afterwards and sees it.
    let mut h = two_holders();
    h.store_write(1050, "c0.0", 1, 1, true);
    h.store_read(1150, "c1.0", 2, 1, true);
    h.store_write(1250, "c1.0", 2, 2, true);
    assert_eq!(
        passing_counts(&mut h, 3000, 2, "stale writes"),
        stale((1, 0, 1), (0, 0))
    );

    // Rejected (after the later holder), and a stale read refused.
    let mut h = two_holders();
    h.store_read(1150, "c1.0", 2, 0, true);
    h.store_read(1160, "c0.0", 1, 0, false);
    h.store_write(1200, "c0.0", 1, 1, false);
    h.store_write(1250, "c1.0", 2, 1, true);
    assert_eq!(
        passing_counts(&mut h, 3000, 1, "stale writes"),
        stale((1, 1, 0), (1, 1))
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
    assert_eq!(counts(r), [("accepted writes", 6), ("final value", 6)]);
    assert_eq!(r.note(), "accepted writes: 6; final value: 6");
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
    assert_eq!(r.counted("final value"), None);
    assert_eq!(r.note(), "accepted writes: 2; final value: missing");
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

/// A renewal decided in time but recorded after a stop of its process
/// across the deadline is the stop's doing, and counted; one decided with
/// nothing left, or recorded late without a stop, is a violation.
#[test]
fn a_renewal_delayed_by_a_stop_of_its_process_is_not_late() {
    let mut h = H::new(0);
    let renewing = |fence: u64, left_ms: u64| Op::Renewing {
        fence,
        valid_for_ns: Some(left_ms * MS),
    };
    // Stopped from 500 (before the deadline at 1001) to 2200.
    h.acquire("c0.0", 1, 0, 1);
    h.fault(500, Some(2200), "pause-client", "c0.0");
    h.at(2201, "c0.0", renewing(1, 300));
    h.at(2202, "c0.0", Op::Lost { fence: 1 });
    h.release(2300, "c0.0", 1);
    // Late with no stop of its own process (another one's does not count).
    h.acquire("c1.0", 2, 3000, 3001);
    h.fault(3500, Some(4200), "pause-client", "c0.0");
    h.at(4201, "c1.0", renewing(2, 300));
    h.at(4202, "c1.0", Op::Lost { fence: 2 });
    h.release(4300, "c1.0", 2);
    // Decided with nothing left, however early it was recorded.
    h.acquire("c2.0", 3, 5000, 5001);
    h.at(5100, "c2.0", renewing(3, 0));
    h.release(5200, "c2.0", 3);
    let report = h.finish(6000, 0).report();
    let r = result(&report, "lease hygiene");
    assert_eq!(
        r.examples,
        [
            "c1.0 fence 2 renewing at 4.201s, after it was past its deadline at 4.001s",
            "c2.0 fence 3 renewing at 5.100s, after it was past its deadline by the library's clock at 6.001s"
        ]
    );
    assert_eq!(
        counts(r),
        [
            ("releases", 3),
            ("renewals sent", 3),
            ("renewals after loss, release or deadline", 2),
            (
                "renewals decided in time and sent after a stop of their process",
                1
            )
        ]
    );
}

#[test]
fn no_renewal_after_loss_or_release() {
    let mut h = H::new(0);
    // Renewing before the loss: fine; twice after it: two violations.
    h.acquire("c0.0", 1, 0, 1);
    h.at(
        100,
        "c0.0",
        Op::Renewing {
            fence: 1,
            valid_for_ns: None,
        },
    );
    h.at(200, "c0.0", Op::Lost { fence: 1 });
    h.at(
        300,
        "c0.0",
        Op::Renewing {
            fence: 1,
            valid_for_ns: None,
        },
    );
    h.at(
        400,
        "c0.0",
        Op::Renewing {
            fence: 1,
            valid_for_ns: None,
        },
    );
    h.release(500, "c0.0", 1);
    // Renewing after the release began: one each.
    h.acquire("c1.0", 2, 1000, 1001);
    h.at(1100, "c1.0", Op::ReleaseInvoke { fence: 2 });
    h.at(
        1101,
        "c1.0",
        Op::Renewing {
            fence: 2,
            valid_for_ns: None,
        },
    );
    h.at(
        1102,
        "c1.0",
        Op::ReleaseOk {
            fence: 2,
            released: true,
            renewing: 0,
        },
    );
    h.at(
        1200,
        "c1.0",
        Op::Renewing {
            fence: 2,
            valid_for_ns: None,
        },
    );
    // Another lease of the same process renewing: fine.
    h.acquire("c1.0", 3, 1300, 1301);
    h.at(
        1400,
        "c1.0",
        Op::Renewing {
            fence: 3,
            valid_for_ns: None,
        },
    );
    h.release(1500, "c1.0", 3);
    // Renewing after the deadline (beyond the drift allowance): one.
    h.acquire("c2.0", 4, 1600, 1601);
    h.at(
        1601 + TTL + 50,
        "c2.0",
        Op::Renewing {
            fence: 4,
            valid_for_ns: None,
        },
    );
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
        counts(r),
        [
            ("releases", 4),
            ("renewals sent", 7),
            ("renewals after loss, release or deadline", 5)
        ]
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
    assert_eq!(
        counts(r),
        [("nodes scanned", 2), ("nodes", 2), ("keys left", 2)]
    );

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
    assert_eq!(counts(r), quiet(2, 1, 1));

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
    assert_eq!(passing_counts(&mut h, 3000, 0, "liveness"), quiet(2, 0, 2));
}

#[test]
fn an_unhealed_fault_lasts_until_the_stop() {
    let mut h = H::new(0);
    h.fault(1000, None, "blackhole", "node0");
    assert_eq!(passing_counts(&mut h, 9000, 0, "liveness"), quiet(1, 0, 1));
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
    assert_eq!(counts(r), quiet(3, 2, 1));
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

#[test]
fn readers_may_overlap_each_other_and_share_a_fence_but_never_a_writer() {
    let mut h = H::of(0, Primitive::Rwlock, 0);
    h.hold("c0.0", 1, Side::Exclusive, (0, 10, 1010), 100);
    // Two readers together, with the write's fence: fine.
    h.hold("c1.0", 1, Side::Read, (150, 200, 1200), 400);
    h.hold("c2.0", 1, Side::Read, (250, 300, 1300), 500);
    assert!(h.clone().finish(1400, 0).report().ok());
    // A writer while a reader holds.
    h.hold("c0.1", 2, Side::Exclusive, (420, 450, 1450), 600);
    // A reader below the last write's fence.
    h.hold("c1.1", 1, Side::Read, (700, 800, 1800), 900);
    let report = h.finish(1400, 0).report();
    let r = result(&report, "exclusion");
    assert_eq!(r.violations, 1, "{r:?}");
    assert!(
        r.examples[0].contains("c2.0 fence 1") && r.examples[0].contains("c0.1 fence 2"),
        "{r:?}"
    );
    let r = result(&report, "fences");
    assert_eq!(r.violations, 1, "{r:?}");
    assert!(r.examples[0].starts_with("c1.1 fence 1"), "{r:?}");
}

#[test]
fn no_more_permits_than_allowed_are_valid_at_once() {
    let mut h = H::of(0, Primitive::Semaphore, 2);
    h.hold("c0.0", 1, Side::Permit, (0, 10, 1010), 300);
    h.hold("c1.0", 2, Side::Permit, (20, 30, 1030), 400);
    // Starts as the first ends: touching, fine.
    h.hold("c2.0", 3, Side::Permit, (200, 300, 1300), 500);
    let ok = h.clone().finish(1400, 0).report();
    assert!(ok.ok(), "{}", ok.table());
    assert_eq!(
        result(&ok, "exclusion").counted("most permits valid at once"),
        Some(2)
    );
    h.hold("c0.1", 4, Side::Permit, (350, 360, 1360), 450);
    let report = h.finish(1400, 0).report();
    let r = result(&report, "exclusion");
    assert_eq!(r.violations, 1, "{r:?}");
    assert_eq!(r.examples, ["3 permits valid at 0.360s (at most 2)"]);
}

/// A fair lock's history: c0 holds, c1 queues at 100, c2 is invoked at
/// 1200 (more than a TTL later) and queues; then one of them is served.
fn fair_pair(second_served_first: bool) -> H {
    let mut h = H::of(0, Primitive::Fair, 0);
    h.hold("c0.0", 1, Side::Exclusive, (0, 10, 1010), 2000);
    h.at(50, "c1.0", Op::AcquireInvoke);
    h.at(100, "c1.0", Op::Queued);
    h.at(1200, "c2.0", Op::AcquireInvoke);
    h.at(1250, "c2.0", Op::Queued);
    let (first, second) = if second_served_first {
        ("c2.0", "c1.0")
    } else {
        ("c1.0", "c2.0")
    };
    for (p, fence, at) in [(first, 2, 2001), (second, 3, 2101)] {
        h.at(
            at,
            p,
            Op::AcquireOk {
                fence,
                valid_until: (at + TTL) * MS,
                side: Side::Exclusive,
            },
        );
        h.release(at + 50, p, fence);
    }
    h
}

#[test]
fn a_fair_lock_serves_live_waiters_in_queue_order() {
    let report = fair_pair(false).finish(5000, 0).report();
    assert!(report.ok(), "{}", report.table());
    let r = result(&report, "queue order");
    assert_eq!(r.counted("pairs checked"), Some(1), "{r:?}");

    let report = fair_pair(true).finish(5000, 0).report();
    let r = result(&report, "queue order");
    assert_eq!(r.violations, 1, "{r:?}");
    assert!(r.examples[0].starts_with("c2.0 fence 2"), "{r:?}");

    // A fault while c1 waits (it may have been paused past its entry):
    // the pair is not checked.
    let mut h = fair_pair(true);
    h.fault(500, Some(600), "pause-client", "c1.0");
    let report = h.finish(5000, 0).report();
    let r = result(&report, "queue order");
    assert_eq!(
        (
            r.violations,
            r.counted("pairs under faults or past the stop (not checked)")
        ),
        (0, Some(1)),
        "{r:?}"
    );

    // Not a fair lock: nothing is checked.
    let mut plain = H::new(0);
    plain
        .events
        .extend(fair_pair(true).events.into_iter().skip(1));
    assert!(result(&plain.finish(5000, 0).report(), "queue order").ok());
}
