//! Server options and the TOML configuration file written from them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Counter behind the default server names `hs1.test`, `hs2.test`, ...
static NEXT_SERVER: AtomicU32 = AtomicU32::new(1);

/// One federation peer, written as a `[[federation.peers]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's `server_name`.
    pub server_name: String,
    /// Where the peer's HTTP API answers, e.g. `http://127.0.0.1:8009`.
    pub url: String,
    /// Raw TOML lines put inside this peer's table, e.g. `link = "127.0.0.1:9010"`.
    pub extra_toml: String,
}

impl Peer {
    /// A peer with a name and a URL and no extra keys.
    pub fn new(server_name: impl Into<String>, url: impl Into<String>) -> Self {
        Peer { server_name: server_name.into(), url: url.into(), extra_toml: String::new() }
    }

    /// Adds raw TOML lines to this peer's table (builder style).
    pub fn with_extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push_str(toml);
        if !self.extra_toml.ends_with('\n') {
            self.extra_toml.push('\n');
        }
        self
    }
}

/// `[tls]` of a test server: its certificate and key files, and the CA (PEM) that
/// issued the certificate, which the harness's client trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `[tls] cert`: the PEM certificate chain.
    pub cert: PathBuf,
    /// `[tls] key`: the PEM private key.
    pub key: PathBuf,
    /// The issuing CA's certificate, PEM.
    pub ca_pem: String,
}

/// How to configure and run one test server.
///
/// Fields are public; build with struct update syntax
/// (`ServerOptions { batch_ms: 50, ..ServerOptions::named("a.test") }`) or the builder
/// methods. Defaults suit fast tests: open registration, rate limits off, a 100 ms
/// presence batch; the other timers keep the server's defaults.
///
/// Only the keys of the documented configuration are written (the server rejects
/// unknown keys). Sections added later go through [`ServerOptions::with_key`] or
/// [`ServerOptions::extra_toml`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `server_name`; user IDs are `@localpart:server_name`. The default is unique in
    /// the test process: `hs1.test`, `hs2.test`, ...
    pub server_name: String,
    /// `registration = "open"` when true (the default), `"closed"` when false.
    pub registration_open: bool,
    /// `max_request_bytes`; `None` (the default) leaves the server's default.
    pub max_request_bytes: Option<u64>,
    /// `[presence] idle_after_ms` (default 300000).
    pub idle_after_ms: u64,
    /// `[presence] offline_after_ms` (default 30000).
    pub offline_after_ms: u64,
    /// `[presence] batch_ms` (default 100, much shorter than the server's default).
    pub batch_ms: u64,
    /// `[rate_limits] enabled` (default false; tests of rate limiting turn it on).
    pub rate_limits: bool,
    /// `[federation] short_watchdog_ms` (default 60000).
    pub short_watchdog_ms: u64,
    /// `[federation] long_watchdog_ms` (default 3600000).
    pub long_watchdog_ms: u64,
    /// `[[federation.peers]]` entries.
    pub peers: Vec<Peer>,
    /// A fixed loopback port to listen on; `None` (the default) picks a free one. With a
    /// fixed port a clash is retried on the same port only.
    pub port: Option<u16>,
    /// `RUST_LOG` for the server process; `None` keeps the test's own `RUST_LOG`, or
    /// `info` when that is unset.
    pub rust_log: Option<String>,
    /// Extra keys as `(section, key, raw TOML value)`. Section `""` is the top level;
    /// `presence`, `rate_limits` and `federation` go into those tables; any other name
    /// gets its own `[section]` table. See [`ServerOptions::with_key`].
    pub extra_keys: Vec<(String, String, String)>,
    /// Raw TOML appended at the very end of the file, after every table; it should
    /// start with its own table header (e.g. `[feeds]`).
    pub extra_toml: String,
    /// `[tls]`: when set the server listens in HTTPS, its base URL is `https://` and
    /// the harness's client trusts [`TlsFiles::ca_pem`].
    pub tls: Option<TlsFiles>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        let n = NEXT_SERVER.fetch_add(1, Ordering::Relaxed);
        ServerOptions {
            server_name: format!("hs{n}.test"),
            registration_open: true,
            max_request_bytes: None,
            idle_after_ms: 300_000,
            offline_after_ms: 30_000,
            batch_ms: 100,
            rate_limits: false,
            short_watchdog_ms: 60_000,
            long_watchdog_ms: 3_600_000,
            peers: Vec::new(),
            port: None,
            rust_log: None,
            extra_keys: Vec::new(),
            extra_toml: String::new(),
            tls: None,
        }
    }
}

/// The sections [`ServerOptions::render`] always writes, in order.
const KNOWN_SECTIONS: [&str; 4] = ["", "presence", "rate_limits", "federation"];

impl ServerOptions {
    /// Default options with the given `server_name`.
    pub fn named(server_name: impl Into<String>) -> Self {
        ServerOptions { server_name: server_name.into(), ..ServerOptions::default() }
    }

    /// Adds a federation peer (builder style).
    pub fn with_peer(mut self, peer: Peer) -> Self {
        self.peers.push(peer);
        self
    }

    /// Turns rate limiting on or off (builder style).
    pub fn with_rate_limits(mut self, enabled: bool) -> Self {
        self.rate_limits = enabled;
        self
    }

