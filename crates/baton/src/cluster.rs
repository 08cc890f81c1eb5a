//! Redis Cluster: `redis+cluster://host:port[,host:port…]` (not yet offered).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::node::{self, Acknowledge, Node, Tls};

/// Connects to the cluster that the seed nodes of `url` belong to.
pub(crate) async fn connect(
    url: &str,
    _timeout: Duration,
    _tls: &Tls,
    _acknowledge: Option<Acknowledge>,
) -> Result<Arc<dyn Node>> {
    Err(Error::InvalidUrl {
        url: node::redact_url(url),
        reason: "Redis Cluster is not supported yet".to_owned(),
    })
}
