//! The core's pure decisions, timed without a server: what one acquire,
//! one renewal verdict and one release cost the client before any I/O, so a
//! regression in them shows on its own (`cargo bench -p baton-core`).

use std::time::{Duration, Instant};

use baton_core::acquire::{Attempt, Reply};
use baton_core::lease::{LeaseState, Operation};
use baton_core::quorum::Extension;
use baton_core::release::{Answer, Release};
use baton_core::vote::Found;
use baton_core::{Keys, Token};
use divan::black_box;

fn main() {
    divan::main();
}

const TTL: Duration = Duration::from_secs(10);

/// One won acquire attempt over `nodes` (1: one server; 3 and 5: Redlock),
/// from the requests to the lease.
#[divan::bench(args = [1, 3, 5])]
fn acquire_won(nodes: usize) -> Option<(baton_core::Fence, LeaseState)> {
    let t0 = Instant::now();
    let mut attempt = Attempt::new(black_box(nodes), TTL, t0);
    while attempt.poll_transmit().is_some() {}
    for node in 0..nodes {
        attempt.handle_reply(node, Reply::Acquired { fence: 7 }, t0);
        if attempt.poll_outcome().is_some() {
            break;
        }
    }
    attempt.won_lease()
}

/// One renewal verdict on a held lease, and its next renewal time.
#[divan::bench]
fn renewal_verdict(bencher: divan::Bencher) {
    let t0 = Instant::now();
    bencher
        .with_inputs(|| LeaseState::new(TTL, t0 + TTL, t0))
        .bench_local_values(|mut lease| {
            lease.handle_verdict(Operation::Renewal, Extension::Extended, t0, t0);
            black_box(lease.next_renewal())
        });
}

/// One release over `nodes`, every node deleting our key.
#[divan::bench(args = [1, 3, 5])]
fn release_deleted(nodes: usize) -> Option<Extension> {
    let mut release = Release::on_every_node(black_box(nodes), true);
    while let Some(request) = release.poll_transmit() {
        release.handle_answer(request.node, Answer::Found(Found::Deleted));
    }
    release.poll_verdict()
}

/// A name's keys (validation, hash tag, companions), as every
/// `Client::lock` call builds them.
#[divan::bench]
fn keys_of_a_name() -> Keys {
    Keys::new(black_box("baton:"), black_box("nightly-report")).expect("a valid name")
}

/// A token's hex from its random bytes.
#[divan::bench]
fn token_from_bytes() -> Token {
    Token::from_bytes(black_box([0x5a; 16]))
}
