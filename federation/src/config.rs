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
    /// The peer's link public key, pinned (unpadded base64, as its key document
    /// publishes it and `tidings link-key` prints it). When set, the link trusts this
    /// key and never fetches the peer's key document: for a site whose only path to
    /// the peer is the line. Needs `link`.
    #[serde(default)]
    pub link_key: Option<String>,
}

impl PeerConfig {
    /// The pinned link key, decoded; an error that names the peer when it is not a
    /// link key.
    pub fn pinned_link_key(&self) -> Result<Option<[u8; 32]>, String> {
        let Some(text) = &self.link_key else { return Ok(None) };
        crate::link::key::parse_public(text.trim()).map(Some).map_err(|e| {
            format!(
                "federation.peers: link_key of {} is not a link key ({e}); copy it from `tidings link-key` on {}",
                self.server_name, self.server_name
            )
        })
    }
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
            if peer.pinned_link_key()?.is_some() && peer.link.is_none() {
                return Err(format!(
                    "federation.peers: link_key of {} needs link (the key is used only by the link)",
                    peer.server_name
                ));
            }
            if !seen.insert(peer.server_name.as_str()) {
                return Err(format!("federation.peers: {} is listed twice", peer.server_name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(link: Option<&str>, link_key: Option<&str>) -> FederationConfig {
        FederationConfig {
            peers: vec![PeerConfig {
                server_name: "beta.test".into(),
                url: "http://127.0.0.1:9".into(),
                link: link.map(str::to_owned),
                link_key: link_key.map(str::to_owned),
            }],
            ..FederationConfig::default()
        }
    }

    #[test]
    fn a_pinned_link_key_is_read_as_the_key_document_publishes_it() {
        let key = crate::link::LinkKey::from_secret([3u8; 32]);
        let config = peer(Some("127.0.0.1:9010"), Some(&key.public_base64()));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.peers[0].pinned_link_key(), Ok(Some(*key.public())));
        assert_eq!(peer(Some("127.0.0.1:9010"), None).peers[0].pinned_link_key(), Ok(None));
    }

    #[test]
    fn a_malformed_or_useless_link_key_names_the_peer() {
        for bad in ["not base64!", "AAAA", ""] {
            let e = peer(Some("127.0.0.1:9010"), Some(bad)).validate().expect_err(bad);
            assert!(e.contains("link_key of beta.test"), "{bad:?}: {e}");
        }
        let key = crate::link::LinkKey::from_secret([3u8; 32]).public_base64();
        let e = peer(None, Some(&key)).validate().expect_err("no link");
        assert!(e.contains("link_key of beta.test needs link"), "{e}");
    }
}
