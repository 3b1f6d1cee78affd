//! Connections cannot pin the server: raw TCP clients against a real `tidings serve`.
//!
//! Proves: a connection that sent half a request head (or nothing) is closed after
//! `request_header_timeout_ms`, not before; an idle keep-alive connection is closed
//! after `keepalive_timeout_ms`, while a long-poll `/sync` waiting longer than both
//! timeouts is answered normally; with `max_connections` silent sockets open the
//! server logs that the bound is hit, a new client waits in the backlog (it is served
//! only after the silent ones time out, which a server without the bound would not
//! need) and is then served; at the bound, idle keep-alive connections are closed at
//! once to make room.

use std::time::Duration;

use tidings_sytest::{Client, ServerOptions, TestServer, eventually};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

const PW: &str = "connections-pw-1";

fn opts(name: &str, header_ms: u64, keepalive_ms: u64) -> ServerOptions {
    ServerOptions::named(name).with_key("", "request_header_timeout_ms", &header_ms.to_string()).with_key(
        "",
        "keepalive_timeout_ms",
        &keepalive_ms.to_string(),
    )
}

/// Reads until the server closes; returns what came and when the close was seen.
/// Panics if the server has not closed within `deadline`.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => panic!("the server did not close the connection within {deadline:?}; got {got:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Instant::now()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole HTTP response with a `content-length` body; returns its text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(n > 0, "the server closed before answering; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_header_timeout() {
    const HEADER_MS: u64 = 500;
    let hs = TestServer::start(opts("slow.test", HEADER_MS, 60_000)).await;

    // Each "not before" bound counts from before the connect: the server's timer
    // starts when it accepts, which may come before `connect` returns here.
    let opened = Instant::now();
    let mut half = TcpStream::connect(hs.addr()).await.expect("connect");
    half.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.expect("write");
    let silent_opened = Instant::now();
    let mut silent = TcpStream::connect(hs.addr()).await.expect("connect");

    let (got, closed) = read_until_closed(&mut half, Duration::from_secs(10)).await;
    let after = closed - opened;
    assert!(after >= Duration::from_millis(HEADER_MS - 50), "closed after {after:?}, before the timeout");
    assert!(got.is_empty(), "an answer to half a head: {:?}", String::from_utf8_lossy(&got));
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(closed - silent_opened >= Duration::from_millis(HEADER_MS - 50));

    // A head trickled in one byte at a time is cut at the same deadline.
    let started = Instant::now();
    let mut trickle = TcpStream::connect(hs.addr()).await.expect("connect");
    let head = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for byte in head {
        if trickle.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), trickle.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => panic!("an answer to a partial head: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    let elapsed = started.elapsed();
    assert!(cut, "a head trickled over {elapsed:?} was not cut");
    assert!(elapsed >= Duration::from_millis(HEADER_MS - 50), "cut after {elapsed:?}");
    assert!(elapsed < Duration::from_millis(HEADER_MS * 4), "cut only after {elapsed:?}");

    // The server serves on.
    let (status, _) = hs.client().get("/_matrix/client/versions").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed_but_a_waiting_sync_is_not() {
    const HEADER_MS: u64 = 500;
    const KEEPALIVE_MS: u64 = 1500;
    const SYNC_MS: u64 = 4000;
    let hs = TestServer::start(opts("idle.test", HEADER_MS, KEEPALIVE_MS)).await;

    // One whole request on a keep-alive connection, answered; then nothing.
    let mut conn = TcpStream::connect(hs.addr()).await.expect("connect");
    conn.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
    let answer = read_response(&mut conn).await;
    let answered = Instant::now();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Kept alive past the header timeout: a second request is still answered.
    tokio::time::sleep(Duration::from_millis(HEADER_MS + 300)).await;
    // The idle time counts from before the second request: the server's keep-alive
    // timer starts when it sent the answer, before it is read here.
    let asked_again = Instant::now();
    conn.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
    let answer = read_response(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "the keep-alive connection was cut early: {answer}");
    assert!(asked_again - answered >= Duration::from_millis(HEADER_MS));
    let (_, closed) = read_until_closed(&mut conn, Duration::from_secs(10)).await;
    let idle = closed - asked_again;
    assert!(idle >= Duration::from_millis(KEEPALIVE_MS - 100), "closed after {idle:?} idle, before keepalive");

    // A long poll longer than both timeouts is answered when its own timeout ends.
    let alice = hs.register("alice", PW).await;
    let first = alice.sync(None, 0).await;
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let started = Instant::now();
    let (status, body) = alice.sync_with(&[("since", &since), ("timeout", &SYNC_MS.to_string())]).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(waited >= Duration::from_millis(SYNC_MS - 200), "the long poll returned after {waited:?}");
}

#[tokio::test]
async fn with_max_connections_silent_sockets_a_new_client_waits_then_is_served() {
    const MAX: usize = 20;
    const HEADER_MS: u64 = 2000;
    let hs = TestServer::start(opts("bound.test", HEADER_MS, 60_000).with_key("", "max_connections", &MAX.to_string()))
        .await;
    let log_before = hs.log().len();

    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..MAX {
        silent.push(TcpStream::connect(hs.addr()).await.expect("connect"));
    }
    // The positive marker: all MAX were accepted and the loop found the bound.
    eventually(Duration::from_secs(10), || async {
        hs.log().get(log_before..).is_some_and(|l| l.contains("max_connections reached"))
    })
    .await;
    let marker = opened.elapsed();
    assert!(
        marker < Duration::from_millis(HEADER_MS),
        "the bound was logged only after {marker:?}; the test cannot tell waiting from timing out"
    );

    // A new client: it waits in the backlog until the silent ones are closed.
    let client = Client::new(hs.base_url());
    let (status, _) = client.get("/_matrix/client/versions").await;
    let served = opened.elapsed();
    assert_eq!(status, 200);
    assert!(
        served >= Duration::from_millis(HEADER_MS - 100),
        "served after {served:?}, before any silent socket could time out: the bound was not enforced"
    );

    // And every silent socket was closed by the server.
    for mut s in silent {
        let (got, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert!(got.is_empty());
    }
}

#[tokio::test]
async fn at_max_connections_idle_keepalive_connections_make_room() {
    const MAX: usize = 5;
    const KEEPALIVE_MS: u64 = 60_000;
    let hs =
        TestServer::start(opts("room.test", 30_000, KEEPALIVE_MS).with_key("", "max_connections", &MAX.to_string()))
            .await;

    // MAX kept-alive connections, each idle after one answered request.
    let mut idle = Vec::new();
    for _ in 0..MAX {
        let mut conn = TcpStream::connect(hs.addr()).await.expect("connect");
        conn.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
        let answer = read_response(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        idle.push(conn);
    }
    // Accepting the last one reached the bound: the others, idle by then, are closed
    // long before keepalive_timeout_ms (the last one was still busy; with room made,
    // it may stay).
    let started = Instant::now();
    for conn in idle.iter_mut().take(MAX - 1) {
        let (got, _) = read_until_closed(conn, Duration::from_secs(10)).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    let (status, _) = Client::new(hs.base_url()).get("/_matrix/client/versions").await;
    assert_eq!(status, 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "a new client waited {took:?} for room");
    assert!(hs.log().contains("max_connections reached"), "the bound was not logged");

    // With room again the pressure ends (it lasts at least 1 s): a kept-alive
    // connection stays open between two requests two seconds apart.
    let mut conn = TcpStream::connect(hs.addr()).await.expect("connect");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        conn.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
        let answer = read_response(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
