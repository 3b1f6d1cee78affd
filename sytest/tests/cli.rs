//! The `tidings` binary as operators use it: `--help` and `--version`; `create-user`
//! (with `--password` or `--password-file`, also `-` for stdin) before and while the
//! server runs, refusing a duplicate or invalid name with a one-line reason; start-up
//! refusing an unknown key, a bad value or a missing file with a message naming it;
//! `$TIDINGS_CONFIG` and relative paths; SIGTERM and SIGINT ending the server with
//! exit 0 once in-flight requests are answered.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;

use tidings_sytest::{
    Client, Method, ServerOptions, TestServer, encode_component, eventually, free_port, json, tidings_bin, toml_string,
};

/// How long a CLI command that should end by itself may take.
const CLI_DEADLINE: Duration = Duration::from_secs(30);

/// Runs `tidings ARGS` in `cwd` with `stdin` (or none), without `TIDINGS_CONFIG` or
/// `RUST_LOG` unless `env` sets them, and returns its output.
///
/// # Panics
///
/// When it does not exit within [`CLI_DEADLINE`] (it is then killed).
async fn tidings<I, S>(args: I, cwd: &Path, stdin: Option<&[u8]>, env: &[(&str, &OsStr)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = tokio::process::Command::new(tidings_bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("TIDINGS_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = cmd.spawn().expect("spawning the tidings binary");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("a piped stdin");
        pipe.write_all(input).await.expect("writing to the CLI's stdin");
        drop(pipe);
    }
    match tokio::time::timeout(CLI_DEADLINE, child.wait_with_output()).await {
        Ok(output) => output.expect("waiting for the tidings binary"),
        Err(_) => panic!("tidings did not exit within {CLI_DEADLINE:?}"),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed ({}):\nstdout: {}\nstderr: {}", out.status, stdout(out), stderr(out));
}

#[track_caller]
fn assert_failure(out: &Output, what: &str) {
    assert!(!out.status.success(), "{what} should fail:\nstdout: {}\nstderr: {}", stdout(out), stderr(out));
}

/// A config file for `opts` in a new temporary directory, listening on a free
/// loopback port, with `data_dir` in that directory; `extra_top` goes first (top-level
/// keys).
fn config_dir(opts: &ServerOptions, extra_top: &str) -> (TempDir, PathBuf, u16) {
    let dir = tempfile::Builder::new().prefix("tidings-cli-").tempdir().expect("a temporary directory");
    let port = free_port();
    let text = opts.render(([127, 0, 0, 1], port).into(), &dir.path().join("data"));
    let path = dir.path().join("tidings.toml");
    std::fs::write(&path, format!("{extra_top}{text}")).expect("writing the config");
    (dir, path, port)
}

/// `tidings serve --config PATH`, expected to refuse to start.
async fn serve_refused(config: &Path) -> Output {
    let cwd = config.parent().expect("a config directory");
    let out = tidings([OsStr::new("serve"), OsStr::new("--config"), config.as_os_str()], cwd, None, &[]).await;
    assert_failure(&out, "serve with a bad config");
    out
}

/// A password login; the raw answer.
async fn try_login(client: &Client, user: &str, password: &str) -> (u16, tidings_sytest::Value) {
    let body =
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password});
    client.post("/_matrix/client/v3/login", body).await
}

/// Sends `signal` (e.g. `-TERM`) to process `pid`.
async fn send_signal(pid: u32, signal: &str) {
    let status =
        tokio::process::Command::new("kill").arg(signal).arg(pid.to_string()).status().await.expect("running kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Spawns `tidings serve [--config PATH]` in `cwd` with `env`, output discarded; it is
/// killed if dropped.
fn spawn_serve(cwd: &Path, config: Option<&Path>, env: &[(&str, &OsStr)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(tidings_bin());
    cmd.arg("serve");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.current_dir(cwd)
        .env_remove("TIDINGS_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.spawn().expect("spawning tidings serve")
}

/// Waits for `child` to exit, at most 15 s.
async fn wait_exit(child: &mut tokio::process::Child) -> ExitStatus {
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the server should exit within 15 s of the signal")
        .expect("waiting for the server")
}

/// Waits until something answers `/versions` with 200 at `client`.
async fn wait_ready(client: &Client) {
    eventually(Duration::from_secs(20), || async {
        matches!(
            client.try_request(Method::GET, "/_matrix/client/versions", None, None, Some(Duration::from_secs(2))).await,
            Ok((200, _))
        )
    })
    .await;
}

#[tokio::test]
async fn help_and_version_exit_zero() {
    let cwd = tempfile::tempdir().expect("a temporary directory");
    let help = tidings(["--help"], cwd.path(), None, &[]).await;
    assert_success(&help, "tidings --help");
    let text = stdout(&help);
    assert!(text.contains("serve") && text.contains("create-user"), "--help lists the subcommands:\n{text}");

    let version = tidings(["--version"], cwd.path(), None, &[]).await;
    assert_success(&version, "tidings --version");
    let text = stdout(&version);
    assert!(text.contains("tidings") && text.chars().any(|c| c.is_ascii_digit()), "--version: {text:?}");

    // It is the version the running server reports.
    let hs = TestServer::start(ServerOptions::default()).await;
    let admin = hs.create_admin("v-admin", "pw-v").await;
    let (status, server) = admin.get("/_tidings/admin/v1/server").await;
    assert_eq!(status, 200, "{server}");
    let reported = server["version"].as_str().unwrap_or_else(|| panic!("no version: {server}"));
    assert!(text.contains(reported), "--version {text:?} vs the admin API's {reported:?}");
}

#[tokio::test]
async fn create_user_while_the_server_runs_can_log_in_at_once() {
    let hs = TestServer::start(ServerOptions::default()).await;
    // The server is busy with its database before and after.
    hs.register("early", "pw-early").await;
    assert_eq!(try_login(&hs.client(), "late", "pw-late").await.0, 403);

    let out = hs.create_user("late", "pw-late", false).await;
    assert_success(&out, "create-user late");
    let session = hs.login("late", "pw-late").await;
    assert_eq!(session.user_id, hs.user_id("late"));
    let (status, body) = session.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!((status, &body["user_id"]), (200, &json!(hs.user_id("late"))), "{body}");
    // The name is taken for registration too.
    let path = format!("/_matrix/client/v3/register/available?username={}", encode_component("late"));
    let (status, body) = hs.client().get(&path).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_USER_IN_USE")), "{body}");
}

#[tokio::test]
async fn create_user_before_the_first_start_creates_the_database() {
    let opts = ServerOptions::default();
    let (dir, config, port) = config_dir(&opts, "");
    let out = tidings(
        [
            OsStr::new("create-user"),
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--user"),
            OsStr::new("first"),
            OsStr::new("--password"),
            OsStr::new("pw-first"),
        ],
        dir.path(),
        None,
        &[],
    )
    .await;
    assert_success(&out, "create-user before serve");
    assert!(dir.path().join("data").is_dir(), "data_dir is created when missing");

    // A server started on that config afterwards knows the account.
    let mut child = spawn_serve(dir.path(), Some(&config), &[]);
    let client = Client::new(format!("http://127.0.0.1:{port}"));
    wait_ready(&client).await;
    client.login("first", "pw-first").await;
    send_signal(child.id().expect("a running child"), "-TERM").await;
    assert!(wait_exit(&mut child).await.success());
}

#[tokio::test]
async fn creating_an_existing_user_fails_with_a_one_line_reason() {
    let hs = TestServer::start(ServerOptions::default()).await;
    assert_success(&hs.create_user("dup", "pw-dup-1", false).await, "the first create-user");
    hs.register("viaapi", "pw-api").await;

    for (localpart, password) in [("dup", "secret-second-pw"), ("viaapi", "secret-other-pw")] {
        let config = hs.config_path();
        let args = [
            OsStr::new("create-user"),
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--user"),
            OsStr::new(localpart),
            OsStr::new("--password"),
            OsStr::new(password),
        ];
        let out = tidings(args, hs.dir(), None, &[]).await;
        assert_failure(&out, &format!("create-user {localpart} again"));
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line of reason on stderr, got {err:?}");
        assert!(lines[0].to_lowercase().contains("exist"), "the reason says the user exists: {err:?}");
        assert!(!err.contains(password) && !stdout(&out).contains(password), "the password is never echoed");
    }
    // The accounts were not overwritten.
    hs.login("dup", "pw-dup-1").await;
    hs.login("viaapi", "pw-api").await;
    assert_eq!(try_login(&hs.client(), "dup", "secret-second-pw").await.0, 403);
}

#[tokio::test]
async fn create_user_refuses_an_invalid_name_or_no_password() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let config = hs.config_path();
    let base = [OsStr::new("create-user"), OsStr::new("--config"), config.as_os_str(), OsStr::new("--user")];

    let bad_name = [&base[..], &[OsStr::new("has space"), OsStr::new("--password"), OsStr::new("pw")]].concat();
    let out = tidings(bad_name, hs.dir(), None, &[]).await;
    assert_failure(&out, "create-user with a space in the name");
    assert!(!stderr(&out).trim().is_empty(), "a reason on stderr");

    let no_password = [&base[..], &[OsStr::new("nopw")]].concat();
    assert_failure(&tidings(no_password, hs.dir(), None, &[]).await, "create-user without a password");
    assert_eq!(try_login(&hs.client(), "nopw", "").await.0, 403);
}

#[tokio::test]
async fn password_file_works_from_stdin_and_from_a_file() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let config = hs.config_path();

    let from_stdin = [
        OsStr::new("create-user"),
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--user"),
        OsStr::new("piped"),
        OsStr::new("--password-file"),
        OsStr::new("-"),
    ];
    let out = tidings(from_stdin, hs.dir(), Some(b"pw-from-stdin"), &[]).await;
    assert_success(&out, "create-user --password-file -");
    hs.login("piped", "pw-from-stdin").await;

    let file = hs.dir().join("password.txt");
    std::fs::write(&file, "pw-from-file").expect("writing the password file");
    let from_file = [
        OsStr::new("create-user"),
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--user"),
        OsStr::new("filed"),
        OsStr::new("--password-file"),
        file.as_os_str(),
    ];
    assert_success(&tidings(from_file, hs.dir(), None, &[]).await, "create-user --password-file PATH");
    hs.login("filed", "pw-from-file").await;
}

#[tokio::test]
async fn an_unknown_config_key_stops_start_up_naming_it() {
    let (_dir, config, _) = config_dir(&ServerOptions::default(), "frobnication_level = 3\n");
    let out = serve_refused(&config).await;
    assert!(stderr(&out).contains("frobnication_level"), "names the key: {}", stderr(&out));

    let opts = ServerOptions::default().with_key("presence", "idle_aftr_ms", "1000");
    let (_dir, config, _) = config_dir(&opts, "");
    let out = serve_refused(&config).await;
    assert!(stderr(&out).contains("idle_aftr_ms"), "names the key in [presence]: {}", stderr(&out));

    let peer = tidings_sytest::Peer::new("peer.test", "http://127.0.0.1:9").with_extra_toml("secret_knob = 1");
    let (_dir, config, _) = config_dir(&ServerOptions::default().with_peer(peer), "");
    let out = serve_refused(&config).await;
    assert!(stderr(&out).contains("secret_knob"), "names the key in a peer table: {}", stderr(&out));

    let opts = ServerOptions::default().with_extra_toml("[nonsense_section]\nx = 1");
    let (_dir, config, _) = config_dir(&opts, "");
    let out = serve_refused(&config).await;
    assert!(stderr(&out).contains("nonsense_section"), "names the unknown table: {}", stderr(&out));
}

#[tokio::test]
async fn a_bad_config_value_stops_start_up_naming_the_key() {
    let (_dir, config, _) = config_dir(&ServerOptions::default(), "max_request_bytes = \"lots\"\n");
    let out = serve_refused(&config).await;
    assert!(stderr(&out).contains("max_request_bytes"), "names the key: {}", stderr(&out));

    let opts = ServerOptions::default().with_key("rate_limits", "login", &toml_string("fast"));
    let (_dir, config, _) = config_dir(&opts, "");
    let out = serve_refused(&config).await;
    assert!(stderr(&out).contains("login"), "names the key: {}", stderr(&out));

    let (dir, config, _) = config_dir(&ServerOptions::default(), "");
    let text = std::fs::read_to_string(&config).expect("reading the config");
    let text = text.replace("registration = \"open\"", "registration = \"sometimes\"");
    std::fs::write(&config, text).expect("rewriting the config");
    let out = serve_refused(&config).await;
    assert!(stderr(&out).contains("registration"), "names the key: {}", stderr(&out));
    drop(dir);
}

#[tokio::test]
async fn a_missing_config_file_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("no-such-config.toml");
    let out = serve_refused(&missing).await;
    assert!(stderr(&out).contains("no-such-config.toml"), "names the file: {}", stderr(&out));

    // A path that cannot be read as a file.
    let directory = dir.path().join("a-directory.toml");
    std::fs::create_dir(&directory).expect("creating a directory");
    let out = serve_refused(&directory).await;
    assert!(stderr(&out).contains("a-directory.toml"), "names the file: {}", stderr(&out));

    // The same through $TIDINGS_CONFIG.
    let also_missing = dir.path().join("from-env-missing.toml");
    let out = tidings(["serve"], dir.path(), None, &[("TIDINGS_CONFIG", also_missing.as_os_str())]).await;
    assert_failure(&out, "serve with $TIDINGS_CONFIG naming a missing file");
    assert!(stderr(&out).contains("from-env-missing.toml"), "names the file: {}", stderr(&out));
}

#[tokio::test]
async fn serve_reads_tidings_config_and_resolves_relative_paths_against_it() {
    let opts = ServerOptions::named("envcfg.test");
    let (dir, config, port) = config_dir(&opts, "");
    let text = std::fs::read_to_string(&config).expect("reading the config");
    let absolute = format!("data_dir = {}", toml_string(&dir.path().join("data").to_string_lossy()));
    assert!(text.contains(&absolute), "the rendered config has the expected data_dir line");
    std::fs::write(&config, text.replace(&absolute, "data_dir = \"./relative-data\"")).expect("rewriting the config");

    // Run from another directory: the data must land next to the config.
    let elsewhere = tempfile::tempdir().expect("a temporary directory");
    let mut child = spawn_serve(elsewhere.path(), None, &[("TIDINGS_CONFIG", config.as_os_str())]);
    let client = Client::new(format!("http://127.0.0.1:{port}"));
    wait_ready(&client).await;

    let session = client.register("envuser", "pw-env").await;
    assert_eq!(session.user_id, "@envuser:envcfg.test", "the server runs with the config from $TIDINGS_CONFIG");
    assert!(dir.path().join("relative-data").is_dir(), "data_dir resolves against the config's directory");
    assert!(!elsewhere.path().join("relative-data").exists(), "not against the working directory");

    send_signal(child.id().expect("a running child"), "-TERM").await;
    let status = wait_exit(&mut child).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
}

#[tokio::test]
async fn sigterm_exits_zero_and_keeps_the_data() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let user = hs.register("stays", "pw-stays").await;
    let status = hs.stop().await.expect("the server was running");
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert!(
        hs.client()
            .try_request(Method::GET, "/_matrix/client/versions", None, None, Some(Duration::from_secs(2)))
            .await
            .is_err(),
        "nothing answers after the exit"
    );
    hs.restart().await;
    let (status, body) = user.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 200, "the token outlives a graceful stop: {body}");
}

