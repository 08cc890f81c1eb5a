//! `baton exec`: run a command while holding a lock.
//!
//! The lease is renewed by the library while the command runs. If it is
//! lost, the command gets SIGTERM, then SIGKILL after `--kill-after`.
//! SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to `baton` are passed on to the
//! command; when the command ends, the lock is released at once.
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

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ExecArgs;
use crate::exit::{self, Exit};

/// Runs `baton exec`.
pub async fn run(args: ExecArgs) -> Exit {
    // Catch the signals from the start: one that arrives while connecting,
    // waiting or spawning must not kill `baton` with the lock held.
    let mut signals = Signals::new();
    let acquiring = async {
        let client = crate::connect(&args.backend).await?;
        let lock = client.lock(&args.name).ttl(args.ttl);
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
                format!(
                    "lock {:?} is held by another; not running the command",
                    args.name
                ),
            )
        }
        Err(baton::Error::Timeout { waited, .. }) => {
            return Exit::with(
                args.conflict_exit_code,
                format!(
                    "lock {:?} still held by another after waiting {}; not running the command",
                    args.name,
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
    #[cfg(target_os = "linux")]
    die_with_baton(&mut command);
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
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
    match supervise(&mut child, &guard, &mut signals, args.kill_after).await {
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

/// Has the kernel SIGKILL the command when `baton` dies (Linux).
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends,
/// not the process. That is `baton`'s main thread: `main` runs a
/// current-thread tokio runtime on it, and `Command::spawn` forks on the
/// thread that calls it, which lives until `baton` exits. It must stay so:
/// spawning from another thread (a multi-threaded runtime's worker, a
/// `spawn_blocking` thread that ends when idle) would kill the command when
/// that thread ends, with `baton` still running.
#[cfg(target_os = "linux")]
fn die_with_baton(command: &mut Command) {
    use nix::sys::prctl::set_pdeathsig;
    use nix::sys::signal::raise;
    use nix::unistd::getppid;

    // Taken before the fork: in the child, a different parent means `baton`
    // died before the prctl took effect, and no signal will come.
    let baton = Pid::this();
    // The crate's one unsafe block (main.rs denies unsafe_code).
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are sound (another thread of `baton` may
    // have held a lock, such as the allocator's, when it forked). It makes
    // three system calls through nix's thin wrappers, prctl(2), getppid(2)
    // and raise(3), all async-signal-safe; it allocates nothing (it
    // captures a `Pid`, which is `Copy`, and an `Errno` becomes an
    // `io::Error` without allocating), takes no lock and touches no memory
    // shared with the parent.
    unsafe {
        command.pre_exec(move || {
            set_pdeathsig(Signal::SIGKILL)?;
            if getppid() != baton {
                raise(Signal::SIGKILL)?;
            }
            Ok(())
        });
    }
}

enum Outcome {
    Exited(ExitStatus),
    Lost,
}

/// Waits for the child, passing on signals, and stops it if the lease is lost.
async fn supervise(
    child: &mut Child,
    guard: &baton::Guard,
    signals: &mut Signals,
    kill_after: Duration,
) -> Outcome {
    let pid = child.id().map(|id| Pid::from_raw(id as i32));
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(status) => Outcome::Exited(status),
                    // Waiting on our own child cannot fail in practice; treat it as a crash.
                    Err(_) => Outcome::Exited(ExitStatus::from_raw(1 << 8)),
                };
            }
            () = guard.lost() => {
                stop(child, pid, signals, kill_after).await;
                return Outcome::Lost;
            }
            sig = signals.next() => forward(pid, sig),
        }
    }
}

/// SIGTERM, then SIGKILL once `kill_after` has passed; signals sent to
/// `baton` meanwhile are still passed on.
async fn stop(child: &mut Child, pid: Option<Pid>, signals: &mut Signals, kill_after: Duration) {
    forward(pid, Signal::SIGTERM);
    let deadline = tokio::time::sleep(kill_after);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = child.wait() => return,
            () = &mut deadline => {
                let _ = child.kill().await;
                return;
            }
            sig = signals.next() => forward(pid, sig),
        }
    }
}

fn forward(pid: Option<Pid>, sig: Signal) {
    if let Some(pid) = pid {
        let _ = kill(pid, sig);
    }
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
