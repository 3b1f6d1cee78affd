//! Limits: nothing a client sends grows without a bound, bodies are judged after the
//! token, and every refusal is a JSON Matrix error a client can read.
//!
//! Proves: one presence-list request names at most 100 user IDs (`invite` and `drop`
//! together), beyond that 400 `M_INVALID_PARAM` naming the limit and nothing changes; a
//! list stops at `presence.max_list_entries` with an error naming the key (and the
//! issue's 20,000-row flood is capped, measured); list edits, answers and poll switches
//! have rate limits of their own (`[rate_limits] presence_list`, `presence_answer`,
//! `presence_poll`), per user; a missing or unknown token is 401 whatever the body; an
//! endpoint that reads no body ignores a large one (logout logs out); a client that
//! writes a whole oversized body before reading gets the 413, never a reset; malformed
//! federation, key and admin requests (`/send/%ff`, a wrong method, an unknown path, a
//! bad query) get JSON Matrix errors.

use std::net::SocketAddr;
use std::time::Instant;

use tidings_sytest::paths::{REQUESTS, answer_path, list_path, status_path};
use tidings_sytest::{
    Method, Peer, RawResponse, ServerOptions, Session, TestServer, assert_matrix_error, free_port, json,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const PW: &str = "limits-pw-1";
const POLL: &str = "/_tidings/client/v1/presence/poll";
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A server with `beta.test` as a peer that never answers (invites to its users
/// queue; nothing needs them delivered).
fn opts() -> ServerOptions {
    let dead = format!("http://127.0.0.1:{}", free_port());
    ServerOptions { peers: vec![Peer::new("beta.test", dead)], ..ServerOptions::named("alpha.test") }
}

fn remote_ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("@u{n}:beta.test")).collect()
}

async fn list_len(session: &Session) -> usize {
    let (status, body) = session.get(&list_path(&session.user_id)).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().map_or(0, Vec::len)
}

#[track_caller]
fn assert_json_error(resp: &RawResponse, status: u16, errcode: &str) {
    let body = resp.json();
    assert_eq!((resp.status, body["errcode"].as_str()), (status, Some(errcode)), "body: {}", resp.text());
    assert!(body["error"].is_string(), "{body}");
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(content_type.starts_with("application/json"), "sent as {content_type:?}: {}", resp.text());
}

#[tokio::test]
async fn one_list_request_names_at_most_100_ids() {
    let hs = TestServer::start(opts()).await;
    let alice = hs.register("alice", PW).await;
    let path = list_path(&alice.user_id);

    let answer = alice.post(&path, json!({"invite": remote_ids(0..60), "drop": remote_ids(60..101)})).await;
    assert_matrix_error(&answer, 400, "M_INVALID_PARAM");
    let message = answer.1["error"].as_str().unwrap_or_default();
    assert!(message.contains("100"), "the message names the limit: {message}");
    assert_eq!(list_len(&alice).await, 0, "a refused request changed the list");

    assert_eq!(alice.post(&path, json!({"invite": remote_ids(0..100)})).await, (200, json!({})));
    assert_eq!(list_len(&alice).await, 100);
    assert_eq!(alice.post(&path, json!({"invite": remote_ids(100..150), "drop": remote_ids(0..50)})).await.0, 200);
    assert_eq!(list_len(&alice).await, 100);
}

#[tokio::test]
async fn a_list_stops_at_max_list_entries() {
    let hs = TestServer::start(opts().with_key("presence", "max_list_entries", "5")).await;
    let alice = hs.register("alice", PW).await;
    let path = list_path(&alice.user_id);
    assert_eq!(alice.post(&path, json!({"invite": remote_ids(0..3)})).await, (200, json!({})));
    // Three more would make six: refused whole, before anything changes.
    let answer = alice.post(&path, json!({"invite": remote_ids(3..6)})).await;
    assert!((400..500).contains(&answer.0), "a sixth entry: {answer:?}");
    let message = answer.1["error"].as_str().unwrap_or_default();
    assert!(message.contains("max_list_entries") && message.contains('5'), "names the limit: {message}");
    assert_eq!(list_len(&alice).await, 3, "a refused request changed the list");
    assert_eq!(alice.post(&path, json!({"invite": remote_ids(3..5)})).await, (200, json!({})));
    assert_eq!(list_len(&alice).await, 5);
    let answer = alice.post(&path, json!({"invite": remote_ids(5..6)})).await;
    assert!((400..500).contains(&answer.0), "a sixth entry: {answer:?}");
    // Asking again for someone already listed is no new entry.
    assert_eq!(alice.post(&path, json!({"invite": remote_ids(0..1)})).await, (200, json!({})));
    // Dropping one makes room.
    assert_eq!(alice.post(&path, json!({"drop": remote_ids(0..1), "invite": remote_ids(5..6)})).await.0, 200);
    assert_eq!(list_len(&alice).await, 5);
}

