//! An exhaustive model check of the Redlock protocol as Baton runs it,
//! driving the very machines that ship: [`Attempt`] (the vote, the fence's
//! settling, what a lost attempt takes back), [`Vote`] (a renewal's
//! verdict) and [`LeaseState`] (the deadline, the renewal verdict, loss).
//! The model keeps no copy of any of their rules: it is the network, the
//! servers and the clock around them.
//!
//! The model: N servers and K clients on a network that loses, delays and
//! reorders every message arbitrarily; a global clock in ticks; per-node
//! timeouts that may fire at any moment. A client runs an attempt (its
//! requests and raises are what [`Attempt::poll_transmit`] asks for),
//! holds the lease it won (and may renew it once), and releases — or takes
//! back what a lost attempt names. A lease that is lost while held (its
//! deadline passes, a renewal is refused or fails) is released at once,
//! and its client keeps listening for the renewal still out. Servers apply
//! the scripts' semantics: `SET NX PX` with a counter increment,
//! compare-and-delete, compare-and-raise, compare-and-`PEXPIRE`, with
//! expiry on the server's clock.
//!
//! Every reachable state (up to a time horizon) is visited, and in each:
//! - **exclusion**: at most one client holds a lease that
//!   [`LeaseState::is_held`] says is held;
//! - **fences**: a lease's fence is greater than every fence granted before
//!   its attempt began.
//!
//! Stated assumptions (those of the README's guarantees): all clocks run at
//! the same rate (the drift allowance covers only rounding here); servers
//! keep their keys and counters (no restart without persistence); no client
//! is paused past its deadline while trusting its lease (the model's holder
//! checks `now` at every step — that is what fencing is for).
//!
//! The model is not blind: each defect of [`crate::seeded`], seeded into
//! the shipping machine, is caught.
//! - Validity counted from the decision instead of from the requests:
//!   exclusion breaks on one server (CI).
//! - A late renewal "yes" that revives a lost lease: exclusion breaks on
//!   one server (CI): the lease's deadline passes, its release deletes the
//!   key, another client takes it, then the renewal's "yes" (applied before
//!   the release) comes back.
//! - A fence handed out before it is settled: the fence order breaks on
//!   three servers, where a lost attempt leaves the counters unequal
//!   (`--ignored`, with the three-server run).
//!
//! The fair lock's hand-off has a model of its own ([`fair`]), run the
//! same way.
//!
//! Sizes: one server, two clients with two attempts each, renewals and lost
//! releases, six ticks: 2.6 million states, in CI. Three servers, one
//! attempt each, four ticks: 16.9 million states, `--ignored` (each test
//! prints its count with `--nocapture`).
//! Run on purpose: `cargo test --release -p baton-core --lib model -- --ignored`.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::acquire::{Attempt, Outcome, Reply, Request};
use crate::backoff::HolderTtl;
use crate::lease::{Applied, LeaseState, Operation};
use crate::seeded::{self, Defect};
use crate::vote::{Ballot, Vote};

mod fair;

/// One tick of the model's clock.
const TICK: Duration = Duration::from_millis(10);

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn at(tick: u8) -> Instant {
    base() + TICK * u32::from(tick)
}

#[derive(Debug, Clone, Copy)]
struct Config {
    servers: usize,
    /// Attempts per client (the number of clients is its length).
    attempts: &'static [u8],
    /// The lock's TTL in ticks.
    ttl: u8,
    /// The time horizon in ticks.
    horizon: u8,
    /// Whether a holder may renew its lease (once).
    renew: bool,
    /// Whether a release may be lost (else it reaches every node at once).
    lose_releases: bool,
}

impl Config {
    fn ttl(&self) -> Duration {
        TICK * u32::from(self.ttl)
    }
}

