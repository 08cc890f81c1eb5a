//! An exhaustive model check of the fair lock's hand-off, driving the
//! machines that ship: [`Attempt`] (a queued attempt's win, on one server)
//! and [`LeaseState::handed`] (the lease a grant makes, valid from the
//! waiter's last queued attempt). The model is the server (the semantics
//! of `fair_acquire.lua` and of `release.lua`'s fair branch: a queue of
//! entries with leases of their own, the hand-off to the first live one),
//! the network and the clock, and the client's loop as `Lock::acquire`
//! runs it: an attempt out at a time, its send time noted as the last
//! queued attempt when it queues, a grant taken only between attempts.
//!
//! Messages (attempts, replies, releases, grants) are delayed, reordered
//! and lost arbitrarily; a waiter may give up at any moment (its take-back
//! leaves the queue, or passes on a lock handed to it); entries and leases
//! expire on the server's clock. In every reachable state:
//! - **exclusion**: at most one client holds a lease that
//!   [`LeaseState::is_held`] says is held;
//! - **fences**: a lease's fence is greater than every fence granted
//!   before its acquire began.
//!
//! It is not blind: a handed lease counted from the grant's arrival
//! instead of from the last queued attempt ([`Defect::HandedFromGrant`])
//! breaks exclusion.

use std::time::Duration;

use super::{assert_breaks_exclusion, at, at_most_one_held, explore_with, in_flight_add, TICK};
use crate::acquire::{Attempt, Outcome, Reply};
use crate::backoff::HolderTtl;
use crate::lease::{LeaseState, Queued};
use crate::seeded::Defect;

/// A client's acquire: (client, acquire number) is its token.
type Owner = (u8, u8);

#[derive(Debug, Clone, Copy)]
struct Config {
    /// Acquires per client (the number of clients is its length).
    acquires: &'static [u8],
    /// The lease's TTL in ticks.
    ttl: u8,
    /// A queue entry's lease, and a handed lock's, in ticks.
    hand_off: u8,
    /// The time horizon in ticks.
    horizon: u8,
}

impl Config {
    fn ttl(&self) -> Duration {
        TICK * u32::from(self.ttl)
    }

