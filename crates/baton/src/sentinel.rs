//! Redis Sentinel (not yet offered).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::node::{self, Acknowledge, Node, Tls};

/// Connects to the master the Sentinels of `url` name.
pub(crate) async fn connect(
    url: &str,
    _timeout: Duration,
    _tls: &Tls,
    _acknowledge: Option<Acknowledge>,
) -> Result<Arc<dyn Node>> {
    Err(Error::InvalidUrl {
        url: node::redact_url(url),
        reason: "Sentinel is not supported yet".to_owned(),
    })
}
