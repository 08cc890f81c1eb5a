//! An in-process TCP proxy that injects network faults between a client
//! and one server.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::mode::{Direction, Mode};
use crate::url::redis_url;

/// What every connection of a proxy watches.
#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    /// Bumped by [`FaultProxy::reset_connections`]; a connection accepted
    /// under an older value is reset.
    resets: u64,
}

/// A TCP proxy on a free loopback port in front of one server, whose
/// [`Mode`] can be switched at run time to inject network faults.
///
/// It runs on the tokio runtime it was started on; dropping it stops the
/// accept loop and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    live: Arc<AtomicUsize>,
    forgotten: Arc<AtomicUsize>,
    closed_idle: Arc<AtomicUsize>,
    accept: AbortHandle,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and relays every connection to `target`, in
    /// [`Mode::Pass`] until told otherwise.
    ///
    /// # Panics
    /// Outside a tokio runtime, or if no loopback port can be bound.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("FaultProxy cannot bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("FaultProxy cannot read its port: {e}"));
        let (state, watcher) = watch::channel(State {
            mode: Mode::Pass,
            resets: 0,
        });
        let live = Arc::new(AtomicUsize::new(0));
        let forgotten = Arc::new(AtomicUsize::new(0));
        let closed_idle = Arc::new(AtomicUsize::new(0));
        let counters = Counters {
            live: Arc::clone(&live),
            forgotten: Arc::clone(&forgotten),
            closed_idle: Arc::clone(&closed_idle),
        };
        let accept = tokio::spawn(accept_loop(listener, target, watcher, counters));
        Self {
            addr,
            state,
            live,
            forgotten,
            closed_idle,
            accept: accept.abort_handle(),
        }
    }

    /// The proxy's address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:PORT/` for the proxy.
    pub fn url(&self) -> String {
        redis_url(self.port(), None, false)
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT/` for the proxy (percent-encoded).
    pub fn url_with_password(&self, password: &str) -> String {
        redis_url(self.port(), Some(password), false)
    }

    /// `rediss://localhost:PORT/` for the proxy in front of a TLS
    /// [`crate::RedisServer`]: the proxy relays the TLS bytes unchanged, and
    /// `localhost` is the name the server's certificate is valid for.
    pub fn tls_url(&self) -> String {
        redis_url(self.port(), None, true)
    }

    /// Switches the mode; live connections follow at once.
    pub fn set_mode(&self, mode: Mode) {
        self.state.send_modify(|state| state.mode = mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.state.borrow().mode
    }

    /// Resets every live connection once; new connections then get the
    /// current mode as usual.
    pub fn reset_connections(&self) {
        self.state.send_modify(|state| state.resets += 1);
    }

    /// How many client connections are currently being relayed.
    pub fn connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// How many connections [`Mode::ForgetIdle`] has forgotten so far.
    pub fn forgotten(&self) -> usize {
        self.forgotten.load(Ordering::SeqCst)
    }

    /// How many connections [`Mode::CloseIdle`] has closed so far.
    pub fn closed_idle(&self) -> usize {
        self.closed_idle.load(Ordering::SeqCst)
    }
}

/// What every connection of a proxy counts in.
#[derive(Debug, Clone)]
struct Counters {
    live: Arc<AtomicUsize>,
    forgotten: Arc<AtomicUsize>,
    closed_idle: Arc<AtomicUsize>,
}

/// One connection's traffic, for [`Mode::ForgetIdle`].
#[derive(Debug)]
struct Activity {
    last: std::sync::Mutex<Instant>,
    forgotten: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            last: std::sync::Mutex::new(Instant::now()),
            forgotten: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_forgotten(&self) -> bool {
        self.forgotten.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its `JoinSet`, which aborts every
        // connection; the dropped `state` sender also ends them on its own.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: watch::Receiver<State>,
    counters: Counters,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // E.g. out of file descriptors: back off, don't spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let now = *state.borrow();
                if now.mode == Mode::Reset {
                    abort(client);
                    continue;
                }
                connections.spawn(relay(client, target, state.clone(), now.resets, counters.clone()));
            }
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Relays one connection until either side closes it or a reset is due.
async fn relay(
    mut client: TcpStream,
    target: SocketAddr,
    state: watch::Receiver<State>,
    resets: u64,
    counters: Counters,
) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        abort(client);
        return;
    };
    // Requests and replies are small: don't let Nagle hold them back.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _live = LiveGuard::new(Arc::clone(&counters.live));
    let activity = Activity::new();
    let (lost_up, lost_down) = (AtomicBool::new(false), AtomicBool::new(false));
    let mut watcher = state.clone();
    let must_reset = |s: &State| {
        s.mode == Mode::Reset
            || s.resets != resets
            || (lost_up.load(Ordering::SeqCst) && s.mode.forwards(Direction::Up))
            || (lost_down.load(Ordering::SeqCst) && s.mode.forwards(Direction::Down))
    };
    let reset = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        tokio::select! {
            up = pump(client_read, server_write, &state, Direction::Up, &lost_up, &activity) => up.is_err(),
            down = pump(server_read, client_write, &state, Direction::Down, &lost_down, &activity) => down.is_err(),
            // Also when the proxy is dropped (the sender is gone).
            _ = watcher.wait_for(must_reset) => true,
            // Closed for idleness: a plain close (FIN), not a reset.
            () = watch_idle(state.clone(), &activity, &counters) => false,
        }
    };
    if reset {
        abort(client);
        abort(server);
    }
}

/// Copies `from` to `to` chunk by chunk, applying the mode current when
/// each chunk arrives. `Ok` on end of stream; `Err` when the connection
/// must be reset.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    state: &watch::Receiver<State>,
    direction: Direction,
    lost: &AtomicBool,
    activity: &Activity,
) -> io::Result<()> {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if activity.is_forgotten() {
            continue; // as a flow a NAT no longer knows
        }
        activity.touch();
        let mode = state.borrow().mode;
        if !mode.forwards(direction) {
            lost.store(true, Ordering::SeqCst);
            continue;
        }
        if lost.load(Ordering::SeqCst) {
            return Err(io::Error::other(
                "bytes were dropped earlier in this direction",
            ));
        }
        if let Mode::Delay(delay) = mode {
            tokio::time::sleep(delay).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Under [`Mode::ForgetIdle`], marks the connection forgotten once it has
/// been idle that long (and never returns); under [`Mode::CloseIdle`],
/// returns then, so the connection is closed.
async fn watch_idle(mut state: watch::Receiver<State>, activity: &Activity, counters: &Counters) {
    loop {
        let mode = state.borrow_and_update().mode;
        let after = match mode {
            Mode::ForgetIdle(after) | Mode::CloseIdle(after) => after,
            _ => {
                if state.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            }
        };
        let due = activity.last() + after;
        if Instant::now() >= due {
            if let Mode::CloseIdle(_) = mode {
                counters.closed_idle.fetch_add(1, Ordering::SeqCst);
                return;
            }
            activity.forgotten.store(true, Ordering::SeqCst);
            counters.forgotten.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            changed = state.changed() => if changed.is_err() { std::future::pending::<()>().await },
        }
    }
}

/// Closes `stream` with a TCP RST rather than a FIN.
fn abort(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Counts a connection as live for as long as it exists.
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(live: Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self(live)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
