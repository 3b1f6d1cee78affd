//! `[federation]` and `[[federation.peers]]`: watchdog timings and the static peer map.

use std::path::PathBuf;

use serde::Deserialize;

/// `[federation]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Per peer: reset by any verified message from it (or a 2xx answer).
    pub short_watchdog_ms: u64,
    /// Per peer: reset by a status reminder; expiries are staggered across peers.
    pub long_watchdog_ms: u64,
    /// Optional PEM file of more CA certificates trusted for `https://` peers, besides
    /// the system roots. A relative path is resolved by whoever loads the file.
    pub ca_file: Option<PathBuf>,
    /// The static peer map; it overrides server discovery.
    pub peers: Vec<PeerConfig>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self { short_watchdog_ms: 60_000, long_watchdog_ms: 3_600_000, ca_file: None, peers: Vec::new() }
    }
}

/// One `[[federation.peers]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's server name (the part after ':' in its user IDs).
    pub server_name: String,
    /// Where the peer's HTTP API answers.
    pub url: String,
    /// Where the peer's link listener answers (`host:port`); when set, everything for
    /// this peer goes over the link (spec/link.md) instead of HTTP.
    #[serde(default)]
    pub link: Option<String>,
}

impl FederationConfig {
    /// Check values a type cannot: names, URLs, timings, duplicates.
    pub fn validate(&self) -> Result<(), String> {
        if self.short_watchdog_ms == 0 || self.long_watchdog_ms == 0 {
            return Err("federation.short_watchdog_ms and federation.long_watchdog_ms must be above 0".into());
        }
        if self.ca_file.is_some() {
            crate::http::extra_roots(self)?;
        }
        let mut seen = std::collections::HashSet::new();
        for peer in &self.peers {
            ruma::ServerName::parse(&peer.server_name)
                .map_err(|e| format!("federation.peers: '{}' is not a valid server_name: {e}", peer.server_name))?;
            if !(peer.url.starts_with("http://") || peer.url.starts_with("https://")) {
                return Err(format!(
                    "federation.peers: url '{}' of {} must start with http:// or https://",
                    peer.url, peer.server_name
                ));
            }
            if let Some(link) = &peer.link
                && link.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(format!("federation.peers: link '{link}' of {} must be host:port", peer.server_name));
            }
            if !seen.insert(peer.server_name.as_str()) {
                return Err(format!("federation.peers: {} is listed twice", peer.server_name));
            }
        }
        Ok(())
    }
}
