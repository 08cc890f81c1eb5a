//! The layering rule, checked: the protocol's decisions are `baton_core`'s.
//!
//! Nothing in this crate computes a quorum's verdict, a validity or a
//! deadline, or decides whether a verdict counts: it drives the core's
//! machines (`acquire::Attempt`, `waiting::Waiting`, `release::Release`,
//! `vote::Vote`, `vote::Read`, `lease::LeaseState`), because the model check
//! and the core's exhaustive and property tests prove those machines and
//! only those. A rule written again here would be a copy nothing checks. This test fails when one of the core's rule functions, or the
//! arithmetic behind them, shows up in this crate's sources.

/// Text that means a protocol rule is being applied here rather than in
/// the core. `quorum::quorum(n)` itself is allowed: it is the core's count,
/// used here only to report it and to size the release subscriptions.
const FORBIDDEN: [(&str, &str); 14] = [
    ("validity(", "a lease's validity is the acquire machine's"),
    ("drift(", "the drift allowance is the core's"),
    (
        "next_try_in(",
        "how long a waiter waits is waiting::Waiting's",
    ),
    ("after_split(", "a split vote's pause is waiting::Waiting's"),
    (
        "after_error(",
        "a transient error's pause is waiting::Waiting's",
    ),
    ("extension(", "a vote's verdict is vote::Vote's"),
    ("extension_so_far(", "a vote's verdict is vote::Vote's"),
    ("reading_so_far(", "a read's verdict is vote::Read's"),
    (
        "fence_settled(",
        "settling a fence is the acquire machine's",
    ),
    ("/ 2 + 1", "the quorum is quorum::quorum's"),
    (
        "Extension::Extended if",
        "whether a verdict counts is lease::LeaseState's",
    ),
    (
        "valid_until() <",
        "deadlines are compared by lease::LeaseState",
    ),
    (
        "valid_until() >",
        "deadlines are compared by lease::LeaseState",
    ),
    (
        "< s.valid_until",
        "deadlines are compared by lease::LeaseState",
    ),
];

#[test]
fn the_protocol_rules_stay_in_the_core() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut files = 0;
    // Submodules live in directories (`script/`, `cluster/`): walk them too.
    let mut dirs = vec![src.clone()];
    let mut paths = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a directory of src/") {
            let path = entry.expect("an entry of src/").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                paths.push(path);
            }
        }
    }
    for path in paths {
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("layering.rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for (pattern, why) in FORBIDDEN {
                if code.contains(pattern) {
                    found.push(format!("{}:{}: `{pattern}`: {why}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        files > 10,
        "found only {files} source files in {}",
        src.display()
    );
    assert!(
        found.is_empty(),
        "protocol rules outside baton-core:\n{}",
        found.join("\n")
    );
}
