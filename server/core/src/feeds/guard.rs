//! The SSRF guard: a feed URL may name only http or https, and may reach only public
//! addresses unless `allow_private_addresses`. It is checked at fetch time, for the
//! URL and for every redirect: literal IPs here, names in the resolver that the HTTP
//! client connects through ([`GuardedResolver`]), so the address checked is the one
//! connected to (no second lookup to rebind).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::error::{Error, Result};

/// Parse and check a feed URL as a client gives it: absolute, http or https, a host.
pub fn parse_feed_url(raw: &str) -> Result<Url> {
    let url = Url::parse(raw.trim()).map_err(|e| Error::invalid_param(format!("'{raw}' is not a URL: {e}")))?;
    check_scheme(&url)?;
    Ok(url)
}

/// Only http and https, with a host and no credentials.
pub fn check_scheme(url: &Url) -> Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid_param(format!("only http and https feeds are supported, not {}", url.scheme())));
    }
    if url.host().is_none() {
        return Err(Error::invalid_param("the feed URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid_param("feed URLs with credentials are not supported"));
    }
    Ok(())
}

/// Whether `ip` is an address a feed may live at when private addresses are refused.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10, carrier-grade NAT
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

/// Refuse a URL whose host is a literal address that is not public (names are
/// checked by [`GuardedResolver`] when connecting).
pub fn check_literal_host(url: &Url, allow_private: bool) -> Result<()> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(Error::invalid_param(format!(
            "{ip} is a private, loopback or link-local address (feeds.allow_private_addresses is false)"
        )))
    }
}

/// The resolver the fetcher's HTTP client connects through: it resolves with the
/// system resolver and drops every non-public address (unless allowed); a name with
/// none left fails, so nothing is connected to.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    /// A resolver for the HTTP client.
    pub fn new(allow_private: bool) -> Arc<Self> {
        Arc::new(Self { allow_private })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found.into_iter().filter(|a| allow_private || is_public(a.ip())).collect();
            if kept.is_empty() {
                let msg = format!(
                    "{host} resolves only to private, loopback or link-local addresses \
                     (feeds.allow_private_addresses is false)"
                );
                return Err(msg.into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(!is_public(bad.parse().expect("ip")), "{bad}");
        }
        for good in ["93.184.216.34", "2606:4700::1111", "1.1.1.1"] {
            assert!(is_public(good.parse().expect("ip")), "{good}");
        }
    }

    #[test]
    fn only_http_and_https_urls() {
        assert!(parse_feed_url("https://example.org/feed.xml").is_ok());
        assert!(parse_feed_url("file:///etc/passwd").is_err());
        assert!(parse_feed_url("gopher://example.org/").is_err());
        assert!(parse_feed_url("not a url").is_err());
        assert!(parse_feed_url("http://user:pw@example.org/").is_err());
        let loopback = parse_feed_url("http://127.0.0.1:1/feed").expect("url");
        assert!(check_literal_host(&loopback, false).is_err());
        assert!(check_literal_host(&loopback, true).is_ok());
    }
}
