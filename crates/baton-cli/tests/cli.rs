//! The real `baton` binary against real redis-server processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use baton_test_support::RedisServer;

const DEADLINE: Duration = Duration::from_secs(30);

fn baton(server: &RedisServer, args: &[&str]) -> Command {
    baton_at(&server.url(), args)
}

/// The command with `BATON_URL` set to `url` (a server, a Sentinel set).
fn baton_at(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.args(args)
        .env("BATON_URL", url)
        .env_remove("BATON_PREFIX")
        .env_remove("RUST_LOG");
    cmd
}

/// Runs to completion: (status code, stdout, stderr).
fn run(server: &RedisServer, args: &[&str]) -> (i32, String, String) {
    run_at(&server.url(), args)
}

/// [`run`] with `BATON_URL` set to `url`.
fn run_at(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = baton_at(url, args)
        .stdin(Stdio::null())
        .output()
        .expect("run baton");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for a child to exit, failing after the deadline.
fn wait(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < DEADLINE, "baton did not exit in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `baton` with `args` (stdin, stdout and stderr piped) and waits
/// for the command's first line, which says it has started (so the lock is
/// held): the child, the rest of its stdout, and that line.
fn started(server: &RedisServer, args: &[&str]) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = baton(server, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert!(line.starts_with("started"), "{line:?}");
    (child, out, line)
}

/// `baton exec job EXTRA -- …` on a command that says "started $BATON_FENCE
/// $$" and then blocks reading stdin.
fn holder(server: &RedisServer, extra: &[&str]) -> (Child, BufReader<ChildStdout>, String) {
    let mut args = vec!["exec", "job"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--",
        "sh",
        "-c",
        "echo \"started $BATON_FENCE $$\"; read line; echo done",
    ]);
    started(server, &args)
}

/// `baton exec job --ttl TTL --kill-after 1s` on a command that says
/// "started" and sleeps.
fn sleeper(server: &RedisServer, ttl: &str) -> Child {
    let args = [
        "exec",
        "job",
        "--ttl",
        ttl,
        "--kill-after",
        "1s",
        "--",
        "sh",
        "-c",
        "echo started; exec sleep 30",
    ];
    started(server, &args).0
}

/// Everything the child wrote on stderr.
fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

/// A stderr that cannot be written, as cron or a supervisor may leave it:
/// every write fails with EPIPE. (A socket whose other end is closed, as a
/// pipe whose reader has gone; std makes it close-on-exec, so no other
/// test's child can be holding the other end.)
fn closed_stderr() -> Stdio {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    drop(ours);
    Stdio::from(std::os::fd::OwnedFd::from(theirs))
}

fn one_line(stderr: &str) {
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one clear line: {stderr:?}"
    );
    assert!(stderr.starts_with("baton: "), "{stderr:?}");
}

#[test]
fn a_second_exec_skips_a_busy_lock_with_75_or_the_chosen_code() {
    let server = RedisServer::start();
    let (mut first, _out, _) = holder(&server, &["-n"]);
    let (code, stdout, stderr) = run(&server, &["exec", "job", "-n", "--", "echo", "ran"]);
    assert_eq!(code, 75);
    assert!(!stdout.contains("ran"), "the command did not run");
    one_line(&stderr);
    assert_eq!(
        run(
            &server,
            &[
                "exec",
                "job",
                "-n",
                "--conflict-exit-code",
                "0",
                "--",
                "true"
            ]
        )
        .0,
        0
    );
    let (code, _, stderr) = run(&server, &["exec", "job", "--wait", "200ms", "--", "true"]);
    assert_eq!(code, 75, "the wait ran out");
    one_line(&stderr);
    first.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(wait(&mut first).code(), Some(0));
    assert_eq!(
        server.cmd::<Option<String>>(&["GET", "baton:job"]),
        None,
        "released when the command ended"
    );
}

#[test]
fn the_command_gets_its_fence_name_and_ttl_and_its_status_passes_through() {
    let server = RedisServer::start();
    let script = "echo \"$BATON_NAME $BATON_FENCE $BATON_TTL_MS\"";
    let (code, first, _) = run(
        &server,
        &["exec", "job", "--ttl", "3s", "--", "sh", "-c", script],
    );
    assert_eq!((code, first.trim()), (0, "job 1 3000"));
    let (_, second, _) = run(&server, &["exec", "job", "--", "sh", "-c", script]);
    assert_eq!(
        second.trim(),
        "job 2 10000",
        "the fence increases across runs"
    );
    assert_eq!(
        run(&server, &["exec", "job", "--", "sh", "-c", "exit 7"]).0,
        7
    );
    assert_eq!(
        run(&server, &["exec", "job", "--", "sh", "-c", "kill -TERM $$"]).0,
        128 + 15
    );
    let (code, _, stderr) = run(&server, &["exec", "job", "--", "/nonexistent/command"]);
    assert_eq!(code, 127);
    one_line(&stderr);
    assert_eq!(server.cmd::<Option<String>>(&["GET", "baton:job"]), None);
}

