//! `baton exec`: run a command while holding a lock.
//!
//! The command runs as a job of its own ([`crate::job`]): a process group
//! that holds the terminal's foreground while it runs. The lease is renewed
//! by the library meanwhile. If it is lost, the whole group gets SIGTERM,
//! then SIGKILL after `--kill-after`. SIGINT, SIGTERM, SIGHUP and SIGQUIT
//! sent to `baton` are passed on to the whole group (a Ctrl-C in the
//! terminal reaches the group directly, once). When the command ends,
//! processes it left running in its group are stopped the same way (they
//! would otherwise run without the lock), and then the lock is released.
//!
//! If `baton` itself is killed (SIGKILL, the OOM killer, a crash), nothing
//! releases the lock: the lease simply expires within its TTL, since no one
//! renews it. On Linux the command is killed with it (SIGKILL, through
//! `PR_SET_PDEATHSIG`), so it cannot go on running without the lock beside
//! the next holder. Only the command's own process gets that signal: the
//! processes it starts itself do not (a shell script's children, unless
//! it `exec`s them), nor does a set-user-ID or set-group-ID program (the
//! kernel clears the setting when such a program is executed). On other
//! systems the command keeps running when `baton` is killed.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ExecArgs;
use crate::exit::{self, Exit};
use crate::job::{self, Job, Stream};

/// Runs `baton exec`.
pub async fn run(args: ExecArgs) -> Exit {
    // Catch the signals from the start: one that arrives while connecting,
    // waiting or spawning must not kill `baton` with the lock held.
    let mut signals = Signals::new();
    let acquiring = async {
        let client = crate::connect(&args.backend).await?;
        let lock = match args.permits {
            None if args.also.is_empty() => client.lock(&args.name),
            None => client.multi_lock(&names(&args)),
            Some(permits) => client.semaphore(&args.name, permits).into_lock(),
        }
        .ttl(args.ttl);
        match (args.no_wait, args.wait) {
            (true, _) => lock.try_acquire().await,
            (false, Some(wait)) => lock.wait(wait).acquire().await.map(Some),
            (false, None) => lock.acquire().await.map(Some),
        }
    };
    let acquired = tokio::select! {
        acquired = acquiring => acquired,
        sig = signals.next() => {
            return Exit::with(128 + sig as u8, format!("stopped by {sig} before the command started"));
        }
    };
    let guard = match acquired {
        Ok(Some(guard)) => guard,
        Ok(None) => {
            return Exit::with(
                args.conflict_exit_code,
                format!("{}; not running the command", busy(&args)),
            )
        }
        Err(baton::Error::Timeout { waited, .. }) => {
            return Exit::with(
                args.conflict_exit_code,
                format!(
                    "{} still, after waiting {}; not running the command",
                    busy(&args),
                    humantime::format_duration(round_ms(waited))
                ),
            )
        }
        Err(e) => return exit::from_error(&e),
    };
    let mut command = Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("BATON_NAME", &args.name)
        .env("BATON_FENCE", guard.fence().to_string())
        .env("BATON_TTL_MS", args.ttl.as_millis().to_string());
    let terminal = job::foreground_terminal();
    job::adopt_orphans();
    prepare_child(&mut command, terminal);
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            if let Some(terminal) = terminal {
                job::take_terminal_back(terminal);
            }
            let _ = guard.release().await;
            // As shells do: 127 when there is no such command, 126 when it cannot run.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Exit::with(code, format!("cannot run {:?}: {e}", args.command[0]));
        }
    };
    let job = Job::new(
        Pid::from_raw(child.id().expect("a child not yet waited for has a pid") as i32),
        terminal,
    );
    let outcome = supervise(&mut child, &job, &guard, &mut signals, args.kill_after).await;
    drop(job); // the terminal back to baton before it says anything
    match outcome {
        Outcome::Exited(status) => {
            let held_to_the_end = guard.is_held();
            let lapsed = || {
                Exit::with(
                    exit::LOST,
                    format!(
                        "the lease on lock {:?} had lapsed before the command finished",
                        args.name
                    ),
                )
            };
            match guard.release().await {
                Ok(baton::Released::Released) => Exit::quiet(status_code(status)),
                Ok(baton::Released::AlreadyExpired) => lapsed(),
                Err(_) if !held_to_the_end => lapsed(),
                Err(e) => {
                    // The error may quote the server's text: escaped.
                    let warning = format!(
                        "could not release lock {:?} (it expires within its ttl): {e}",
                        args.name
                    );
                    baton_cli::err!("baton: {}", baton_cli::text::printable(&warning));
                    Exit::quiet(status_code(status))
                }
            }
        }
        Outcome::Lost => Exit::with(
            exit::LOST,
            format!(
                "the lease on lock {:?} was lost; the command was stopped",
                args.name
            ),
        ),
    }
}