/// A client's attempt: (client, attempt number) is its token.
type Owner = (u8, u8);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Msg {
    Acquire { to: u8, owner: Owner },
    Release { to: u8, owner: Owner },
    Raise { to: u8, owner: Owner, fence: u64 },
    Extend { to: u8, owner: Owner },
    Acquired { from: u8, owner: Owner, fence: u64 },
    Busy { from: u8, owner: Owner },
    Raised { from: u8, owner: Owner, ok: bool },
    Extended { from: u8, owner: Owner, ok: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Server {
    /// The key: its owner and the tick it expires at.
    key: Option<(Owner, u8)>,
    counter: u64,
}

/// A renewal in flight: when it was sent, the vote so far, and which nodes
/// have answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Renewal {
    sent: u8,
    vote: Vote,
    answered: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Phase {
    Idle,
    Acquiring {
        attempt: Attempt,
        /// The highest fence granted when this attempt began.
        floor: u64,
    },
    Holding {
        fence: u64,
        lease: LeaseState,
        renewal: Option<Renewal>,
        renewed: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Client {
    phase: Phase,
    attempt: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    now: u8,
    servers: Vec<Server>,
    clients: Vec<Client>,
    /// In flight, sorted: a multiset.
    msgs: Vec<Msg>,
    /// The highest fence any client has held.
    granted: u64,
}

impl State {
    fn initial(cfg: &Config) -> State {
        State {
            now: 0,
            servers: vec![
                Server {
                    key: None,
                    counter: 0
                };
                cfg.servers
            ],
            clients: vec![
                Client {
                    phase: Phase::Idle,
                    attempt: 0,
                };
                cfg.attempts.len()
            ],
            msgs: Vec::new(),
            granted: 0,
        }
    }

    fn send(&mut self, msg: Msg) {
        in_flight_add(&mut self.msgs, msg);
    }

    fn owner(&self, c: usize) -> Owner {
        (c as u8, self.clients[c].attempt)
    }

    /// Client `c` releases on `nodes`.
    fn release(&mut self, c: usize, nodes: impl IntoIterator<Item = usize>) {
        let owner = self.owner(c);
        for to in nodes {
            self.send(Msg::Release {
                to: to as u8,
                owner,
            });
        }
    }

    /// Releases reach their node at once or never (see [`successors`]).
    fn releases(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.msgs.len()).filter(|&i| matches!(self.msgs[i], Msg::Release { .. }))
    }
}

/// What a server does with a request; returns the reply.
fn serve(cfg: &Config, now: u8, server: &mut Server, to: u8, msg: &Msg) -> Option<Msg> {
    if server.key.is_some_and(|(_, expires)| now >= expires) {
        server.key = None;
    }
    let ours = |owner: Owner| server.key.is_some_and(|(o, _)| o == owner);
    match *msg {
        Msg::Acquire { owner, .. } => Some(if server.key.is_none() {
            server.key = Some((owner, now + cfg.ttl));
            server.counter += 1;
            Msg::Acquired {
                from: to,
                owner,
                fence: server.counter,
            }
        } else {
            Msg::Busy { from: to, owner }
        }),
        Msg::Release { owner, .. } => {
            if ours(owner) {
                server.key = None;
            }
            None
        }
        Msg::Raise { owner, fence, .. } => {
            let ok = ours(owner);
            if ok {
                server.counter = server.counter.max(fence);
            }
            Some(Msg::Raised {
                from: to,
                owner,
                ok,
            })
        }
        Msg::Extend { owner, .. } => {
            let ok = ours(owner);
            if ok {
                server.key = Some((owner, now + cfg.ttl));
            }
            Some(Msg::Extended {
                from: to,
                owner,
                ok,
            })
        }
        _ => unreachable!("not a request"),
    }
}

/// Sends what client `c`'s attempt asks for, and acts on its outcome.
fn drive_attempt(s: &mut State, c: usize) {
    let owner = s.owner(c);
    let Phase::Acquiring { attempt, floor } = &mut s.clients[c].phase else {
        return;
    };
    let floor = *floor;
    let mut requests = Vec::new();
    while let Some(request) = attempt.poll_transmit() {
        requests.push(request);
    }
    let outcome = attempt.poll_outcome().cloned();
    for request in requests {
        s.send(match request {
            Request::Acquire { node } => Msg::Acquire {
                to: node as u8,
                owner,
            },
            Request::Raise { node, fence } => Msg::Raise {
                to: node as u8,
                owner,
                fence: fence.0,
            },
        });
    }
    match outcome {
        None => {}
        Some(Outcome::Lost { release, .. }) => {
            s.release(c, release);
            s.clients[c].phase = Phase::Idle;
        }
        Some(Outcome::Won { fence, .. }) => {
            assert!(
                fence.0 > floor,
                "fence {fence} granted to client {c}, not above {floor} granted before its attempt began"
            );
            s.granted = s.granted.max(fence.0);
            let Phase::Acquiring { attempt, .. } = &s.clients[c].phase else {
                unreachable!("matched above")
            };
            let (_, lease) = attempt.won_lease().expect("won");
            s.clients[c].phase = Phase::Holding {
                fence: fence.0,
                lease,
                renewal: None,
                renewed: false,
            };
        }
    }
}

/// Client `c`'s renewal vote came to a verdict, or not yet; a lease lost
/// by it is released at once.
fn drive_renewal(s: &mut State, c: usize) {
    let now = at(s.now);
    let Phase::Holding {
        lease,
        renewal,
        renewed,
        ..
    } = &mut s.clients[c].phase
    else {
        return;
    };
    let Some(Renewal { sent, vote, .. }) = renewal else {
        return;
    };
    let Some(verdict) = vote.poll_verdict() else {
        return;
    };
    let applied = lease.handle_verdict(Operation::Renewal, verdict, at(*sent), now);
    *renewal = None;
    *renewed = true;
    if let Applied::Lost(_) = applied {
        let all = 0..s.servers.len();
        s.release(c, all);
    }
}

/// Whether a reply in flight can still change anything: one its client no
/// longer waits for is as good as lost, and is dropped (fewer states, same
/// behaviours).
fn awaited(s: &State, msg: &Msg) -> bool {
    let (from, owner) = match *msg {
        Msg::Acquired { from, owner, .. }
        | Msg::Busy { from, owner }
        | Msg::Raised { from, owner, .. }
        | Msg::Extended { from, owner, .. } => (usize::from(from), owner),
        _ => return true,
    };
    let c = usize::from(owner.0);
    if s.owner(c) != owner {
        return false;
    }
    match (&s.clients[c].phase, msg) {
        (Phase::Acquiring { attempt, .. }, Msg::Acquired { .. } | Msg::Busy { .. }) => {
            attempt.awaits_reply(from)
        }
        (Phase::Acquiring { attempt, .. }, Msg::Raised { .. }) => attempt.awaits_raise(from),
        (
            Phase::Holding {
                renewal: Some(renewal),
                ..
            },
            Msg::Extended { .. },
        ) => !renewal.answered[from],
        _ => false,
    }
}

/// Every state one step from `s`.
///
/// To keep the state space small, a release is applied at once or lost
/// (every subset of a step's releases), never left in flight: a release
/// only deletes its own owner's key, so a late one differs from a lost one
/// only by freeing a node sooner, which an on-time release already covers
/// as well as a lost one covers it staying. Other messages may be delayed
/// past any number of steps and delivered in any order.
fn successors(cfg: &Config, s: &State) -> Vec<State> {
    let mut next = Vec::new();
    for mut t in successors_raw(cfg, s) {
        let keep: Vec<bool> = t.msgs.iter().map(|m| awaited(&t, m)).collect();
        let mut keep = keep.into_iter();
        t.msgs.retain(|_| keep.next().unwrap_or(true));
        let releases: Vec<Msg> = t.releases().map(|i| t.msgs[i].clone()).collect();
        t.msgs.retain(|m| !matches!(m, Msg::Release { .. }));
        let all = (1u32 << releases.len()) - 1;
        let subsets = if cfg.lose_releases {
            0..=all
        } else {
            all..=all
        };
        for subset in subsets {
            let mut u = t.clone();
            for (i, release) in releases.iter().enumerate() {
                if subset & (1 << i) != 0 {
                    deliver(cfg, &mut u, release);
                }
            }
            next.push(u);
        }
    }
    next
}

fn successors_raw(cfg: &Config, s: &State) -> Vec<State> {
    let mut next = Vec::new();
    // Time passes: attempts settling a fence look at their deadline, and a
    // held lease past its deadline is lost (and released).
    if s.now < cfg.horizon {
        let mut t = s.clone();
        t.now += 1;
        let now = at(t.now);
        for c in 0..t.clients.len() {
            match &mut t.clients[c].phase {
                Phase::Acquiring { attempt, .. } => {
                    attempt.handle_timeout(now);
                    drive_attempt(&mut t, c);
                }
                Phase::Holding { lease, .. } => {
                    let was_held = lease.next_renewal().is_some();
                    if !lease.handle_timeout(now) && was_held {
                        let all = 0..t.servers.len();
                        t.release(c, all);
                    }
                }
                Phase::Idle => {}
            }
        }
        next.push(t);
    }
    // The network delivers any message in flight, in any order. (A lost
    // message is one never delivered: every state it leads to is reached
    // by not delivering it.)
    for (i, msg) in s.msgs.iter().enumerate() {
        if i > 0 && s.msgs[i - 1] == *msg {
            continue;
        }
        let mut t = s.clone();
        t.msgs.remove(i);
        deliver(cfg, &mut t, msg);
        next.push(t);
    }
    // Clients act.
    for c in 0..s.clients.len() {
        let owner = s.owner(c);
        match &s.clients[c].phase {
            Phase::Idle if s.clients[c].attempt < cfg.attempts[c] => {
                let mut t = s.clone();
                t.clients[c].attempt += 1;
                t.clients[c].phase = Phase::Acquiring {
                    attempt: Attempt::new(cfg.servers, cfg.ttl(), at(t.now)),
                    floor: t.granted,
                };
                drive_attempt(&mut t, c);
                next.push(t);
            }
            Phase::Idle => {}
            Phase::Acquiring { attempt, .. } => {
                // A node's timeout fires (while its request is in flight;
                // see `in_flight`).
                for i in 0..cfg.servers {
                    let to = i as u8;
                    let acquire = attempt.awaits_reply(i)
                        && in_flight(s, |m| *m == Msg::Acquire { to, owner });
                    let raise = attempt.awaits_raise(i)
                        && in_flight(
                            s,
                            |m| matches!(*m, Msg::Raise { to: t, owner: o, .. } if t == to && o == owner),
                        );
                    if !(acquire || raise) {
                        continue;
                    }
                    let mut t = s.clone();
                    if let Phase::Acquiring { attempt, .. } = &mut t.clients[c].phase {
                        if acquire {
                            attempt.handle_reply(i, Reply::Failed, at(t.now));
                        } else {
                            attempt.handle_raise(i, false, at(t.now));
                        }
                    }
                    drive_attempt(&mut t, c);
                    next.push(t);
                }
            }
            Phase::Holding {
                lease,
                renewal,
                renewed,
                ..
            } => {
                // Release (a lease lost meanwhile was released then).
                let mut t = s.clone();
                if lease.next_renewal().is_some() {
                    let all = 0..cfg.servers;
                    t.release(c, all);
                }
                t.clients[c].phase = Phase::Idle;
                next.push(t);
                match renewal {
                    None if cfg.renew && !renewed && lease.next_renewal().is_some() => {
                        let mut t = s.clone();
                        for to in 0..cfg.servers as u8 {
                            t.send(Msg::Extend { to, owner });
                        }
                        if let Phase::Holding { renewal, .. } = &mut t.clients[c].phase {
                            *renewal = Some(Renewal {
                                sent: t.now,
                                vote: Vote::new(cfg.servers),
                                answered: vec![false; cfg.servers],
                            });
                        }
                        next.push(t);
                    }
                    None => {}
                    Some(r) => {
                        // A renewal's node times out: it counts as failed.
                        for i in 0..cfg.servers {
                            let to = i as u8;
                            if r.answered[i] || !in_flight(s, |m| *m == Msg::Extend { to, owner }) {
                                continue;
                            }
                            let mut t = s.clone();
                            if let Phase::Holding {
                                renewal: Some(r), ..
                            } = &mut t.clients[c].phase
                            {
                                r.answered[i] = true;
                                r.vote.handle(Ballot::Failed);
                            }
                            drive_renewal(&mut t, c);
                            next.push(t);
                        }
                    }
                }
            }
        }
    }
    next
}

/// Whether a message matching `which` is in flight. A node's timeout is
/// explored only while its request is: the request may still land after
/// the timeout, which covers a reply lost or late after its timeout (the
/// same server state, the same client decision), and keeps the state space
/// small enough for a test.
fn in_flight(s: &State, which: impl Fn(&Msg) -> bool) -> bool {
    s.msgs.iter().any(which)
}

fn deliver(cfg: &Config, s: &mut State, msg: &Msg) {
    let (from, owner) = match *msg {
        Msg::Acquire { to, .. }
        | Msg::Release { to, .. }
        | Msg::Raise { to, .. }
        | Msg::Extend { to, .. } => {
            let tick = s.now;
            if let Some(reply) = serve(cfg, tick, &mut s.servers[usize::from(to)], to, msg) {
                s.send(reply);
            }
            return;
        }
        Msg::Acquired { from, owner, .. }
        | Msg::Busy { from, owner }
        | Msg::Raised { from, owner, .. }
        | Msg::Extended { from, owner, .. } => (usize::from(from), owner),
    };
    let c = usize::from(owner.0);
    if s.owner(c) != owner {
        return; // an earlier attempt's
    }
    let now = at(s.now);
    match (msg, &mut s.clients[c].phase) {
        (Msg::Acquired { fence, .. }, Phase::Acquiring { attempt, .. }) => {
            attempt.handle_reply(from, Reply::Acquired { fence: *fence }, now);
            drive_attempt(s, c);
        }
        (Msg::Busy { .. }, Phase::Acquiring { attempt, .. }) => {
            let holder = HolderTtl::Expires(cfg.ttl());
            attempt.handle_reply(
                from,
                Reply::Busy {
                    holder,
                    fence: None,
                },
                now,
            );
            drive_attempt(s, c);
        }
        (Msg::Raised { ok, .. }, Phase::Acquiring { attempt, .. }) => {
            attempt.handle_raise(from, *ok, now);
            drive_attempt(s, c);
        }
        (
            Msg::Extended { ok, .. },
            Phase::Holding {
                renewal: Some(r), ..
            },
        ) => {
            if !r.answered[from] {
                r.answered[from] = true;
                r.vote.handle(if *ok { Ballot::Yes } else { Ballot::No });
            }
            drive_renewal(s, c);
        }
        _ => {} // no longer awaited
    }
}

/// The exclusion invariant.
fn exclusion(s: &State) -> Result<(), String> {
    at_most_one_held(
        at(s.now),
        s.clients.iter().map(|c| match &c.phase {
            Phase::Holding { lease, .. } => Some(lease),
            _ => None,
        }),
    )
}

/// The exclusion invariant of every model: of the clients' leases (`None`
/// for a client holding none), at most one is held at `now`.
fn at_most_one_held<'a>(
    now: Instant,
    leases: impl Iterator<Item = Option<&'a LeaseState>>,
) -> Result<(), String> {
    let held: Vec<usize> = leases
        .enumerate()
        .filter(|(_, lease)| lease.is_some_and(|l| l.is_held(now)))
        .map(|(c, _)| c)
        .collect();
    if held.len() > 1 {
        return Err(format!("clients {held:?} all hold a valid lease"));
    }
    Ok(())
}

/// Adds `msg` to the messages in flight, a sorted multiset (so states that
/// differ only in sending order are one).
fn in_flight_add<M: Ord>(msgs: &mut Vec<M>, msg: M) {
    let i = msgs.binary_search(&msg).unwrap_or_else(|i| i);
    msgs.insert(i, msg);
}

/// A seeded defect's exploration ended in a broken exclusion.
fn assert_breaks_exclusion(explored: Result<usize, String>) {
    let err = explored.expect_err("the defect is caught");
    assert!(err.contains("hold a valid lease"), "{err}");
}

/// Explored states beyond which a model is too big for a test.
const MAX_STATES: usize = 30_000_000;

/// Visits every reachable state of this model with `defect` seeded.
fn explore(cfg: Config, defect: Option<Defect>) -> Result<usize, String> {
    explore_with(
        State::initial(&cfg),
        |s| successors(&cfg, s),
        exclusion,
        defect,
    )
}

/// Visits every state reachable from `initial` by `successors` (depth
/// first, remembering 64-bit fingerprints of the states seen) with `defect`
/// seeded into the machines, checking `invariant` in each; returns how
/// many, or the first violation (a panic in a step, such as a fence
/// assertion, is one too).
fn explore_with<S: Hash + std::fmt::Debug + std::panic::RefUnwindSafe>(
    initial: S,
    successors: impl Fn(&S) -> Vec<S> + std::panic::RefUnwindSafe,
    invariant: impl Fn(&S) -> Result<(), String>,
    defect: Option<Defect>,
) -> Result<usize, String> {
    seeded::seed(defect);
    let mut seen = HashSet::from([fingerprint(&initial)]);
    let mut stack = vec![initial];
    let result = (|| {
        while let Some(s) = stack.pop() {
            let steps = std::panic::catch_unwind(|| successors(&s))
                .map_err(|e| format!("{}\nfrom state {s:?}", panic_text(&e)))?;
            for t in steps {
                invariant(&t).map_err(|e| format!("{e}\nin state {t:?}"))?;
                if seen.insert(fingerprint(&t)) {
                    stack.push(t);
                }
            }
            assert!(
                seen.len() < MAX_STATES,
                "the model is too big for a test: shrink it"
            );
        }
        Ok(seen.len())
    })();
    seeded::seed(None);
    result
}

fn fingerprint(s: &impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut hasher);
    hasher.finish()
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// One server, two clients with two attempts each, a renewal per lease,
/// lost and reordered messages, over six ticks of a three-tick TTL.
const ONE_SERVER: Config = Config {
    servers: 1,
    attempts: &[2, 2],
    ttl: 3,
    horizon: 6,
    renew: true,
    lose_releases: true,
};

/// Three servers (Redlock with fence settling), two clients with one
/// attempt each, over four ticks; releases always arrive.
const THREE_SERVERS: Config = Config {
    servers: 3,
    attempts: &[1, 1],
    ttl: 3,
    horizon: 4,
    renew: false,
    lose_releases: false,
};

#[test]
fn one_server_two_clients_keep_exclusion_and_fence_order() {
    let states = explore(ONE_SERVER, None).unwrap();
    eprintln!("one server: explored {states} states");
    assert!(states > 1_000_000, "explored {states} states");
}

/// About 17 million states and a minute or two in a release build.
#[test]
#[ignore = "about 17 million states: run on purpose"]
fn three_servers_two_clients_keep_exclusion_and_fence_order() {
    let states = explore(THREE_SERVERS, None).unwrap();
    eprintln!("three servers: explored {states} states");
    assert!(states > 10_000_000, "explored {states} states");
}

#[test]
fn validity_counted_from_the_decision_is_caught() {
    assert_breaks_exclusion(explore(ONE_SERVER, Some(Defect::ValidityFromDecision)));
}

#[test]
fn a_late_yes_that_revives_a_lost_lease_is_caught() {
    assert_breaks_exclusion(explore(ONE_SERVER, Some(Defect::LateExtendRevives)));
}

/// The smallest history: client 1's first attempt reaches only server 2
/// and is lost (its counter is now 1, the others' 0); client 0 wins on
/// servers 1 and 2 with fences 1 and 2 and, unsettled, holds fence 2;
/// client 1's second attempt wins on servers 0 and 1 with fences 1 and 2:
/// fence 2 again. Hence two attempts for client 1; no time needs to pass
/// (the first attempt's lost requests are timeouts), so the clock stands
/// still, which keeps the search small enough for CI.
#[test]
fn a_fence_handed_out_before_it_is_settled_is_caught() {
    let cfg = Config {
        attempts: &[1, 2],
        horizon: 0,
        ..THREE_SERVERS
    };
    let err = explore(cfg, Some(Defect::FenceBeforeSettled)).unwrap_err();
    assert!(err.contains("not above"), "{err}");
}
