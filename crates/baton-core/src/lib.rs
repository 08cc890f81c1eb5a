//! The decisions of Baton's Redis locks, with no I/O.
//!
//! This crate owns everything about a lock that can be decided without a
//! network, a clock or a random number generator: which keys a lock name maps
//! to ([`name`]), what a token and a fence are ([`token`]), the Lua scripts
//! and their pinned SHA1s ([`scripts`]), how long to wait before trying again
//! ([`backoff`]), the quorum arithmetic ([`quorum`]), and the protocol's
//! state machines: one acquire attempt over N nodes ([`acquire`]), the vote
//! on an extend or a release ([`vote`]), a release with its one retry
//! ([`release`]), and a held lease's deadline,
//! renewals and loss ([`lease`]), and the wait between attempts
//! ([`waiting`]). The machines are in the style of
//! quinn-proto's: `handle_*` inputs, `poll*` outputs, time as an argument;
//! the `baton` crate drives them over the network, and the model check in
//! this crate's tests drives the very same code.
//!
//! It is Baton's internals: it has no stability promise of its own, apart
//! from what `baton` re-exports.
//!
//! It must never do I/O: time comes in as `now: Instant` arguments and random
//! bytes as values, so every decision is testable exhaustively without servers
//! or sleeps. The `baton` crate is the thin layer that talks to Redis.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod acquire;
pub mod backoff;
pub mod lease;
#[cfg(test)]
mod model;
pub mod name;
mod per_node;
pub mod quorum;
pub mod release;
pub mod scripts;
mod seeded;
pub mod token;
pub mod vote;
pub mod waiting;

pub use name::{FairKeys, Keys, Kind, NameError, RwKeys};
pub use token::{Fence, Token};
