//! The one PKI of a multi-process topology ([`crate::SentinelSet`],
//! [`crate::LocalCluster`]) started TLS-only.

use std::fmt;

use crate::scratch::ScratchDir;
use crate::{RedisServer, ServerOptions, TestPki};

/// A plain topology's nothing, or a TLS topology's [`TestPki`], shared by
/// every process of it so each trusts the others, with the directory
/// holding its files. Declare it last in the topology, so the files
/// outlive the processes.
#[derive(Default)]
pub(crate) struct TopologyPki(Option<(TestPki, ScratchDir)>);

impl fmt::Debug for TopologyPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "TLS" } else { "plain" })
    }
}

impl TopologyPki {
    /// A fresh PKI in its own directory.
    pub(crate) fn tls() -> Self {
        let dir = ScratchDir::new();
        let pki = TestPki::new_in(dir.path());
        Self(Some((pki, dir)))
    }

    /// The PKI, for a TLS topology.
    pub(crate) fn get(&self) -> Option<&TestPki> {
        self.0.as_ref().map(|(pki, _)| pki)
    }

    /// The PKI, panicking for a plain topology (`topology` names it, and
    /// `start_tls` the constructor to use).
    pub(crate) fn expect(&self, topology: &str) -> &TestPki {
        self.get()
            .unwrap_or_else(|| panic!("{topology} has no TLS: start it with {topology}::start_tls"))
    }

    /// Starts a data node of the topology: with this PKI for a TLS one
    /// ([`RedisServer::start_with_pki`]), plain otherwise.
    pub(crate) fn start(&self, options: ServerOptions) -> RedisServer {
        match self.get() {
            Some(pki) => RedisServer::start_with_pki(options, pki),
            None => RedisServer::start_with(options),
        }
    }

    /// `redis+KIND`, or `rediss+KIND` for a TLS topology: its URL scheme.
    pub(crate) fn scheme(&self, kind: &str) -> String {
        let s = if self.0.is_some() { "s" } else { "" };
        format!("redis{s}+{kind}")
    }
}
