//! `redis://` and `rediss://` URLs for loopback ports.

/// `redis://127.0.0.1:PORT/`, or with `tls` `rediss://localhost:PORT/` (the
/// name the test server certificate is valid for), with `:password@` when
/// a password is given.
pub(crate) fn redis_url(port: u16, password: Option<&str>, tls: bool) -> String {
    let (scheme, host) = if tls {
        ("rediss", "localhost")
    } else {
        ("redis", "127.0.0.1")
    };
    match password {
        Some(pw) => format!("{scheme}://:{}@{host}:{port}/", percent_encode(pw)),
        None => format!("{scheme}://{host}:{port}/"),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any
/// password survives the URL (the redis crate decodes it again).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_and_without_password() {
        assert_eq!(redis_url(7000, None, false), "redis://127.0.0.1:7000/");
        assert_eq!(
            redis_url(7000, Some("a b@:/%"), false),
            "redis://:a%20b%40%3A%2F%25@127.0.0.1:7000/"
        );
    }

    #[test]
    fn tls_urls_name_localhost() {
        assert_eq!(redis_url(7000, None, true), "rediss://localhost:7000/");
        assert_eq!(
            redis_url(7000, Some("a b@:/%"), true),
            "rediss://:a%20b%40%3A%2F%25@localhost:7000/"
        );
    }
}