/// The figure: "one user made 20,000 list rows in 1.6 s", re-measured with
/// the default `max_list_entries` (1000) and rate limits off.
#[tokio::test]
async fn twenty_thousand_invites_leave_at_most_the_default_cap() {
    let hs = TestServer::start(opts()).await;
    let alice = hs.register("alice", PW).await;
    let path = list_path(&alice.user_id);
    let started = Instant::now();
    let (mut ok, mut refused) = (0, 0);
    for n in 0..200 {
        let (status, body) = alice.post(&path, json!({"invite": remote_ids(n * 100..(n + 1) * 100)})).await;
        match status {
            200 => ok += 1,
            400..=499 => refused += 1,
            _ => panic!("request {n}: {status} {body}"),
        }
    }
    let elapsed = started.elapsed();
    let rows = list_len(&alice).await;
    eprintln!("limits: 20,000 invites in 200 requests took {elapsed:?}: {ok} accepted, {refused} refused, {rows} rows");
    assert_eq!(rows, 1000);
    assert_eq!(ok, 10);
}

#[tokio::test]
async fn list_edits_answers_and_poll_switches_are_rate_limited_per_user() {
    let rate = "{ per_second = 0.01, burst = 3 }";
    let hs = TestServer::start(
        opts()
            .with_rate_limits(true)
            .with_key("rate_limits", "presence_list", rate)
            .with_key("rate_limits", "presence_answer", rate)
            .with_key("rate_limits", "presence_poll", rate),
    )
    .await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;

    let path = list_path(&alice.user_id);
    for n in 0..3 {
        assert_eq!(alice.post(&path, json!({"invite": remote_ids(n..n + 1)})).await.0, 200, "edit {n}");
    }
    let limited = alice.post(&path, json!({"invite": remote_ids(3..4)})).await;
    assert_matrix_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{}", limited.1);

    // bob asks alice; alice answers (3 times is within the burst, the 4th is not).
    assert_eq!(bob.post(&list_path(&bob.user_id), json!({"invite": [alice.user_id]})).await.0, 200);
    for allow in [false, true, false] {
        assert_eq!(alice.post(&answer_path(&bob.user_id), json!({"allow": allow})).await.0, 200);
    }
    let limited = alice.post(&answer_path(&bob.user_id), json!({"allow": true})).await;
    assert_matrix_error(&limited, 429, "M_LIMIT_EXCEEDED");

    for enabled in [true, false, true] {
        assert_eq!(alice.put(POLL, json!({"enabled": enabled})).await, (200, json!({})));
    }
    assert_matrix_error(&alice.put(POLL, json!({"enabled": false})).await, 429, "M_LIMIT_EXCEEDED");
    // Per user: bob's own buckets are untouched.
    assert_eq!(bob.put(POLL, json!({"enabled": true})).await, (200, json!({})));
    let (status, body) = alice.get(REQUESTS).await;
    assert_eq!(status, 200, "reading is not limited: {body}");
}

#[tokio::test]
async fn a_bad_token_is_401_whatever_the_body() {
    let hs = TestServer::start(ServerOptions { max_request_bytes: Some(4096), ..opts() }).await;
    let carl = hs.register("carl", PW).await;
    let big = json!({"presence": "online", "padding": "x".repeat(10_000)}).to_string();
    let client = hs.client();
    let path = status_path(&carl.user_id);

    let resp = client.raw(Method::PUT, &path, &[JSON], big.clone()).await;
    assert_json_error(&resp, 401, "M_MISSING_TOKEN");
    let resp = client.raw(Method::PUT, &path, &[JSON, ("Authorization", "Bearer nope")], big.clone()).await;
    assert_json_error(&resp, 401, "M_UNKNOWN_TOKEN");
    let list = list_path(&carl.user_id);
    let resp = client.raw(Method::POST, &list, &[JSON, ("Authorization", "Bearer nope")], big.clone()).await;
    assert_json_error(&resp, 401, "M_UNKNOWN_TOKEN");
    // With a good token the body is read, and it is too large.
    let auth = format!("Bearer {}", carl.access_token);
    let resp = client.raw(Method::PUT, &path, &[JSON, ("Authorization", auth.as_str())], big).await;
    assert_json_error(&resp, 413, "M_TOO_LARGE");
}

