//! `SentinelSet` against real redis-server processes and Sentinels. One set
//! per test, each test a whole story: a set takes seconds to start and to
//! fail over, and two cores run the tests side by side.

use std::time::Instant;

use baton_test_support::SentinelSet;

/// `ROLE`'s first element: `master` or `slave`.
fn role(set: &SentinelSet, port: u16) -> String {
    let role: Vec<redis::Value> = set.node(port).cmd(&["ROLE"]);
    redis::from_redis_value_ref(&role[0]).unwrap()
}

/// Every data node's replication view and key count, and the Sentinels'
/// logs: what a failed data check needs to be understood.
fn nodes_report(set: &SentinelSet) -> String {
    let mut report = String::new();
    for node in set.data_nodes() {
        let info: String = node.try_cmd(&["INFO", "replication"]).unwrap_or_default();
        let keys: i64 = node.try_cmd(&["DBSIZE"]).unwrap_or(-1);
        report.push_str(&format!(
            "--- node {} keys {keys}\n{info}\n{}\n",
            node.port(),
            node.log()
        ));
    }
    for i in 0..3 {
        report.push_str(&format!("--- sentinel {i}\n{}\n", set.sentinel_log(i)));
    }
    report
}

/// A write on the master acknowledged by every running replica, on one
/// connection (`WAIT` counts acknowledgements of its own connection's last
/// write). Returns how many acknowledged.
fn replicated_write(set: &SentinelSet) -> usize {
    let mut conn = set.master().conn();
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut conn)
        .unwrap();
    // Every running replica: the Sentinels may promote either.
    let replicas = set.replicas().iter().filter(|r| r.is_running()).count();
    let acked: usize = redis::cmd("WAIT")
        .arg(replicas)
        .arg(2000)
        .query(&mut conn)
        .unwrap();
    assert_eq!(acked, replicas, "not every replica acknowledged a write");
    acked
}

#[test]
fn starts_reports_itself_and_fails_over_on_demand() {
    let started = Instant::now();
    let set = SentinelSet::start();
    eprintln!("started in {:?}", started.elapsed());

    let addrs = set.sentinel_addrs();
    assert_eq!(addrs.len(), 3);
    let hosts: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    assert!(
        hosts.iter().all(|h| h.starts_with("127.0.0.1:")),
        "{hosts:?}"
    );
    assert_eq!(
        set.url(),
        format!("redis+sentinel://{}/{}", hosts.join(","), set.master_name())
    );
    assert!(set.master_name().starts_with("baton-sentinel-"));

    // The master is the node started as master; the other two replicate.
    let first = set.data_nodes()[0].port();
    assert_eq!(set.master_port(), first);
    assert_eq!(set.master().port(), first);
    assert_eq!(role(&set, first), "master");
    let replicas: Vec<u16> = set.replicas().iter().map(|r| r.port()).collect();
    assert_eq!(replicas.len(), 2);
    for &port in &replicas {
        assert_eq!(role(&set, port), "slave");
    }
    for i in 0..3 {
        let addr: Vec<String> = set.sentinel_cmd(
            i,
            &["SENTINEL", "get-master-addr-by-name", set.master_name()],
        );
        assert_eq!(addr, ["127.0.0.1".to_string(), first.to_string()]);
        assert!(set.sentinel_log(i).contains("+monitor master"));
    }
    // The Sentinels run the data nodes' binary (REDIS_SERVER_BIN, if set).
    let executable = |info: String| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix("executable:").map(str::to_string))
            .expect("INFO server names the executable")
    };
    assert_eq!(
        executable(set.sentinel_cmd(0, &["INFO", "server"])),
        executable(set.master().cmd(&["INFO", "server"]))
    );
    replicated_write(&set);

    let failing_over = Instant::now();
    let second = set.failover();
    eprintln!("failed over in {:?}", failing_over.elapsed());
    assert_ne!(second, first);
    assert!(replicas.contains(&second));
    assert_eq!(set.master_port(), second);
    assert_eq!(role(&set, second), "master");
    // The old master is now a replica, and the data went along.
    assert_eq!(role(&set, first), "slave");
    let k = set.master().cmd::<Option<String>>(&["GET", "k"]);
    assert_eq!(k.as_deref(), Some("v"), "{}", nodes_report(&set));
    replicated_write(&set);

    // A second forced failover right after the first one works too.
    let third = set.failover();
    assert_ne!(third, second);
    assert_eq!(role(&set, second), "slave");
    replicated_write(&set);
}

#[test]
fn kill_master_promotes_a_replica_and_restart_brings_it_back_as_one() {
    let mut set = SentinelSet::start();
    let first = set.master_port();
    let killing = Instant::now();
    let second = set.kill_master();
    eprintln!("failed over after a kill in {:?}", killing.elapsed());
    assert_ne!(second, first);
    assert!(!set.node(first).is_running());
    assert_eq!(set.master_port(), second);
    assert_eq!(role(&set, second), "master");
    replicated_write(&set);

    let restarting = Instant::now();
    set.restart_node(first);
    eprintln!("back as a replica in {:?}", restarting.elapsed());
    assert!(set.node(first).is_running());
    assert_eq!(role(&set, first), "slave");
    assert_eq!(set.master_port(), second);
    assert_eq!(replicated_write(&set), 2, "both replicas acknowledge");
}
