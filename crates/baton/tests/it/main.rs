//! Baton's behaviour, against real `redis-server` processes started by the
//! tests themselves (and, for every behaviour test, the in-memory store).

mod support;

mod admin;
mod blocking;
mod cancel;
mod costs;
mod exclusion;
mod fair;
mod faults;
mod hardening;
mod input;
mod multi;
mod ownership;
mod redlock;
mod renewal;
mod replicas;
mod rwlock;
mod semaphore;
mod tls;
mod waiting;
