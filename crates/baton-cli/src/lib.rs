//! The library side of the `baton` command: what the command and the
//! project's own benchmark example share.

pub mod bench;
