//! A real `tidings` process on a loopback port, with its own data directory.

use std::ffi::OsStr;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::Duration;

use reqwest::Method;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::binary::tidings_bin;
use crate::client::{Client, Session};
use crate::config::{Peer, ServerOptions};
use crate::ports::free_port;

/// How long a server may take to answer `/versions` after it is spawned.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long [`TestServer::stop`] waits after SIGTERM before it kills.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Interval between two readiness or exit checks.
const CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// How often a start is tried when the port turns out to be taken.
const PORT_ATTEMPTS: u32 = 5;
/// At most this much of a log is printed when a test panics.
const MAX_PRINTED_LOG: u64 = 1 << 20;

/// Why a server did not become ready. Its `Display` includes the server's log.
#[derive(Debug)]
pub struct StartError {
    /// The `server_name` of the server that failed.
    pub server_name: String,
    /// The base URL it was to answer on.
    pub base_url: String,
    /// What went wrong, in words.
    pub reason: String,
    /// The exit status, when the process exited by itself.
    pub status: Option<ExitStatus>,
    /// What the process logged during this start attempt.
    pub log: String,
    port_in_use: bool,
}

impl StartError {
    /// Whether the failure looks like a clash on the listening port.
    pub fn port_in_use(&self) -> bool {
        self.port_in_use
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tidings server {} at {} did not start: {}\n----- log of {} -----\n{}\n----- end of log of {} -----",
            self.server_name,
            self.base_url,
            self.reason,
            self.server_name,
            self.log.trim_end(),
            self.server_name
        )
    }
}

impl std::error::Error for StartError {}

/// A running `tidings serve` process, owned by a test.
///
/// It has its own temporary directory holding `tidings.toml` (the config), `server.log`
/// (stdout and stderr of every run, appended) and `data/` (the server's `data_dir`). The
/// directory lives as long as this value. Dropping it kills the process; if the thread
/// is panicking (a failing test) the log is printed to stderr first, labelled with the
/// server name.
pub struct TestServer {
    opts: ServerOptions,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    client: Client,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("server_name", &self.opts.server_name)
            .field("base_url", &self.base_url())
            .field("dir", &self.dir.path())
            .field("pid", &self.pid())
            .finish()
    }
}

/// `http://127.0.0.1:PORT`.
fn loopback_url(port: u16) -> String {
    format!("http://{}:{port}", Ipv4Addr::LOCALHOST)
}

/// The base URL of a server run with `opts` on `port`: `https://` when it has `[tls]`.
fn server_url(opts: &ServerOptions, port: u16) -> String {
    match &opts.tls {
        Some(_) => format!("https://{}:{port}", Ipv4Addr::LOCALHOST),
        None => loopback_url(port),
    }
}

/// A client for a server run with `opts`, trusting its test CA when it has `[tls]`.
fn client_for(opts: &ServerOptions, port: u16) -> Client {
    match &opts.tls {
        Some(tls) => Client::with_root_ca(server_url(opts, port), tls.ca_pem.as_bytes()),
        None => Client::new(loopback_url(port)),
    }
}

/// Whether a log says the listening address was taken.
fn mentions_port_in_use(log: &str) -> bool {
    let log = log.to_lowercase();
    ["address in use", "address already in use", "addrinuse"].iter().any(|needle| log.contains(needle))
}

impl TestServer {
    /// Starts a server and waits until it answers `GET /_matrix/client/versions` with
    /// 200. A port clash is retried on a new port (on the same one if
    /// [`ServerOptions::port`] is fixed).
    ///
    /// # Panics
    ///
    /// When the server does not become ready; the message includes its log.
    pub async fn start(opts: ServerOptions) -> TestServer {
        match Self::try_start(opts).await {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`TestServer::start`], but returns the failure (with the log) instead of
    /// panicking, for tests that expect a start to fail (a bad config, say).
    pub async fn try_start(opts: ServerOptions) -> Result<TestServer, StartError> {
        Self::start_inner(opts, PORT_ATTEMPTS).await
    }

    async fn start_inner(opts: ServerOptions, attempts: u32) -> Result<TestServer, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("tidings-sytest-")
            .tempdir()
            .expect("creating a temporary directory for a test server");
        let new_ports = opts.port.is_none();
        let port = opts.port.unwrap_or_else(free_port);
        let client = client_for(&opts, port);
        let mut server = TestServer { opts, port, dir, child: None, client };
        server.launch_with_retries(attempts, new_ports).await?;
        Ok(server)
    }

