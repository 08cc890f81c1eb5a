//! Passwords out of every URL the library shows: in errors, in logs.
//!
//! A URL may carry a password in its user info or, for unix sockets, in a
//! query parameter; [`redact_url`] replaces each with `***`, erring on the
//! side of hiding, and [`invalid_url`] builds the error for a URL that
//! redis-rs refused without repeating its password.

use redis::RedisError;

use crate::error::Error;

pub(crate) fn invalid_url(url: &str, e: &RedisError) -> Error {
    let mut reason = e.to_string();
    for secret in secrets_of(url) {
        if !secret.is_empty() {
            reason = reason.replace(&url[secret], "***");
        }
    }
    Error::InvalidUrl {
        url: redact_url(url),
        reason,
    }
}

/// Where a URL may carry a password, as byte ranges of `url`: the user
/// info's (`redis://user:PASSWORD@host`), and the value of every `pass` or
/// `password` query parameter (redis-rs takes `?pass=` for unix sockets:
/// `unix:///run/redis.sock?pass=PASSWORD`).
///
/// Errs on the side of hiding: the user info runs to the *last* `@`, so a
/// password with an unescaped `/` or `@` is still found (a path containing
/// `@` may be over-redacted, which is harmless). Text with no `://` is not
/// a URL, but may still be one mistyped with a password in it
/// (`:secret@host`): everything before its last `@` counts as user info
/// then. Query keys are compared percent-decoded and without case, as
/// `p%61ss` is `pass` to a URL parser.
fn secrets_of(url: &str) -> Vec<std::ops::Range<usize>> {
    let mut secrets = Vec::new();
    let rest_at = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[rest_at..];
    if let Some(at) = rest.rfind('@') {
        if let Some(colon) = rest[..at].find(':') {
            secrets.push(rest_at + colon + 1..rest_at + at);
        }
    }
    if let Some(q) = url.find('?') {
        let query_end = url[q..].find('#').map_or(url.len(), |i| q + i);
        let mut start = q + 1;
        for pair in url[q + 1..query_end].split('&') {
            if let Some((key, _)) = pair.split_once('=') {
                if is_password_key(key) {
                    secrets.push(start + key.len() + 1..start + pair.len());
                }
            }
            start += pair.len() + 1;
        }
    }
    secrets
}

fn is_password_key(key: &str) -> bool {
    // A URL parser drops tabs and line breaks anywhere: `pa<TAB>ss` is `pass`.
    let key: String = key
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let decoded = percent_decode(&key);
    // `sentinel_password` and the like: a secret by its name's end.
    let decoded = decoded.to_ascii_lowercase();
    ["pass", "password"]
        .iter()
        .any(|name| decoded == *name || decoded.ends_with(&format!("_{name}")))
}

/// `%XX` and `+` decoded as a query parser would (bad escapes kept as they are).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with every password in it (see [`secrets_of`]) replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let mut secrets: Vec<_> = secrets_of(url)
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    secrets.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(url.len());
    let mut done = 0;
    for secret in secrets {
        if secret.end <= done {
            continue; // inside one already hidden
        }
        let start = secret.start.max(done);
        out.push_str(&url[done..start]);
        if start == secret.start {
            out.push_str("***");
        }
        done = secret.end;
    }
    out.push_str(&url[done..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text: redaction never panics.
        #[test]
        fn redaction_never_panics(url in ".{0,80}") {
            let _ = redact_url(&url);
        }

        /// A URL with a password (of awkward characters too): the password
        /// never survives redaction.
        #[test]
        fn a_password_never_survives_redaction(
            scheme in "(redis|rediss|unix)",
            user in "[a-z]{0,6}",
            secret in "[a-zA-Z0-9/@:%?#!]{1,12}",
            host in "[a-z0-9.]{1,12}",
            rest in "(:[0-9]{1,5})?(/[0-9]{1,2})?",
        ) {
            let password = format!("Zq{secret}Zq");
            let url = format!("{scheme}://{user}:{password}@{host}{rest}");
            prop_assert!(!redact_url(&url).contains(&password), "{}", redact_url(&url));
        }
    }

    proptest! {
        /// A password in a query parameter (`?pass=`, as unix socket URLs
        /// carry it), whatever else the URL holds: it never survives.
        #[test]
        fn a_query_password_never_survives_redaction(
            scheme in "(unix|redis\\+unix|redis|rediss)",
            path in "[a-z/.]{1,12}",
            key in "(pass|password|PASS|p%61ss)",
            secret in "[a-zA-Z0-9/@:%!+]{1,12}",
            before in "(db=1&|user=u&|)",
            after in "(&db=zz|&protocol=resp3|#frag|)",
        ) {
            let password = format!("Zq{secret}Zq");
            let url = format!("{scheme}:///{path}?{before}{key}={password}{after}");
            prop_assert!(!redact_url(&url).contains(&password), "{}", redact_url(&url));
        }
    }

    #[test]
    fn query_passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_url("unix:///tmp/x.sock?pass=S3cret&db=zz"),
            "unix:///tmp/x.sock?pass=***&db=zz"
        );
        assert_eq!(
            redact_url("redis+unix:///s?db=1&password=a@b"),
            "redis+unix:///s?db=1&password=***"
        );
        assert_eq!(
            redact_url("redis://u:pw@h:1/?pass=x#f"),
            "redis://u:***@h:1/?pass=***#f"
        );
        assert_eq!(redact_url("unix:///s?passes=x"), "unix:///s?passes=x");
        assert_eq!(
            redact_url("unix:///s?pa\tss=hunter2"),
            "unix:///s?pa\tss=***"
        );
    }

    #[test]
    fn text_that_is_no_url_is_shown_without_its_password() {
        assert_eq!(redact_url(":s3cret@h"), ":***@h");
        assert_eq!(redact_url("host:6379:s3cret@x"), "host:***@x");
        assert_eq!(redact_url("nonsense"), "nonsense");
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(redact_url("redis://:s3cret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("redis://u:p@ss@h:1"), "redis://u:***@h:1");
        assert_eq!(redact_url("redis://u@h:1"), "redis://u@h:1");
        assert_eq!(redact_url("redis://:pa/ss@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("redis://u:p@s/s@h:1"), "redis://u:***@h:1");
        assert_eq!(
            redact_url("redis://h:1/x@y"),
            "redis://h:***@y",
            "over-redacts, never leaks"
        );
        assert_eq!(redact_url("nonsense"), "nonsense");
        assert_eq!(
            redact_url("redis://:is@127.0.0.1:1"),
            "redis://:***@127.0.0.1:1"
        );
        assert_eq!(redact_url("redis://:d@h:1/0"), "redis://:***@h:1/0");
    }
}
