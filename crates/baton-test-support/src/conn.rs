//! Synchronous connections that can never hang a test: a paused server
//! accepts TCP connections (the kernel does) but never answers.

use std::time::Duration;

/// Opens `url` within `connect_timeout` (handshake and `AUTH` included) and
/// sets read and write timeouts of `io_timeout` on the connection.
pub(crate) fn connect(
    url: &str,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let conn = redis::Client::open(url)?.get_connection_with_timeout(connect_timeout)?;
    conn.set_read_timeout(Some(io_timeout))?;
    conn.set_write_timeout(Some(io_timeout))?;
    Ok(conn)
}