    /// Starts servers that federate with each other: every server gets every other one
    /// as a `[[federation.peers]]` entry (unless its options already list that name),
    /// with ports chosen before any of them starts. On a port clash all of them are
    /// started again on new ports. The result is in the order of `opts`.
    ///
    /// # Panics
    ///
    /// When a server does not become ready; the message includes its log.
    pub async fn start_federation(opts: Vec<ServerOptions>) -> Vec<TestServer> {
        let any_fixed = opts.iter().any(|o| o.port.is_some());
        let mut attempt = 1;
        loop {
            let ports: Vec<u16> = opts.iter().map(|o| o.port.unwrap_or_else(free_port)).collect();
            let mut servers = Vec::with_capacity(opts.len());
            let mut failure = None;
            for (i, o) in opts.iter().enumerate() {
                let mut o = o.clone();
                o.port = Some(ports[i]);
                for (j, other) in opts.iter().enumerate() {
                    if j != i && !o.peers.iter().any(|p| p.server_name == other.server_name) {
                        o.peers.push(Peer::new(&other.server_name, server_url(other, ports[j])));
                    }
                }
                match Self::start_inner(o, 1).await {
                    Ok(server) => servers.push(server),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                None => return servers,
                Some(e) if e.port_in_use && !any_fixed && attempt < PORT_ATTEMPTS => {
                    attempt += 1;
                    // `servers` is dropped here: those started are killed.
                }
                Some(e) => panic!("{e}"),
            }
        }
    }

    /// The base URL, `http://127.0.0.1:PORT` (`https://` with [`ServerOptions::tls`]).
    pub fn base_url(&self) -> String {
        server_url(&self.opts, self.port)
    }

    /// The listening address, on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The listening port (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The configured `server_name`.
    pub fn server_name(&self) -> &str {
        &self.opts.server_name
    }

    /// `@localpart:server_name`.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.opts.server_name)
    }

    /// This server as a peer entry for another server's options.
    pub fn peer(&self) -> Peer {
        Peer::new(&self.opts.server_name, self.base_url())
    }

    /// The options it runs with.
    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    /// The options, to change before a [`TestServer::restart`] (which rewrites the
    /// config from them). Changing `port` has no effect: the port is kept.
    pub fn options_mut(&mut self) -> &mut ServerOptions {
        &mut self.opts
    }

