//! The admin API (`/_tidings/admin/v1`): an admin made with the CLI reads the server
//! summary, the user list with admin flags and device counts, the federation peer
//! table (every field of INTERFACE.md, one entry per configured peer) and Prometheus
//! metrics without user IDs. Non-admins get 403 `M_FORBIDDEN`, requests without a token
//! 401; the config's `metrics_token` opens `/metrics` and nothing else.

use tidings_sytest::{
    Client, Method, Peer, ServerOptions, Session, TestServer, Value, assert_matrix_error, eventually, free_port, json,
    toml_string,
};

const SERVER: &str = "/_tidings/admin/v1/server";
const USERS: &str = "/_tidings/admin/v1/users";
const PEERS: &str = "/_tidings/admin/v1/federation/peers";
const METRICS: &str = "/_tidings/admin/v1/metrics";
const ALL: [&str; 4] = [SERVER, USERS, PEERS, METRICS];

/// A metrics token long enough for the config (at least 16 characters).
const METRICS_TOKEN: &str = "scrape-token-0123456789abcdef";

/// `GET path` with an optional bearer token; status, headers' content type and text.
async fn get_text(client: &Client, path: &str, token: Option<&str>) -> (u16, String, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let resp = client.raw(Method::GET, path, &headers, Vec::new()).await;
    (resp.status, resp.header("content-type").unwrap_or("").to_owned(), resp.text())
}

/// `GET path` as `session`, asserting 200; returns the body.
async fn get_ok(session: &Session, path: &str) -> Value {
    let (status, body) = session.get(path).await;
    assert_eq!(status, 200, "GET {path} as {}: {body}", session.user_id);
    body
}

/// The entry of `user_id` in a `/users` answer.
fn user_entry<'a>(users: &'a Value, user_id: &str) -> &'a Value {
    users["users"]
        .as_array()
        .unwrap_or_else(|| panic!("`users` is not an array: {users}"))
        .iter()
        .find(|u| u["user_id"] == json!(user_id))
        .unwrap_or_else(|| panic!("{user_id} is not listed: {users}"))
}

/// Asserts that `text` is Prometheus text exposition: `# HELP`/`# TYPE` comments and
/// `name{labels} value` samples whose value is a number.
#[track_caller]
fn assert_prometheus_text(text: &str) {
    assert!(text.lines().any(|l| l.starts_with("# TYPE ")), "no `# TYPE` line:\n{text}");
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (name, value) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                (&line[..open], line[close + 1..].trim())
            }
            None => line.split_once(' ').map(|(n, v)| (n, v.trim())).unwrap_or_else(|| panic!("no value: {line:?}")),
        };
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let number = value.split_whitespace().next().unwrap_or("");
        assert!(
            number.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&number),
            "sample value is not a number in {line:?}"
        );
    }
}

#[tokio::test]
async fn server_summary_reports_name_version_uptime_and_user_count() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let admin = hs.create_admin("root", "pw-root").await;
    hs.register("ann", "pw-ann").await;
    hs.register("ben", "pw-ben").await;
    let out = hs.create_user("cli-made", "pw-cli", false).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let first = get_ok(&admin, SERVER).await;
    assert_eq!(first["server_name"], json!(hs.server_name()), "{first}");
    assert!(first["version"].as_str().is_some_and(|v| !v.is_empty()), "{first}");
    assert_eq!(first["users"], json!(4), "root, ann, ben and cli-made: {first}");
    let uptime = first["uptime_ms"].as_u64().unwrap_or_else(|| panic!("`uptime_ms` is not a count: {first}"));

    // Uptime grows.
    eventually(std::time::Duration::from_secs(5), || async {
        let now = get_ok(&admin, SERVER).await;
        now["uptime_ms"].as_u64().is_some_and(|u| u > uptime)
    })
    .await;

    hs.register("dot", "pw-dot").await;
    assert_eq!(get_ok(&admin, SERVER).await["users"], json!(5));
}