    /// Adds `key = value` to `section` (builder style). `value` is raw TOML: quote
    /// strings with [`toml_string`]. Section `""` is the top level.
    ///
    /// ```
    /// # use tidings_sytest::{ServerOptions, toml_string};
    /// let opts = ServerOptions::named("a.test")
    ///     .with_key("feeds", "fetch", &toml_string("peers"))
    ///     .with_key("feeds", "min_interval_ms", "1000")
    ///     .with_key("", "metrics_token", &toml_string("scrape-me"));
    /// # let _ = opts;
    /// ```
    pub fn with_key(mut self, section: &str, key: &str, value: &str) -> Self {
        self.extra_keys.push((section.to_owned(), key.to_owned(), value.to_owned()));
        self
    }

    /// Appends raw TOML at the end of the file (builder style); see
    /// [`ServerOptions::extra_toml`].
    pub fn with_extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push_str(toml);
        if !self.extra_toml.ends_with('\n') {
            self.extra_toml.push('\n');
        }
        self
    }

    /// The configuration file's text for a server listening on `listen` with its
    /// database in `data_dir`.
    pub fn render(&self, listen: SocketAddr, data_dir: &Path) -> String {
        let mut out = String::new();
        let registration = if self.registration_open { "open" } else { "closed" };
        // Writing into a String cannot fail.
        let _ = writeln!(out, "server_name = {}", toml_string(&self.server_name));
        let _ = writeln!(out, "listen = {}", toml_string(&listen.to_string()));
        let _ = writeln!(out, "data_dir = {}", toml_string(&data_dir.to_string_lossy()));
        let _ = writeln!(out, "registration = {}", toml_string(registration));
        if let Some(max) = self.max_request_bytes {
            let _ = writeln!(out, "max_request_bytes = {max}");
        }
        self.write_extra_keys(&mut out, "");

        let _ = writeln!(out, "\n[presence]");
        let _ = writeln!(out, "idle_after_ms = {}", self.idle_after_ms);
        let _ = writeln!(out, "offline_after_ms = {}", self.offline_after_ms);
        let _ = writeln!(out, "batch_ms = {}", self.batch_ms);
        self.write_extra_keys(&mut out, "presence");

        let _ = writeln!(out, "\n[rate_limits]");
        let _ = writeln!(out, "enabled = {}", self.rate_limits);
        self.write_extra_keys(&mut out, "rate_limits");

        let _ = writeln!(out, "\n[federation]");
        let _ = writeln!(out, "short_watchdog_ms = {}", self.short_watchdog_ms);
        let _ = writeln!(out, "long_watchdog_ms = {}", self.long_watchdog_ms);
        self.write_extra_keys(&mut out, "federation");
        for peer in &self.peers {
            let _ = writeln!(out, "\n[[federation.peers]]");
            let _ = writeln!(out, "server_name = {}", toml_string(&peer.server_name));
            let _ = writeln!(out, "url = {}", toml_string(&peer.url));
            out.push_str(&peer.extra_toml);
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }

        if let Some(tls) = &self.tls {
            let _ = writeln!(out, "\n[tls]");
            let _ = writeln!(out, "cert = {}", toml_string(&tls.cert.to_string_lossy()));
            let _ = writeln!(out, "key = {}", toml_string(&tls.key.to_string_lossy()));
        }

        let mut other_sections: Vec<&str> = Vec::new();
        for (section, _, _) in &self.extra_keys {
            if !KNOWN_SECTIONS.contains(&section.as_str()) && !other_sections.contains(&section.as_str()) {
                other_sections.push(section);
            }
        }
        for section in other_sections {
            let _ = writeln!(out, "\n[{section}]");
            self.write_extra_keys(&mut out, section);
        }

        if !self.extra_toml.is_empty() {
            out.push('\n');
            out.push_str(&self.extra_toml);
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Writes the extra keys that belong to `section`.
    fn write_extra_keys(&self, out: &mut String, section: &str) {
        for (_, key, value) in self.extra_keys.iter().filter(|(s, _, _)| s == section) {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
}

/// `s` as a TOML basic string, quotes included.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_and_extra_sections() {
        let opts = ServerOptions::named("a.test")
            .with_peer(Peer::new("b.test", "http://127.0.0.1:9").with_extra_toml("link = \"x\""))
            .with_key("", "metrics_token", &toml_string("t"))
            .with_key("presence", "extra", "1")
            .with_key("feeds", "fetch", &toml_string("peers"))
            .with_extra_toml("[link]\nlisten = \"127.0.0.1:1\"");
        let text = opts.render("127.0.0.1:8008".parse().expect("addr"), Path::new("/tmp/d\"x"));
        let expected = "server_name = \"a.test\"\n\
            listen = \"127.0.0.1:8008\"\n\
            data_dir = \"/tmp/d\\\"x\"\n\
            registration = \"open\"\n\
            metrics_token = \"t\"\n\
            \n[presence]\nidle_after_ms = 300000\noffline_after_ms = 30000\nbatch_ms = 100\nextra = 1\n\
            \n[rate_limits]\nenabled = false\n\
            \n[federation]\nshort_watchdog_ms = 60000\nlong_watchdog_ms = 3600000\n\
            \n[[federation.peers]]\nserver_name = \"b.test\"\nurl = \"http://127.0.0.1:9\"\nlink = \"x\"\n\
            \n[feeds]\nfetch = \"peers\"\n\
            \n[link]\nlisten = \"127.0.0.1:1\"\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn default_names_are_unique() {
        let a = ServerOptions::default();
        let b = ServerOptions::default();
        assert_ne!(a.server_name, b.server_name);
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
