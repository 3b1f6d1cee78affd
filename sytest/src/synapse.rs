//! A real Synapse process on a loopback port, for benchmarks that compare Tidings with
//! the reference homeserver under the same load.
//!
//! No Synapse code lives in this repository: [`install`] runs
//! `sytest/synapse/install.sh`, which `pip install`s a pinned `matrix-synapse` into a
//! virtual environment under the target directory (made once, then reused). The server
//! gets a fresh temporary directory with a generated `homeserver.yaml` (SQLite, one
//! client listener on loopback, open registration, presence on, every rate limit
//! raised out of reach, no federation) and a signing key made by Synapse itself.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use reqwest::Method;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::client::Client;
use crate::ports::free_port;

/// How long Synapse may take to answer `/versions` once spawned (its imports alone take
/// seconds on a busy machine).
const READY_DEADLINE: Duration = Duration::from_secs(180);
/// How long [`SynapseServer::stop`] waits after SIGTERM before it kills.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// Interval between two readiness checks.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// What every rate limit Synapse 1.163 knows is set to.
const UNLIMITED: &str = "{per_second: 1000000, burst_count: 1000000}";
/// Rate-limit keys with one setting each.
const FLAT_LIMITS: [&str; 14] = [
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_joins_per_room",
    "rc_key_requests",
    "rc_3pid_validation",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_admin_redaction",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
];
/// Rate-limit keys with sub-keys.
const NESTED_LIMITS: [(&str, &[&str]); 4] = [
    ("rc_login", &["address", "account", "failed_attempts"]),
    ("rc_joins", &["local", "remote"]),
    ("rc_invites", &["per_room", "per_user", "per_issuer"]),
    ("rc_presence", &["per_user"]),
];

/// Installs Synapse (once) and returns the Python interpreter that runs it.
///
/// `$TIDINGS_SYNAPSE_PYTHON`, when set, names an interpreter that already has Synapse
/// and nothing is installed. Otherwise `sytest/synapse/install.sh` makes (or reuses)
/// `bench-synapse-venv` in the target directory; its progress goes to stderr.
///
/// # Errors
///
/// When the script cannot run or fails (no `python3`, PyPI unreachable, ...), with
/// the reason.
pub async fn install() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("TIDINGS_SYNAPSE_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| crate_dir.join("..").join("target"), PathBuf::from);
    let script = crate_dir.join("synapse").join("install.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(target.join("bench-synapse-venv"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status));
    }
    let python = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if python.is_empty() {
        return Err(format!("{} printed no interpreter path", script.display()));
    }
    Ok(PathBuf::from(python))
}

/// A running Synapse, owned by a benchmark. Dropping it kills the process.
#[derive(Debug)]
pub struct SynapseServer {
    server_name: String,
    dir: TempDir,
    child: Option<Child>,
    client: Client,
}

impl SynapseServer {
    /// Writes a config for `server_name` on a free loopback port, has Synapse generate
    /// its signing key, starts it with `python` and waits until `/versions` answers.
    ///
    /// # Errors
    ///
    /// When a step fails or Synapse is not ready in time; the message ends with the
    /// tail of its log.
    pub async fn start(python: &Path, server_name: &str) -> Result<SynapseServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("tidings-bench-synapse-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let port = free_port();
        let config = dir.path().join("homeserver.yaml");
        std::fs::write(&config, render_config(dir.path(), port, server_name))
            .and_then(|()| std::fs::write(dir.path().join("log.yaml"), render_log_config(dir.path())))
            .map_err(|e| format!("cannot write Synapse's config: {e}"))?;
        generate_keys(python, &config, dir.path()).await?;
        let log = std::fs::File::create(dir.path().join("stdout.log"))
            .map_err(|e| format!("cannot create Synapse's stdout log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
        let child = Command::new(python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let client = Client::new(format!("http://{}:{port}", Ipv4Addr::LOCALHOST));
        let mut server = SynapseServer { server_name: server_name.to_owned(), dir, child: Some(child), client };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> String {
        self.client.base_url().to_owned()
    }

    /// A client for this server.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Its `server_name`.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// What Synapse logged (warnings and worse, see `log.yaml`), then its stdout and
    /// stderr.
    pub fn log(&self) -> String {
        ["homeserver.log", "stdout.log"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(self.dir.path().join(name)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops Synapse: SIGTERM, then SIGKILL after 15 s. Its exit status, or `None` if
    /// it was not running.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(pid) = child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            if let Ok(status) = tokio::time::timeout(STOP_DEADLINE, child.wait()).await {
                return status.ok();
            }
            eprintln!("tidings-sytest: Synapse did not exit within {STOP_DEADLINE:?} of SIGTERM; killing it");
        }
        let _ = child.kill().await;
        child.wait().await.ok()
    }

    /// Polls `/versions` until 200, the process exits, or the deadline passes.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.start_error(&format!("Synapse exited while starting ({status})")));
            }
            let probe = self.client.try_request(
                Method::GET,
                "/_matrix/client/versions",
                None,
                None,
                Some(Duration::from_secs(5)),
            );
            if matches!(probe.await, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.start_error(&format!("Synapse did not answer /versions within {READY_DEADLINE:?}")));
            }
            tokio::time::sleep(CHECK_INTERVAL).await;
        }
    }

