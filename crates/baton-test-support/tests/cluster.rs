//! `LocalCluster` against real redis-server processes. One cluster per
//! test (six processes each), shared by all of the test's asserts.

use std::time::Instant;

use baton_test_support::LocalCluster;
use redis::{ErrorKind, ServerErrorKind};

/// The port a MOVED or ASK error redirects to.
fn redirect_port(err: &redis::RedisError) -> u16 {
    let (addr, _slot) = err
        .redirect_node()
        .unwrap_or_else(|| panic!("not a redirect: {err:?}"));
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn starts_a_cluster_and_routes_keys_to_their_masters() {
    let started = Instant::now();
    let cluster = LocalCluster::start();
    eprintln!("LocalCluster::start took {:?}", started.elapsed());

    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    let mut ports: Vec<u16> = nodes.iter().map(|n| n.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 6);
    assert!(ports.iter().all(|&p| p != 6379 && p < 55536), "{ports:?}");

    let masters: Vec<u16> = cluster.masters().iter().map(|n| n.port()).collect();
    let replicas: Vec<u16> = cluster.replicas().iter().map(|n| n.port()).collect();
    assert_eq!(masters, ports_of(&nodes[..3]));
    assert_eq!(replicas, ports_of(&nodes[3..]));
    assert_eq!(
        cluster.seeds_url(),
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
            masters[0], masters[1], masters[2]
        )
    );
    for node in &nodes {
        let info: String = node.cmd(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_known_nodes:6"), "{info}");
        assert!(info.contains("cluster_size:3"), "{info}");
    }
    // Each replica replicates a different master.
    for (i, replica) in nodes[3..].iter().enumerate() {
        let info: String = replica.cmd(&["INFO", "replication"]);
        assert!(
            info.contains(&format!("master_port:{}", masters[i])),
            "{info}"
        );
    }
    // Slot boundaries as redis-cli splits them.
    for (slot, owner) in [
        (0, 0),
        (5460, 0),
        (5461, 1),
        (10922, 1),
        (10923, 2),
        (16383, 2),
    ] {
        assert_eq!(cluster.master_of_slot(slot).port(), masters[owner]);
        for node in &nodes {
            assert_eq!(
                cluster.owner_seen_by(node.port(), slot),
                Some(masters[owner])
            );
        }
    }

    // slot_of agrees with the server, hash tags included.
    for key in [
        "",
        "k",
        "baton:lock:a",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "{unclosed",
        "ünïcödé",
    ] {
        let server: i64 = nodes[0].cmd(&["CLUSTER", "KEYSLOT", key]);
        assert_eq!(i64::from(LocalCluster::slot_of(key)), server, "{key:?}");
    }

    // A key written where the cluster routes it is on master_of_slot, the
    // other masters redirect to it, and keys() finds it.
    let mut written = Vec::new();
    for key in ["alpha", "beta", "gamma", "delta", "{tag}x", "{tag}y"] {
        let slot = LocalCluster::slot_of(key);
        let owner = cluster.master_of_slot(slot);
        owner.cmd::<()>(&["SET", key, "v"]);
        assert_eq!(
            owner.cmd::<Option<String>>(&["GET", key]).as_deref(),
            Some("v")
        );
        for other in cluster.masters() {
            if other.port() != owner.port() {
                let err = other.try_cmd::<Option<String>>(&["GET", key]).unwrap_err();
                assert_eq!(
                    err.kind(),
                    ErrorKind::Server(ServerErrorKind::Moved),
                    "{err:?}"
                );
                assert_eq!(redirect_port(&err), owner.port());
            }
        }
        written.push(key.to_string());
    }
    written.sort();
    assert_eq!(cluster.keys(), written);
}

fn ports_of(nodes: &[&baton_test_support::RedisServer]) -> Vec<u16> {
    nodes.iter().map(|n| n.port()).collect()
}

#[test]
fn migrates_a_slot_with_ask_redirects_on_the_way() {
    let cluster = LocalCluster::start();
    let key = "{mig}a";
    let slot = LocalCluster::slot_of(key);
    let source = cluster.master_of_slot(slot).port();
    let target = cluster
        .masters()
        .into_iter()
        .map(|m| m.port())
        .find(|&p| p != source)
        .unwrap();
    let src = cluster.node(source);
    src.cmd::<()>(&["SET", key, "1"]);
    src.cmd::<()>(&["SET", "{mig}b", "2"]);

    let started = Instant::now();
    let migration = cluster.begin_migration(slot, target);
    assert_eq!(migration.slot(), slot);
    assert_eq!(migration.source().port(), source);
    assert_eq!(migration.target().port(), target);
    // Before the keys move the source still serves them.
    assert_eq!(
        src.cmd::<Option<String>>(&["GET", key]).as_deref(),
        Some("1")
    );
    assert_eq!(migration.move_keys(), 2);
    // Moved: the source sends clients to the target with ASK...
    let err = src.try_cmd::<Option<String>>(&["GET", key]).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::Ask),
        "{err:?}"
    );
    assert_eq!(redirect_port(&err), target);
    // ...and the target answers after ASKING, but not without it.
    let tgt = cluster.node(target);
    let err = tgt.try_cmd::<Option<String>>(&["GET", key]).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::Moved),
        "{err:?}"
    );
    let mut conn = tgt.conn();
    redis::cmd("ASKING").query::<()>(&mut conn).unwrap();
    let value: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
    assert_eq!(value.as_deref(), Some("1"));
    migration.finish();
    eprintln!(
        "begin_migration + move_keys + finish took {:?}",
        started.elapsed()
    );

    assert_eq!(cluster.master_of_slot(slot).port(), target);
    for node in cluster.nodes() {
        assert_eq!(cluster.owner_seen_by(node.port(), slot), Some(target));
    }
    assert_eq!(
        tgt.cmd::<Option<String>>(&["GET", key]).as_deref(),
        Some("1")
    );
    let err = src.try_cmd::<Option<String>>(&["GET", key]).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::Moved),
        "{err:?}"
    );
    assert_eq!(redirect_port(&err), target);
    assert!(src.keys().is_empty(), "{:?}", src.keys());
    assert_eq!(cluster.keys(), ["{mig}a", "{mig}b"]);

    // migrate_slot in one go, back to the source (an empty slot works too).
    let started = Instant::now();
    cluster.migrate_slot(slot, source);
    eprintln!("migrate_slot took {:?}", started.elapsed());
    for node in cluster.nodes() {
        assert_eq!(cluster.owner_seen_by(node.port(), slot), Some(source));
    }
    assert_eq!(
        src.cmd::<Option<String>>(&["GET", "{mig}b"]).as_deref(),
        Some("2")
    );
    // A neighbour: the source owns a range around the slot.
    let empty = [slot.wrapping_sub(1), slot + 1]
        .into_iter()
        .find(|&s| s < 16384 && cluster.master_of_slot(s).port() == source)
        .unwrap();
    cluster.migrate_slot(empty, target);
    assert_eq!(cluster.master_of_slot(empty).port(), target);
}

