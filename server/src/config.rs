//! The TOML configuration file, layered: built-in defaults, then the file. Every key
//! has a default; an unknown key, a bad value or an unreadable file stops start-up
//! with a message naming the key or the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidings_core::config::{
    ClientAreas, ClientConfig, E2eeConfig, FeedsConfig, MediaConfig, PresenceConfig, RateLimitConfig, RoomsConfig,
};
use tidings_federation::FederationConfig;
use tidings_federation::link::LinkConfig;

/// `registration`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone who reaches the server may register.
    Open,
    /// Accounts are made with `tidings create-user` only.
    Closed,
}

/// The largest `max_connections` accepted (a semaphore's permits are `u32`; far
/// beyond any file-descriptor limit anyway).
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// `[tls]`: the listener's certificate, reloaded on SIGHUP and when the files change.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The whole configuration.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// User IDs are `@name:server_name`.
    pub server_name: String,
    /// The one HTTP listener: client, federation, key and admin APIs.
    pub listen: SocketAddr,
    /// SQLite database and signing key; created when missing.
    pub data_dir: PathBuf,
    /// Open or closed; by default open only when `listen` is loopback.
    pub registration: Option<Registration>,
    /// Larger request bodies get 413 `M_TOO_LARGE`.
    pub max_request_bytes: usize,
    /// A token a Prometheus scraper may use for the metrics endpoint only.
    pub metrics_token: Option<String>,
    /// A connection that has not sent a whole request head this long after it opened
    /// (or after the first byte of a later request) is closed.
    pub request_header_timeout_ms: u64,
    /// A keep-alive connection with no request in flight is closed after this long
    /// (a waiting long-poll `/sync` is in flight, so not idle).
    pub keepalive_timeout_ms: u64,
    /// At most this many client connections are open at once; further ones wait in
    /// the listen backlog until one closes.
    pub max_connections: usize,
    /// `[tls]`: when present the listener speaks HTTPS.
    pub tls: Option<TlsConfig>,
    /// `[presence]`.
    pub presence: PresenceConfig,
    /// `[rate_limits]`.
    pub rate_limits: RateLimitConfig,
    /// `[federation]`.
    pub federation: FederationConfig,
    /// `[feeds]`.
    pub feeds: FeedsConfig,
    /// `[rooms]`.
    pub rooms: RoomsConfig,
    /// Media uploads larger than this get 413 `M_TOO_LARGE`.
    pub max_upload_bytes: u64,
    /// `[client]`: well-known base URL, filters and account data bounds.
    pub client: ClientConfig,
    /// `[e2ee]`: key and to-device bounds.
    pub e2ee: E2eeConfig,
    /// `[media]`: the per-user quota.
    pub media: MediaConfig,
    /// `[link]`: the thin-line transport (spec/link.md).
    pub link: LinkConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server_name", &self.server_name)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("registration", &self.registration)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "<redacted>"))
            .field("request_header_timeout_ms", &self.request_header_timeout_ms)
            .field("keepalive_timeout_ms", &self.keepalive_timeout_ms)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls)
            .field("presence", &self.presence)
            .field("rate_limits", &self.rate_limits)
            .field("federation", &self.federation)
            .field("feeds", &self.feeds)
            .field("rooms", &self.rooms)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("client", &self.client)
            .field("e2ee", &self.e2ee)
            .field("media", &self.media)
            .field("link", &self.link)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            data_dir: PathBuf::from("./tidings-data"),
            registration: None,
            max_request_bytes: 1_048_576,
            metrics_token: None,
            request_header_timeout_ms: 30_000,
            keepalive_timeout_ms: 75_000,
            max_connections: 768,
            tls: None,
            presence: PresenceConfig::default(),
            rate_limits: RateLimitConfig::default(),
            federation: FederationConfig::default(),
            feeds: FeedsConfig::default(),
            rooms: RoomsConfig::default(),
            max_upload_bytes: 52_428_800,
            client: ClientConfig::default(),
            e2ee: E2eeConfig::default(),
            media: MediaConfig::default(),
            link: LinkConfig::default(),
        }
    }
}

