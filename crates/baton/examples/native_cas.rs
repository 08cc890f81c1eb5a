//! Valkey's native compare-and-delete (`DELIFEQ`) and compare-and-set
//! (`SET … IFEQ`) against Baton's release and extend scripts, on one
//! private server, in one process: the server's own time per call
//! (`INFO commandstats`, `usec_per_call`, summed over the commands one
//! operation takes) and the client's operations per second over one
//! connection (time spent in the operation's round trip only). The
//! measurement behind the README's decision on native commands.
//!
//! ```sh
//! REDIS_SERVER_BIN=/path/to/valkey-server cargo run --release -p baton --example native_cas [OPS]
//! ```
//!
//! `OPS` (default 20000) operations per variant and round; three rounds,
//! interleaved, each figure the median of its rounds. Needs a server with
//! `DELIFEQ` and `SET … IFEQ` (Valkey ≥ 9.0); others are refused up front.
//!
//! What each variant is:
//! - release, announcing: the release script (`GET`, `DEL`, `PUBLISH` in
//!   one `EVALSHA`) vs `DELIFEQ` + `PUBLISH` pipelined (one round trip, two
//!   commands; note the `PUBLISH` then goes out even when nothing was
//!   deleted, which the script never does);
//! - release, quiet: the script without a channel vs `DELIFEQ` alone;
//! - extend: the extend script (`GET`, `PEXPIRE`) vs
//!   `SET key token IFEQ token PX ttl`.
//!
//! Each release deletes a key set just before by a `SET` that is not timed
//! (its round trip is outside the client figure and its server time is not
//! counted).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use baton_core::scripts::{EXTEND, RELEASE};
use baton_test_support::RedisServer;

const KEY: &str = "baton:bench";
const CHANNEL: &str = "{baton:bench}:released";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const ROUNDS: usize = 3;

/// One way to do one operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    ReleaseScriptAnnounced,
    ReleaseNativeAnnounced,
    ReleaseScriptQuiet,
    ReleaseNativeQuiet,
    ExtendScript,
    ExtendNative,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Variant::ReleaseScriptAnnounced,
        Variant::ReleaseNativeAnnounced,
        Variant::ReleaseScriptQuiet,
        Variant::ReleaseNativeQuiet,
        Variant::ExtendScript,
        Variant::ExtendNative,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::ReleaseScriptAnnounced => "release+announce  EVALSHA release",
            Variant::ReleaseNativeAnnounced => "release+announce  DELIFEQ + PUBLISH",
            Variant::ReleaseScriptQuiet => "release (quiet)   EVALSHA release",
            Variant::ReleaseNativeQuiet => "release (quiet)   DELIFEQ",
            Variant::ExtendScript => "extend            EVALSHA extend",
            Variant::ExtendNative => "extend            SET IFEQ PX",
        }
    }

    /// The commands whose `usec_per_call` make up one operation.
    fn server_commands(self) -> &'static [&'static str] {
        match self {
            Variant::ReleaseScriptAnnounced
            | Variant::ReleaseScriptQuiet
            | Variant::ExtendScript => &["evalsha"],
            Variant::ReleaseNativeAnnounced => &["delifeq", "publish"],
            Variant::ReleaseNativeQuiet => &["delifeq"],
            Variant::ExtendNative => &["set"],
        }
    }

    fn is_release(self) -> bool {
        !matches!(self, Variant::ExtendScript | Variant::ExtendNative)
    }

    /// The operation's one round trip, checked: it must have acted.
    fn run(self, conn: &mut redis::Connection) {
        let acted = match self {
            Variant::ReleaseScriptAnnounced | Variant::ReleaseScriptQuiet => {
                let channel = if self == Variant::ReleaseScriptAnnounced {
                    CHANNEL
                } else {
                    ""
                };
                redis::cmd("EVALSHA")
                    .arg(RELEASE.sha1)
                    .arg(1)
                    .arg(KEY)
                    .arg(TOKEN)
                    .arg(channel)
                    .arg("")
                    .query::<i64>(conn)
                    .expect("release script")
                    == 1
            }
            Variant::ReleaseNativeAnnounced => {
                let (deleted, _receivers): (i64, i64) = redis::pipe()
                    .cmd("DELIFEQ")
                    .arg(KEY)
                    .arg(TOKEN)
                    .cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg("released")
                    .query(conn)
                    .expect("DELIFEQ + PUBLISH");
                deleted == 1
            }
            Variant::ReleaseNativeQuiet => {
                redis::cmd("DELIFEQ")
                    .arg(KEY)
                    .arg(TOKEN)
                    .query::<i64>(conn)
                    .expect("DELIFEQ")
                    == 1
            }
            Variant::ExtendScript => {
                redis::cmd("EVALSHA")
                    .arg(EXTEND.sha1)
                    .arg(1)
                    .arg(KEY)
                    .arg(TOKEN)
                    .arg(60_000)
                    .query::<i64>(conn)
                    .expect("extend script")
                    == 1
            }
            Variant::ExtendNative => redis::cmd("SET")
                .arg(KEY)
                .arg(TOKEN)
                .arg("IFEQ")
                .arg(TOKEN)
                .arg("PX")
                .arg(60_000)
                .query::<Option<String>>(conn)
                .expect("SET IFEQ")
                .is_some(),
        };
        assert!(acted, "{}: the key held our token", self.label());
    }
}