/// Prepares the child, between fork and exec: a process group of its own,
/// the terminal's foreground if `baton` holds it (so the command never
/// reads it from the background), and on Linux a SIGKILL when `baton` dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends,
/// not the process. That is `baton`'s main thread: `main` runs a
/// current-thread tokio runtime on it, and `Command::spawn` forks on the
/// thread that calls it, which lives until `baton` exits. It must stay so:
/// spawning from another thread (a multi-threaded runtime's worker, a
/// `spawn_blocking` thread that ends when idle) would kill the command when
/// that thread ends, with `baton` still running.
fn prepare_child(command: &mut Command, terminal: Option<Stream>) {
    use nix::unistd::{getpid, setpgid};
    use std::os::fd::BorrowedFd;

    // Taken before the fork: in the child, a different parent means `baton`
    // died before the prctl took effect, and no signal will come.
    #[cfg(target_os = "linux")]
    let baton = Pid::this();
    let terminal = terminal.map(Stream::raw);
    // The crate's one unsafe block (main.rs denies unsafe_code).
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are sound (another thread of `baton` may
    // have held a lock, such as the allocator's, when it forked). It makes
    // only system calls through nix's thin wrappers, all async-signal-safe:
    // setpgid(2), getpid(2), sigprocmask and tcsetpgrp(3) (in
    // `job::hand_terminal`), prctl(2), getppid(2) and raise(3). It allocates
    // nothing (it captures a `Pid` and an `Option<RawFd>`, both `Copy`, and
    // an `Errno` becomes an `io::Error` without allocating), takes no lock
    // and touches no memory shared with the parent. `borrow_raw` is sound
    // because the descriptor is 0, 1 or 2, found to be a terminal just
    // before the fork and open in the child, which inherited it.
    unsafe {
        command.pre_exec(move || {
            setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            if let Some(fd) = terminal {
                // Best effort: the parent asks again after the spawn.
                let _ = job::hand_terminal(BorrowedFd::borrow_raw(fd), getpid());
            }
            #[cfg(target_os = "linux")]
            {
                use nix::sys::prctl::set_pdeathsig;
                use nix::sys::signal::raise;
                use nix::unistd::getppid;
                set_pdeathsig(Signal::SIGKILL)?;
                if getppid() != baton {
                    raise(Signal::SIGKILL)?;
                }
            }
            Ok(())
        });
    }
}

enum Outcome {
    Exited(ExitStatus),
    Lost,
}

/// Waits for the command, passing signals on to its group, and stops the
/// whole job if the lease is lost. Returns once no process of the job is
/// left (or, after SIGKILL, the job has been given up on).
async fn supervise(
    child: &mut Child,
    job: &Job,
    guard: &baton::Guard,
    signals: &mut Signals,
    kill_after: Duration,
) -> Outcome {
    let exited = tokio::select! {
        status = wait_for(child, job, signals) => status,
        () = guard.lost() => {
            stop(child, job, signals, kill_after).await;
            return Outcome::Lost;
        }
    };
    if job.has_processes() {
        baton_cli::err!("baton: the command left processes running in its group; stopping them before the lock is released");
        tokio::select! {
            () = job.empty(true, kill_after, || signals.try_next()) => {}
            () = guard.lost() => {
                stop(child, job, signals, kill_after).await;
                return Outcome::Lost;
            }
        }
    }
    Outcome::Exited(exited)
}

/// The command's exit status, passing signals on to its group meanwhile.
async fn wait_for(child: &mut Child, job: &Job, signals: &mut Signals) -> ExitStatus {
    loop {
        tokio::select! {
            status = child.wait() => {
                // Waiting on our own child cannot fail in practice; treat it as a crash.
                return status.unwrap_or(ExitStatus::from_raw(1 << 8));
            }
            sig = signals.next() => job.signal(sig),
        }
    }
}

/// SIGTERM to the whole job, then SIGKILL once `kill_after` has passed;
/// signals sent to `baton` meanwhile are still passed on.
async fn stop(child: &mut Child, job: &Job, signals: &mut Signals, kill_after: Duration) {
    job.signal(Signal::SIGTERM);
    let start = tokio::time::Instant::now();
    let _ = tokio::time::timeout(kill_after, wait_for(child, job, signals)).await;
    let left = kill_after.saturating_sub(start.elapsed());
    job.empty(false, left, || signals.try_next()).await;
    // The leader, if SIGKILL was what ended it, is reaped here.
    let _ = child.wait().await;
}

/// The signals `baton` passes on to its command.
struct Signals {
    streams: Vec<(tokio::signal::unix::Signal, Signal)>,
}

impl Signals {
    fn new() -> Signals {
        let kinds = [
            (SignalKind::interrupt(), Signal::SIGINT),
            (SignalKind::terminate(), Signal::SIGTERM),
            (SignalKind::hangup(), Signal::SIGHUP),
            (SignalKind::quit(), Signal::SIGQUIT),
        ];
        let streams = kinds
            .into_iter()
            .filter_map(|(kind, sig)| signal(kind).ok().map(|stream| (stream, sig)))
            .collect();
        Signals { streams }
    }

    /// A signal received and not yet taken, if any.
    fn try_next(&mut self) -> Option<Signal> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        self.streams
            .iter_mut()
            .find_map(|(stream, sig)| match stream.poll_recv(&mut cx) {
                std::task::Poll::Ready(Some(())) => Some(*sig),
                _ => None,
            })
    }

    /// The next signal received (never resolves if none can be).
    async fn next(&mut self) -> Signal {
        std::future::poll_fn(|cx| {
            for (stream, sig) in &mut self.streams {
                if let std::task::Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return std::task::Poll::Ready(*sig);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// The names a multi-lock takes: the lock's and every `--also`.
fn names(args: &ExecArgs) -> Vec<&str> {
    std::iter::once(args.name.as_str())
        .chain(args.also.iter().map(String::as_str))
        .collect()
}

/// What a busy lock or semaphore is, for the line that says so.
fn busy(args: &ExecArgs) -> String {
    match args.permits {
        None if args.also.is_empty() => format!("lock {:?} is held by another", args.name),
        None => format!(
            "one of the locks {:?} is held by another (all are taken or none)",
            names(args)
        ),
        Some(n) => format!("all {n} permits of semaphore {:?} are held", args.name),
    }
}

/// The exit status `baton` passes on: the child's code, or 128+N for signal N.
fn status_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).min(255) as u8,
        (None, None) => 1,
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