#[test]
fn a_lost_lease_stops_the_command_and_exits_76() {
    let server = RedisServer::start();
    let mut child = sleeper(&server, "300ms");
    server.cmd::<()>(&["DEL", "baton:job"]);
    assert_eq!(wait(&mut child).code(), Some(76));
    let stderr = stderr_of(&mut child);
    one_line(&stderr);
    assert!(stderr.contains("lost"), "{stderr:?}");
}

#[test]
fn signals_to_baton_reach_the_command_and_the_lock_is_released() {
    let server = RedisServer::start();
    let script = "trap 'exit 42' TERM; echo started; while :; do sleep 0.05; done";
    let (mut child, _out, _) = started(&server, &["exec", "job", "--", "sh", "-c", script]);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        wait(&mut child).code(),
        Some(42),
        "the command's own status, after handling the signal"
    );
    assert_eq!(server.cmd::<Option<String>>(&["GET", "baton:job"]), None);
}

/// A process the test did not start itself (baton's command), killed when
/// dropped if it still runs: a failing test leaves nothing behind.
struct Orphan {
    pid: i32,
    /// When it started (Linux), so that a later process given the same pid
    /// is not taken for it.
    start: Option<String>,
}

impl Orphan {
    fn new(pid: &str) -> Orphan {
        let pid = pid.parse().expect("a pid");
        Orphan {
            pid,
            start: stat(pid).map(|(_, start)| start),
        }
    }

