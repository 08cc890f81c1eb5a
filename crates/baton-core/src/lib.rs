//! The decisions of Baton's Redis locks, with no I/O.
//!
//! This crate owns everything about a lock that can be decided without a
//! network, a clock or a random number generator: which keys a lock name maps
//! to ([`name`]), what a token and a fence are ([`token`]), the Lua scripts
//! and their pinned SHA1s ([`scripts`]), how long to wait before trying again
//! ([`backoff`]), whether one round over N nodes won a lock and how long it is
//! valid ([`quorum`]), and when a held lease must be renewed or given up
//! ([`lease`]).
//!
//! It must never do I/O: time comes in as `now: Instant` arguments and random
//! bytes as values, so every decision is testable exhaustively without servers
//! or sleeps. The `baton` crate is the thin layer that talks to Redis.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod lease;
pub mod name;
pub mod quorum;
pub mod scripts;
pub mod token;

pub use name::{Keys, NameError};
pub use token::{Fence, Token};
