//! The library side of the `baton` command: what the command and the
//! project's own benchmark example share.

pub mod bench;

/// `println!` for a command-line tool: a closed stdout (`baton status | head`)
/// ends the output quietly instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
