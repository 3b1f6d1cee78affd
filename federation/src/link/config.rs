//! `[link]`: where this server accepts link connections and how a line is used.

use std::net::SocketAddr;

use serde::Deserialize;

/// How a link line is used.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// Keep the line open (reconnect at once after a cut).
    #[default]
    Always,
    /// Call when something is due, hang up after `idle_hangup_ms` of nothing.
    Sessions,
}

/// `[link]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Where this server accepts link connections; `None`: no listener (it may still dial).
    pub listen: Option<SocketAddr>,
    /// `always` or `sessions`.
    pub mode: LinkMode,
    /// Sessions: hang up after this long with nothing sent or received but pings.
    pub idle_hangup_ms: u64,
    /// Bytes this server may send on all its links per UTC day; 0 = no limit. Once
    /// spent, only control and presence frames go; bulk waits for the next day.
    pub daily_budget_bytes: u64,
    /// What one connected minute costs, for the admin's `link_cost`.
    pub cost_per_minute: f64,
    /// A connection that has not completed its handshake (and the initiator's first
    /// encrypted message) by then is closed.
    pub handshake_timeout_ms: u64,
    /// At most this many connections may be in their handshake at once; more are
    /// closed at once, so strangers cannot hold the server's memory.
    pub max_pending_handshakes: usize,
    /// Sessions: how long a presence change may wait for a call made for something
    /// else before it calls on its own (it keeps coalescing, newest state per user).
    pub presence_max_wait_ms: u64,
    /// Sessions: the same for short messages (consent, subscriptions, a reminder the
    /// long watchdog needs).
    pub short_max_wait_ms: u64,
    /// Sessions: how long a bulk transaction may wait for a call made for something
    /// else before it calls on its own.
    pub bulk_max_wait_ms: u64,
    /// How long a full handshake's resumption ticket (and the tickets that replace it
    /// at each resumed call) may be used; 0 = resumption off, every call a full
    /// handshake. Tickets live in memory only.
    pub resume_ms: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            listen: None,
            mode: LinkMode::Always,
            idle_hangup_ms: 30_000,
            daily_budget_bytes: 0,
            cost_per_minute: 0.0,
            handshake_timeout_ms: 20_000,
            max_pending_handshakes: 32,
            presence_max_wait_ms: 600_000,
            short_max_wait_ms: 120_000,
            bulk_max_wait_ms: 900_000,
            resume_ms: 86_400_000,
        }
    }
}

impl LinkConfig {
    /// Check what the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_hangup_ms == 0 || self.handshake_timeout_ms == 0 {
            return Err("link.idle_hangup_ms and link.handshake_timeout_ms must be above 0".into());
        }
        if self.max_pending_handshakes == 0 {
            return Err("link.max_pending_handshakes must be above 0".into());
        }
        if !(self.cost_per_minute.is_finite() && self.cost_per_minute >= 0.0) {
            return Err("link.cost_per_minute must be a number of 0 or more".into());
        }
        Ok(())
    }
}
