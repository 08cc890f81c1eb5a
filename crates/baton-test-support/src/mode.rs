//! What a [`crate::FaultProxy`] does with the bytes it relays.

use std::time::Duration;

/// The fault a [`crate::FaultProxy`] injects; switch it at any time with
/// [`crate::FaultProxy::set_mode`], which affects live connections too.
///
/// Bytes are never delivered out of order or after a gap: a connection
/// that had bytes discarded ([`Mode::Blackhole`], [`Mode::DropReplies`]) is
/// reset instead of forwarding again in that direction, as a real TCP
/// connection would break rather than silently lose data. New connections
/// are unaffected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Relay everything unchanged.
    #[default]
    Pass,
    /// Relay everything, each chunk held back this long, in both directions.
    Delay(Duration),
    /// Accept connections and read from them, but forward and answer
    /// nothing: requests time out.
    Blackhole,
    /// Forward client to server, swallow server to client: commands run but
    /// their replies never arrive.
    DropReplies,
    /// Reset all current connections at once, and reset new ones as soon as
    /// they are accepted, while in this mode.
    Reset,
    /// Relay everything, but forget a connection that carried no bytes for
    /// this long, as a NAT or a load balancer drops an idle flow: from then
    /// on its bytes are discarded both ways, with no FIN and no RST, so its
    /// ends find out only by timing out. A forgotten connection stays dead
    /// whatever the mode later (only [`Mode::Reset`] ends it); new
    /// connections are relayed.
    ForgetIdle(Duration),
    /// Relay everything, but close a connection that carried no bytes for
    /// this long, both ways with a FIN, as a load balancer's or proxy's idle
    /// timeout does: the client finds out at its next command. Counted by
    /// [`crate::FaultProxy::closed_idle`].
    CloseIdle(Duration),
}

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Client to server (requests).
    Up,
    /// Server to client (replies).
    Down,
}

impl Mode {
    /// Whether bytes flowing `direction` are delivered in this mode.
    pub(crate) fn forwards(self, direction: Direction) -> bool {
        match self {
            Mode::Pass | Mode::Delay(_) | Mode::ForgetIdle(_) | Mode::CloseIdle(_) => true,
            Mode::DropReplies => direction == Direction::Up,
            Mode::Blackhole | Mode::Reset => false,
        }
    }
}
