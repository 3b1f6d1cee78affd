//! The link between two real `tidings serve` processes joined only by emulated
//! 2,400-baud lines (240 bytes/s, 1 s latency each way; `tidings_sytest::line`).
//! Each server dials the other through its own line, as two sites with a modem each.
//!
//! Proves: a presence change reaches the remote watcher within `batch_ms` + 3 s, over
//! the link only (the admin API says `transport: link`, and the line's byte counters
//! match the servers' `link_bytes_*` exactly, and their `bytes_by_class` add up to
//! them); with 200 KB of bulk queued, a presence change still arrives within 2 s of
//! its batch, also one made while the previous change's ack is on its way, and the
//! bulk crosses as partial results beta applies as they arrive; cuts in the middle of
//! transfers lose
//! and repeat nothing (every change arrives, once, in order), and so does a `kill -9`
//! of the sender while its transaction is on the line; a stranger, garbage and
//! a replayed handshake get nothing from the listener and leave the link as it was;
//! in sessions mode the line hangs up when idle and calls again for the next change.
//! Resumption: the call after a cut opens with a 25-byte resume message instead of
//! the full handshake and loses or repeats nothing; a replayed resume message gets
//! nothing and costs nothing; after a `kill -9` the next call is a full handshake.

use std::net::SocketAddr;
use std::time::Duration;

