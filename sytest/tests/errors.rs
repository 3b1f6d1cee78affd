//! Errors: every rejection, the HTTP framework's own included (bad JSON, a body too
//! large, a missing path, a wrong method, a missing or unknown token), is a JSON body
//! `{"errcode": "M_...", "error": "..."}` with the Matrix code and status of
//! INTERFACE.md; bodies are parsed as JSON whatever their Content-Type; rate limits
//! answer 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`, and turn off with
//! `enabled = false`. After each rejection the server keeps serving.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use tidings_sytest::{
    Method, RawResponse, ServerOptions, Session, TestServer, Value, assert_matrix_error, encode_component, json,
};

const LOGIN: &str = "/_matrix/client/v3/login";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

/// Asserts the shape every error body must have: an object with a string `errcode`
/// starting with `M_`, a string `error`, and no `null` fields.
#[track_caller]
fn assert_error_shape(body: &Value) {
    let fields = body.as_object().unwrap_or_else(|| panic!("an error body must be a JSON object, got {body}"));
    assert!(
        body["errcode"].as_str().is_some_and(|code| code.starts_with("M_")),
        "`errcode` must be a string M_...: {body}"
    );
    assert!(body["error"].is_string(), "`error` must be a string: {body}");
    assert!(fields.values().all(|v| !v.is_null()), "optional fields are left out, never null: {body}");
}

/// Asserts that a raw answer is a Matrix error with this status and code, sent as JSON.
#[track_caller]
fn assert_raw_error(resp: &RawResponse, status: u16, errcode: &str) {
    let body = resp.json();
    assert_eq!((resp.status, body["errcode"].as_str()), (status, Some(errcode)), "body: {}", resp.text());
    assert_error_shape(&body);
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(content_type.starts_with("application/json"), "an error is sent as application/json, got {content_type:?}");
}

/// Asserts that the server still answers `/versions`.
async fn assert_still_serving(hs: &TestServer) {
    let (status, body) = hs.client().get("/_matrix/client/versions").await;
    assert_eq!(status, 200, "the server must keep serving: {body}");
    assert!(body["versions"].is_array(), "{body}");
}

fn presence_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", encode_component(user_id))
}