    fn hand_off(&self) -> Duration {
        TICK * u32::from(self.hand_off)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Msg {
    /// An attempt; `queue`: it queues the waiter (or refreshes its entry).
    Acquire {
        owner: Owner,
        queue: bool,
    },
    /// A release by the holder, or a leaving waiter's take-back.
    Release {
        owner: Owner,
    },
    Acquired {
        owner: Owner,
        fence: u64,
    },
    /// Not ours; `fence`: the counter as the reply found it.
    Busy {
        owner: Owner,
        fence: u64,
    },
    /// The release's notification on the waiter's grant channel.
    Granted {
        owner: Owner,
        fence: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Server {
    /// The holder and the tick its key expires at.
    holder: Option<(Owner, u8)>,
    /// Waiters in arrival order, each with the tick its entry expires at.
    queue: Vec<(Owner, u8)>,
    counter: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Phase {
    Idle,
    Waiting {
        /// The attempt out, if any (one at a time, as `Lock::acquire`).
        out: Option<Attempt>,
        /// Subscribed to its grant channel: its attempts queue.
        subscribed: bool,
        /// When its attempt out went out, if it queues.
        queuing: Option<u8>,
        /// Its last queued attempt that came back busy: when it went out,
        /// and the counter its reply saw.
        queued: Option<(u8, u64)>,
        /// The highest fence granted when this acquire began.
        floor: u64,
    },
    Holding {
        lease: LeaseState,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Client {
    phase: Phase,
    acquire: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    now: u8,
    server: Server,
    clients: Vec<Client>,
    /// In flight, sorted: a multiset.
    msgs: Vec<Msg>,
    granted: u64,
}

impl State {
    fn send(&mut self, msg: Msg) {
        in_flight_add(&mut self.msgs, msg);
    }

    fn owner(&self, c: usize) -> Owner {
        (c as u8, self.clients[c].acquire)
    }

    /// Client `c` becomes the holder of `fence` with `lease`.
    fn hold(&mut self, c: usize, fence: u64, floor: u64, lease: LeaseState) {
        assert!(
            fence > floor,
            "fence {fence} granted to client {c}, not above {floor} granted before its acquire began"
        );
        self.granted = self.granted.max(fence);
        self.clients[c].phase = Phase::Holding { lease };
    }
}

/// The server's clock: an expired key is gone.
fn expire(server: &mut Server, now: u8) {
    if server.holder.is_some_and(|(_, until)| now >= until) {
        server.holder = None;
    }
}

/// Drops lapsed entries from the head of the queue (as the scripts do).
fn prune(server: &mut Server, now: u8) {
    while server.queue.first().is_some_and(|&(_, until)| now >= until) {
        server.queue.remove(0);
    }
}

/// What the server does with a request; returns the replies.
fn serve(cfg: &Config, s: &mut State, msg: &Msg) {
    let now = s.now;
    let server = &mut s.server;
    expire(server, now);
    match *msg {
        Msg::Acquire { owner, queue } => {
            if server.holder.is_some_and(|(o, _)| o == owner) {
                // Handed to us: the lease starts now.
                server.holder = Some((owner, now + cfg.ttl));
                let fence = server.counter;
                s.send(Msg::Acquired { owner, fence });
                return;
            }
            prune(server, now);
            let head = server.queue.first().map(|&(o, _)| o);
            if server.holder.is_none() && head.is_none_or(|h| h == owner) {
                server.counter += 1;
                server.holder = Some((owner, now + cfg.ttl));
                if head.is_some() {
                    server.queue.remove(0);
                }
                let fence = server.counter;
                s.send(Msg::Acquired { owner, fence });
                return;
            }
            if queue {
                let until = now + cfg.hand_off;
                match server.queue.iter_mut().find(|(o, _)| *o == owner) {
                    Some(entry) => entry.1 = until,
                    None => server.queue.push((owner, until)),
                }
            }
            let fence = server.counter;
            s.send(Msg::Busy { owner, fence });
        }
        Msg::Release { owner } => {
            if server.holder.is_some_and(|(o, _)| o == owner) {
                prune(server, now);
                if server.queue.is_empty() {
                    server.holder = None;
                } else {
                    let (next, _) = server.queue.remove(0);
                    server.counter += 1;
                    server.holder = Some((next, now + cfg.hand_off));
                    let fence = server.counter;
                    s.send(Msg::Granted { owner: next, fence });
                }
            } else {
                server.queue.retain(|(o, _)| *o != owner);
            }
        }
        _ => unreachable!("not a request"),
    }
}

/// A reply or grant reaches client `c`, if it is still its acquire's.
fn receive(cfg: &Config, s: &mut State, msg: &Msg) {
    let owner = match *msg {
        Msg::Acquired { owner, .. } | Msg::Busy { owner, .. } => owner,
        _ => unreachable!("a grant is taken by the client's step, not delivered"),
    };
    let c = usize::from(owner.0);
    if s.owner(c) != owner {
        return;
    }
    let now = at(s.now);
    let Phase::Waiting {
        out: out @ Some(_),
        subscribed,
        queuing,
        queued,
        floor,
    } = &mut s.clients[c].phase
    else {
        return;
    };
    let floor = *floor;
    let mut attempt = out.take().expect("matched");
    match *msg {
        Msg::Acquired { fence, .. } => {
            attempt.handle_reply(0, Reply::Acquired { fence }, now);
            match attempt.poll_outcome() {
                Some(Outcome::Won { fence, .. }) => {
                    let fence = fence.0;
                    let (_, lease) = attempt.won_lease().expect("won");
                    s.hold(c, fence, floor, lease);
                }
                // Too slow to leave any validity: taken back, and the
                // acquire given up (a retry is another acquire's token).
                _ => {
                    s.clients[c].phase = Phase::Idle;
                    s.send(Msg::Release { owner });
                }
            }
        }
        Msg::Busy { fence, .. } => {
            let holder = HolderTtl::Expires(cfg.ttl());
            let reply = Reply::Busy {
                holder,
                fence: Some(fence),
            };
            attempt.handle_reply(0, reply, now);
            if let Some(sent) = queuing.take() {
                *queued = Some((sent, attempt.busy_fence().expect("reported")));
            }
            *subscribed = true;
        }
        _ => unreachable!("matched above"),
    }
}

fn successors(cfg: &Config, s: &State) -> Vec<State> {
    let mut next = Vec::new();
    if s.now < cfg.horizon {
        let mut t = s.clone();
        t.now += 1;
        let now = at(t.now);
        for c in 0..t.clients.len() {
            if let Phase::Holding { lease } = &mut t.clients[c].phase {
                let was_held = lease.next_renewal().is_some();
                if !lease.handle_timeout(now) && was_held {
                    let owner = t.owner(c);
                    t.send(Msg::Release { owner });
                }
            }
        }
        next.push(t);
    }
    // The network delivers any request or reply in flight (a lost one is
    // one never delivered); grants are taken by the client's own step.
    for (i, msg) in s.msgs.iter().enumerate() {
        if (i > 0 && s.msgs[i - 1] == *msg) || matches!(msg, Msg::Granted { .. }) {
            continue;
        }
        let mut t = s.clone();
        t.msgs.remove(i);
        match msg {
            Msg::Acquire { .. } | Msg::Release { .. } => serve(cfg, &mut t, msg),
            _ => receive(cfg, &mut t, msg),
        }
        next.push(t);
    }
    for c in 0..s.clients.len() {
        let owner = s.owner(c);
        match &s.clients[c].phase {
            Phase::Idle if s.clients[c].acquire < cfg.acquires[c] => {
                let mut t = s.clone();
                t.clients[c].acquire += 1;
                t.clients[c].phase = Phase::Waiting {
                    out: None,
                    subscribed: false,
                    queuing: None,
                    queued: None,
                    floor: t.granted,
                };
                next.push(t);
            }
            Phase::Idle => {}
            Phase::Waiting {
                out,
                subscribed,
                queued,
                floor,
                ..
            } => {
                if out.is_none() {
                    // The next attempt (queued once subscribed).
                    let mut t = s.clone();
                    let sent = t.now;
                    if let Phase::Waiting { out, queuing, .. } = &mut t.clients[c].phase {
                        *out = Some(Attempt::new(1, cfg.ttl(), at(sent)));
                        if *subscribed {
                            *queuing = Some(sent);
                        }
                    }
                    t.send(Msg::Acquire {
                        owner,
                        queue: *subscribed,
                    });
                    next.push(t);
                    // A grant, heard between attempts.
                    let grant = s
                        .msgs
                        .iter()
                        .position(|m| matches!(*m, Msg::Granted { owner: o, .. } if o == owner));
                    if let (Some(i), Some((sent, seen))) = (grant, *queued) {
                        let Msg::Granted { fence, .. } = s.msgs[i] else {
                            unreachable!("matched")
                        };
                        let mut t = s.clone();
                        t.msgs.remove(i);
                        let now = at(t.now);
                        let queued = Queued {
                            sent: at(sent),
                            fence: Some(seen),
                        };
                        if let Some(lease) =
                            LeaseState::handed(cfg.ttl(), cfg.hand_off(), queued, fence, now)
                        {
                            t.hold(c, fence, *floor, lease);
                        }
                        next.push(t);
                    }
                }
                // The waiter gives up (its wait ran out, an error, its
                // future dropped): its take-back leaves the queue or
                // passes on a lock handed to it.
                let mut t = s.clone();
                t.clients[c].phase = Phase::Idle;
                t.send(Msg::Release { owner });
                next.push(t);
            }
            Phase::Holding { lease } => {
                let mut t = s.clone();
                if lease.next_renewal().is_some() {
                    t.send(Msg::Release { owner });
                }
                t.clients[c].phase = Phase::Idle;
                next.push(t);
            }
        }
    }
    next
}

/// The exclusion invariant.
fn exclusion(s: &State) -> Result<(), String> {
    at_most_one_held(
        at(s.now),
        s.clients.iter().map(|c| match &c.phase {
            Phase::Holding { lease } => Some(lease),
            _ => None,
        }),
    )
}

fn explore(cfg: Config, defect: Option<Defect>) -> Result<usize, String> {
    let initial = State {
        now: 0,
        server: Server {
            holder: None,
            queue: Vec::new(),
            counter: 0,
        },
        clients: vec![
            Client {
                phase: Phase::Idle,
                acquire: 0,
            };
            cfg.acquires.len()
        ],
        msgs: Vec::new(),
        granted: 0,
    };
    explore_with(initial, |s| successors(&cfg, s), exclusion, defect)
}

/// Two clients (two acquires for the first), a TTL of two ticks and a
/// hand-off of three, over five ticks: the stale grant needs a hand-off
/// to lapse (three ticks) and another holder after it.
const FAIR: Config = Config {
    acquires: &[2, 1],
    ttl: 2,
    hand_off: 3,
    horizon: 5,
};

/// Three clients with one acquire each, over five ticks.
const FAIR_THREE: Config = Config {
    acquires: &[1, 1, 1],
    ..FAIR
};

#[test]
fn a_fair_locks_hand_off_keeps_exclusion_and_fence_order() {
    let states = explore(FAIR, None).unwrap();
    eprintln!("fair lock: explored {states} states");
    assert!(states > 100_000, "explored {states} states");
}

#[test]
#[ignore = "three clients: run on purpose"]
fn three_clients_keep_exclusion_and_fence_order_through_hand_offs() {
    let states = explore(FAIR_THREE, None).unwrap();
    eprintln!("fair lock, three clients: explored {states} states");
}

#[test]
fn a_handed_lease_counted_from_the_grant_is_caught() {
    assert_breaks_exclusion(explore(FAIR, Some(Defect::HandedFromGrant)));
}

/// The defect this model found in the first hand-off rule, which counted
/// a grant's lease from the last queued attempt whatever the grant: a
/// hand-off lapses while its grant is late, the waiter's next queued
/// attempt finds another holder, and the late grant then seems fresh.
#[test]
fn a_stale_grant_taken_is_caught() {
    assert_breaks_exclusion(explore(FAIR, Some(Defect::StaleGrantTaken)));
}