#[tokio::test]
async fn users_lists_admin_flags_and_device_counts() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let admin = hs.create_admin("boss", "pw-boss").await;
    hs.register("eva", "pw-eva").await;
    let fred_phone = hs.register("fred", "pw-fred").await;
    hs.login("fred", "pw-fred").await;
    let out = hs.create_user("gia", "pw-gia", false).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let users = get_ok(&admin, USERS).await;
    assert_eq!(users["users"].as_array().map(Vec::len), Some(4), "{users}");
    let expected = [("boss", true, 1), ("eva", false, 1), ("fred", false, 2), ("gia", false, 0)];
    for (localpart, is_admin, devices) in expected {
        let entry = user_entry(&users, &hs.user_id(localpart));
        assert_eq!(entry["admin"], json!(is_admin), "{localpart}: {entry}");
        assert_eq!(entry["devices"], json!(devices), "{localpart}: {entry}");
    }

    // Logging a device out removes it from the count.
    let (status, body) = fred_phone.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let users = get_ok(&admin, USERS).await;
    assert_eq!(user_entry(&users, &hs.user_id("fred"))["devices"], json!(1), "{users}");
}

#[tokio::test]
async fn federation_peers_lists_each_configured_peer_with_every_field() {
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let opts = ServerOptions::default()
        .with_peer(Peer::new("peer-one.test", peer_url.as_str()))
        .with_peer(Peer::new("peer-two.test", format!("http://127.0.0.1:{}", free_port())));
    let hs = TestServer::start(opts).await;
    let admin = hs.create_admin("ops", "pw-ops").await;

    let body = get_ok(&admin, PEERS).await;
    let peers = body["peers"].as_array().unwrap_or_else(|| panic!("`peers` is not an array: {body}"));
    let mut names: Vec<&str> = peers.iter().filter_map(|p| p["server_name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["peer-one.test", "peer-two.test"], "one entry per configured peer: {body}");

    for peer in peers {
        let fields = peer.as_object().unwrap_or_else(|| panic!("a peer is an object: {peer}"));
        for ts in ["last_received_ts", "short_watchdog_due_ts", "long_watchdog_due_ts"] {
            let value = fields.get(ts).unwrap_or_else(|| panic!("`{ts}` missing: {peer}"));
            assert!(value.is_null() || value.is_u64(), "`{ts}` is Unix ms or null: {peer}");
        }
        for count in ["queue_len", "txns_sent", "txns_received", "bytes_sent", "bytes_received"] {
            let value = fields.get(count).unwrap_or_else(|| panic!("`{count}` missing: {peer}"));
            assert!(value.is_u64(), "`{count}` is a count: {peer}");
        }
        // Nothing was ever exchanged and nobody subscribes either way: no traffic, no
        // timers, nothing queued.
        for never in ["last_received_ts", "short_watchdog_due_ts", "long_watchdog_due_ts"] {
            assert_eq!(fields[never], Value::Null, "`{never}` with no traffic and no subscription: {peer}");
        }
        for zero in ["queue_len", "txns_sent", "txns_received", "bytes_received"] {
            assert_eq!(fields[zero], json!(0), "`{zero}` with no traffic: {peer}");
        }
    }
}

#[tokio::test]
async fn federation_peers_is_empty_without_peers() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let admin = hs.create_admin("solo", "pw-solo").await;
    assert_eq!(get_ok(&admin, PEERS).await, json!({"peers": []}));
}

#[tokio::test]
async fn metrics_are_prometheus_text_without_user_ids() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let admin = hs.create_admin("metricsroot", "pw-root").await;
    let watcher = hs.register("zebulonwatcher", "pw-z").await;
    let watched = hs.register("quetzalwatched", "pw-q").await;
    // Some presence activity, so per-user state exists that must not leak into labels.
    let path = format!("/_tidings/client/v1/presence/list/{}", tidings_sytest::encode_component(&watcher.user_id));
    let (status, body) = watcher.post(&path, json!({"invite": [watched.user_id]})).await;
    assert_eq!(status, 200, "{body}");
    let status_path =
        format!("/_matrix/client/v3/presence/{}/status", tidings_sytest::encode_component(&watched.user_id));
    let (status, body) = watched.put(&status_path, json!({"presence": "online"})).await;
    assert_eq!(status, 200, "{body}");

    let (status, content_type, text) = get_text(&hs.client(), METRICS, Some(&admin.access_token)).await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/plain"), "Prometheus text is text/plain, got {content_type:?}");
    assert_prometheus_text(&text);
    let users_sample = text
        .lines()
        .find_map(|l| l.strip_prefix("tidings_users "))
        .unwrap_or_else(|| panic!("no unlabelled tidings_users sample:\n{text}"));
    let summary = get_ok(&admin, SERVER).await;
    assert_eq!(users_sample.trim().parse::<u64>().ok(), summary["users"].as_u64(), "tidings_users vs {summary}");
    for secret in ["zebulonwatcher", "quetzalwatched", "metricsroot"] {
        assert!(!text.contains(secret), "metrics mention {secret:?}:\n{text}");
    }
}

