//! Baton on the deployments that fail over and move: a Sentinel set and a
//! local Redis Cluster, real processes started by the tests.
//!
//! A binary of its own, because cargo runs test binaries one after
//! another: these topologies (nine and six servers, failovers, slot
//! migrations) load the machine, and beside the timing-sensitive
//! behaviour tests of `it` they made both slow. Each topology is built
//! once and shared by its tests.

#[path = "../it/support.rs"]
// Not every helper is used here: the behaviour-test ones are for `it`.
#[allow(dead_code, unused_imports, unused_macros)]
mod support;

mod cluster;
mod sentinel;