use tidings_sytest::line::Line;
use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::{Peer, ServerOptions, Session, Syncer, TestServer, Value, eventually, free_port, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const PW: &str = "link-test-pw-1";
/// The seed's line.
const RATE: u64 = 240;
const LATENCY: Duration = Duration::from_secs(1);
const BATCH_MS: u64 = 500;

/// Two servers, each dialing the other through its own emulated line.
struct Pair {
    servers: Vec<TestServer>,
    /// alpha dials beta through this one.
    ab: Line,
    /// beta dials alpha through this one.
    ba: Line,
    link_ports: [u16; 2],
}

impl Pair {
    /// Start the pair on fresh ports; the ports are fixed before either server
    /// starts (each needs the other's), so a clash with a parallel test starts it all
    /// again on new ones (at most three times).
    async fn start(link_extra: &str) -> Pair {
        let mut attempt = 1;
        loop {
            let (opts, ab, ba, link_ports) = Self::plan(link_extra).await;
            match tokio::spawn(TestServer::start_federation(opts)).await {
                Ok(servers) => return Pair { servers, ab, ba, link_ports },
                Err(e) if attempt < 3 => {
                    eprintln!("link pair did not start (attempt {attempt}): {e}; trying new ports");
                    attempt += 1;
                }
                Err(e) => panic!("the link pair did not start: {e}"),
            }
        }
    }

    async fn plan(link_extra: &str) -> (Vec<ServerOptions>, Line, Line, [u16; 2]) {
        let names = ["alpha.test", "beta.test"];
        let http = [free_port(), free_port()];
        let link_ports = [free_port(), free_port()];
        let ab = Line::start(loopback(link_ports[1]), RATE, LATENCY).await;
        let ba = Line::start(loopback(link_ports[0]), RATE, LATENCY).await;
        let lines = [ab.addr(), ba.addr()];
        let opts = (0..2)
            .map(|i| {
                let j = 1 - i;
                ServerOptions {
                    port: Some(http[i]),
                    batch_ms: BATCH_MS,
                    short_watchdog_ms: 60_000,
                    long_watchdog_ms: 3_600_000,
                    offline_after_ms: 120_000,
                    ..ServerOptions::named(names[i])
                }
                .with_peer(
                    Peer::new(names[j], format!("http://127.0.0.1:{}", http[j]))
                        .with_extra_toml(&format!("link = \"{}\"", lines[i])),
                )
                .with_extra_toml(&format!("[link]\nlisten = \"127.0.0.1:{}\"\n{link_extra}", link_ports[i]))
            })
            .collect();
        (opts, ab, ba, link_ports)
    }

    /// Bytes alpha put on the lines towards beta, and beta towards alpha.
    fn line_bytes(&self) -> (u64, u64) {
        (self.ab.bytes_forward() + self.ba.bytes_back(), self.ba.bytes_forward() + self.ab.bytes_back())
    }

    fn cut(&self) {
        self.ab.cut();
        self.ba.cut();
    }

    fn restore(&self) {
        self.ab.restore();
        self.ba.restore();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn peer(admin: &Session, server_name: &str) -> Value {
    admin.federation_peer(server_name).await
}

fn num(entry: &Value, field: &str) -> u64 {
    entry[field].as_u64().unwrap_or_else(|| panic!("`{field}` is not an integer: {entry}"))
}

async fn put_status(session: &Session, msg: &str) {
    let got = session.put(&status_path(&session.user_id), json!({"presence": "online", "status_msg": msg})).await;
    assert_eq!(got, (200, json!({})), "PUT status {msg:?}");
}

/// Every `m.presence` status text about `user_id` in a `/sync` answer, in order.
fn statuses(sync: &Value, user_id: &str) -> Vec<String> {
    sync["presence"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["sender"] == json!(user_id))
                .filter_map(|e| e["content"]["status_msg"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until nothing waits for beta at alpha and the lines were quiet for 3 s:
/// a change is then the only thing in flight (one transaction per lane is in flight
/// at a time, so a change queued behind another waits for its ack, one round trip).
async fn quiet(pair: &Pair, admin_a: &Session) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (pair.line_bytes(), Instant::now());
    loop {
        let queued = num(&peer(admin_a, "beta.test").await, "queue_len");
        let now = pair.line_bytes();
        if now != last.0 {
            last = (now, Instant::now());
        }
        if queued == 0 && last.1.elapsed() >= Duration::from_secs(3) {
            return;
        }
        assert!(Instant::now() < deadline, "the link never fell quiet: {queued} queued, {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// bob (on beta) watches alice (on alpha): invite and answer cross the link.
async fn watch(bob: &Session, alice: &Session) {
    let got = bob.post(&list_path(&bob.user_id), json!({"invite": [alice.user_id]})).await;
    assert_eq!(got, (200, json!({})));
    eventually(Duration::from_secs(30), || async {
        let got = alice.requesters().await;
        if got.contains(&bob.user_id) { Ok(()) } else { Err(got) }
    })
    .await;
    let got = alice.post(&answer_path(&bob.user_id), json!({"allow": true})).await;
    assert_eq!(got, (200, json!({})));
    eventually(Duration::from_secs(30), || async {
        let (_, body) = bob.get(&list_path(&bob.user_id)).await;
        let accepted = body["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["user_id"] == json!(alice.user_id) && e["subscription"] == "accepted"));
        if accepted { Ok(()) } else { Err(body) }
    })
    .await;
}

/// Syncs until `user_id`'s status text is `msg`; every status seen on the way.
async fn until_status(stream: &mut Syncer, user_id: &str, msg: &str, deadline: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let end = Instant::now() + deadline;
    loop {
        assert!(Instant::now() < end, "no status {msg:?} of {user_id} within {deadline:?}; saw {seen:?}");
        let sync = stream.next(2_000).await;
        let got = statuses(&sync, user_id);
        let done = got.iter().any(|s| s == msg);
        seen.extend(got);
        if done {
            return seen;
        }
    }
}

/// alice on alpha, watched by bob on beta (consent crossed the link), bob's sync
/// stream past the start, and alpha's admin.
struct Sites {
    admin_a: Session,
    alice: Session,
    stream: Syncer,
}

async fn sites(pair: &Pair) -> Sites {
    let admin_a = pair.servers[0].create_admin("admin", PW).await;
    let alice = pair.servers[0].register("alice", PW).await;
    let bob = pair.servers[1].register("bob", PW).await;
    watch(&bob, &alice).await;
    let mut stream = bob.syncer();
    stream.next(0).await;
    Sites { admin_a, alice, stream }
}

#[tokio::test]
async fn presence_crosses_a_2400_baud_line_within_batch_plus_3_s() {
    let pair = Pair::start("").await;
    let Sites { admin_a, alice, mut stream, .. } = sites(&pair).await;
    let admin_b = pair.servers[1].create_admin("admin", PW).await;
    quiet(&pair, &admin_a).await;

    for msg in ["at the station", "out on the ice"] {
        let started = Instant::now();
        put_status(&alice, msg).await;
        until_status(&mut stream, &alice.user_id, msg, Duration::from_secs(20)).await;
        let took = started.elapsed();
        eprintln!("a change on an idle line: {took:?} from the PUT to beta's /sync");
        assert!(took <= Duration::from_millis(BATCH_MS + 3_000), "the change took {took:?}, more than batch_ms + 3 s");
    }

    // Both changes are acknowledged (the second's ack is a second behind it on the
    // line; a change made while the previous one awaited its ack may have replaced it).
    let pa = eventually(Duration::from_secs(10), || async {
        let pa = peer(&admin_a, "beta.test").await;
        if num(&pa, "queue_len") == 0 && num(&pa, "txns_sent") >= 2 { Ok(pa) } else { Err(pa) }
    })
    .await;
    let pb = peer(&admin_b, "alpha.test").await;
    assert_eq!(pa["transport"], "link", "{pa}");
    assert_eq!(pa["link_state"], "up", "{pa}");
    assert!(pa["link_rtt_ms"].as_u64().is_some_and(|rtt| rtt >= 2_000), "two seconds of latency at least: {pa}");
    // What each server counts is exactly what went on the lines.
    let settled = eventually(Duration::from_secs(10), || async {
        let (pa, pb) = (peer(&admin_a, "beta.test").await, peer(&admin_b, "alpha.test").await);
        let counted = (num(&pa, "link_bytes_sent"), num(&pb, "link_bytes_sent"));
        let received = (num(&pb, "link_bytes_received"), num(&pa, "link_bytes_received"));
        let lines = pair.line_bytes();
        if counted == lines && received == lines { Ok(lines) } else { Err((counted, received, lines)) }
    })
    .await;
    assert!(settled.0 > 0 && settled.1 > 0, "{settled:?} {pb}");
    // The bytes by class add up to the bytes sent (read together: a ping may land
    // between two reads), and alpha's presence and both sides' control were counted.
    let by_class = |entry: &Value| {
        let by = &entry["bytes_by_class"];
        ["control", "presence", "short", "bulk"].map(|c| by[c].as_u64().unwrap_or(u64::MAX))
    };
    let (ca, cb) = eventually(Duration::from_secs(10), || async {
        let (pa, pb) = (peer(&admin_a, "beta.test").await, peer(&admin_b, "alpha.test").await);
        let (ca, cb) = (by_class(&pa), by_class(&pb));
        let adds_up = |c: &[u64; 4], e: &Value| c.iter().sum::<u64>() == num(e, "link_bytes_sent");
        if adds_up(&ca, &pa) && adds_up(&cb, &pb) { Ok((ca, cb)) } else { Err((pa, pb)) }
    })
    .await;
    assert!(ca[0] > 0 && cb[0] > 0, "handshakes and acks are control: {ca:?} {cb:?}");
    assert!(ca[1] > 0, "alpha sent presence: {ca:?}");
}

/// Bulk EDUs queued straight into alpha's outbox while it is stopped: real rows in the
/// real table, carried like any feed EDU (`tidings.feed_*` is the bulk lane). beta
/// drops them as a type it does not know, after they crossed.
fn queue_bulk(data_dir: &std::path::Path, destination: &str, total_bytes: usize) {
    let db = rusqlite::Connection::open(data_dir.join("tidings.sqlite")).expect("open alpha's database");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let words = ["aurora", "sledge", "generator", "ice", "core", "sample", "radio", "weather", "supply", "penguin"];
    let mut queued = 0;
    let mut n = 0;
    while queued < total_bytes {
        let mut summary = String::new();
        while summary.len() < 1_900 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            summary.push_str(words[(seed % 10) as usize]);
            summary.push_str(&format!(" {} ", seed % 100_000));
        }
        let content = json!({"feed_id": "f1", "items": [{"item_id": format!("i{n}"), "summary": summary}]}).to_string();
        queued += content.len();
        n += 1;
        db.execute(
            "INSERT INTO federation_outbox (destination, edu_type, content, created_ts, lane) VALUES (?1, 'tidings.feed_items', ?2, 0, 1)",
            rusqlite::params![destination, content],
        )
        .expect("queue a bulk EDU");
    }
}

#[tokio::test]
async fn presence_overtakes_200_kb_of_bulk() {
    let mut pair = Pair::start("").await;
    let Sites { admin_a, alice, mut stream } = sites(&pair).await;

    pair.servers[0].stop().await;
    queue_bulk(&pair.servers[0].data_dir(), "beta.test", 200_000);
    pair.servers[0].restart().await;
    let queued = num(&peer(&admin_a, "beta.test").await, "queue_len");
    assert!(queued > 50, "the backlog is queued: {queued} EDUs");
    let before = pair.line_bytes().0;
    // The bulk is on the line.
    eventually(Duration::from_secs(60), || async {
        let sent = pair.line_bytes().0 - before;
        if sent > 3_000 { Ok(()) } else { Err(sent) }
    })
    .await;

    // Six changes at different phases of the bulk stream (mid-message, mid-queue, at
    // a pause between two bulk transactions). The second is made while the first
    // one's ack is still on its way back; it replaces that transaction instead of
    // waiting a round trip for the ack (it took 3.0 s before).
    let gaps_ms = [3_000, 3_000, 2_377, 2_754, 3_131, 2_508];
    for (i, gap) in gaps_ms.into_iter().enumerate() {
        // The presence lane is idle (the bulk lane is not: it carries the 200 KB).
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let msg = format!("storm report {i}");
        let started = Instant::now();
        put_status(&alice, &msg).await;
        until_status(&mut stream, &alice.user_id, &msg, Duration::from_secs(30)).await;
        let took = started.elapsed();
        eprintln!("a change behind 200 KB of bulk: {took:?} from the PUT to beta's /sync");
        // The bound: within 2 s of its batch (batch_ms is 0.5 s). Measured
        // 1.73 to 1.82 s from the PUT since bulk gives way to a batch about to close
        // (an idle line: 1.72 s); 1.7 to 2.5 s before, behind the queue the flow
        // control allows; up to 4.1 s before the link paced its writes.
        assert!(
            took <= Duration::from_millis(BATCH_MS + 2_000),
            "behind 200 KB of bulk change {i} took {took:?}, more than batch_ms + 2 s"
        );
    }
    // Partial results: the backlog goes as transactions of about a minute of the line
    // each, which beta applies (and acknowledges) as they arrive, not as one 200 KB
    // transaction applied at the end, a quarter of an hour later.
    eventually(Duration::from_secs(120), || async {
        let pa = peer(&admin_a, "beta.test").await;
        let left = num(&pa, "queue_len");
        assert!(left > 0, "the whole backlog cannot have crossed yet: {pa}");
        if left < queued { Ok(()) } else { Err(pa) }
    })
    .await;
}

#[tokio::test]
async fn cuts_mid_transfer_lose_and_repeat_nothing() {
    let pair = Pair::start("").await;
    let Sites { admin_a, alice, mut stream, .. } = sites(&pair).await;
    quiet(&pair, &admin_a).await;

    let mut all = Vec::new();
    let sent: Vec<String> = (1..=4).map(|i| format!("change {i}")).collect();
    for msg in &sent {
        put_status(&alice, msg).await;
        // The batch closes after 0.5 s; 0.3 s later its message is on the line.
        tokio::time::sleep(Duration::from_millis(BATCH_MS + 300)).await;
        pair.cut();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        pair.restore();
        all.extend(until_status(&mut stream, &alice.user_id, msg, Duration::from_secs(60)).await);
    }
    assert_eq!(all, sent, "every change once, in order");
    assert!(pair.ab.calls() + pair.ba.calls() >= 5, "each cut made a new call");
}

#[tokio::test]
async fn a_change_in_flight_survives_kill_9_of_its_sender() {
    let mut pair = Pair::start("").await;
    let Sites { admin_a, alice, mut stream, .. } = sites(&pair).await;
    quiet(&pair, &admin_a).await;

    put_status(&alice, "before the crash").await;
    // The batch closes after 0.5 s; 0.3 s later its message is on the line.
    tokio::time::sleep(Duration::from_millis(BATCH_MS + 300)).await;
    pair.servers[0].kill9().await;
    pair.servers[0].restart().await;
    let seen = until_status(&mut stream, &alice.user_id, "before the crash", Duration::from_secs(60)).await;
    assert_eq!(seen, ["before the crash"], "delivered once after the restart");
}

/// Reads what a listener answers to `hello`; the bytes before it closed.
async fn answer_to(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect to the link listener");
    s.write_all(hello).await.expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut got)).await.expect("the listener closes");
    got
}

#[tokio::test]
async fn strangers_garbage_and_replays_get_nothing() {
    let pair = Pair::start("").await;
    let Sites { alice, mut stream, .. } = sites(&pair).await;
    let beta_link = loopback(pair.link_ports[1]);

    // Garbage, and a well-formed handshake from a key nobody published.
    assert_eq!(answer_to(beta_link, &[0x42; 50]).await, b"", "garbage gets nothing");
    let stranger = tidings_federation::link::LinkKey::generate();
    let (_, msg1) = tidings_federation::link::noise::Initiator::start(&stranger, &[9u8; 32]).expect("msg1");
    assert_eq!(answer_to(beta_link, &msg1).await, b"", "a stranger gets nothing");

    // A real first message of alpha's: the full handshake of its first call, captured
    // on the line; once another call is up (a change crossed over it), replayed.
    let captured = pair.ab.heads().first().map(|h| h[..FULL_HELLO].to_vec()).expect("alpha's first call");
    assert_eq!(captured[0] & 0x80, 0, "the first call is a full handshake");
    reconnect(&pair).await;
    put_status(&alice, "called again").await;
    until_status(&mut stream, &alice.user_id, "called again", Duration::from_secs(60)).await;
    assert_eq!(answer_to(beta_link, &captured).await, b"", "a replayed handshake gets nothing");

    // The link is as it was: a change still crosses.
    put_status(&alice, "still here").await;
    until_status(&mut stream, &alice.user_id, "still here", Duration::from_secs(20)).await;
}

/// A full handshake's first message.
const FULL_HELLO: usize = 50;
/// A resume message (spec/link.md, "Resumption").
const RESUME: usize = 25;
/// A message with nothing but a `Ping`: the initiator's key confirmation when it has
/// nothing else to send.
const PING: usize = 18;

/// Cut both lines and restore them at once; the head of alpha's next call (it dials
/// first: the smaller name), once it carried at least `RESUME` bytes.
async fn reconnect(pair: &Pair) -> Vec<u8> {
    let before = pair.ab.calls();
    pair.cut();
    pair.restore();
    eventually(Duration::from_secs(60), || async {
        let head = pair.ab.head_of_last_call();
        if pair.ab.calls() > before && head.len() >= RESUME + PING { Ok(head) } else { Err(head.len()) }
    })
    .await
}

/// The line's byte counters `(alpha → beta, beta → alpha)` on alpha's line once they
/// stood still for 3 s.
async fn settled(line: &Line) -> (u64, u64) {
    let mut last = ((line.bytes_forward(), line.bytes_back()), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (line.bytes_forward(), line.bytes_back());
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(3) {
            return now;
        }
    }
}

#[tokio::test]
async fn a_call_after_a_cut_resumes_in_25_bytes_and_a_replayed_resume_gets_nothing() {
    let pair = Pair::start("").await;
    let Sites { admin_a, alice, mut stream, .. } = sites(&pair).await;
    let admin_b = pair.servers[1].create_admin("admin", PW).await;
    quiet(&pair, &admin_a).await;
    let first = pair.ab.heads();
    assert_eq!(first[0][0] & 0x80, 0, "the first call is a full handshake: {:?}", first[0]);

    // Idle servers, a cut: alpha calls again with its ticket. The new call costs the
    // resume message and the key-confirmation ping, and beta answers nothing (where
    // a full handshake is 50 + 18 bytes and 48 back).
    let before = settled(&pair.ab).await;
    let received_before = num(&peer(&admin_b, "alpha.test").await, "link_bytes_received");
    let head = reconnect(&pair).await;
    assert_eq!(head[0], 0x80, "the call after the cut is resumed: {head:?}");
    let after = settled(&pair.ab).await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        ((RESUME + PING) as u64, 0),
        "a resumed call between idle servers: 25 + 18 bytes, nothing back"
    );
    let received = num(&peer(&admin_b, "alpha.test").await, "link_bytes_received") - received_before;
    assert_eq!(received, (RESUME + PING) as u64, "beta counted the same");
    assert_eq!(peer(&admin_a, "beta.test").await["link_state"], "up");

    // Traffic flows over the resumed call, once each, in order; and again after
    // a second resumed call (the ticket was replaced, not lost).
    let mut seen = Vec::new();
    for msg in ["after the cut", "after the second cut"] {
        put_status(&alice, msg).await;
        seen.extend(until_status(&mut stream, &alice.user_id, msg, Duration::from_secs(30)).await);
        if seen.len() == 1 {
            // Once alpha has beta's ack: the call heard beta, so its ticket may be
            // dialed (a call cut before the answer forgets it).
            quiet(&pair, &admin_a).await;
            assert_eq!(reconnect(&pair).await[0], 0x80, "resumed again");
        }
    }
    assert_eq!(seen, ["after the cut", "after the second cut"], "no loss, no repeats");

    // The captured resume message (and the first encrypted message behind it),
    // replayed to beta's listener: no answer, and nothing changes.
    let calls_before = pair.ab.calls() + pair.ba.calls();
    let beta_link = loopback(pair.link_ports[1]);
    assert_eq!(answer_to(beta_link, &head[..RESUME + PING]).await, b"", "a replayed resume gets nothing");
    assert_eq!(answer_to(beta_link, &head[..RESUME]).await, b"", "the resume message alone gets nothing");
    let mut forged = head[..RESUME].to_vec();
    forged[RESUME - 1] ^= 1;
    assert_eq!(answer_to(beta_link, &forged).await, b"", "a forged tag gets nothing");
    put_status(&alice, "still the same call").await;
    let seen = until_status(&mut stream, &alice.user_id, "still the same call", Duration::from_secs(20)).await;
    assert_eq!(seen, ["still the same call"]);
    assert_eq!(pair.ab.calls() + pair.ba.calls(), calls_before, "the replays replaced no call");
    // And the ticket survived them: the next call resumes too.
    quiet(&pair, &admin_a).await;
    assert_eq!(reconnect(&pair).await[0], 0x80, "resumed after the replays");
}

#[tokio::test]
async fn after_kill_9_the_next_call_is_a_full_handshake() {
    let mut pair = Pair::start("").await;
    let Sites { admin_a, alice, mut stream, .. } = sites(&pair).await;
    quiet(&pair, &admin_a).await;
    assert_eq!(reconnect(&pair).await[0], 0x80, "with both up, a cut resumes");

    // The caller restarts: it has no ticket (they live in memory only).
    let calls = pair.ab.calls();
    pair.servers[0].kill9().await;
    pair.servers[0].restart().await;
    put_status(&alice, "after alpha's restart").await;
    until_status(&mut stream, &alice.user_id, "after alpha's restart", Duration::from_secs(60)).await;
    let heads = pair.ab.heads();
    assert!(heads.len() > calls as usize, "alpha called again");
    assert_eq!(heads[calls as usize][0] & 0x80, 0, "its first call is a full handshake: {heads:?}");

    // The answerer restarts: alpha's ticket is refused (beta forgot it), and the call
    // after that is a full handshake; nothing is lost.
    let calls = pair.ab.calls() as usize;
    pair.servers[1].kill9().await;
    pair.servers[1].restart().await;
    let mut stream = pair.servers[1].login("bob", PW).await.syncer();
    stream.next(0).await;
    put_status(&alice, "after beta's restart").await;
    until_status(&mut stream, &alice.user_id, "after beta's restart", Duration::from_secs(60)).await;
    let heads: Vec<u8> = pair.ab.heads()[calls..].iter().map(|h| h[0]).collect();
    assert!(heads.iter().any(|b| b & 0x80 == 0), "a full handshake after beta's restart: {heads:?}");
    if let Some(resumed) = heads.iter().position(|b| *b == 0x80) {
        assert!(heads[resumed + 1..].iter().any(|b| b & 0x80 == 0), "the refused resume was followed by a full one");
    }
}

#[tokio::test]
async fn sessions_mode_hangs_up_when_idle_and_calls_again() {
    let pair = Pair::start(
        "mode = \"sessions\"\nidle_hangup_ms = 2000\ncost_per_minute = 1.5\npresence_max_wait_ms = 1000\nshort_max_wait_ms = 1000\n",
    )
    .await;
    let Sites { admin_a, alice, mut stream, .. } = sites(&pair).await;

    for msg in ["first call", "second call"] {
        // Idle: the line hangs up.
        eventually(Duration::from_secs(30), || async {
            let pa = peer(&admin_a, "beta.test").await;
            if pa["link_state"] == "down" { Ok(()) } else { Err(pa) }
        })
        .await;
        let calls_before = pair.ab.calls() + pair.ba.calls();
        put_status(&alice, msg).await;
        until_status(&mut stream, &alice.user_id, msg, Duration::from_secs(30)).await;
        assert!(pair.ab.calls() + pair.ba.calls() > calls_before, "a new call carried {msg:?}");
        // A call after the first resumes (alpha called: it had the change).
        let head = pair.ab.head_of_last_call();
        assert_eq!(head.first(), Some(&0x80), "the call for {msg:?} resumed: {head:?}");
    }
    let pa = peer(&admin_a, "beta.test").await;
    assert!(num(&pa, "link_connected_ms") > 0, "{pa}");
    assert!(pa["link_cost"].as_f64().is_some_and(|c| c >= 1.5), "each call is billed a minute at least: {pa}");
}

/// Sessions: a presence change waits for a call up to `presence_max_wait_ms` (never
/// less: nothing calls for it earlier), and what changes meanwhile coalesces into the
/// same transaction of the same call: the watcher sees only the newest state.
#[tokio::test]
async fn sessions_mode_holds_presence_for_its_maximum_wait_and_coalesces() {
    const WAIT: Duration = Duration::from_secs(10);
    let pair = Pair::start(&format!(
        "mode = \"sessions\"\nidle_hangup_ms = 2000\npresence_max_wait_ms = {}\nshort_max_wait_ms = 1000\n",
        WAIT.as_millis()
    ))
    .await;
    let Sites { admin_a, alice, mut stream, .. } = sites(&pair).await;
    eventually(Duration::from_secs(30), || async {
        let pa = peer(&admin_a, "beta.test").await;
        if pa["link_state"] == "down" { Ok(()) } else { Err(pa) }
    })
    .await;
    let calls_before = pair.ab.calls() + pair.ba.calls();
    let first_change = Instant::now();
    put_status(&alice, "one").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    put_status(&alice, "two").await;
    let seen = until_status(&mut stream, &alice.user_id, "two", WAIT + Duration::from_secs(20)).await;
    assert!(first_change.elapsed() >= WAIT, "arrived after {:?}, before the maximum wait", first_change.elapsed());
    assert_eq!(seen, ["two"], "the older state was replaced while it waited");
    assert_eq!(pair.ab.calls() + pair.ba.calls(), calls_before + 1, "one call carried both changes");
}
