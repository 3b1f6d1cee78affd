//! Media through HTTP against the real binary: upload, download on the
//! authenticated and legacy paths, thumbnails, the config, the size cap enforced
//! while streaming, the per-user quota, safe serving headers, and uploads kept
//! across a restart.

use serde_json::json;
use tidings_sytest::{Method, ServerOptions, Session, TestServer, assert_matrix_error};

async fn upload(s: &Session, path: &str, content_type: &str, body: Vec<u8>) -> tidings_sytest::RawResponse {
    let auth = format!("Bearer {}", s.access_token);
    s.client().raw(Method::POST, path, &[("authorization", &auth), ("content-type", content_type)], body).await
}

fn mxc_parts(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("mxc://").unwrap_or_else(|| panic!("not an mxc URI: {uri}"));
    let (server, id) = rest.split_once('/').expect("server/id");
    (server.to_owned(), id.to_owned())
}

#[tokio::test]
async fn media_round_trips_on_both_paths_with_safe_headers_and_survives_a_restart() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;
    let png: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let up = upload(&alice, "/_matrix/media/v3/upload?filename=cat%20pic.png", "image/png", png.clone()).await;
    assert_eq!(up.status, 200, "{}", up.text());
    let uri = up.json()["content_uri"].as_str().expect("content_uri").to_owned();
    let (server, id) = mxc_parts(&uri);
    assert_eq!(server, hs.server_name());

    let bearer = format!("Bearer {}", bob.access_token);
    let authed = format!("/_matrix/client/v1/media/download/{server}/{id}");
    let got = bob.client().raw(Method::GET, &authed, &[("authorization", &bearer)], Vec::new()).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, png, "the same bytes come back");
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("content-disposition"), Some("inline; filename*=utf-8''cat%20pic.png"));
    assert!(got.header("content-security-policy").is_some_and(|c| c.contains("sandbox")));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    let anonymous = hs.client().raw(Method::GET, &authed, &[], Vec::new()).await;
    assert_eq!(anonymous.status, 401, "the v1 path needs a token");

    let legacy = hs
        .client()
        .raw(Method::GET, &format!("/_matrix/media/v3/download/{server}/{id}/other.png"), &[], Vec::new())
        .await;
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.body, png);
    assert_eq!(legacy.header("content-disposition"), Some("inline; filename*=utf-8''other.png"));
    let thumb = bob
        .client()
        .raw(
            Method::GET,
            &format!("/_matrix/client/v1/media/thumbnail/{server}/{id}?width=32&height=32&method=scale"),
            &[("authorization", &bearer)],
            Vec::new(),
        )
        .await;
    assert_eq!((thumb.status, thumb.body.len()), (200, png.len()), "a thumbnail is the image itself (not scaled)");

    // HTML is never served inline.
    let up =
        upload(&alice, "/_matrix/client/v1/media/upload", "text/html", b"<script>alert(1)</script>".to_vec()).await;
    assert_eq!(up.status, 200, "{}", up.text());
    let (_, html_id) = mxc_parts(up.json()["content_uri"].as_str().expect("uri"));
    let html =
        hs.client().raw(Method::GET, &format!("/_matrix/media/v3/download/{server}/{html_id}"), &[], Vec::new()).await;
    assert_eq!(html.header("content-disposition"), Some("attachment"));
    let no_thumb =
        hs.client().raw(Method::GET, &format!("/_matrix/media/v3/thumbnail/{server}/{html_id}"), &[], Vec::new()).await;
    assert_eq!(no_thumb.status, 404);

    let missing = hs.client().get(&format!("/_matrix/media/v3/download/{server}/nothing")).await;
    assert_matrix_error(&missing, 404, "M_NOT_FOUND");
    let elsewhere = hs.client().get(&format!("/_matrix/media/v3/download/other.test/{id}")).await;
    assert_matrix_error(&elsewhere, 404, "M_NOT_FOUND");
    let (status, config) = alice.get("/_matrix/client/v1/media/config").await;
    assert_eq!((status, config), (200, json!({"m.upload.size": 52_428_800})));

    hs.kill9().await;
    hs.restart().await;
    let after =
        hs.client().raw(Method::GET, &format!("/_matrix/media/v3/download/{server}/{id}"), &[], Vec::new()).await;
    assert_eq!((after.status, after.body == png), (200, true), "an acknowledged upload survives kill -9");
}

#[tokio::test]
async fn the_size_cap_and_the_quota_refuse_with_m_too_large() {
    let hs = TestServer::start(ServerOptions::default().with_key("", "max_upload_bytes", "100000").with_key(
        "media",
        "quota_bytes_per_user",
        "150000",
    ))
    .await;
    let alice = hs.register("alice", "alice-pw").await;
    let big = upload(&alice, "/_matrix/media/v3/upload", "application/octet-stream", vec![7u8; 100_001]).await;
    assert_eq!(big.status, 413, "{}", big.text());
    assert_eq!(big.json()["errcode"], "M_TOO_LARGE");
    assert!(big.text().contains("max_upload_bytes"), "{}", big.text());

    // Streamed in chunks without a length: stopped once it passes the cap.
    let status = chunked_upload(&hs, &alice, 30, 10_000).await;
    assert!(status.starts_with("HTTP/1.1 413"), "a chunked upload past the cap: {status}");

    let ok = upload(&alice, "/_matrix/media/v3/upload", "application/octet-stream", vec![1u8; 90_000]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let over = upload(&alice, "/_matrix/media/v3/upload", "application/octet-stream", vec![2u8; 90_000]).await;
    assert_eq!(over.status, 413, "{}", over.text());
    assert!(over.text().contains("media.quota_bytes_per_user"), "{}", over.text());
    let small = upload(&alice, "/_matrix/media/v3/upload", "application/octet-stream", vec![3u8; 50_000]).await;
    assert_eq!(small.status, 200, "what fits in the quota still goes: {}", small.text());
    let bob = hs.register("bob", "bob-pw").await;
    let bobs = upload(&bob, "/_matrix/media/v3/upload", "application/octet-stream", vec![1u8; 90_000]).await;
    assert_eq!(bobs.status, 200, "the quota is per user: {}", bobs.text());
    let anonymous = hs.client().raw(Method::POST, "/_matrix/media/v3/upload", &[], vec![1u8; 10]).await;
    assert_eq!(anonymous.status, 401);
}

/// POST an upload of `chunks` chunks of `size` bytes with `Transfer-Encoding: chunked`
/// (no Content-Length) over a plain socket; the response's status line.
async fn chunked_upload(hs: &TestServer, s: &Session, chunks: usize, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(hs.addr()).await.expect("connect");
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        hs.addr(),
        s.access_token
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'x'; size];
    for _ in 0..chunks {
        let mut frame = format!("{size:x}\r\n").into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if socket.write_all(&frame).await.is_err() {
            break; // the server answered and closed: read what it said
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()
}