/// One round of one variant: (server µs per operation, client ops/s).
fn measure(conn: &mut redis::Connection, variant: Variant, ops: usize) -> (f64, f64) {
    let set = || {
        redis::cmd("SET")
            .arg(KEY)
            .arg(TOKEN)
            .arg("PX")
            .arg(60_000)
            .to_owned()
    };
    set().exec(conn).expect("SET");
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(conn)
        .expect("CONFIG RESETSTAT");
    let mut spent = Duration::ZERO;
    for _ in 0..ops {
        if variant.is_release() {
            set().exec(conn).expect("SET");
        }
        let start = Instant::now();
        variant.run(conn);
        spent += start.elapsed();
    }
    let stats = commandstats(conn);
    let server: f64 = variant
        .server_commands()
        .iter()
        .map(|name| {
            let (calls, usec) = stats.get(*name).copied().unwrap_or((0, 0));
            assert!(
                calls >= ops as u64,
                "{name}: {calls} calls for {ops} operations"
            );
            usec as f64 / calls as f64
        })
        .sum();
    (server, ops as f64 / spent.as_secs_f64())
}

/// `INFO commandstats` as command → (calls, usec).
fn commandstats(conn: &mut redis::Connection) -> HashMap<String, (u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO commandstats");
    let mut out = HashMap::new();
    for line in info.lines() {
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(name.to_owned(), (field("calls"), field("usec")));
    }
    out
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let ops: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("OPS is a number"))
        .unwrap_or(20_000);
    let server = RedisServer::start();
    let mut conn = server.conn();
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut conn)
        .expect("INFO server");
    // Valkey reports a `redis_version` (7.2.4) for compatibility, and its own.
    let version = ["valkey_version:", "redis_version:"]
        .iter()
        .find_map(|field| version.lines().find(|l| l.starts_with(field)))
        .unwrap_or("unknown version")
        .to_owned();
    let has: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("DELIFEQ")
        .query(&mut conn)
        .expect("COMMAND INFO");
    if matches!(has.first(), None | Some(redis::Value::Nil)) {
        eprintln!("{version}: no DELIFEQ here; run it with REDIS_SERVER_BIN=<valkey-server ≥ 9.0>");
        std::process::exit(2);
    }
    for script in [&RELEASE, &EXTEND] {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script.source)
            .query(&mut conn)
            .expect("SCRIPT LOAD");
        assert_eq!(sha, script.sha1);
    }
    // Warm-up: one short round of each.
    for variant in Variant::ALL {
        measure(&mut conn, variant, ops / 10 + 1);
    }
    let mut figures: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); Variant::ALL.len()];
    for _ in 0..ROUNDS {
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            let (server_us, per_s) = measure(&mut conn, variant, ops);
            figures[i].0.push(server_us);
            figures[i].1.push(per_s);
        }
    }
    println!("{version}, {ops} ops per variant, median of {ROUNDS} rounds, one connection");
    println!(
        "{:<38} {:>14} {:>14}",
        "operation", "server µs/op", "client ops/s"
    );
    for (variant, (server_us, per_s)) in Variant::ALL.into_iter().zip(figures) {
        println!(
            "{:<38} {:>14.3} {:>14.0}",
            variant.label(),
            median(server_us),
            median(per_s)
        );
    }
}
