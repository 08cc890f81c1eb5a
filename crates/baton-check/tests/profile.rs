//! The checker's short CI profile: the real binary, real redis-server
//! processes and client processes, every fault, single-server and Redlock
//! modes. A run passes only if every check of its history passes; the test
//! also asserts the run was not vacuous (faults injected, locks taken,
//! writes accepted and stale ones refused).

use std::path::{Path, PathBuf};
use std::process::Command;

use baton_check::check::{check, Report};
use baton_check::history::load;
use baton_check::nemesis::{Fault, Topology};

/// A fresh output directory under the target dir.
fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("baton-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs the checker with `args`; returns its exit code and the report of
/// its history (checked again here, from the file).
fn run(out: &Path, args: &[&str]) -> (i32, Report, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_baton-check"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("baton-check runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "baton-check could not run ({code}):\n{stdout}\n{stderr}"
    );
    let events = load(&[out.join("history.jsonl")]).expect("the history is readable");
    (code, check(&events), format!("{stdout}\n{stderr}"))
}

/// The run was a real contest under every fault it was to inject.
fn assert_not_vacuous(report: &Report, faults: &[Fault], output: &str) {
    let op = |k: &str| report.ops.get(k).copied().unwrap_or(0);
    assert!(op("acquire_ok") >= 10, "too few acquisitions:\n{output}");
    // A semaphore's holders leave the store alone.
    let permits = report
        .get("exclusion")
        .and_then(|r| r.counted("most permits valid at once"));
    assert!(
        permits.is_some() || op("write_accepted") >= 5,
        "too few writes:\n{output}"
    );
    assert!(op("renewed") >= 1, "no lease was ever renewed:\n{output}");
    for fault in faults {
        assert!(
            report.faults.get(fault.name()).copied().unwrap_or(0) >= 1,
            "{} was never injected:\n{output}",
            fault.name()
        );
    }
}

/// The faults of separate servers (and clients).
fn servers_faults() -> Vec<Fault> {
    Fault::ALL
        .into_iter()
        .filter(|f| f.applies_to(Topology::Servers))
        .collect()
}

/// A 26 s run under every fault with `args`: it must pass every check and
/// have injected each of `faults`.
fn under_every_fault(name: &str, args: &[&str], faults: &[Fault]) -> Report {
    under_every_fault_for(name, "26s", args, faults)
}

/// A run of `duration` under every fault with `args`, as
/// [`under_every_fault`].
fn under_every_fault_for(name: &str, duration: &str, args: &[&str], faults: &[Fault]) -> Report {
    let out = out_dir(name);
    let mut all = vec![
        "--clients",
        "4",
        "--duration",
        duration,
        "--ttl",
        "400ms",
        "--nemesis",
        "all",
    ];
    all.extend_from_slice(args);
    passes(&out, &all, faults)
}

/// Runs with `args`: it must pass every check and have injected each of
/// `faults`.
fn passes(out: &Path, args: &[&str], faults: &[Fault]) -> Report {
    let (code, report, output) = run(out, args);
    assert!(report.ok(), "violations:\n{output}");
    assert_eq!(code, 0, "{output}");
    assert_not_vacuous(&report, faults, &output);
    report
}

/// How many violations check `name` found.
fn violations(report: &Report, name: &str) -> usize {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .map_or(0, |c| c.violations)
}

#[test]
fn single_server_under_every_fault() {
    under_every_fault("single", &["--nodes", "1"], &single_server_faults());
}

/// One server's faults (it has persistence: no node to kill without it).
fn single_server_faults() -> Vec<Fault> {
    servers_faults()
        .into_iter()
        .filter(|&f| f != Fault::KillVolatile)
        .collect()
}

/// A semaphore of 3 under every fault: never more than 3 valid permits,
/// and the contest did reach 3.
#[test]
fn a_semaphore_under_every_fault() {
    let report = under_every_fault(
        "semaphore",
        &["--nodes", "1", "--primitive", "semaphore", "--permits", "3"],
        &single_server_faults(),
    );
    let most = report
        .get("exclusion")
        .and_then(|r| r.counted("most permits valid at once"));
    assert_eq!(most, Some(3), "{}", report.table());
}

/// A read-write lock under every fault: a writer never beside anyone, and
/// both sides were taken.
#[test]
fn a_read_write_lock_under_every_fault() {
    let report = under_every_fault(
        "rwlock",
        &["--nodes", "1", "--primitive", "rwlock"],
        &single_server_faults(),
    );
    let readers = report
        .get("exclusion")
        .and_then(|r| r.counted("read leases"));
    assert!(readers.is_some_and(|n| n >= 10), "{}", report.table());
}