    /// `reason` followed by the last 40 lines of the log.
    fn start_error(&self, reason: &str) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("{reason}\n----- Synapse log ({}) -----\n{tail}", self.dir.path().display())
    }
}

/// Runs `python -m synapse.app.homeserver -c CONFIG --generate-keys`.
async fn generate_keys(python: &Path, config: &Path, dir: &Path) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "Synapse --generate-keys failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `homeserver.yaml` for a server in `dir` listening on `127.0.0.1:port`.
fn render_config(dir: &Path, port: u16, server_name: &str) -> String {
    let d = dir.display();
    let mut out = format!(
        "server_name: \"{server_name}\"\n\
         pid_file: {d}/homeserver.pid\n\
         listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: false\n\
         \x20   x_forwarded: false\n    resources:\n      - names: [client]\n        compress: false\n\
         database:\n  name: sqlite3\n  args:\n    database: {d}/homeserver.db\n\
         log_config: {d}/log.yaml\n\
         media_store_path: {d}/media\n\
         signing_key_path: {d}/signing.key\n\
         macaroon_secret_key: \"{}\"\n\
         form_secret: \"{}\"\n\
         report_stats: false\n\
         trusted_key_servers: []\n\
         suppress_key_server_warning: true\n\
         federation_domain_whitelist: []\n\
         enable_registration: true\n\
         enable_registration_without_verification: true\n\
         bcrypt_rounds: 4\n\
         presence:\n  enabled: true\n",
        random_hex(),
        random_hex()
    );
    for key in FLAT_LIMITS {
        let _ = writeln!(out, "{key}: {UNLIMITED}");
    }
    for (key, subkeys) in NESTED_LIMITS {
        let _ = writeln!(out, "{key}:");
        for sub in subkeys {
            let _ = writeln!(out, "  {sub}: {UNLIMITED}");
        }
    }
    out
}

/// A logging config: warnings and worse to `homeserver.log` in `dir`.
fn render_log_config(dir: &Path) -> String {
    format!(
        "version: 1\n\
         formatters:\n  precise:\n    format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'\n\
         handlers:\n  file:\n    class: logging.FileHandler\n    formatter: precise\n\
         \x20   filename: {}/homeserver.log\n\
         root:\n  level: WARNING\n  handlers: [file]\n\
         disable_existing_loggers: false\n",
        dir.display()
    )
}

/// 32 random hex digits from `/dev/urandom` (for the config's secrets), or a
/// time-derived string if it cannot be read; the server is loopback-only and
/// short-lived either way.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        return format!("{nanos:032x}");
    }
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_raises_every_rate_limit() {
        let config = render_config(Path::new("/tmp/x"), 1234, "localhost");
        assert!(config.contains("port: 1234"), "{config}");
        assert!(config.contains("rc_presence:\n  per_user: {per_second: 1000000"), "{config}");
        assert!(config.contains("rc_joins:\n  local: "), "{config}");
        let nested: usize = NESTED_LIMITS.iter().map(|(_, subkeys)| subkeys.len()).sum();
        assert_eq!(config.matches(UNLIMITED).count(), FLAT_LIMITS.len() + nested, "{config}");
    }

    #[test]
    fn secrets_are_hex() {
        let s = random_hex();
        assert_eq!(s.len(), 32);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()), "{s}");
    }
}
