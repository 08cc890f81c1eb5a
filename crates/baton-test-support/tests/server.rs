//! `RedisServer` against a real redis-server.

use std::time::Duration;

use baton_test_support::{unique_name, RedisServer, ServerOptions};

#[test]
fn starts_answers_and_reports_itself() {
    let server = RedisServer::start();
    assert_ne!(server.port(), 6379);
    assert_eq!(
        server.addr().to_string(),
        format!("127.0.0.1:{}", server.port())
    );
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert_eq!(server.url(), server.url_without_password());
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
    server.cmd::<()>(&["SET", "k", "v"]);
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "k"]).as_deref(),
        Some("v")
    );
    assert_eq!(server.cmd::<Option<String>>(&["GET", "missing"]), None);
    assert!(server.try_cmd::<String>(&["NOT-A-COMMAND"]).is_err());
    let info: String = server.cmd(&["INFO", "server"]);
    assert!(
        info.contains(&format!("process_id:{}", server.pid())),
        "{info}"
    );
    assert!(
        server.log().contains("Ready to accept connections"),
        "{}",
        server.log()
    );
    assert!(server.is_running());
}

#[test]
fn servers_are_isolated() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    assert_ne!(a.port(), b.port());
    a.cmd::<()>(&["SET", "only-in-a", "1"]);
    assert_eq!(a.keys(), ["only-in-a"]);
    assert!(b.keys().is_empty());
}

#[test]
fn keys_scans_everything_sorted() {
    let server = RedisServer::start();
    let names: Vec<String> = (0..1500).map(|i| format!("key:{i:04}")).collect();
    let mut mset = vec!["MSET"];
    for name in &names {
        mset.extend([name.as_str(), "x"]);
    }
    server.cmd::<()>(&mset);
    assert_eq!(server.keys(), names);
}

#[test]
fn persistent_data_survives_kill_and_restart() {
    let mut server = RedisServer::start_with(ServerOptions::default().persistence(true));
    let (port, pid) = (server.port(), server.pid());
    let key = unique_name("kept");
    server.cmd::<()>(&["SET", &key, "v"]);
    server.kill();
    assert!(!server.is_running());
    assert!(server.try_cmd::<String>(&["PING"]).is_err());
    server.restart();
    assert!(server.is_running());
    assert_eq!((server.port(), server.pid() == pid), (port, false));
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", &key]).as_deref(),
        Some("v")
    );
}

#[test]
fn without_persistence_a_restart_comes_back_empty() {
    let mut server = RedisServer::start();
    server.cmd::<()>(&["SET", "k", "v"]);
    server.kill();
    server.restart();
    assert_eq!(server.cmd::<Option<String>>(&["GET", "k"]), None);
    assert!(server.keys().is_empty());
}

#[test]
fn restart_kills_a_running_server_first() {
    let mut server = RedisServer::start_with(ServerOptions::default().persistence(true));
    let pid = server.pid();
    server.cmd::<()>(&["SET", "k", "v"]);
    server.restart();
    assert_ne!(server.pid(), pid);
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "k"]).as_deref(),
        Some("v")
    );
}

#[test]
fn a_paused_server_answers_nothing_until_resumed() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    server.pause();
    assert!(server.is_running(), "a paused server is still running");
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = redis::cmd("PING").query::<String>(&mut conn).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    server.resume();
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
}

#[test]
fn dropping_a_paused_server_ends_it() {
    let server = RedisServer::start();
    let pid = server.pid();
    server.pause();
    drop(server);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn a_password_is_required_and_carried_by_url() {
    let password = "p@ss word:/%";
    let server = RedisServer::start_with(ServerOptions::default().password(password));
    assert!(
        server
            .url()
            .starts_with("redis://:p%40ss%20word%3A%2F%25@127.0.0.1:"),
        "{}",
        server.url()
    );
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut conn).unwrap(),
        "PONG"
    );
    let anonymous = redis::Client::open(server.url_without_password())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
    let err = anonymous.unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err:?}");
}

#[test]
fn flush_scripts_forgets_loaded_scripts() {
    let server = RedisServer::start();
    let sha: String = server.cmd(&["SCRIPT", "LOAD", "return 1"]);
    assert_eq!(server.cmd::<i64>(&["EVALSHA", &sha, "0"]), 1);
    server.flush_scripts();
    let err = server.try_cmd::<i64>(&["EVALSHA", &sha, "0"]).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("noscript"),
        "{err:?}"
    );
}

#[tokio::test]
async fn works_inside_a_tokio_runtime() {
    let mut server = RedisServer::start();
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
    server.restart();
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
}

#[test]
fn restart_waits_for_a_briefly_busy_port() {
    let mut server = RedisServer::start();
    server.kill();
    // Someone else holds the port for a moment: restart must retry, not fail.
    let squatter = std::net::TcpListener::bind(server.addr()).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(squatter);
    });
    server.restart();
    release.join().unwrap();
    assert_eq!(server.cmd::<String>(&["PING"]), "PONG");
    assert!(
        server.log().contains("Address already in use"),
        "{}",
        server.log()
    );
}