impl Config {
    /// Load from `path`, or the built-in defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            let config = Config::default();
            config.validate()?;
            return Ok(config);
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let mut config: Config = toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.data_dir);
        if let Some(tls) = &mut config.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        if let Some(ca) = &mut config.federation.ca_file {
            resolve(ca);
        }
        if let Some(ca) = &mut config.feeds.ca_file {
            resolve(ca);
        }
        config.validate().map_err(|e| format!("config file {}: {e}", path.display()))?;
        Ok(config)
    }

    /// The config path to use: `--config`, else `$TIDINGS_CONFIG`, else none (defaults).
    pub fn resolve_path(flag: Option<PathBuf>) -> Option<PathBuf> {
        flag.or_else(|| std::env::var_os("TIDINGS_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
    }

    /// The client-state areas as core takes them (`max_upload_bytes` goes with `[media]`).
    pub fn client_areas(&self) -> ClientAreas {
        ClientAreas {
            client: self.client.clone(),
            e2ee: self.e2ee.clone(),
            media: MediaConfig { max_upload_bytes: self.max_upload_bytes, ..self.media.clone() },
            rooms: self.rooms.clone(),
        }
    }

    /// Whether registration is open, applying the loopback default.
    pub fn registration_open(&self) -> bool {
        match self.registration {
            Some(r) => r == Registration::Open,
            None => self.listen.ip().is_loopback(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        ruma::ServerName::parse(&self.server_name)
            .map_err(|e| format!("server_name '{}' is not a valid server name: {e}", self.server_name))?;
        if self.max_request_bytes < 1024 {
            return Err("max_request_bytes must be at least 1024".into());
        }
        let p = &self.presence;
        if p.idle_after_ms == 0 || p.offline_after_ms == 0 || p.batch_ms == 0 {
            return Err(
                "presence.idle_after_ms, presence.offline_after_ms and presence.batch_ms must be above 0".into()
            );
        }
        if p.max_list_entries == 0 {
            return Err("presence.max_list_entries must be above 0".into());
        }
        for (name, rate) in [
            ("login", self.rate_limits.login),
            ("register", self.rate_limits.register),
            ("presence", self.rate_limits.presence),
            ("presence_list", self.rate_limits.presence_list),
            ("presence_answer", self.rate_limits.presence_answer),
            ("presence_poll", self.rate_limits.presence_poll),
            ("room_send", self.rate_limits.room_send),
            ("room_create", self.rate_limits.room_create),
            ("room_ephemeral", self.rate_limits.room_ephemeral),
        ] {
            if !(rate.per_second.is_finite() && rate.per_second > 0.0) || rate.burst == 0 {
                return Err(format!("rate_limits.{name}: per_second must be above 0 and burst at least 1"));
            }
        }
        if self.request_header_timeout_ms == 0 {
            return Err("request_header_timeout_ms must be above 0".into());
        }
        if self.keepalive_timeout_ms == 0 {
            return Err("keepalive_timeout_ms must be above 0".into());
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(format!("max_connections must be between 1 and {MAX_CONNECTIONS_LIMIT}"));
        }
        if let Some(tls) = &self.tls {
            crate::tls::load_certified_key(&tls.cert, &tls.key)?;
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err("metrics_token must be at least 16 characters".into());
        }
        validate_feeds(&self.feeds)?;
        validate_rooms(&self.rooms)?;
        self.validate_client_areas()?;
        self.link.validate()?;
        self.federation.validate()
    }

    fn validate_client_areas(&self) -> Result<(), String> {
        if self.max_upload_bytes == 0 {
            return Err("max_upload_bytes must be above 0".into());
        }
        if self.media.quota_bytes_per_user == 0 {
            return Err("media.quota_bytes_per_user must be above 0".into());
        }
        if self.media.max_thumbnail_source_bytes == 0 || self.media.max_thumbnail_source_pixels == 0 {
            return Err("media.max_thumbnail_source_bytes and media.max_thumbnail_source_pixels must be above 0".into());
        }
        if let Some(url) = &self.client.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("client.base_url '{url}' must start with http:// or https://"));
        }
        let c = &self.client;
        if c.max_filters_per_user == 0 || c.max_account_data_per_user == 0 || c.max_account_data_bytes < 1024 {
            return Err("client.max_filters_per_user and client.max_account_data_per_user must be above 0, \
                        client.max_account_data_bytes at least 1024"
                .into());
        }
        let e = &self.e2ee;
        if e.max_one_time_keys_per_device == 0 || e.max_to_device_queue == 0 || e.max_signatures_per_key == 0 {
            return Err("e2ee.max_one_time_keys_per_device, e2ee.max_to_device_queue and e2ee.max_signatures_per_key \
                        must be above 0"
                .into());
        }
        if e.max_to_device_bytes < 1024 || e.max_device_keys_bytes < 1024 {
            return Err("e2ee.max_to_device_bytes and e2ee.max_device_keys_bytes must be at least 1024".into());
        }
        Ok(())
    }
}

fn validate_rooms(r: &RoomsConfig) -> Result<(), String> {
    if r.max_rooms_per_user == 0 || r.max_members_per_room < 2 {
        return Err("rooms.max_rooms_per_user must be at least 1 and rooms.max_members_per_room at least 2".into());
    }
    Ok(())
}

fn validate_feeds(f: &FeedsConfig) -> Result<(), String> {
    if f.min_interval_ms == 0 {
        return Err("feeds.min_interval_ms must be above 0".into());
    }
    if f.max_interval_ms < f.min_interval_ms {
        return Err("feeds.max_interval_ms must be at least feeds.min_interval_ms".into());
    }
    if f.max_document_bytes < 1024 {
        return Err("feeds.max_document_bytes must be at least 1024".into());
    }
    if f.max_subscriptions_per_user == 0 {
        return Err("feeds.max_subscriptions_per_user must be above 0".into());
    }
    if f.item_retention_ms < 3_600_000 {
        return Err("feeds.item_retention_ms must be at least 3600000 (an hour)".into());
    }
    if let Some(ca) = &f.ca_file
        && !ca.is_file()
    {
        return Err(format!("feeds.ca_file: cannot read {}", ca.display()));
    }
    if f.alive_interval_ms == 0 {
        return Err("feeds.alive_interval_ms must be above 0".into());
    }
    if f.mirror_silence_ms <= f.alive_interval_ms {
        return Err("feeds.mirror_silence_ms must be above feeds.alive_interval_ms".into());
    }
    if f.fetch_timeout_ms == 0 {
        return Err("feeds.fetch_timeout_ms must be above 0".into());
    }
    Ok(())
}

/// Create `data_dir` if missing, readable by its owner only: it holds password hashes
/// and the signing key.
pub fn create_data_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create data_dir {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict data_dir {}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let dir = std::env::temp_dir().join(format!("tidings-config-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join("tidings.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let result = Config::load(Some(&path));
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn defaults_are_a_working_single_site() {
        let c = Config::load(None).expect("defaults");
        assert_eq!(c.server_name, "localhost");
        assert!(c.registration_open(), "open by default on loopback");
        assert_eq!(c.presence.offline_after_ms, 30_000);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse("server_name = \"a.test\"\nfrobnicate = 1\n").unwrap_err();
        assert!(e.contains("frobnicate"), "{e}");
        let e = parse("[presence]\nidle_after_ms = \"soon\"\n").unwrap_err();
        assert!(e.contains("idle_after_ms"), "{e}");
        let e = parse("server_name = \"not a name\"\n").unwrap_err();
        assert!(e.contains("server_name"), "{e}");
        let e = parse("[feeds]\nfetch = \"sometimes\"\n").unwrap_err();
        assert!(e.contains("fetch"), "{e}");
        let e = parse("[feeds]\nmin_interval_ms = 10\nmax_interval_ms = 5\n").unwrap_err();
        assert!(e.contains("feeds.max_interval_ms"), "{e}");
        let c = parse("[feeds]\nfetch = \"peers\"\nallow_private_addresses = true\n").expect("valid");
        assert!(c.feeds.allow_private_addresses);
        let e = parse("[[federation.peers]]\nserver_name = \"b.test\"\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(e.contains("url"), "{e}");
    }

    #[test]
    fn connection_keys_are_checked_and_named() {
        let c = Config::load(None).expect("defaults");
        assert_eq!((c.request_header_timeout_ms, c.keepalive_timeout_ms, c.max_connections), (30_000, 75_000, 768));
        assert!(c.tls.is_none());
        for (text, key) in [
            ("request_header_timeout_ms = 0\n", "request_header_timeout_ms"),
            ("keepalive_timeout_ms = 0\n", "keepalive_timeout_ms"),
            ("max_connections = 0\n", "max_connections"),
            ("[tls]\ncert = \"c.pem\"\n", "key"),
            ("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nextra = 1\n", "extra"),
            ("[tls]\ncert = \"missing-c.pem\"\nkey = \"k.pem\"\n", "tls.cert"),
            ("[federation]\nca_file = \"missing-ca.pem\"\n", "federation.ca_file"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn relative_data_dir_resolves_against_the_file() {
        let c = parse("data_dir = \"data\"\nlisten = \"0.0.0.0:8008\"\n").expect("valid");
        assert!(c.data_dir.is_absolute() || c.data_dir.starts_with(std::env::temp_dir()));
        assert!(c.data_dir.ends_with("data"));
        assert!(!c.registration_open(), "closed by default off loopback");
    }
}