/// A fair lock under every fault: live waiters served in queue order, with
/// pairs to check. Longer: after a fault, a dead waiter may hold the queue
/// for its entry's life (and a lock handed to it as long), so its quiet
/// periods are longer and a phase comes round less often.
#[test]
fn a_fair_lock_under_every_fault() {
    let report = under_every_fault_for(
        "fair",
        "60s",
        &["--nodes", "1", "--primitive", "fair"],
        &single_server_faults(),
    );
    let pairs = report
        .get("queue order")
        .and_then(|r| r.counted("pairs checked"));
    assert!(pairs.is_some_and(|n| n >= 20), "{}", report.table());
}

#[test]
fn redlock_under_every_fault() {
    under_every_fault(
        "redlock",
        &["--nodes", "3", "--volatile", "1"],
        &servers_faults(),
    );
}

/// The checker is not vacuous: with a store that does not check fences,
/// a paused holder's late write overwrites a later holder's and the run
/// fails with a lost update. (Each pause lands mid-hold with high
/// probability; three runs make a miss all but impossible.)
#[test]
fn without_fencing_a_paused_holder_loses_an_update() {
    for attempt in 0..3 {
        let out = out_dir(&format!("unfenced-{attempt}"));
        let (code, report, output) = run(
            &out,
            &[
                "--nodes",
                "1",
                "--clients",
                "3",
                "--duration",
                "8s",
                "--ttl",
                "300ms",
                "--nemesis",
                "pause-client",
                "--unfenced",
            ],
        );
        if violations(&report, "no lost update") > 0 {
            assert_eq!(code, 1, "a violation fails the run:\n{output}");
            return;
        }
    }
    panic!("three unfenced runs with paused holders and no lost update: the checker sees nothing");
}

/// A Sentinel set under failovers (forced, the master killed, and writes
/// lost with a killed master) with acknowledgement by both replicas: every
/// check passes, and every failover kind was injected. (With one of two,
/// a forced failover can lose a write the other replica confirmed to the
/// old master while the new one was already promoted: the README says so.)
#[test]
fn sentinel_with_replica_acknowledgement_under_failovers() {
    let out = out_dir("sentinel-acknowledged");
    let faults = [Fault::Failover, Fault::KillMaster, Fault::LoseWrites];
    passes(
        &out,
        &[
            "--topology",
            "sentinel",
            "--min-replicas",
            "2",
            "--clients",
            "4",
            "--duration",
            "45s",
            "--ttl",
            "1s",
            "--nemesis",
            "failover,kill-master,lose-writes",
        ],
        &faults,
    );
}

/// The checker sees what replica acknowledgement is for: without it, the
/// writes a killed master took alone (the lock's, and its fence counter's)
/// are lost in the failover, and the next holders get fences lower than
/// earlier ones: the run fails.
#[test]
fn without_replica_acknowledgement_a_failover_loses_fences() {
    let out = out_dir("sentinel-unacknowledged");
    let (code, report, output) = run(
        &out,
        &[
            "--topology",
            "sentinel",
            "--clients",
            "4",
            "--duration",
            "20s",
            "--ttl",
            "1s",
            "--nemesis",
            "lose-writes",
        ],
    );
    assert_eq!(code, 1, "the run fails:\n{output}");
    assert!(
        violations(&report, "fences") + violations(&report, "exclusion") > 0,
        "a lost write shows as repeated fences or overlapping holders:\n{output}"
    );
    assert!(
        report.faults.get("lose-writes").copied().unwrap_or(0) >= 1,
        "{output}"
    );
}

/// A local cluster under the same failovers and slot migrations of the
/// lock's slot, with acknowledgement by its master's one replica: every
/// check passes, and every kind was injected.
#[test]
fn cluster_with_replica_acknowledgement_under_failovers_and_migrations() {
    let out = out_dir("cluster-acknowledged");
    let faults = [
        Fault::Failover,
        Fault::KillMaster,
        Fault::LoseWrites,
        Fault::Migrate,
    ];
    passes(
        &out,
        &[
            "--topology",
            "cluster",
            "--min-replicas",
            "1",
            "--clients",
            "4",
            "--duration",
            "45s",
            "--ttl",
            "1s",
            "--nemesis",
            "failover,kill-master,lose-writes,migrate",
        ],
        &faults,
    );
}