/// Writes a whole request with a `len`-byte body on a fresh connection, then reads
/// the answer to its end: the status and body, or what went wrong.
async fn write_all_then_read(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    len: usize,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.map_err(|e| format!("writing the head: {e}"))?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).await.map_err(|e| format!("writing the body, {left} bytes left: {e}"))?;
        left -= n;
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(|e| format!("reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| head.to_owned())?;
    Ok((status, body.to_owned()))
}

#[tokio::test]
async fn a_client_that_writes_a_large_body_then_reads_gets_the_answer() {
    let hs = TestServer::start(opts()).await;
    let dora = hs.register("dora", PW).await;
    let path = status_path(&dora.user_id);
    let big = 8 * 1024 * 1024;
    for attempt in 0..4 {
        let got = write_all_then_read(hs.addr(), "PUT", &path, &dora.access_token, big).await;
        let (status, body) = got.unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        assert_eq!(status, 413, "attempt {attempt}: {body}");
        assert!(body.contains("M_TOO_LARGE"), "attempt {attempt}: {body}");
    }
    // Logout reads no body: it logs out, and the client reads its 200.
    let got = write_all_then_read(hs.addr(), "POST", "/_matrix/client/v3/logout", &dora.access_token, big).await;
    let (status, body) = got.unwrap_or_else(|e| panic!("logout: {e}"));
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_matrix_error(&dora.get("/_matrix/client/v3/account/whoami").await, 401, "M_UNKNOWN_TOKEN");
}

/// A request (method, path, headers) and the status and errcode it must get.
type Case<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn malformed_federation_key_and_admin_requests_get_json_errors() {
    let hs = TestServer::start(opts()).await;
    let admin = hs.create_admin("admin", PW).await;
    let client = hs.client();
    let auth = format!("Bearer {}", admin.access_token);
    let admin_h = ("Authorization", auth.as_str());

    let cases: Vec<Case> = vec![
        (Method::PUT, "/_matrix/federation/v1/send/%ff", vec![JSON], 400, "M_INVALID_PARAM"),
        (
            Method::PUT,
            "/_matrix/federation/v1/send/%ff%fe",
            vec![JSON, ("Authorization", "X-Matrix x")],
            400,
            "M_INVALID_PARAM",
        ),
        (Method::GET, "/_matrix/federation/v1/send/t1", vec![], 405, "M_UNRECOGNIZED"),
        (Method::PUT, "/_matrix/federation/v1/send/", vec![JSON], 404, "M_UNRECOGNIZED"),
        (Method::PUT, "/_matrix/federation/v1/send/a/b", vec![JSON], 404, "M_UNRECOGNIZED"),
        (Method::PUT, "/_matrix/federation/v1/send/t2", vec![JSON], 401, "M_UNAUTHORIZED"),
        (Method::POST, "/_matrix/federation/v1/version", vec![JSON], 405, "M_UNRECOGNIZED"),
        (Method::GET, "/_matrix/federation/v1/nothing", vec![], 404, "M_UNRECOGNIZED"),
        (Method::POST, "/_matrix/key/v2/server", vec![JSON], 405, "M_UNRECOGNIZED"),
        (Method::GET, "/_matrix/key/v2/server/%ff", vec![], 404, "M_UNRECOGNIZED"),
        (Method::GET, "/_matrix/key/v2/query/x", vec![], 404, "M_UNRECOGNIZED"),
        (Method::POST, "/_tidings/admin/v1/server", vec![JSON, admin_h], 405, "M_UNRECOGNIZED"),
        (Method::GET, "/_tidings/admin/v1/nothing", vec![admin_h], 404, "M_UNRECOGNIZED"),
        (Method::GET, "/_tidings/admin/v1/users/%ff", vec![admin_h], 404, "M_UNRECOGNIZED"),
        (Method::GET, "/_tidings/admin/v1/users", vec![], 401, "M_MISSING_TOKEN"),
        (Method::DELETE, "/_tidings/admin/v1/federation/peers", vec![admin_h], 405, "M_UNRECOGNIZED"),
    ];
    for (method, path, headers, status, errcode) in cases {
        let body = if method == Method::GET { Vec::new() } else { b"{}".to_vec() };
        let resp = client.raw(method.clone(), path, &headers, body).await;
        assert_json_error(&resp, status, errcode);
        eprintln!("{method} {path}: {status} {errcode}");
    }
    // Queries the endpoints do not read are ignored, even undecodable ones.
    for path in ["/_matrix/key/v2/server?%ff=%fe&&=", "/_tidings/admin/v1/users?limit=%ff"] {
        let resp = client.raw(Method::GET, path, &[admin_h], Vec::new()).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        assert!(resp.json().is_object(), "{path}: {}", resp.text());
    }
}

#[tokio::test]
async fn the_new_rate_limits_are_checked_at_start_up() {
    for key in ["presence_list", "presence_answer", "presence_poll"] {
        let opts = opts().with_key("rate_limits", key, "{ per_second = 0, burst = 1 }");
        let Err(e) = TestServer::try_start(opts).await else { panic!("{key} = 0/s was accepted") };
        assert!(
            e.log.contains(&format!("rate_limits.{key}: per_second must be above 0")),
            "the message names the key: {}",
            e.log
        );
    }
}

#[tokio::test]
async fn a_client_that_expects_100_continue_is_not_asked_for_an_unread_body() {
    let hs = TestServer::start(opts()).await;
    let erin = hs.register("erin", PW).await;
    let mut stream = TcpStream::connect(hs.addr()).await.expect("connect");
    let head = format!(
        "POST /_matrix/client/v3/logout HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 8388608\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        hs.addr(),
        erin.access_token
    );
    stream.write_all(head.as_bytes()).await.expect("writing the head");
    // No body is sent: logout reads none, so the answer comes without a 100 Continue.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("reading the answer");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("{}"), "{text}");
    assert_matrix_error(&erin.get("/_matrix/client/v3/account/whoami").await, 401, "M_UNKNOWN_TOKEN");
}