#[tokio::test]
async fn a_non_admin_is_forbidden_everywhere() {
    let hs = TestServer::start(ServerOptions::default()).await;
    hs.create_admin("chief", "pw-chief").await;
    let user = hs.register("pleb", "pw-pleb").await;
    for path in ALL {
        assert_matrix_error(&user.get(path).await, 403, "M_FORBIDDEN");
    }
}

#[tokio::test]
async fn no_token_or_an_unknown_token_is_unauthorized() {
    let hs = TestServer::start(ServerOptions::default()).await;
    hs.create_admin("warden", "pw-warden").await;
    let client = hs.client();
    for path in ALL {
        assert_matrix_error(&client.get(path).await, 401, "M_MISSING_TOKEN");
        let answer = client.request(Method::GET, path, Some("no-such-token-at-all"), None).await;
        assert_matrix_error(&answer, 401, "M_UNKNOWN_TOKEN");
    }
}

#[tokio::test]
async fn metrics_token_reads_metrics_and_nothing_else() {
    let opts = ServerOptions::default().with_key("", "metrics_token", &toml_string(METRICS_TOKEN));
    let hs = TestServer::start(opts).await;
    let admin = hs.create_admin("keeper", "pw-keeper").await;
    let client = hs.client();

    let (status, _, text) = get_text(&client, METRICS, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert_prometheus_text(&text);
    assert!(text.contains("tidings_users"), "{text}");
    // The admin token still works for metrics too.
    let (status, _, text) = get_text(&client, METRICS, Some(&admin.access_token)).await;
    assert_eq!(status, 200, "{text}");

    for path in [SERVER, USERS, PEERS, "/_matrix/client/v3/account/whoami"] {
        let (status, body) = client.request(Method::GET, path, Some(METRICS_TOKEN), None).await;
        assert!(status == 401 || status == 403, "the metrics token must not open {path}: {status} {body}");
        assert!(body["errcode"].is_string() && body["error"].is_string(), "{body}");
    }
    let wrong = client.request(Method::GET, METRICS, Some("scrape-token-0123456789abcdeX"), None).await;
    assert_matrix_error(&wrong, 401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn a_short_metrics_token_stops_start_up_naming_the_key() {
    let opts = ServerOptions::default().with_key("", "metrics_token", &toml_string("short"));
    let err = TestServer::try_start(opts).await.expect_err("a metrics_token under 16 characters must be refused");
    assert!(err.status.is_some_and(|s| !s.success()), "it exits with a failure: {err}");
    assert!(err.log.contains("metrics_token"), "the message names the key: {err}");
}
