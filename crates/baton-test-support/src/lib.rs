//! Dev-only test harness for Baton's integration tests.
//!
//! This crate owns everything a test needs to exercise Baton against real
//! infrastructure and real faults, and nothing else:
//!
//! - [`RedisServer`]: a private `redis-server` process on a free loopback
//!   port, in its own temporary directory, with fault injection (kill, pause,
//!   resume, restart) and small helpers for assertions
//!   ([`RedisServer::cmd`], [`RedisServer::keys`], ...).
//! - TLS servers for `rediss://` tests ([`RedisServer::start_tls`],
//!   [`ServerOptions::tls`], [`TlsMode`]): TLS only, with certificates made
//!   at test time by a [`TestPki`] (a test CA, server certificates for
//!   `localhost` and for a wrong hostname, a client certificate for mutual
//!   TLS, an unrelated CA), as PEM strings and files.
//! - [`FaultProxy`]: an in-process TCP proxy in front of one server whose
//!   [`Mode`] (pass, delay, blackhole, drop replies, reset) can be switched at
//!   run time to simulate network faults.
//! - [`SentinelSet`]: a master, two replicas and three Redis Sentinels
//!   monitoring them, with forced ([`SentinelSet::failover`]) and automatic
//!   ([`SentinelSet::kill_master`]) failovers that return once the set has
//!   settled, for `redis+sentinel://` tests.
//! - [`LocalCluster`]: a local Redis Cluster of six such servers (three
//!   masters, one replica each) built with cluster commands, with slot
//!   migration ([`LocalCluster::migrate_slot`], or step by step with
//!   [`Migration`] to see `ASK` redirects) and manual failover
//!   ([`LocalCluster::failover`]).
//! - [`unique_name`]: names that do not collide between tests or processes.
//!
//! It never touches a shared Redis (such as one on port 6379): every server
//! it talks to is one it started. It is `publish = false` and must only ever
//! be a dev-dependency.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cluster;
mod conn;
mod launch;
mod mode;
mod names;
mod options;
mod pki;
mod poll;
mod proxy;
mod raw;
mod scratch;
mod sentinel;
mod server;
mod signal;
mod tls;
mod topology_pki;
mod url;

pub use cluster::{LocalCluster, Migration};
pub use mode::Mode;
pub use names::unique_name;
pub use options::ServerOptions;
pub use pki::TestPki;
pub use proxy::FaultProxy;
pub use raw::raw_lock_cycle;
pub use sentinel::SentinelSet;
pub use server::RedisServer;
pub use tls::{ClientAuth, ServerCert, TlsMode};
