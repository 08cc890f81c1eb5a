//! The Baton checker: client processes contend for one lock through the
//! library while a nemesis injects faults; a fenced store and a recorded
//! history are then checked (Jepsen's mutex and fenced-mutex checks).
//!
//! - [`history`]: the event schema and the per-process recorders;
//! - [`store`]: the fenced store (the shared resource);
//! - [`client`]: one client process's loop;
//! - [`nemesis`]: the faults and how a phase is chosen;
//! - [`run`]: the orchestration;
//! - [`check`]: the checks, pure functions of the history.

pub mod check;
pub mod client;
pub mod history;
pub mod nemesis;
pub mod run;
pub mod store;