#[test]
fn fails_over_a_master_to_its_replica() {
    let cluster = LocalCluster::start();
    let key = "{fo}k";
    let slot = LocalCluster::slot_of(key);
    let old = cluster.master_of_slot(slot);
    old.cmd::<()>(&["SET", key, "v"]);
    let old = old.port();

    let started = Instant::now();
    let new = cluster.failover_master_of_slot(slot);
    eprintln!("failover took {:?}", started.elapsed());

    assert_ne!(new, old);
    assert_eq!(cluster.master_of_slot(slot).port(), new);
    for node in cluster.nodes() {
        assert_eq!(cluster.owner_seen_by(node.port(), slot), Some(new));
    }
    let masters: Vec<u16> = cluster.masters().iter().map(|n| n.port()).collect();
    let replicas: Vec<u16> = cluster.replicas().iter().map(|n| n.port()).collect();
    assert!(
        masters.contains(&new) && !masters.contains(&old),
        "{masters:?}"
    );
    assert!(
        replicas.contains(&old) && !replicas.contains(&new),
        "{replicas:?}"
    );
    assert_eq!(masters.len(), 3);
    assert_eq!(replicas.len(), 3);
    // The write made before the failover is on the new master, and the
    // old one now redirects.
    assert_eq!(
        cluster
            .node(new)
            .cmd::<Option<String>>(&["GET", key])
            .as_deref(),
        Some("v")
    );
    let err = cluster
        .node(old)
        .try_cmd::<Option<String>>(&["GET", key])
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::Moved),
        "{err:?}"
    );
    assert_eq!(redirect_port(&err), new);
    assert_eq!(cluster.keys(), [key]);

    // And back, by replica port.
    assert_eq!(cluster.failover(old), old);
    assert_eq!(cluster.master_of_slot(slot).port(), old);
}

#[test]
fn a_killed_master_is_replaced_and_rejoins_as_a_replica() {
    let mut cluster = LocalCluster::start();
    let key = "{kill}k";
    let slot = LocalCluster::slot_of(key);
    let old = cluster.master_of_slot(slot);
    old.cmd::<()>(&["SET", key, "v"]);
    // Acknowledged by its replica, so the promoted one has it.
    old.wait_for_replica();
    let old = old.port();

    let started = Instant::now();
    cluster.node_mut(old).kill();
    cluster.wait_until_stable();
    eprintln!(
        "automatic failover after a kill took {:?}",
        started.elapsed()
    );
    let new = cluster.master_of_slot(slot).port();
    assert_ne!(new, old);
    for node in cluster.nodes() {
        if node.is_running() {
            assert_eq!(cluster.owner_seen_by(node.port(), slot), Some(new));
        }
    }
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 2);
    assert_eq!(
        cluster
            .node(new)
            .cmd::<Option<String>>(&["GET", key])
            .as_deref(),
        Some("v")
    );

    let started = Instant::now();
    cluster.node_mut(old).restart();
    cluster.wait_until_stable();
    eprintln!("rejoining after a restart took {:?}", started.elapsed());
    let replicas: Vec<u16> = cluster.replicas().iter().map(|n| n.port()).collect();
    assert!(replicas.contains(&old), "{replicas:?}");
    assert_eq!(replicas.len(), 3);
    // Resynced from the new master: the data is back on the old node too.
    assert_eq!(cluster.keys(), [key]);
    assert!(cluster.node(old).keys().contains(&key.to_string()));
}