    /// Whether it still runs. On Linux a zombie (dead, not yet reaped by
    /// whoever adopted it) does not.
    fn running(&self) -> bool {
        if cfg!(target_os = "linux") {
            stat(self.pid).is_some_and(|(state, start)| {
                Some(start) == self.start && !matches!(state, 'Z' | 'X')
            })
        } else {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), None).is_ok()
        }
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        if self.running() {
            let pid = nix::unistd::Pid::from_raw(self.pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A process's state letter and start time, from /proc/PID/stat (Linux).
fn stat(pid: i32) -> Option<(char, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold anything but the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.to_owned(); // field 22, starttime
    Some((state, start))
}

#[test]
fn a_killed_baton_leaves_a_key_that_expires_within_its_ttl() {
    let server = RedisServer::start();
    let (mut child, _out, line) = holder(&server, &["--ttl", "1s"]);
    let _command = Orphan::new(line.split_whitespace().nth(2).unwrap());
    child.kill().unwrap(); // SIGKILL: no release, no more renewals
    wait(&mut child);
    // Never more than the TTL (no renewal outlives baton); -2 if already gone.
    let pttl: i64 = server.cmd(&["PTTL", "baton:job"]);
    assert!(pttl == -2 || (0..=1000).contains(&pttl), "{pttl}");
    let start = Instant::now();
    while server
        .cmd::<Option<String>>(&["GET", "baton:job"])
        .is_some()
    {
        assert!(start.elapsed() < DEADLINE, "the key outlived its ttl");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `baton` SIGKILLed while its command runs (Linux): the command is killed
/// with it, so it cannot go on without the lock; once the lease has expired
/// the next `exec -n` runs, alone.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_baton_takes_its_command_with_it() {
    let server = RedisServer::start();
    let args = [
        "exec",
        "job",
        "--ttl",
        "1s",
        "--",
        "sh",
        "-c",
        "echo started $$; exec sleep 600",
    ];
    let (mut child, _out, line) = started(&server, &args);
    let command = Orphan::new(line.split_whitespace().nth(1).unwrap());
    assert!(command.running(), "{line}");
    child.kill().unwrap();
    wait(&mut child);
    let start = Instant::now();
    while command.running() {
        assert!(start.elapsed() < DEADLINE, "the command outlived baton");
        std::thread::sleep(Duration::from_millis(10));
    }
    while server
        .cmd::<Option<String>>(&["GET", "baton:job"])
        .is_some()
    {
        assert!(start.elapsed() < DEADLINE, "the key outlived its ttl");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, stdout, stderr) = run(&server, &["exec", "job", "-n", "--", "echo", "ran"]);
    assert_eq!((code, stdout.trim()), (0, "ran"), "{stderr}");
}

#[test]
fn status_and_forced_release() {
    let server = RedisServer::start();
    let (code, stdout, _) = run(&server, &["status", "job"]);
    let on = format!("127.0.0.1:{}", server.port());
    assert_eq!(
        (code, stdout.trim()),
        (0, format!("job: free (never taken) on {on}").as_str()),
        "the server that answered is named"
    );
    let (mut child, _out, _) = holder(&server, &["--ttl", "3s"]);
    let token: String = server.cmd(&["GET", "baton:job"]);
    let (code, stdout, _) = run(&server, &["status", "job"]);
    assert_eq!(code, 1, "held: exit 1");
    assert!(
        stdout.starts_with(&format!("job: held by {}", &token[..8])) && stdout.contains("fence 1"),
        "{stdout}"
    );
    let (_, json, _) = run(&server, &["status", "job", "--json"]);
    assert!(
        json.starts_with("{\"name\":\"job\",\"held\":true,")
            && json.contains(&format!("\"holder\":\"{}\"", &token[..8]))
            && json.contains(&format!("\"answered_by\":[\"{on}\"]")),
        "{json}"
    );
    assert!(json.trim_end().ends_with("\"fence\":1}"), "{json}");
    let (code, _, stderr) = run(&server, &["release", "job"]);
    assert_eq!(code, 64, "refuses without --force");
    one_line(&stderr);
    let (code, stdout, _) = run(&server, &["release", "job", "--force"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&token[..8]),
        "says what it removed: {stdout}"
    );
    assert_eq!(server.cmd::<Option<String>>(&["GET", "baton:job"]), None);
    // The holder's lease is gone: its command is stopped and baton says so.
    assert_eq!(wait(&mut child).code(), Some(76));
}

#[test]
fn bad_flags_and_urls_are_usage_errors_and_an_unreachable_server_is_69() {
    let server = RedisServer::start();
    for args in [
        &["exec", "job", "--bogus", "--", "true"][..],
        &["exec", "job", "--ttl", "5xs", "--", "true"],
        &["exec", "job"],
        &["exec", "job", "-n", "--wait", "1s", "--", "true"],
    ] {
        assert_eq!(run(&server, args).0, 64, "{args:?}");
    }
    for (url, want) in [
        ("nonsense", 64),
        ("redis://:secret@127.0.0.1:1", 69),
        ("redis://127.0.0.1:1", 69),
        ("rediss://:secret@127.0.0.1:1", 69),
        ("redis://:sec/ret@127.0.0.1:notaport", 64),
        // Unix sockets carry the password in the query string.
        ("unix:///tmp/x.sock?pass=secret&db=zz", 64),
        ("unix:///nonexistent/baton.sock?pass=secret", 69),
        ("redis+unix:///nonexistent.sock?db=1&pass=secret", 69),
        // One server named twice would count twice towards a quorum.
        ("redis://127.0.0.1:1,redis://:secret@127.0.0.1:1/", 64),
    ] {
        let (code, _, stderr) = run(&server, &["exec", "job", "--url", url, "--", "true"]);
        assert_eq!(code, want, "{url}: {stderr}");
        one_line(&stderr);
        assert!(
            !stderr.contains("secret") && !stderr.contains("sec/ret"),
            "no password shown: {stderr}"
        );
        // Nor with every log line on, nor given in BATON_URL.
        let (code, stdout, stderr) = run(&server, &["-vv", "status", "job", "--url", url]);
        assert_eq!(code, want, "{url}: {stderr}");
        assert!(!format!("{stdout}{stderr}").contains("secret"), "{stderr}");
        let out = baton(&server, &["status", "job"])
            .env("BATON_URL", url)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(want), "{url}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("secret"));
    }
    // Usage errors are found before any server is asked.
    for args in [
        &["exec", "", "--url", "redis://127.0.0.1:1", "--", "true"][..],
        &[
            "exec",
            "job",
            "--ttl",
            "5ms",
            "--url",
            "redis://127.0.0.1:1",
            "--",
            "true",
        ],
    ] {
        assert_eq!(run(&server, args).0, 64, "{args:?}");
    }
    // A password in BATON_URL is not shown by --help either.
    let help = baton(&server, &["exec", "--help"])
        .env("BATON_URL", "redis://:hunter2@127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"));
    let (code, help, _) = run(&server, &["exec", "--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("--no-wait") && help.contains("Example"),
        "{help}"
    );
}

#[test]
fn bench_json_lines_parse() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let urls = format!("{},{}", a.url(), b.url());
    let (code, stdout, stderr) = run(
        &a,
        &[
            "bench",
            "--url",
            &urls,
            "--ops",
            "20",
            "--concurrency",
            "4",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let workloads: Vec<&str> = lines
        .iter()
        .map(|l| {
            for key in [
                "\"lib\":",
                "\"n\":",
                "\"secs\":",
                "\"ops_per_s\":",
                "\"p50_us\":",
                "\"p99_us\":",
                "\"max_us\":",
            ] {
                assert!(l.contains(key), "{key} in {l}");
            }
            assert!(l.starts_with('{') && l.ends_with('}'), "{l}");
            l.split("\"workload\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        workloads,
        [
            "sequential",
            "concurrent",
            "contended",
            "redlock",
            "baseline",
            "baseline"
        ]
    );
    assert!(lines[2].contains("\"wait_p99_us\":") && lines[2].contains("\"per_worker\":["));
    assert!(
        a.keys().is_empty() && b.keys().is_empty(),
        "the bench leaves nothing behind"
    );
    assert_eq!(run(&a, &["bench", "--workload", "nope"]).0, 64);
}

#[test]
fn the_demo_tells_the_whole_story_on_redis_and_without_it() {
    for path in [std::env::var("PATH").unwrap(), "/nonexistent".to_owned()] {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("demo")
            .env("PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let backend = if path == "/nonexistent" {
            "in-memory"
        } else {
            "private redis-server"
        };
        assert!(stdout.contains(backend), "{stdout}");
        assert!(
            stdout.contains("REFUSED") && stdout.contains("0 overlapping holders"),
            "{stdout}"
        );
    }
}

/// A signal that reaches `baton` the moment its command starts is passed
/// on, not fatal to `baton` (which would leave the command running unlocked
/// and the lock held).
#[test]
fn a_signal_at_once_is_passed_on_not_fatal() {
    let server = RedisServer::start();
    for _ in 0..5 {
        let (code, _, stderr) = run(
            &server,
            &[
                "exec",
                "job",
                "--",
                "sh",
                "-c",
                "kill -TERM $PPID; exec sleep 5",
            ],
        );
        assert_eq!(
            code,
            128 + 15,
            "the command died of the forwarded SIGTERM: {stderr}"
        );
        assert_eq!(
            server.cmd::<Option<String>>(&["GET", "baton:job"]),
            None,
            "and the lock was released"
        );
    }
}

/// The server stops answering under a running command: renewals fail, the
/// lease is given up before its deadline, the command is stopped: 76.
#[test]
fn a_stopped_server_stops_the_command_with_76() {
    let server = RedisServer::start();
    let mut child = sleeper(&server, "600ms");
    server.pause();
    let status = wait(&mut child);
    server.resume();
    assert_eq!(status.code(), Some(76));
    one_line(&stderr_of(&mut child));
}

/// With every log line on (-vv), a password still appears nowhere: not in
/// the library's events, not in errors.
#[test]
fn no_password_in_logs() {
    let server = RedisServer::start_with(
        baton_test_support::ServerOptions::default().password("Zq-s3cret-qZ"),
    );
    let url = server.url();
    assert!(url.contains("Zq-s3cret-qZ"));
    for args in [
        &["-vv", "exec", "job", "--url", &url, "--", "true"][..],
        &["-vv", "status", "job", "--url", &url],
        &[
            "-vv",
            "exec",
            "job",
            "--url",
            "redis://:Zq-s3cret-qZ@127.0.0.1:1",
            "--",
            "true",
        ],
    ] {
        let out = baton(&server, args).output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("Zq-s3cret-qZ"), "{args:?}: {all}");
        if args[1] == "exec" && args[4] == url {
            assert!(all.contains("DEBUG"), "the logs were on: {all}");
        }
    }
}

/// With stderr closed (cron, a supervisor that closed its pipe), `baton`
/// still exits with the status it means, not a panic's 101: for its final
/// message, clap's usage message and, with -vv, the library's log lines.
#[test]
fn a_closed_stderr_keeps_the_exit_status() {
    let server = RedisServer::start();
    server.cmd::<()>(&["SET", "baton:job", "another's", "PX", "60000"]);
    let cases: [(&[&str], i32); 6] = [
        // No final message, only the library's log lines with -vv.
        (&["exec", "free", "--", "sh", "-c", "exit 3"], 3),
        // These commands would exit 1 if they ran: the status is baton's own.
        (&["exec", "job", "-n", "--", "false"], 75),
        (
            &[
                "exec",
                "job",
                "-n",
                "--conflict-exit-code",
                "0",
                "--",
                "false",
            ],
            0,
        ),
        (&["exec", "job", "--bogus", "--", "false"], 64),
        (&["release", "job"], 64),
        (
            &["exec", "job", "--url", "redis://127.0.0.1:1", "--", "false"],
            69,
        ),
    ];
    for verbose in [&[][..], &["-vv"]] {
        for (args, want) in cases {
            let args = [verbose, args].concat();
            let (code, _, stderr) = run(&server, &args);
            assert_eq!(code, want, "{args:?}: {stderr}");
            if verbose.is_empty() {
                assert!(want == 3 || !stderr.is_empty(), "{args:?} has a message");
            } else if want == 3 {
                assert!(stderr.contains("DEBUG"), "the logs were on: {stderr}");
            }
            let status = baton(&server, &args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(closed_stderr())
                .status()
                .expect("run baton");
            assert_eq!(status.code(), Some(want), "{args:?} with stderr closed");
        }
    }
    assert_eq!(server.cmd::<String>(&["GET", "baton:job"]), "another's");
}

/// The release fails after the command ended (the server stopped): the
/// command's status, with a warning on stderr; with stderr closed, the same
/// status.
#[test]
fn a_failed_release_with_stderr_closed_keeps_the_commands_status() {
    for closed in [false, true] {
        let server = RedisServer::start();
        let mut child = baton(
            &server,
            &[
                "exec",
                "job",
                "--",
                "sh",
                "-c",
                "echo started; read line; exit 3",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if closed {
            closed_stderr()
        } else {
            Stdio::piped()
        })
        .spawn()
        .expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read");
        assert!(line.starts_with("started"), "{line:?}");
        server.pause();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let status = wait(&mut child);
        server.resume();
        assert_eq!(
            status.code(),
            Some(3),
            "the command's status (closed: {closed})"
        );
        if !closed {
            let stderr = stderr_of(&mut child);
            one_line(&stderr);
            assert!(stderr.contains("could not release"), "{stderr}");
        }
    }
}

/// `bench --concurrency 0` (no task would record a latency), `--ops 0` and
/// counts past the bounds are usage errors for every workload, found before
/// anything runs.
/// `held` keeps every lease alive past several TTLs on one client's one
/// renewal task (none lost, no sampled key lapsed), reports what the
/// renewals cost, and leaves nothing behind; `--leases 0` is a usage error.
#[test]
fn bench_held_keeps_every_lease_and_reports_its_cost() {
    let server = RedisServer::start();
    let args = [
        "bench",
        "--workload",
        "held",
        "--leases",
        "300",
        "--ttl",
        "300ms",
        "--hold",
        "1s",
        "--json",
    ];
    let (code, stdout, stderr) = run(&server, &args);
    assert_eq!(code, 0, "{stderr}");
    let field = |name: &str| -> f64 {
        let at = stdout
            .find(&format!("\"{name}\":"))
            .unwrap_or_else(|| panic!("{name} in {stdout}"));
        let rest = &stdout[at + name.len() + 3..];
        rest[..rest.find([',', '}']).unwrap()].parse().unwrap()
    };
    assert_eq!(field("n"), 300.0, "{stdout}");
    assert_eq!(field("lost"), 0.0, "{stdout}");
    assert_eq!(field("samples_lapsed"), 0.0, "{stdout}");
    // Held a second at a 300 ms TTL: every lease renewed at least twice.
    assert!(field("renewals") >= 600.0, "{stdout}");
    // (Memory per lease is the resident set's growth: it can be 0 for a few leases.)
    for cost in ["cpu_us_per_renewal", "server_us_per_renewal", "mean_batch"] {
        assert!(field(cost) > 0.0, "{cost}: {stdout}");
    }
    assert!(server.keys().is_empty(), "the bench leaves nothing behind");
    let (code, _, stderr) = run(&server, &["bench", "--workload", "held", "--leases", "0"]);
    assert_eq!(code, 64, "{stderr}");
}

#[test]
fn bench_rejects_zero_and_huge_counts_as_usage_errors() {
    let server = RedisServer::start();
    for workload in baton_cli::bench::WORKLOADS {
        for (flag, value) in [
            ("--concurrency", "0"),
            ("--concurrency", "10001"),
            ("--ops", "0"),
            ("--ops", "10000001"),
        ] {
            let args = ["bench", "--workload", workload, "--ops", "2", flag, value];
            let (code, stdout, stderr) = run(&server, &args);
            assert_eq!(code, 64, "{args:?}: {stderr}");
            assert!(stdout.is_empty(), "nothing measured: {stdout}");
            assert!(stderr.contains(flag), "says which flag: {stderr}");
        }
    }
    assert!(server.keys().is_empty(), "nothing ran");
    let (code, _, stderr) = run(&server, &["bench", "--workload", "redlock"]);
    assert_eq!(
        code, 64,
        "redlock over one server is a usage error: {stderr}"
    );
}

/// Lock values set by something else (another library, an attacker):
/// escape sequences to clear the screen and set the window title; and BEL,
/// DEL, a C1 control (CSI), bidirectional overrides, CR, BS and ESC, all
/// within the 8 characters of the fingerprint.
const HOSTILE: [&str; 2] = [
    "\u{1b}[2J\u{1b}]0;pwned\u{7}",
    "\u{7}\u{7f}\u{9b}\u{202e}\u{2066}\r\u{8}\u{1b}",
];

/// Asserts that `text` (one line of output, its newline aside) holds no
/// control or bidirectional-control character: nothing a terminal obeys.
#[track_caller]
fn assert_inert(what: &str, text: &str) {
    let line = text.strip_suffix('\n').unwrap_or(text);
    let raw: Vec<char> = line
        .chars()
        .filter(|&c| {
            c.is_control()
                || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(raw.is_empty(), "{what}: raw {raw:?} in {text:?}");
}

/// `status`, `status --json` and `release --force` show a hostile lock
/// value's fingerprint escaped; the JSON still parses, to the fingerprint
/// itself.
#[test]
fn a_hostile_lock_value_reaches_the_terminal_escaped() {
    let server = RedisServer::start();
    for value in HOSTILE {
        let fingerprint: String = value.chars().take(8).collect();
        server.cmd::<()>(&["SET", "baton:job", value, "PX", "60000"]);
        let (code, text, _) = run(&server, &["status", "job"]);
        assert_eq!(code, 1, "held: {text:?}");
        assert_inert("status", &text);
        assert!(text.starts_with("job: held by \\u{"), "{text:?}");
        let (code, json, _) = run(&server, &["status", "job", "--json"]);
        assert_eq!(code, 1, "held: {json:?}");
        assert_inert("status --json", &json);
        let parsed: serde_json::Value = serde_json::from_str(&json).expect(&json);
        assert_eq!(parsed["held"], true, "{json}");
        assert_eq!(parsed["holder"], fingerprint.as_str(), "{json}");
        let (code, text, _) = run(&server, &["release", "job", "--force"]);
        assert_eq!(code, 0, "{text:?}");
        assert_inert("release --force", &text);
        assert!(
            text.starts_with("job: removed the lock held by \\u{"),
            "{text:?}"
        );
        assert_eq!(server.cmd::<Option<String>>(&["GET", "baton:job"]), None);
    }
}

/// A "server" on a free port that answers every command with an error whose
/// text sets the window title and clears the screen. Its threads end with
/// the test binary.
fn hostile_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut last = b'\n';
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    // One reply per command: each begins a line with '*'.
                    let mut commands = 0;
                    for &b in &buf[..n] {
                        commands += usize::from(b == b'*' && last == b'\n');
                        last = b;
                    }
                    let reply = b"-ERR \x1b]0;pwned\x07\x1b[2J gone\r\n".repeat(commands);
                    if conn.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A server's error text can carry anything: baton's final message shows it
/// escaped, on one line.
#[test]
fn a_hostile_server_error_reaches_the_terminal_escaped() {
    let server = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", hostile_server());
    for args in [
        &["exec", "job", "--url", &url, "--", "true"][..],
        &["status", "job", "--url", &url],
        &["release", "job", "--force", "--url", &url],
    ] {
        let (code, stdout, stderr) = run(&server, args);
        assert_eq!(code, 69, "{args:?}: {stderr:?}");
        assert!(stdout.is_empty(), "{stdout:?}");
        one_line(&stderr);
        assert_inert("the final message", &stderr);
        assert!(stderr.contains("\\u{1b}]0;pwned\\u{7}"), "{stderr:?}");
    }
}

/// `rediss://` with the CLI's TLS options (flags and environment): mutual
/// TLS works; a missing client certificate, an unknown CA and a wrong
/// hostname are 69 (the server cannot be used); an unreadable file is 64.
#[test]
fn tls_from_flags_and_environment() {
    use baton_test_support::{ClientAuth, ServerCert, ServerOptions, TlsMode};
    let server = RedisServer::start_with(
        ServerOptions::default().tls(TlsMode::default().client_auth(ClientAuth::Required)),
    );
    let pki = server.pki();
    let (ca, cert, key) = (pki.ca_path(), pki.client_cert_path(), pki.client_key_path());
    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let with_flags = ["--tls-ca", ca, "--tls-cert", cert, "--tls-key", key];
    let mut args = vec!["exec", "job"];
    args.extend(with_flags);
    args.extend(["--", "sh", "-c", "echo fence=$BATON_FENCE"]);
    let (code, stdout, stderr) = run(&server, &args);
    assert_eq!((code, stdout.as_str()), (0, "fence=1\n"), "{stderr}");
    let out = baton(&server, &["status", "job"])
        .env("BATON_TLS_CA", ca)
        .env("BATON_TLS_CERT", cert)
        .env("BATON_TLS_KEY", key)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "free, read over TLS from the environment"
    );
    let (code, _, stderr) = run(&server, &["status", "job", "--tls-ca", ca]);
    assert_eq!(code, 69, "no client certificate: {stderr}");
    let other = pki.other_ca_path();
    let mut args = vec!["status", "job", "--tls-ca", other.to_str().unwrap()];
    args.extend(["--tls-cert", cert, "--tls-key", key]);
    let (code, _, stderr) = run(&server, &args);
    assert_eq!(code, 69, "unknown CA: {stderr}");
    one_line(&stderr);
    let (code, _, stderr) = run(
        &server,
        &["status", "job", "--tls-ca", "/nonexistent/ca.pem"],
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");

    let wrong = RedisServer::start_with(
        ServerOptions::default().tls(TlsMode::default().server_cert(ServerCert::WrongHost)),
    );
    let ca = wrong.pki().ca_path();
    let (code, _, stderr) = run(&wrong, &["status", "job", "--tls-ca", ca.to_str().unwrap()]);
    assert_eq!(code, 69, "wrong hostname: {stderr}");
    assert!(!stderr.contains("PRIVATE KEY"));
}

/// Through Sentinels: `exec` runs under the lock on the master they name,
/// `status` says which server that is (text and JSON), and after a
/// failover it names the new master, with nothing else to change.
#[test]
fn sentinel_urls_work_and_status_names_the_master() {
    let set = baton_test_support::SentinelSet::start();
    let url = set.url();
    let sentinel_run = |args: &[&str]| run_at(&url, args);
    let (code, stdout, stderr) = sentinel_run(&[
        "exec",
        "job",
        "--min-replicas",
        "1",
        "--",
        "sh",
        "-c",
        "echo $BATON_FENCE",
    ]);
    assert_eq!((code, stdout.trim()), (0, "1"), "{stderr}");
    assert!(
        !set.master().keys().contains(&"baton:job".to_owned()),
        "released on the master"
    );
    let on = |port: u16| format!("on 127.0.0.1:{port}");
    let (code, stdout, _) = sentinel_run(&["status", "job"]);
    assert_eq!(code, 0);
    assert!(stdout.trim().ends_with(&on(set.master_port())), "{stdout}");
    let new = set.failover();
    let (_, stdout, _) = sentinel_run(&["status", "job"]);
    assert!(stdout.trim().ends_with(&on(new)), "{stdout}");
    let (_, json, _) = sentinel_run(&["status", "job", "--json"]);
    assert!(
        json.contains(&format!("\"answered_by\":[\"127.0.0.1:{new}\"]")),
        "{json}"
    );
}

/// `--wait-aof` where the server cannot do it (Redis before 7.2 has no
/// `WAITAOF`; a server without `appendonly` cannot fsync to a file it does
/// not write) is 69, in one line saying why; the environment variable asks
/// the same. With an append-only file and `WAITAOF`, the command runs.
#[test]
fn wait_aof_on_a_server_that_cannot_is_69() {
    let server = RedisServer::start();
    let info: Vec<redis::Value> = server.cmd(&["COMMAND", "INFO", "WAITAOF"]);
    let has_waitaof = !matches!(info.first(), None | Some(redis::Value::Nil));
    let why = if has_waitaof { "appendonly" } else { "7.2" };
    let (code, stdout, stderr) = run(&server, &["exec", "--wait-aof", "job", "--", "true"]);
    assert_eq!(code, 69, "{stdout}{stderr}");
    one_line(&stderr);
    assert!(
        stderr.contains("wait_aof") && stderr.contains(why),
        "{stderr}"
    );
    let out = baton(&server, &["exec", "job", "--", "true"])
        .env("BATON_WAIT_AOF", "true")
        .stdin(Stdio::null())
        .output()
        .expect("run baton");
    assert_eq!(out.status.code(), Some(69));

    if has_waitaof {
        let persistent =
            RedisServer::start_with(baton_test_support::ServerOptions::default().persistence(true));
        let (code, stdout, stderr) = run(
            &persistent,
            &[
                "exec",
                "--wait-aof",
                "job",
                "--",
                "sh",
                "-c",
                "echo $BATON_FENCE",
            ],
        );
        assert_eq!((code, stdout.trim()), (0, "1"), "{stderr}");
    }
}

/// A lost lease stops the whole job, not only the command: the background
/// process of `sh -c 'sleep 100 & …; wait'` is gone by the time `baton`
/// exits, as is `sh`.
#[test]
fn a_lost_lease_stops_the_whole_job() {
    let server = RedisServer::start();
    let script = "sleep 100 & echo started $$ $!; wait";
    let args = [
        "exec",
        "job",
        "--ttl",
        "300ms",
        "--kill-after",
        "1s",
        "--",
        "sh",
        "-c",
        script,
    ];
    let (mut child, _out, line) = started(&server, &args);
    let mut pids = line.split_whitespace().skip(1);
    let (shell, background) = (
        Orphan::new(pids.next().unwrap()),
        Orphan::new(pids.next().unwrap()),
    );
    assert!(shell.running() && background.running(), "{line}");
    server.cmd::<()>(&["DEL", "baton:job"]);
    assert_eq!(wait(&mut child).code(), Some(76));
    assert!(!shell.running(), "the command is stopped");
    assert!(
        !background.running(),
        "and so is the process it started, before baton exits"
    );
}

/// Processes the command leaves running in its group when it exits would
/// run without the lock: they are stopped before the lock is released, with
/// a warning, and the command's own status passes through.
#[test]
fn what_the_command_leaves_running_is_stopped_before_the_release() {
    let server = RedisServer::start();
    let script = "sleep 100 & echo started $!; exit 3";
    let (mut child, _out, line) = started(&server, &["exec", "job", "--", "sh", "-c", script]);
    let background = Orphan::new(line.split_whitespace().nth(1).unwrap());
    assert_eq!(wait(&mut child).code(), Some(3));
    assert!(!background.running(), "stopped before baton exits");
    assert_eq!(server.cmd::<Option<String>>(&["GET", "baton:job"]), None);
    let stderr = stderr_of(&mut child);
    one_line(&stderr);
    assert!(stderr.contains("left processes running"), "{stderr:?}");
}

/// In a terminal, the command's group holds the foreground: it can read
/// what is typed (a background group would be stopped by SIGTTIN), and a
/// Ctrl-C typed there reaches it once (from the terminal), while `baton`,
/// out of the foreground, does not pass a second one on. The command reads
/// a line, then traps SIGINT and counts; a SIGQUIT sent to `baton`
/// afterwards (passed on, and handled after any pending SIGINT) ends it.
#[cfg(target_os = "linux")]
#[test]
fn ctrl_c_in_a_terminal_reaches_the_command_once() {
    let server = RedisServer::start();
    let dir = std::env::temp_dir().join(baton_test_support::unique_name("baton-tty"));
    std::fs::create_dir_all(&dir).unwrap();
    let (log, ready) = (dir.join("log"), dir.join("ready"));
    let script = format!(
        "trap 'echo INT >> {log}' INT; trap 'echo QUIT >> {log}; kill $!; exit 7' QUIT; \
         read line; echo \"read $line\" >> {log}; \
         sleep 100 & echo up > {ready}; while :; do wait; done",
        log = log.display(),
        ready = ready.display()
    );
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = || Stdio::from(pty.slave.try_clone().unwrap());
    // `setsid -c`: baton leads a session of its own whose controlling
    // terminal is the pty, in its foreground, as in an interactive shell.
    let child = Command::new("setsid")
        .arg("-c")
        .arg(env!("CARGO_BIN_EXE_baton"))
        .args(["exec", "job", "--", "sh", "-c", &script])
        .env("BATON_URL", server.url())
        .env_remove("RUST_LOG")
        .stdin(slave())
        .stdout(slave())
        .stderr(slave())
        .spawn()
        .expect("setsid (util-linux) runs baton");
    // Killed if the test fails, so a stuck job does not outlive it (its
    // command dies with baton).
    let mut child = KilledOnDrop(child);
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < DEADLINE, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"hello\n").unwrap();
    until("the command read the terminal", &|| ready.exists());
    master.write_all(b"\x03").unwrap();
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    until("the Ctrl-C reached the command", &|| {
        lines().contains("INT")
    });
    Command::new("kill")
        .args(["-QUIT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(wait(&mut child.0).code(), Some(7));
    assert_eq!(
        lines(),
        "read hello\nINT\nQUIT\n",
        "what was typed, one SIGINT, then the SIGQUIT"
    );
    assert_eq!(server.cmd::<Option<String>>(&["GET", "baton:job"]), None);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child killed when dropped, if it still runs.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `--permits N`: N commands run at once and the next is refused (75) or
/// waits; the permits are taken and given back in the semaphore's sorted
/// set; `--permits 0` is a usage error.
#[test]
fn permits_let_n_commands_run_at_once() {
    let server = RedisServer::start();
    let (mut first, _o1, _) = holder(&server, &["--permits", "2", "-n"]);
    let (mut second, _o2, _) = holder(&server, &["--permits", "2", "-n"]);
    assert_eq!(server.cmd::<i64>(&["ZCARD", "baton:job"]), 2);
    let (code, stdout, stderr) = run(
        &server,
        &["exec", "job", "--permits", "2", "-n", "--", "echo", "ran"],
    );
    assert_eq!(code, 75, "{stderr}");
    assert!(!stdout.contains("ran"));
    one_line(&stderr);
    assert!(stderr.contains("all 2 permits"), "{stderr}");
    first.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(wait(&mut first).code(), Some(0));
    let (code, stdout, _) = run(
        &server,
        &["exec", "job", "--permits", "2", "-n", "--", "echo", "ran"],
    );
    assert_eq!((code, stdout.trim()), (0, "ran"), "a permit came back");
    second.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(wait(&mut second).code(), Some(0));
    assert_eq!(
        server.cmd::<i64>(&["EXISTS", "baton:job"]),
        0,
        "nothing left"
    );
    let (code, _, stderr) = run(&server, &["exec", "job", "--permits", "0", "--", "true"]);
    assert_eq!(code, 64, "{stderr}");
    one_line(&stderr);
}

/// `--also NAME`: the command runs under a multi-lock of every name, all
/// or none: a held name refuses it (75) and takes nothing, and while it
/// runs each of its names is held for a plain `baton exec`.
#[test]
fn also_takes_several_names_all_or_none() {
    let server = RedisServer::start();
    let (mut other, _o, _) = holder(&server, &["-n"]);
    let (code, stdout, stderr) = run(
        &server,
        &["exec", "first", "--also", "job", "-n", "--", "echo", "ran"],
    );
    assert_eq!(code, 75, "{stderr}");
    assert!(!stdout.contains("ran"));
    one_line(&stderr);
    assert!(stderr.contains("all are taken or none"), "{stderr}");
    assert_eq!(
        server.cmd::<i64>(&["EXISTS", "baton:first"]),
        0,
        "first was not taken"
    );
    other.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(wait(&mut other).code(), Some(0));

    let mut args = vec!["exec", "first", "--also", "job", "-n"];
    args.extend_from_slice(&[
        "--",
        "sh",
        "-c",
        "echo \"started $BATON_FENCE $$\"; read line; echo done",
    ]);
    let (mut both, _o, _) = started(&server, &args);
    for name in ["job", "first"] {
        let (code, _, stderr) = run(&server, &["exec", name, "-n", "--", "true"]);
        assert_eq!(code, 75, "{name} is held with the other: {stderr}");
    }
    both.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(wait(&mut both).code(), Some(0));
    for key in ["baton:job", "baton:first"] {
        assert_eq!(server.cmd::<i64>(&["EXISTS", key]), 0, "{key} released");
    }
    let (code, _, stderr) = run(
        &server,
        &["exec", "job", "--also", "x", "--permits", "2", "--", "true"],
    );
    assert_eq!(code, 64, "--also with --permits is a usage error: {stderr}");
}

/// `--processes N`: the contended workload's workers are N processes of
/// their own on one fair lock, each taking its turn (its counts are in the
/// report), and nothing is left behind but what the run deletes itself.
#[test]
fn bench_contended_over_separate_processes() {
    let server = RedisServer::start();
    let (code, stdout, stderr) = run(
        &server,
        &[
            "bench",
            "--workload",
            "contended",
            "--processes",
            "3",
            "--fair",
            "--quick",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["processes"], 3);
    assert_eq!(report["fair"], true);
    let counts = report["per_worker"].as_array().expect("per-worker counts");
    assert_eq!(counts.len(), 3);
    assert!(
        counts.iter().all(|c| c.as_u64() > Some(0)),
        "every process took the lock: {counts:?}"
    );
    assert!(server.keys().is_empty(), "{:?}", server.keys());
}
