//! The fenced store: the shared resource the clients update under the lock.
//!
//! A counter behind a line protocol on a loopback TCP port. It refuses any
//! operation whose fence is lower than one it has already seen, so a holder
//! whose lease lapsed cannot overwrite the work of a later holder — the
//! storage half of fencing. Every request is recorded in the history in
//! arrival order.
//!
//! Protocol (one request per line, one reply per line):
//! - `R <client> <fence>` → `V <value>`, or `S` if the fence is stale;
//! - `W <client> <fence> <value>` → `A` (accepted) or `X` (rejected).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::history::{Op, Recorder};

/// The store's state and rules, without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    /// Whether fences are checked at all (`false` only to show what
    /// fencing buys: every operation is accepted).
    pub enforce: bool,
    /// The resource.
    pub value: u64,
    /// The highest fence of any accepted operation.
    pub max_seen: u64,
    /// The fence of the last accepted write.
    pub last_write: u64,
}

impl Default for Fenced {
    fn default() -> Self {
        Fenced {
            enforce: true,
            value: 0,
            max_seen: 0,
            last_write: 0,
        }
    }
}

impl Fenced {
    /// A read under `fence`: the value, or `None` if a higher fence was seen.
    pub fn read(&mut self, fence: u64) -> Option<u64> {
        if self.enforce && fence < self.max_seen {
            return None;
        }
        self.max_seen = self.max_seen.max(fence);
        Some(self.value)
    }

    /// A write of `value` under `fence`: accepted only if no higher fence was
    /// seen and no write with this fence or a higher one was accepted.
    pub fn write(&mut self, fence: u64, value: u64) -> bool {
        if self.enforce && (fence < self.max_seen || fence <= self.last_write) {
            return false;
        }
        self.value = value;
        self.max_seen = self.max_seen.max(fence);
        self.last_write = self.last_write.max(fence);
        true
    }
}

/// A running store.
pub struct Store {
    addr: SocketAddr,
    state: Arc<Mutex<Fenced>>,
    /// The client that read last: most likely the current holder.
    last_reader: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Store {
    /// Listens on a free loopback port, recording into `history`; `fenced`
    /// false accepts every operation (a demonstration of what goes wrong
    /// without fencing).
    pub async fn start(history: Recorder, fenced: bool) -> std::io::Result<Store> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(Fenced {
            enforce: fenced,
            ..Fenced::default()
        }));
        let last_reader = Arc::new(Mutex::new(None));
        let shared = Shared {
            state: Arc::clone(&state),
            last_reader: Arc::clone(&last_reader),
            history,
        };
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(shared.clone().serve(stream));
            }
        });
        Ok(Store {
            addr,
            state,
            last_reader,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The resource's value now.
    pub fn value(&self) -> u64 {
        locked(&self.state).value
    }

    /// The client process that read last (likely holding the lock now).
    pub fn last_reader(&self) -> Option<String> {
        locked(&self.last_reader).clone()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<Fenced>>,
    last_reader: Arc<Mutex<Option<String>>>,
    history: Recorder,
}

impl Shared {
    async fn serve(self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = self.handle(&line);
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn handle(&self, line: &str) -> String {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| parts.get(i).and_then(|s| s.parse::<u64>().ok());
        // The state stays locked while the event is recorded: the history's
        // order is the order the store applied the operations in.
        let mut state = locked(&self.state);
        match (parts.first(), parts.get(1), number(2), number(3)) {
            (Some(&"R"), Some(client), Some(fence), None) => {
                let value = state.read(fence);
                self.history.record(Op::StoreRead {
                    client: client.to_string(),
                    fence,
                    value: value.unwrap_or(state.value),
                    accepted: value.is_some(),
                });
                if value.is_some() {
                    *locked(&self.last_reader) = Some(client.to_string());
                }
                value.map_or_else(|| "S\n".to_owned(), |v| format!("V {v}\n"))
            }
            (Some(&"W"), Some(client), Some(fence), Some(value)) => {
                let accepted = state.write(fence, value);
                self.history.record(Op::StoreWrite {
                    client: client.to_string(),
                    fence,
                    value,
                    accepted,
                });
                if accepted { "A\n" } else { "X\n" }.to_owned()
            }
            _ => "E bad request\n".to_owned(),
        }
    }
}

/// Every critical section leaves the state consistent: poison is moot.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client's connection to the store.
pub struct StoreClient {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
    process: String,
}

impl StoreClient {
    /// Connects as `process`.
    pub async fn connect(addr: SocketAddr, process: &str) -> std::io::Result<StoreClient> {
        let (read, write) = TcpStream::connect(addr).await?.into_split();
        Ok(StoreClient {
            lines: BufReader::new(read).lines(),
            write,
            process: process.to_owned(),
        })
    }

    async fn ask(&mut self, request: String) -> std::io::Result<String> {
        self.write.write_all(request.as_bytes()).await?;
        self.lines
            .next_line()
            .await?
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "store closed"))
    }

    /// Reads under `fence`: the value, or `None` if the fence is stale.
    pub async fn read(&mut self, fence: u64) -> std::io::Result<Option<u64>> {
        let reply = self.ask(format!("R {} {fence}\n", self.process)).await?;
        Ok(reply.strip_prefix("V ").and_then(|v| v.parse().ok()))
    }

    /// Writes `value` under `fence`: whether it was accepted.
    pub async fn write(&mut self, fence: u64, value: u64) -> std::io::Result<bool> {
        let reply = self
            .ask(format!("W {} {fence} {value}\n", self.process))
            .await?;
        Ok(reply == "A")
    }
}

#[cfg(test)]
mod tests {
    use super::Fenced;

    #[test]
    fn a_stale_fence_can_neither_read_nor_write() {
        let mut s = Fenced::default();
        assert_eq!(s.read(5), Some(0));
        assert_eq!(s.read(4), None, "a lower fence after 5 was seen");
        assert!(!s.write(4, 1));
        assert!(s.write(5, 1));
        assert!(!s.write(5, 2), "one write per fence");
        assert_eq!(s.read(7), Some(1));
        assert!(!s.write(6, 2), "7 has read: 6 is stale");
        assert_eq!(s.value, 1);
    }

    /// The lost update fencing of writes alone would allow: A reads, B reads
    /// with a higher fence, A writes, B writes. A's write is refused because
    /// B's read was seen.
    #[test]
    fn a_read_with_a_higher_fence_refuses_the_older_holders_write() {
        let mut s = Fenced::default();
        assert_eq!(s.read(1), Some(0));
        assert_eq!(s.read(2), Some(0));
        assert!(!s.write(1, 1));
        assert!(s.write(2, 1));
        assert_eq!(s.value, 1);
    }

    #[test]
    fn unenforced_accepts_everything() {
        let mut s = Fenced {
            enforce: false,
            ..Fenced::default()
        };
        assert_eq!(s.read(2), Some(0));
        assert_eq!(s.read(1), Some(0));
        assert!(s.write(2, 1));
        assert!(s.write(1, 1), "the stale write lands: a lost update");
    }
}
