//! Which deployment a URL names (one server, a Sentinel set, a Cluster), and
//! the one place that connects to each.
//!
//! A Sentinel or Cluster URL lists several hosts in its authority
//! (`redis+sentinel://a:26379,b:26379/MASTER`), which redis-rs does not
//! parse: [`HostList`] splits it into the per-host `redis://` URLs that
//! [`connect::connect`] and redis-rs take, so credentials, TLS, the database
//! and `?protocol=resp3` mean the same in every form.

use std::sync::Arc;
use std::time::Duration;

use crate::acknowledge::Acknowledge;
use crate::connect::Tls;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::{cluster, connect, sentinel};

/// The kinds of URL the builder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topology {
    /// `redis://`, `rediss://`, `unix://`: one server.
    Server,
    /// `redis+sentinel://`, `rediss+sentinel://`.
    Sentinel,
    /// `redis+cluster://`, `rediss+cluster://`.
    Cluster,
}

impl Topology {
    fn of(url: &str) -> Topology {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        let plus = |kind: &str| {
            ["redis+", "rediss+"]
                .iter()
                .any(|base| scheme.eq_ignore_ascii_case(&format!("{base}{kind}")))
        };
        if plus("sentinel") {
            Topology::Sentinel
        } else if plus("cluster") {
            Topology::Cluster
        } else {
            Topology::Server
        }
    }
}

/// Whether `url` is of a kind that lists several hosts with commas.
pub(crate) fn lists_hosts(url: &str) -> bool {
    Topology::of(url) != Topology::Server
}

/// Connects to whatever `url` names.
pub(crate) async fn connect(
    url: &str,
    timeout: Duration,
    tls: &Tls,
    acknowledge: Option<Acknowledge>,
) -> Result<Arc<dyn Node>> {
    match Topology::of(url) {
        Topology::Server => connect::connect(url, timeout, tls, acknowledge).await,
        Topology::Sentinel => sentinel::connect(url, timeout, tls, acknowledge).await,
        Topology::Cluster => cluster::connect(url, timeout, tls, acknowledge).await,
    }
}

/// A URL of several hosts, taken apart:
/// `SCHEME+KIND://[userinfo@]host[:port][,host[:port]…][/path][?query][#fragment]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostList {
    /// `rediss+…`: TLS to every host.
    pub(crate) tls: bool,
    /// `user:password` or `:password`, still percent-encoded (redis-rs
    /// decodes it), without the `@`.
    pub(crate) userinfo: Option<String>,
    /// `host` (IPv6 in brackets) and port, in the order given.
    pub(crate) hosts: Vec<(String, u16)>,
    /// What follows the hosts up to `?` or `#`, without the leading `/`.
    pub(crate) path: String,
    /// The query's `key=value` pairs, in order, still percent-encoded.
    pub(crate) query: Vec<(String, String)>,
    /// `#insecure` and the like, without the `#`.
    pub(crate) fragment: Option<String>,
}

impl HostList {
    /// Parses `url`; hosts without a port get `default_port`.
    pub(crate) fn parse(url: &str, default_port: u16) -> Result<HostList> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: crate::redact::redact_url(url),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let tls = scheme.to_ascii_lowercase().starts_with("rediss+");
        let (rest, fragment) = match rest.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment.to_owned())),
            None => (rest, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, query),
            None => (rest, ""),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, path.trim_end_matches('/')),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo.to_owned()), hosts),
            None => (None, authority),
        };
        let hosts = hosts
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(|host| {
                host_port(host, default_port)
                    .ok_or_else(|| invalid("a host's port is not a number from 1 to 65535"))
            })
            .collect::<Result<Vec<_>>>()?;
        if hosts.is_empty() {
            return Err(invalid("no host given"));
        }
        let query = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) => (key.to_owned(), value.to_owned()),
                None => (pair.to_owned(), String::new()),
            })
            .collect();
        Ok(HostList {
            tls,
            userinfo,
            hosts,
            path: path.to_owned(),
            query,
            fragment,
        })
    }

    /// The plain URL of one server, with this list's TLS, fragment and
    /// `userinfo`, database `db` and the query pairs that `keep` accepts.
    pub(crate) fn server_url(
        &self,
        (host, port): (&str, u16),
        userinfo: Option<&str>,
        db: Option<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let mut url = format!("{scheme}://");
        if let Some(userinfo) = userinfo {
            url.push_str(userinfo);
            url.push('@');
        }
        url.push_str(host);
        url.push(':');
        url.push_str(&port.to_string());
        url.push('/');
        if let Some(db) = db {
            url.push_str(db);
        }
        let query: Vec<String> = self
            .query
            .iter()
            .filter(|(key, _)| keep(key))
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        if let Some(fragment) = &self.fragment {
            url.push('#');
            url.push_str(fragment);
        }
        url
    }

    /// The value of query key `key`, percent-decoded.
    pub(crate) fn query_value(&self, key: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| crate::redact::percent_decode(value))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(text: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (address, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return None,
        };
        (format!("[{address}]"), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (text.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let port = match port {
        Some(port) => port.parse::<u16>().ok().filter(|&p| p != 0)?,
        None => default_port,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_by_scheme() {
        assert_eq!(Topology::of("redis://a:1"), Topology::Server);
        assert_eq!(Topology::of("rediss://a:1"), Topology::Server);
        assert_eq!(Topology::of("unix:///tmp/r.sock"), Topology::Server);
        assert_eq!(Topology::of("redis+sentinel://a/m"), Topology::Sentinel);
        assert_eq!(Topology::of("REDISS+SENTINEL://a/m"), Topology::Sentinel);
        assert_eq!(Topology::of("redis+cluster://a:1"), Topology::Cluster);
        assert_eq!(Topology::of("rediss+cluster://a:1"), Topology::Cluster);
        assert_eq!(Topology::of("nonsense"), Topology::Server);
    }

    #[test]
    fn a_host_list_is_taken_apart() {
        let list = HostList::parse(
            "rediss+sentinel://u:p%40ss@a:26380,b,[::1]:7/mymaster/2?protocol=resp3&sentinel_password=x#insecure",
            26379,
        )
        .unwrap();
        assert!(list.tls);
        assert_eq!(list.userinfo.as_deref(), Some("u:p%40ss"));
        assert_eq!(
            list.hosts,
            [
                ("a".to_owned(), 26380),
                ("b".to_owned(), 26379),
                ("[::1]".to_owned(), 7)
            ]
        );
        assert_eq!(list.path, "mymaster/2");
        assert_eq!(
            list.query[1],
            ("sentinel_password".to_owned(), "x".to_owned())
        );
        assert_eq!(list.fragment.as_deref(), Some("insecure"));
        assert_eq!(
            list.server_url(("c", 9), list.userinfo.as_deref(), Some("2"), |k| k
                == "protocol"),
            "rediss://u:p%40ss@c:9/2?protocol=resp3#insecure"
        );
        assert_eq!(
            list.server_url(("c", 9), None, None, |_| false),
            "rediss://c:9/#insecure"
        );
    }

    #[test]
    fn bad_host_lists_are_refused_without_the_password() {
        for url in [
            "redis+cluster://",
            "redis+cluster://u:secret@",
            "redis+cluster://u:secret@a:0",
            "redis+cluster://u:secret@a:x",
            "redis+cluster://u:secret@a:70000",
            "redis+cluster://u:secret@[::1",
        ] {
            let error = HostList::parse(url, 6379).unwrap_err();
            assert!(matches!(error, Error::InvalidUrl { .. }), "{url}: {error}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }
}
