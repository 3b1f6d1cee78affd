//! `link-bench`: bytes on the line per presence change over the link and over HTTP
//! in the same run, and the link's handshake bytes.
//!
//! ```text
//! cargo build -p tidings   # or --release; bytes do not depend on the build
//! TIDINGS_BIN=$PWD/target/debug/tidings cargo run -p tidings-sytest --bin link-bench
//! ```
//!
//! Two servers on loopback, `alpha.test` with 50 users and `beta.test` with one
//! watcher accepted to watch all 50. Every byte between them crosses a line emulator
//! (`tidings_sytest::line`), which counts TCP payload per direction exactly: for the
//! link, both servers' link connections (each dials through its own line); for HTTP,
//! each server's peer `url` names a line in front of the other. Setup runs with the
//! lines unlimited; the link's measurements run at 240 B/s and 1 s latency (the
//! seed's line), HTTP's unlimited (its bytes do not depend on the rate). Then 1, 10
//! and 50 users change their status at once (inside one `batch_ms` window), then the
//! same 50 again; each
//! measurement ends when the watcher's list shows every new status and the lines have
//! been quiet for 3 s. Reported: bytes on the line both ways, per change.
//!
//! Handshake, full: the bytes of the first call between two idle servers (nothing to
//! send): the initiator's 50-byte first message and 18-byte key-confirmation ping, the
//! responder's 48-byte answer. Resumed: the lines are cut and restored at once and
//! the bytes of the call that follows are counted the same way: the 25-byte resume
//! message and the ping, nothing back.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tidings_sytest::line::Line;
use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::{Peer, ServerOptions, Session, TestServer, free_port, json};

const PASSWORD: &str = "link-bench-password";
const USERS: usize = 50;
/// The last round repeats 50: on the link, the first push of a user on a connection
/// spells its ID out, later ones refer to it (spec/link.md, the compact form).
const BATCHES: [usize; 4] = [1, 10, 50, 50];
const BATCH_MS: u64 = 500;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Link,
    Http,
}

struct Setup {
    servers: Vec<TestServer>,
    lines: Vec<Line>,
}

impl Setup {
    fn bytes(&self) -> u64 {
        self.lines.iter().map(Line::bytes).sum()
    }

