//! Media through HTTP against the real binary: upload, download on the
//! authenticated and legacy paths, thumbnails, the config, the size cap enforced
//! while streaming, the per-user quota, safe serving headers, and uploads kept
//! across a restart.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};
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

    // HTML is never served inline.
    let up =
        upload(&alice, "/_matrix/client/v1/media/upload", "text/html", b"<script>alert(1)</script>".to_vec()).await;
    assert_eq!(up.status, 200, "{}", up.text());
    let (_, html_id) = mxc_parts(up.json()["content_uri"].as_str().expect("uri"));
    let html =
        hs.client().raw(Method::GET, &format!("/_matrix/media/v3/download/{server}/{html_id}"), &[], Vec::new()).await;
    assert_eq!(html.header("content-disposition"), Some("attachment"));
    let no_thumb = hs
        .client()
        .raw(
            Method::GET,
            &format!("/_matrix/media/v3/thumbnail/{server}/{html_id}?width=32&height=32"),
            &[],
            Vec::new(),
        )
        .await;
    assert_matrix_error(&(no_thumb.status, no_thumb.json()), 400, "M_UNKNOWN");

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

/// A `width` × `height` image in `format`: a red left half and a blue right half.
fn picture(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, _| if x < width / 2 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A PNG whose header declares `width` × `height` but that carries no pixels: what a
/// decompression bomb looks like before it is inflated.
fn declared_png(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        c.extend_from_slice(&body);
        c.extend_from_slice(&crc32(&body).to_be_bytes());
        c
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // A few bytes of deflate (an empty zlib stream): a real bomb would inflate here.
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[tokio::test]
async fn thumbnails_are_scaled_or_cropped_cached_and_bounded() {
    let hs =
        TestServer::start(ServerOptions::default().with_key("media", "max_thumbnail_source_pixels", "1000000")).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bearer = format!("Bearer {}", alice.access_token);
    let up = upload(&alice, "/_matrix/client/v1/media/upload", "image/png", picture(200, 100, ImageFormat::Png)).await;
    assert_eq!(up.status, 200, "{}", up.text());
    let (server, id) = mxc_parts(up.json()["content_uri"].as_str().expect("uri"));
    let thumb = |query: String, authed: bool| {
        let (alice, bearer, server, id) = (&alice, &bearer, &server, &id);
        async move {
            let (path, headers): (String, Vec<(&str, &str)>) = if authed {
                (format!("/_matrix/client/v1/media/thumbnail/{server}/{id}?{query}"), vec![("authorization", bearer)])
            } else {
                (format!("/_matrix/media/v3/thumbnail/{server}/{id}?{query}"), vec![])
            };
            alice.client().raw(Method::GET, &path, &headers, Vec::new()).await
        }
    };
    let decode = |r: &tidings_sytest::RawResponse| {
        assert_eq!(r.status, 200, "{}", r.text());
        image::load_from_memory(&r.body).expect("the thumbnail is an image").to_rgb8()
    };

    // Scale fits inside the box, keeping the aspect ratio (2:1).
    let scaled = thumb("width=64&height=64&method=scale".into(), true).await;
    assert_eq!(scaled.header("content-type"), Some("image/png"));
    let img = decode(&scaled);
    assert_eq!(img.dimensions(), (64, 32));
    assert!(img.get_pixel(2, 16)[0] > 200 && img.get_pixel(61, 16)[2] > 200, "red stays left, blue right");
    // Crop fills the box: the middle 50x50 of the image scaled to 100x50.
    let cropped = decode(&thumb("width=50&height=50&method=crop".into(), false).await);
    assert_eq!(cropped.dimensions(), (50, 50));
    assert!(cropped.get_pixel(2, 25)[0] > 200 && cropped.get_pixel(47, 25)[2] > 200);
    // `method` defaults to scale; a box larger than the image does not upscale it.
    assert_eq!(decode(&thumb("width=800&height=600".into(), true).await).dimensions(), (200, 100));
    // The second request is served from the cache: the same bytes.
    let again = thumb("width=64&height=64&method=scale".into(), true).await;
    assert_eq!(again.body, scaled.body);

    // A JPEG stays a JPEG.
    let up = upload(&alice, "/_matrix/media/v3/upload", "image/jpeg", picture(300, 300, ImageFormat::Jpeg)).await;
    let (_, jpeg_id) = mxc_parts(up.json()["content_uri"].as_str().expect("uri"));
    let jpeg = alice
        .client()
        .raw(
            Method::GET,
            &format!("/_matrix/client/v1/media/thumbnail/{server}/{jpeg_id}?width=96&height=96&method=crop"),
            &[("authorization", &bearer)],
            Vec::new(),
        )
        .await;
    assert_eq!(jpeg.header("content-type"), Some("image/jpeg"));
    assert_eq!(decode(&jpeg).dimensions(), (96, 96));

    // Bad parameters.
    let r = thumb("width=64".into(), true).await;
    assert_matrix_error(&(r.status, r.json()), 400, "M_MISSING_PARAM");
    let r = thumb("width=0&height=10".into(), true).await;
    assert_matrix_error(&(r.status, r.json()), 400, "M_INVALID_PARAM");
    let r = thumb("width=10&height=10&method=stretch".into(), true).await;
    assert_matrix_error(&(r.status, r.json()), 400, "M_INVALID_PARAM");

    // A header that declares 60000x60000 pixels is refused without decoding, and the
    // server still answers.
    let up = upload(&alice, "/_matrix/media/v3/upload", "image/png", declared_png(60_000, 60_000)).await;
    let (_, bomb) = mxc_parts(up.json()["content_uri"].as_str().expect("uri"));
    let r = alice
        .client()
        .raw(Method::GET, &format!("/_matrix/media/v3/thumbnail/{server}/{bomb}?width=32&height=32"), &[], Vec::new())
        .await;
    assert_matrix_error(&(r.status, r.json()), 413, "M_TOO_LARGE");
    assert!(r.text().contains("media.max_thumbnail_source_pixels"), "{}", r.text());
    assert_eq!(decode(&thumb("width=20&height=20".into(), true).await).dimensions(), (20, 10));
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
