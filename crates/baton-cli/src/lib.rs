//! The library side of the `baton` command: what the command and the
//! project's own benchmark example share.
//!
//! Nothing here prints with `println!` or `eprintln!` (they panic when the
//! stream is closed): every line goes through [`out!`] or [`err!`].

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod text;

/// `println!` for a command-line tool: a closed stdout (`baton status | head`)
/// ends the output quietly instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` for a command-line tool: a closed or broken stderr (cron, a
/// supervisor that closed its pipe) loses the line instead of panicking, so
/// `baton` still exits with the status it meant.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