    fn set_rate(&self, rate: u64) {
        for l in &self.lines {
            l.set_rate(rate);
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn start(transport: Transport) -> Setup {
    let names = ["alpha.test", "beta.test"];
    let http = [free_port(), free_port()];
    let link = [free_port(), free_port()];
    let mut lines = Vec::new();
    let mut opts = Vec::new();
    for i in 0..2 {
        let j = 1 - i;
        let target = if transport == Transport::Link { loopback(link[j]) } else { loopback(http[j]) };
        let line = Line::start(target, 0, Duration::from_secs(1)).await;
        let mut peer = Peer::new(
            names[j],
            if transport == Transport::Link {
                format!("http://127.0.0.1:{}", http[j])
            } else {
                format!("http://{}", line.addr())
            },
        );
        let mut o = ServerOptions {
            port: Some(http[i]),
            batch_ms: BATCH_MS,
            short_watchdog_ms: 600_000,
            long_watchdog_ms: 3_600_000,
            offline_after_ms: 3_600_000,
            idle_after_ms: 3_600_000,
            ..ServerOptions::named(names[i])
        };
        if transport == Transport::Link {
            peer = peer.with_extra_toml(&format!("link = \"{}\"", line.addr()));
            o = o.with_extra_toml(&format!("[link]\nlisten = \"127.0.0.1:{}\"\n", link[i]));
        } else {
            // No latency for HTTP: its bytes do not depend on it.
            line.set_rate(0);
        }
        opts.push(o.with_peer(peer));
        lines.push(line);
    }
    let servers = TestServer::start_federation(opts).await;
    Setup { servers, lines }
}

async fn quiet(setup: &Setup, for_: Duration) {
    let mut last = setup.bytes();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = setup.bytes();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= for_ {
            return;
        }
    }
}

async fn statuses_seen(watcher: &Session, msg: &str) -> usize {
    let (_, body) = watcher.get(&list_path(&watcher.user_id)).await;
    body["entries"].as_array().map_or(0, |e| e.iter().filter(|e| e["status_msg"] == json!(msg)).count())
}

/// A call's bytes: initiator → responder, back.
type CallBytes = (u64, u64);

async fn measure(transport: Transport) -> Result<(Vec<(usize, u64)>, Option<(CallBytes, CallBytes)>), String> {
    let setup = start(transport).await;
    let (a, b) = (&setup.servers[0], &setup.servers[1]);
    let handshake = if transport == Transport::Link {
        // Idle servers: the first call carries nothing but the handshake and the ping.
        quiet(&setup, Duration::from_secs(3)).await;
        let call = &setup.lines[0];
        let full = (call.bytes_forward(), call.bytes_back());
        // A cut: alpha (the smaller name dials first) calls again with its ticket.
        let calls = call.calls();
        for l in &setup.lines {
            l.cut();
            l.restore();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while call.calls() == calls {
            if Instant::now() > deadline {
                return Err("no call after the cut".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        quiet(&setup, Duration::from_secs(3)).await;
        if call.head_of_last_call().first() != Some(&0x80) {
            return Err(format!("the call after the cut did not resume: {:?}", call.head_of_last_call()));
        }
        let resumed = (call.bytes_forward() - full.0, call.bytes_back() - full.1);
        Some((full, resumed))
    } else {
        None
    };
    let watcher = b.register("watcher", PASSWORD).await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(a.register(&format!("user{i}"), PASSWORD).await);
    }
    let ids: Vec<String> = users.iter().map(|u| u.user_id.clone()).collect();
    let (status, body) = watcher.post(&list_path(&watcher.user_id), json!({"invite": ids})).await;
    if status != 200 {
        return Err(format!("invite: {status} {body}"));
    }
    for u in &users {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !u.requesters().await.contains(&watcher.user_id) {
            if Instant::now() > deadline {
                return Err(format!("{} never saw the request", u.user_id));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, body) = u.post(&answer_path(&watcher.user_id), json!({"allow": true})).await;
        if status != 200 {
            return Err(format!("answer: {status} {body}"));
        }
    }
    let (status, body) = watcher.put("/_tidings/client/v1/presence/poll", json!({"enabled": true})).await;
    if status != 200 {
        return Err(format!("poll: {status} {body}"));
    }
    for (i, u) in users.iter().enumerate() {
        let _ =
            u.put(&status_path(&u.user_id), json!({"presence": "online", "status_msg": format!("start {i}")})).await;
    }
    quiet(&setup, Duration::from_secs(3)).await;
    if transport == Transport::Link {
        setup.set_rate(240);
    }
    let mut out = Vec::new();
    for (round, &k) in BATCHES.iter().enumerate() {
        let before = setup.bytes();
        let msg = format!("round {round}");
        for u in &users[..k] {
            let _ = u.put(&status_path(&u.user_id), json!({"presence": "online", "status_msg": msg})).await;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while statuses_seen(&watcher, &msg).await < k {
            if Instant::now() > deadline {
                return Err(format!("{transport:?}: batch of {k} did not arrive"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        quiet(&setup, Duration::from_secs(3)).await;
        out.push((k, setup.bytes() - before));
    }
    Ok((out, handshake))
}

fn main() -> ExitCode {
    tidings_sytest::bench::run_against_release("link-bench", || async {
        let link = match measure(Transport::Link).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("link-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        let http = match measure(Transport::Http).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("link-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(((forward, back), (r_forward, r_back))) = link.1 {
            println!(
                "handshake, full (first call, idle): {forward} B initiator→responder, {back} B back, {} B in all",
                forward + back
            );
            println!(
                "handshake, resumed (the call after a cut, idle): {r_forward} B initiator→responder, {r_back} B back, {} B in all",
                r_forward + r_back
            );
        }
        println!("bytes on the line per presence change (both directions):");
        println!("{:>6} {:>12} {:>12} {:>10} {:>10}", "batch", "link total", "http total", "link/chg", "http/chg");
        for ((k, l), (_, h)) in link.0.iter().zip(http.0.iter()) {
            println!("{k:>6} {l:>12} {h:>12} {:>10.1} {:>10.1}", *l as f64 / *k as f64, *h as f64 / *k as f64);
        }
        ExitCode::SUCCESS
    })
}
