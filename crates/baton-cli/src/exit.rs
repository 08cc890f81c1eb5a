//! Exit statuses, and which errors map to which.

use std::process::ExitCode;

/// Usage errors: bad flags, bad input (sysexits EX_USAGE).
pub const USAGE: u8 = 64;
/// The backend cannot be reached, or cannot do what was asked (`--wait-aof`
/// on a server without `WAITAOF` or with `appendonly no`) (sysexits
/// EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// The lock was busy or the wait ran out (sysexits EX_TEMPFAIL).
pub const BUSY: u8 = 75;
/// The lease was lost while the command ran.
pub const LOST: u8 = 76;

/// An outcome `main` turns into one line on stderr and an exit status.
#[derive(Debug)]
pub struct Exit {
    /// The exit status.
    pub code: u8,
    /// The line to print (none for a child's own status).
    pub message: Option<String>,
}

impl Exit {
    /// Exit with `code`, saying `message`.
    pub fn with(code: u8, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: Some(message.into()),
        }
    }

    /// Exit with `code` silently (the child's own status).
    pub fn quiet(code: u8) -> Exit {
        Exit {
            code,
            message: None,
        }
    }

    /// Prints the message (if any) and gives the process exit code. The
    /// message is escaped: it may quote a server's error text, which can
    /// carry anything.
    pub fn report(self) -> ExitCode {
        if let Some(message) = self.message {
            baton_cli::err!("baton: {}", baton_cli::text::printable(&message));
        }
        ExitCode::from(self.code)
    }
}

/// The exit for a library error: bad input is a usage error, a backend that
/// cannot be reached is unavailable, the rest are failures.
pub fn from_error(error: &baton::Error) -> Exit {
    use baton::Error as E;
    let code = match error {
        E::InvalidName { .. }
        | E::InvalidPrefix { .. }
        | E::InvalidTtl { .. }
        | E::InvalidConfig { .. }
        | E::InvalidUrl { .. }
        | E::InvalidTls { .. }
        | E::InvalidPermits { .. }
        | E::WrongKind { .. }
        | E::NotACluster { .. } => USAGE,
        E::NotOffered { .. } => UNAVAILABLE,
        E::Timeout { .. } => BUSY,
        E::Lost { .. } => LOST,
        E::AofUnavailable { .. } => UNAVAILABLE,
        _ if error.is_backend() => UNAVAILABLE,
        _ => 1,
    };
    Exit::with(code, error.to_string())
}
