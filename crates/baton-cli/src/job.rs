//! The job `baton exec` runs: the command in a process group of its own,
//! so that everything it starts can be signalled and stopped together, and
//! the terminal's foreground while it runs.
//!
//! Why a group: a cron line is usually `sh -c 'step1 && step2'`. Stopping
//! only `sh` on a lost lease would leave `step1` running without the lock,
//! beside the next holder. Signalling the group reaches every process the
//! command started that stayed in it (a program that puts itself in a group
//! or session of its own, such as a daemon, leaves the job).
//!
//! Why the terminal: a group that is not the terminal's foreground cannot
//! read from it (SIGTTIN) and gets no Ctrl-C. As shells do, `baton` hands
//! the foreground to the job's group and takes it back when the job is
//! over; `baton` itself is then out of the foreground, so a Ctrl-C reaches
//! the command once, from the terminal, and is not passed on a second time.
//!
//! Why a subreaper (Linux): the job's processes whose parent dies are
//! adopted by `baton` instead of the system's init, so `baton` can reap them
//! and know when the group is empty; an init that does not reap (in a
//! container) would otherwise leave zombies that look like a running job.

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// How often an emptying group is looked at: there is no event for "the
/// last process of a group is gone".
const GROUP_POLL: Duration = Duration::from_millis(10);

/// How long, after SIGKILL, the group is given to disappear (a process in
/// uninterruptible sleep dies only when it wakes) before `baton` stops
/// waiting for it.
const AFTER_KILL: Duration = Duration::from_secs(1);

/// One of the standard streams, which stay open for the process's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    In,
    Out,
    Err,
}

impl Stream {
    /// Its file descriptor number (for the child, which must not touch
    /// std's stream objects between fork and exec: they may allocate).
    pub(crate) fn raw(self) -> RawFd {
        match self {
            Stream::In => 0,
            Stream::Out => 1,
            Stream::Err => 2,
        }
    }

    fn with<T>(self, f: impl FnOnce(BorrowedFd<'_>) -> T) -> T {
        match self {
            Stream::In => f(std::io::stdin().as_fd()),
            Stream::Out => f(std::io::stdout().as_fd()),
            Stream::Err => f(std::io::stderr().as_fd()),
        }
    }
}

/// The terminal `baton` runs in the foreground of, if any: the first of
/// stdin, stdout and stderr that is a terminal whose foreground group is
/// `baton`'s own.
pub(crate) fn foreground_terminal() -> Option<Stream> {
    [Stream::In, Stream::Out, Stream::Err]
        .into_iter()
        .find(|stream| {
            stream
                .with(|fd| fd.is_terminal() && tcgetpgrp(fd).is_ok_and(|group| group == getpgrp()))
        })
}

/// Makes `baton` the reaper of the job's orphans (Linux; see the module
/// docs). Best effort: without it, emptying the group may wait for the
/// system's init.
pub(crate) fn adopt_orphans() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Makes `group` the foreground group of `terminal`. Async-signal-safe, so
/// it also runs in the child between fork and exec: SIGTTOU is blocked
/// around the call, since a caller in a background group would otherwise
/// be stopped by it, and the mask is then restored.
pub(crate) fn hand_terminal(terminal: BorrowedFd<'_>, group: Pid) -> nix::Result<()> {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut before = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut before))?;
    let handed = tcsetpgrp(terminal, group);
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None)?;
    handed
}

/// A running job: the command's process group, and the terminal it holds.
/// Dropping it gives the terminal back to `baton`'s group.
pub(crate) struct Job {
    group: Pid,
    /// The terminal the job holds.
    terminal: Option<Stream>,
}

impl Job {
    /// The job whose group leader is `leader` (the command, started in a
    /// group of its own); `terminal`: the one whose foreground it takes.
    pub(crate) fn new(leader: Pid, terminal: Option<Stream>) -> Job {
        if let Some(stream) = terminal {
            // The child has taken it already (between fork and exec, so it
            // never reads the terminal from the background); asking again
            // here covers a child whose own request failed.
            let _ = stream.with(|fd| hand_terminal(fd, leader));
        }
        Job {
            group: leader,
            terminal,
        }
    }

    /// Sends `signal` to every process of the job.
    pub(crate) fn signal(&self, signal: Signal) {
        let _ = killpg(self.group, signal);
    }

    /// Whether any process of the job is left, once its leader has been
    /// waited for. Reaps the job's adopted orphans first (see
    /// [`adopt_orphans`]): they are this process's children then, and a
    /// zombie must not count as running.
    pub(crate) fn has_processes(&self) -> bool {
        let group = Pid::from_raw(-self.group.as_raw());
        while let Ok(status) = waitpid(group, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        killpg(self.group, None) != Err(Errno::ESRCH)
    }

    /// After the leader exited: waits until no process of the job is left,
    /// sending SIGTERM first if `terminate`, SIGKILL once `kill_after` has
    /// passed, and giving up [`AFTER_KILL`] later. `during` is polled
    /// alongside (the caller passes signals on with it).
    pub(crate) async fn empty<F>(&self, terminate: bool, kill_after: Duration, mut during: F)
    where
        F: FnMut() -> Option<Signal>,
    {
        if terminate {
            self.signal(Signal::SIGTERM);
        }
        let start = tokio::time::Instant::now();
        let mut killed = false;
        while self.has_processes() {
            if let Some(signal) = during() {
                self.signal(signal);
            }
            let elapsed = start.elapsed();
            if !killed && elapsed >= kill_after {
                self.signal(Signal::SIGKILL);
                killed = true;
            } else if killed && elapsed >= kill_after + AFTER_KILL {
                return;
            }
            tokio::time::sleep(GROUP_POLL).await;
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(stream) = self.terminal {
            take_terminal_back(stream);
        }
    }
}

/// Gives the terminal's foreground back to `baton`'s group: when the job is
/// over, or when the command could not be started (its child may have taken
/// the terminal before its exec failed).
pub(crate) fn take_terminal_back(terminal: Stream) {
    let _ = terminal.with(|fd| hand_terminal(fd, getpgrp()));
}