/// `PUT` the caller's presence with exactly these headers (plus the token) and bytes.
async fn put_presence_raw(session: &Session, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    let auth = format!("Bearer {}", session.access_token);
    let mut all = vec![("Authorization", auth.as_str())];
    all.extend_from_slice(headers);
    session.client().raw(Method::PUT, &presence_path(&session.user_id), &all, body.to_vec()).await
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test]
async fn a_body_that_is_not_json_is_not_json() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let ann = hs.register("ann", "pw-ann").await;
    for body in [&b"this is not json"[..], b"{\"presence\": \"online\"", b"{\"presence\": \"online\"} trailing"] {
        let resp = put_presence_raw(&ann, &[JSON], body).await;
        assert_raw_error(&resp, 400, "M_NOT_JSON");
    }
    let resp = hs.client().raw(Method::POST, LOGIN, &[JSON], b"<login/>".to_vec()).await;
    assert_raw_error(&resp, 400, "M_NOT_JSON");
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn json_of_the_wrong_types_is_bad_json() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let bob = hs.register("bob", "pw-bob").await;
    for body in [json!({"presence": 5}), json!({"presence": "online", "status_msg": 7}), json!({"presence": null})] {
        let resp = put_presence_raw(&bob, &[JSON], body.to_string().as_bytes()).await;
        assert_raw_error(&resp, 400, "M_BAD_JSON");
    }
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 12}, "password": []});
    assert_matrix_error(&hs.client().post(LOGIN, login).await, 400, "M_BAD_JSON");
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn a_json_array_body_is_bad_json() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let cy = hs.register("cy", "pw-cy").await;
    let resp = put_presence_raw(&cy, &[JSON], br#"["online"]"#).await;
    assert_raw_error(&resp, 400, "M_BAD_JSON");
    let resp = hs.client().raw(Method::POST, LOGIN, &[JSON], br#"[{"type": "m.login.password"}]"#.to_vec()).await;
    assert_raw_error(&resp, 400, "M_BAD_JSON");
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn an_unknown_presence_value_is_invalid_param() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let dee = hs.register("dee", "pw-dee").await;
    let resp = put_presence_raw(&dee, &[JSON], br#"{"presence": "sleepy"}"#).await;
    assert_raw_error(&resp, 400, "M_INVALID_PARAM");
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn json_is_parsed_whatever_the_content_type() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let eli = hs.register("eli", "pw-eli").await;
    let cases: [&[(&str, &str)]; 3] =
        [&[("Content-Type", "text/plain")], &[("Content-Type", "application/x-www-form-urlencoded")], &[]];
    for headers in cases {
        let resp = put_presence_raw(&eli, headers, br#"{"presence": "unavailable", "status_msg": "typed"}"#).await;
        assert_eq!((resp.status, resp.json()), (200, json!({})), "headers {headers:?}: {}", resp.text());
    }
    let (status, body) = eli.get(&presence_path(&eli.user_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["presence"], &body["status_msg"]), (&json!("unavailable"), &json!("typed")), "{body}");

    let login =
        br#"{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "eli"}, "password": "pw-eli"}"#;
    let resp = hs.client().raw(Method::POST, LOGIN, &[("Content-Type", "text/plain")], login.to_vec()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.json()["access_token"].is_string(), "{}", resp.text());
}

#[tokio::test]
async fn a_request_without_a_token_is_missing_token() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let client = hs.client();
    assert_matrix_error(&client.get(WHOAMI).await, 401, "M_MISSING_TOKEN");
    let resp = client.raw(Method::GET, "/_matrix/client/v3/sync", &[], Vec::new()).await;
    assert_raw_error(&resp, 401, "M_MISSING_TOKEN");
    let resp =
        client.raw(Method::PUT, &presence_path(&hs.user_id("x")), &[JSON], br#"{"presence": "online"}"#.to_vec()).await;
    assert_raw_error(&resp, 401, "M_MISSING_TOKEN");
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn an_unknown_token_is_unknown_token_in_header_and_query() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let fin = hs.register("fin", "pw-fin").await;
    let client = hs.client();

    let resp = client.raw(Method::GET, WHOAMI, &[("Authorization", "Bearer not-a-real-token")], Vec::new()).await;
    assert_raw_error(&resp, 401, "M_UNKNOWN_TOKEN");
    let resp = client.raw(Method::GET, &format!("{WHOAMI}?access_token=not-a-real-token"), &[], Vec::new()).await;
    assert_raw_error(&resp, 401, "M_UNKNOWN_TOKEN");

    // The query parameter is really read: a valid token there works.
    let path = format!("{WHOAMI}?access_token={}", encode_component(&fin.access_token));
    let resp = client.raw(Method::GET, &path, &[], Vec::new()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["user_id"], json!(fin.user_id));
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn a_body_over_max_request_bytes_is_too_large() {
    let hs = TestServer::start(ServerOptions { max_request_bytes: Some(4096), ..ServerOptions::default() }).await;
    let gil = hs.register("gil", "pw-gil").await;

    // Unknown fields are ignored, so padding makes a body of any size.
    let small = json!({"presence": "online", "padding": "s".repeat(3000)}).to_string();
    let resp = put_presence_raw(&gil, &[JSON], small.as_bytes()).await;
    assert_eq!((resp.status, resp.json()), (200, json!({})), "a body under the limit is fine: {}", resp.text());

    let big = json!({"presence": "online", "padding": "b".repeat(5000)}).to_string();
    let resp = put_presence_raw(&gil, &[JSON], big.as_bytes()).await;
    assert_raw_error(&resp, 413, "M_TOO_LARGE");

    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "gil"}, "password": "p".repeat(8000)});
    let resp = hs.client().raw(Method::POST, LOGIN, &[JSON], login.to_string().into_bytes()).await;
    assert_raw_error(&resp, 413, "M_TOO_LARGE");
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn a_large_body_is_ignored_where_no_body_is_read() {
    let hs = TestServer::start(ServerOptions { max_request_bytes: Some(4096), ..ServerOptions::default() }).await;
    let ida = hs.register("ida", "pw-ida").await;
    let auth = format!("Bearer {}", ida.access_token);
    let resp = hs
        .client()
        .raw(Method::POST, "/_matrix/client/v3/logout", &[JSON, ("authorization", auth.as_str())], vec![b'x'; 10_000])
        .await;
    assert_eq!((resp.status, resp.json()), (200, json!({})), "logout reads no body: {}", resp.text());
    // The logout happened: the token is dead.
    let (status, body) = ida.get("/_matrix/client/v3/account/whoami").await;
    assert_matrix_error(&(status, body), 401, "M_UNKNOWN_TOKEN");
    assert_still_serving(&hs).await;
}

/// Sends one HTTP/1.1 request with a chunked body over a plain TCP connection and
/// returns the status and the (de-chunked) body.
async fn chunked_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connecting to the server");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer (and close) before reading everything; that is fine.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

/// Decodes a chunked HTTP body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test]
async fn a_chunked_body_over_max_request_bytes_is_too_large() {
    let hs = TestServer::start(ServerOptions { max_request_bytes: Some(4096), ..ServerOptions::default() }).await;
    let hal = hs.register("hal", "pw-hal").await;
    let path = presence_path(&hal.user_id);

    let small = json!({"presence": "online", "padding": "c".repeat(3000)}).to_string();
    let answer = chunked_request(hs.addr(), "PUT", &path, &hal.access_token, small.as_bytes()).await;
    assert_eq!(answer, (200, json!({})), "a chunked body under the limit is fine");

    let big = json!({"presence": "online", "padding": "c".repeat(6000)}).to_string();
    let answer = chunked_request(hs.addr(), "PUT", &path, &hal.access_token, big.as_bytes()).await;
    assert_matrix_error(&answer, 413, "M_TOO_LARGE");
    assert_error_shape(&answer.1);
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn an_unknown_path_is_unrecognized() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let ida = hs.register("ida", "pw-ida").await;
    let client = hs.client();
    for path in ["/_matrix/client/v3/no/such/endpoint", "/nothing-here", "/_matrix/client/v9/login"] {
        let resp = client.raw(Method::GET, path, &[], Vec::new()).await;
        assert_raw_error(&resp, 404, "M_UNRECOGNIZED");
    }
    let auth = format!("Bearer {}", ida.access_token);
    let resp =
        client.raw(Method::GET, "/_matrix/client/v3/not-an-endpoint", &[("Authorization", &auth)], Vec::new()).await;
    assert_raw_error(&resp, 404, "M_UNRECOGNIZED");
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_is_unrecognized() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let client = hs.client();
    let cases = [
        (Method::DELETE, LOGIN),
        (Method::POST, "/_matrix/client/versions"),
        (Method::PUT, WHOAMI),
        (Method::GET, "/_matrix/client/v3/logout"),
    ];
    for (method, path) in cases {
        let resp = client.raw(method.clone(), path, &[JSON], b"{}".to_vec()).await;
        assert_raw_error(&resp, 405, "M_UNRECOGNIZED");
    }
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn a_bad_since_token_is_a_bad_request() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let jan = hs.register("jan", "pw-jan").await;
    for since in ["not-a-token", "s_-1_x", "%%%"] {
        let (status, body) = jan.sync_with(&[("since", since), ("timeout", "0")]).await;
        assert_eq!(status, 400, "since={since:?}: {body}");
        assert_error_shape(&body);
    }
    assert_still_serving(&hs).await;
}

// ----- web browser clients (Matrix spec, client-server API, "Web Browser Clients") -----

/// Endpoints a browser client calls, with the method of the real request.
const BROWSER_ENDPOINTS: [(&str, &str); 4] = [
    ("POST", LOGIN),
    ("GET", "/_matrix/client/versions"),
    ("GET", "/_matrix/client/v3/sync"),
    ("PUT", "/_matrix/client/v3/presence/%40someone%3Ahs.test/status"),
];

#[tokio::test]
async fn options_preflight_is_answered_on_every_endpoint() {
    // "Servers MUST expect that clients will approach them with OPTIONS requests ...
    // All endpoints in this specification support the OPTIONS method."
    let hs = TestServer::start(ServerOptions::default()).await;
    for (method, path) in BROWSER_ENDPOINTS {
        let headers = [
            ("Origin", "http://web-client.example"),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", "authorization, content-type"),
        ];
        let resp = hs.client().raw(Method::OPTIONS, path, &headers, Vec::new()).await;
        assert!((200..300).contains(&resp.status), "OPTIONS {path}: {} {}", resp.status, resp.text());
        let origin = resp.header("access-control-allow-origin");
        assert!(origin.is_some(), "OPTIONS {path} without Access-Control-Allow-Origin: {:?}", resp.headers);
    }
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn responses_carry_cors_headers() {
    // "When a client approaches the server with a request, the server should respond
    // with the CORS headers for that route", recommended `Access-Control-Allow-Origin: *`.
    let hs = TestServer::start(ServerOptions::default()).await;
    let origin = [("Origin", "http://web-client.example")];
    let ok = hs.client().raw(Method::GET, "/_matrix/client/versions", &origin, Vec::new()).await;
    let error = hs.client().raw(Method::GET, WHOAMI, &origin, Vec::new()).await;
    for resp in [&ok, &error] {
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"), "{} {:?}", resp.status, resp.headers);
    }
}

// ----- rate limits -----

/// Options with rate limiting on and `login` and `presence` limited to `burst` actions
/// then one per ten seconds.
fn tiny_rates(enabled: bool, burst: u32) -> ServerOptions {
    let rate = format!("{{ per_second = 0.1, burst = {burst} }}");
    ServerOptions::default().with_rate_limits(enabled).with_key("rate_limits", "login", &rate).with_key(
        "rate_limits",
        "presence",
        &rate,
    )
}

fn login_body(user: &str, password: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
}

/// Asserts a 429 `M_LIMIT_EXCEEDED` with an integer `retry_after_ms` in (0, max_ms].
#[track_caller]
fn assert_limited(answer: &(u16, Value), max_ms: u64) {
    assert_matrix_error(answer, 429, "M_LIMIT_EXCEEDED");
    assert_error_shape(&answer.1);
    let retry = answer.1["retry_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("`retry_after_ms` must be a non-negative integer: {}", answer.1));
    assert!(retry > 0 && retry <= max_ms, "retry_after_ms {retry} not in (0, {max_ms}]: {}", answer.1);
}

#[tokio::test]
async fn logins_over_the_limit_are_limit_exceeded() {
    let hs = TestServer::start(tiny_rates(true, 2)).await;
    hs.register("kai", "pw-kai").await;
    let client = hs.client();
    for _ in 0..2 {
        let (status, body) = client.post(LOGIN, login_body("kai", "pw-kai")).await;
        assert_eq!(status, 200, "within the burst: {body}");
    }
    assert_limited(&client.post(LOGIN, login_body("kai", "pw-kai")).await, 10_000);
    assert_still_serving(&hs).await;
}

#[tokio::test]
async fn failed_logins_count_against_the_login_limit() {
    let hs = TestServer::start(tiny_rates(true, 2)).await;
    hs.register("lee", "pw-lee").await;
    let client = hs.client();
    for _ in 0..2 {
        assert_matrix_error(&client.post(LOGIN, login_body("lee", "guess")).await, 403, "M_FORBIDDEN");
    }
    // Password guessing is throttled: even the right password must wait now.
    assert_limited(&client.post(LOGIN, login_body("lee", "pw-lee")).await, 10_000);
}

#[tokio::test]
async fn presence_writes_over_the_limit_are_limit_exceeded_per_user() {
    let hs = TestServer::start(tiny_rates(true, 2)).await;
    let mo = hs.register("mo", "pw-mo").await;
    let ned = hs.register("ned", "pw-ned").await;
    let path = presence_path(&mo.user_id);
    for state in ["online", "unavailable"] {
        let (status, body) = mo.put(&path, json!({"presence": state})).await;
        assert_eq!((status, &body), (200, &json!({})), "within the burst: {body}");
    }
    assert_limited(&mo.put(&path, json!({"presence": "online"})).await, 10_000);

    // The limit is per user: another user still writes.
    let (status, body) = ned.put(&presence_path(&ned.user_id), json!({"presence": "online"})).await;
    assert_eq!((status, &body), (200, &json!({})), "{body}");
    // Reading is not limited.
    let (status, body) = mo.get(&path).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn registrations_over_the_limit_are_limit_exceeded() {
    let opts = ServerOptions::default().with_rate_limits(true).with_key(
        "rate_limits",
        "register",
        "{ per_second = 0.1, burst = 2 }",
    );
    let hs = TestServer::start(opts).await;
    hs.register("reg1", "pw-reg").await;
    hs.register("reg2", "pw-reg").await;
    let body = json!({"username": "reg3", "password": "pw-reg", "auth": {"type": "m.login.dummy"}});
    assert_limited(&hs.client().post("/_matrix/client/v3/register", body).await, 10_000);
    // The refused registration created nothing.
    let (status, body) = hs.client().get("/_matrix/client/v3/register/available?username=reg3").await;
    assert_eq!((status, &body), (200, &json!({"available": true})), "{body}");
}

#[tokio::test]
async fn disabled_rate_limits_never_limit() {
    let hs = TestServer::start(tiny_rates(false, 1)).await;
    let ora = hs.register("ora", "pw-ora").await;
    let client = hs.client();
    for i in 0..6 {
        let (status, body) = client.post(LOGIN, login_body("ora", "pw-ora")).await;
        assert_eq!(status, 200, "login {i} with limits off: {body}");
    }
    let path = presence_path(&ora.user_id);
    for i in 0..6 {
        let state = if i % 2 == 0 { "online" } else { "unavailable" };
        let (status, body) = ora.put(&path, json!({"presence": state})).await;
        assert_eq!((status, &body), (200, &json!({})), "presence write {i} with limits off: {body}");
    }
}