#[tokio::test]
async fn sigint_exits_zero() {
    let (dir, config, port) = config_dir(&ServerOptions::default(), "");
    let mut child = spawn_serve(dir.path(), Some(&config), &[]);
    wait_ready(&Client::new(format!("http://127.0.0.1:{port}"))).await;
    send_signal(child.id().expect("a running child"), "-INT").await;
    let status = wait_exit(&mut child).await;
    assert!(status.success(), "SIGINT exits 0, got {status}");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_long_poll_finish() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let admin = hs.create_admin("poll-admin", "pw-poll").await;
    let user = hs.register("poller", "pw-poller").await;
    let first = user.sync(None, 0).await;
    let since = first["next_batch"].as_str().expect("a next_batch").to_owned();

    let path = format!("/_matrix/client/v3/sync?since={}&timeout=4000", encode_component(&since));
    let client = user.client().clone();
    let token = user.access_token.clone();
    let poll = tokio::spawn(async move {
        client.try_request(Method::GET, &path, Some(&token), None, Some(Duration::from_secs(30))).await
    });

    // Wait until the server holds the long poll (its gauge says so), then stop it.
    eventually(Duration::from_secs(10), || async {
        let (status, text) = admin.get("/_tidings/admin/v1/metrics").await;
        let text = text.as_str().unwrap_or_default().to_owned();
        (status == 200 && text.lines().any(|l| l.trim() == "tidings_sync_waiting 1")).then_some(()).ok_or(text)
    })
    .await;
    let status = hs.stop().await.expect("the server was running");
    assert!(status.success(), "SIGTERM exits 0, got {status}");

    let answer = poll.await.expect("the polling task");
    match answer {
        Ok((200, body)) => assert!(body["next_batch"].is_string(), "{body}"),
        Ok((status, body)) => panic!("the in-flight /sync got {status} {body}"),
        Err(e) => panic!("the in-flight /sync was cut off by the shutdown: {e}"),
    }
}