    /// The temporary directory holding the config, the log and the data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's `data_dir` (created by the server).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file the server runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tidings.toml")
    }

    /// The file receiving the server's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server logged so far, over all its runs (each run starts with a
    /// `===== tidings-sytest: starting ... =====` line).
    pub fn log(&self) -> String {
        std::fs::read(self.log_path()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// A client for this server (cheap; it survives restarts).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Registers a user here; see [`Client::register`].
    pub async fn register(&self, localpart: &str, password: &str) -> Session {
        self.client.register(localpart, password).await
    }

    /// Logs a user in here; see [`Client::login`].
    pub async fn login(&self, user: &str, password: &str) -> Session {
        self.client.login(user, password).await
    }

    /// The process ID, while a process was started and not yet stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (false after it exited or was stopped).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the server gracefully: SIGTERM, then waits up to 10 s before SIGKILL.
    /// Returns its exit status, or `None` if no process was running.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let signalled = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|status| status.success());
        if signalled {
            let deadline = Instant::now() + STOP_DEADLINE;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
                tokio::time::sleep(CHECK_INTERVAL).await;
            }
            eprintln!(
                "tidings-sytest: {} did not exit within {STOP_DEADLINE:?} of SIGTERM; killing it",
                self.opts.server_name
            );
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Kills the server with SIGKILL (no graceful shutdown) and reaps it.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port and data
    /// directory with the config rewritten from [`TestServer::options`]; waits until it
    /// is ready.
    ///
    /// # Panics
    ///
    /// When it does not become ready; the message includes its log.
    pub async fn restart(&mut self) {
        if let Err(e) = self.try_restart().await {
            panic!("{e}");
        }
    }

    /// Like [`TestServer::restart`], returning the failure instead of panicking.
    pub async fn try_restart(&mut self) -> Result<(), StartError> {
        self.stop().await;
        self.launch_with_retries(PORT_ATTEMPTS, false).await
    }

    /// Stops the server, deletes its data directory (accounts, keys, queues: all
    /// gone) and starts it again on the same port, as a new server with the same name.
    ///
    /// # Panics
    ///
    /// When the data cannot be deleted or the server does not become ready.
    pub async fn restart_fresh(&mut self) {
        self.stop().await;
        let data_dir = self.data_dir();
        if data_dir.exists() {
            std::fs::remove_dir_all(&data_dir).expect("deleting the test server's data_dir");
        }
        if let Err(e) = self.launch_with_retries(PORT_ATTEMPTS, false).await {
            panic!("{e}");
        }
    }

    /// Runs `tidings ARGS...` (any subcommand) in this server's directory with the
    /// server's `RUST_LOG`, and returns its output. Add `--config` yourself, e.g.
    /// with [`TestServer::config_path`].
    ///
    /// # Panics
    ///
    /// When the binary cannot be run.
    pub async fn cli<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = tokio::process::Command::new(tidings_bin());
        cmd.args(args).current_dir(self.dir.path()).env_remove("TIDINGS_CONFIG").stdin(Stdio::null());
        if let Some(level) = self.rust_log() {
            cmd.env("RUST_LOG", level);
        }
        cmd.output().await.expect("running the tidings binary")
    }

    /// Runs `tidings create-user --config PATH --user LOCALPART --password PW [--admin]`
    /// against this server's config (it works while the server runs) and returns the
    /// output; check `status.success()`.
    pub async fn create_user(&self, localpart: &str, password: &str, admin: bool) -> Output {
        let config = self.config_path();
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("create-user"),
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--user"),
            OsStr::new(localpart),
            OsStr::new("--password"),
            OsStr::new(password),
        ];
        if admin {
            args.push(OsStr::new("--admin"));
        }
        self.cli(args).await
    }

    /// Creates an admin account with the CLI and logs it in.
    ///
    /// # Panics
    ///
    /// When `create-user` fails or the login does.
    pub async fn create_admin(&self, localpart: &str, password: &str) -> Session {
        let out = self.create_user(localpart, password, true).await;
        assert!(
            out.status.success(),
            "tidings create-user --admin {localpart} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.login(localpart, password).await
    }

    /// `RUST_LOG` for processes of this server: the option, else none when the test
    /// has one (it is inherited), else `info`.
    fn rust_log(&self) -> Option<String> {
        match &self.opts.rust_log {
            Some(level) => Some(level.clone()),
            None if std::env::var_os("RUST_LOG").is_some() => None,
            None => Some("info".to_owned()),
        }
    }

    /// Moves the server to another port (before a start).
    fn set_port(&mut self, port: u16) {
        self.port = port;
        self.client = client_for(&self.opts, port);
    }

    /// [`TestServer::launch`] up to `attempts` times while the port is taken, on a new
    /// port each time if `new_ports`, else on the same one after a pause.
    async fn launch_with_retries(&mut self, attempts: u32, new_ports: bool) -> Result<(), StartError> {
        let mut attempt = 1;
        loop {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(e) if e.port_in_use && attempt < attempts => {
                    attempt += 1;
                    if new_ports {
                        self.set_port(free_port());
                    } else {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the config, spawns `tidings serve` and waits until it is ready.
    async fn launch(&mut self) -> Result<(), StartError> {
        let config = self.opts.render(self.addr(), &self.data_dir());
        std::fs::write(self.config_path(), config).expect("writing the test server's config");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the test server's log file");
        let _ = writeln!(log, "===== tidings-sytest: starting {} on {} =====", self.opts.server_name, self.base_url());
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log.try_clone().expect("duplicating the log file handle");
        let bin = tidings_bin();
        let mut cmd = std::process::Command::new(&bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("TIDINGS_CONFIG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(level) = self.rust_log() {
            cmd.env("RUST_LOG", level);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        self.child = Some(child);
        self.wait_ready(log_start).await
    }

    /// Polls `/versions` until 200, the process exits, or the deadline passes.
    async fn wait_ready(&mut self, log_start: u64) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.exited() {
                return Err(self.start_error("it exited before it was ready", Some(status), log_start));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let probe = self.client.try_request(
                Method::GET,
                "/_matrix/client/versions",
                None,
                None,
                Some(remaining.clamp(CHECK_INTERVAL, Duration::from_secs(5))),
            );
            // Something else listening on the port may accept and never answer: watch
            // for our process exiting while the probe waits.
            let child = self.child.as_mut().expect("a spawned child while waiting");
            let ready = tokio::select! {
                answer = probe => matches!(answer, Ok((200, _))),
                _ = wait_for_exit(child) => false,
            };
            if ready {
                return self.confirm_ours(log_start).await;
            }
            if Instant::now() >= deadline {
                self.kill_quietly();
                return Err(self.start_error(
                    &format!("it did not answer /_matrix/client/versions with 200 within {READY_DEADLINE:?}"),
                    None,
                    log_start,
                ));
            }
            tokio::time::sleep(CHECK_INTERVAL).await;
        }
    }

    /// After a 200 from `/versions`: makes sure the answer came from our process, not
    /// from another server that took the port first.
    async fn confirm_ours(&mut self, log_start: u64) -> Result<(), StartError> {
        if let Some(status) = self.exited() {
            return Err(self.start_error("it exited while starting", Some(status), log_start));
        }
        if mentions_port_in_use(&self.read_log_from(log_start)) {
            self.kill_quietly();
            let mut e = self.start_error("its port is taken by another process", None, log_start);
            e.port_in_use = true;
            return Err(e);
        }
        let key = self
            .client
            .try_request(Method::GET, "/_matrix/key/v2/server", None, None, Some(Duration::from_secs(5)))
            .await;
        if let Ok((200, body)) = key
            && let Some(name) = body["server_name"].as_str()
            && name != self.opts.server_name
        {
            self.kill_quietly();
            let mut e = self.start_error(&format!("its port is answered by another server, {name}"), None, log_start);
            e.port_in_use = true;
            return Err(e);
        }
        Ok(())
    }

    /// The exit status if the process has exited (it is then forgotten).
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Kills and reaps the process, if any.
    fn kill_quietly(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn start_error(&self, reason: &str, status: Option<ExitStatus>, log_start: u64) -> StartError {
        let log = self.read_log_from(log_start);
        StartError {
            server_name: self.opts.server_name.clone(),
            base_url: self.base_url(),
            reason: match status {
                Some(status) => format!("{reason} ({status})"),
                None => reason.to_owned(),
            },
            status,
            port_in_use: mentions_port_in_use(&log),
            log,
        }
    }

    /// The log from byte `start` on, as text.
    fn read_log_from(&self, start: u64) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path())
            && file.seek(SeekFrom::Start(start)).is_ok()
        {
            let _ = file.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Resolves once `child` has exited (it is not reaped here; `try_wait` keeps its status).
async fn wait_for_exit(child: &mut Child) {
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill_quietly();
        let always = std::env::var("TIDINGS_SYTEST_SHOW_LOGS").is_ok_and(|v| !v.is_empty() && v != "0");
        if std::thread::panicking() || always {
            let len = std::fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
            let start = len.saturating_sub(MAX_PRINTED_LOG);
            let skipped = if start > 0 { format!("[... first {start} bytes left out ...]\n") } else { String::new() };
            let name = &self.opts.server_name;
            eprintln!(
                "----- log of tidings server {name} ({}, {}) -----\n{skipped}{}\n----- end of log of {name} -----",
                self.base_url(),
                self.dir.path().display(),
                self.read_log_from(start).trim_end()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_port_clashes() {
        assert!(mentions_port_in_use("Error: binding 127.0.0.1:8008: Address already in use (os error 98)"));
        assert!(mentions_port_in_use("kind: AddrInUse"));
        assert!(!mentions_port_in_use("unknown key `foo` in config"));
    }
}
