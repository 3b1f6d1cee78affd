//! Federation between real `tidings serve` processes on loopback, with short timers.
//!
//! Proves, over HTTP only: consent crosses servers (an invite shows up as a request on
//! the target's server, `allow`, `deny` and `drop` travel back and forth); a presence
//! change reaches the remote watcher's `/sync` within `batch_ms` plus a margin; twenty
//! changes within one batch window leave as one transaction carrying only the newest
//! state; idle subscribed peers exchange reminders on the short watchdog period while
//! steady traffic keeps the short timers from firing; a `kill -9`'d peer's users turn
//! `unknown` after about 2 × `short_watchdog_ms` and come back after a restart; a
//! change still queued when its server is killed is delivered after the restart; a
//! user on a third server whom nobody accepted sees nothing and is sent no presence
//! (only the refusal of a request made from there); an explicit `PUT /presence/poll`
//! subscribes like a syncing client does, and stopping it stops the pushes.
//!
//! Where a test asserts that something was not sent, it first waits for a marker
//! (an invite or answer queued after the thing that must not happen) to arrive: a
//! batch timer is never extended, so anything queued before the marker has arrived
//! by then.
//!
//! Counts and timers are read from `GET /_tidings/admin/v1/federation/peers`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::{ServerOptions, Session, Syncer, TestServer, Value, assert_matrix_error, eventually, json};
use tokio::time::Instant;

const PW: &str = "federation-pw-1";
const PEERS: &str = "/_tidings/admin/v1/federation/peers";
/// `offline_after_ms` of every server here: long enough that nobody goes offline by
/// themselves during a test, so one `/sync` keeps a watcher "polling" throughout.
const OFFLINE_AFTER_MS: u64 = 120_000;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Options for one server of a federation with the given batch window and watchdogs.
fn opts(name: &str, batch_ms: u64, short_watchdog_ms: u64, long_watchdog_ms: u64) -> ServerOptions {
    ServerOptions {
        batch_ms,
        short_watchdog_ms,
        long_watchdog_ms,
        offline_after_ms: OFFLINE_AFTER_MS,
        ..ServerOptions::named(name)
    }
}

/// Options with the server's default watchdogs (60 s / 1 h: no reminders during a test).
fn quiet_opts(name: &str, batch_ms: u64) -> ServerOptions {
    opts(name, batch_ms, 60_000, 3_600_000)
}

/// `watcher` asks to watch `target_id`; asserts 200 `{}`.
async fn invite(watcher: &Session, target_id: &str) {
    let got = watcher.post(&list_path(&watcher.user_id), json!({"invite": [target_id]})).await;
    assert_eq!(got, (200, json!({})), "{} inviting {target_id}", watcher.user_id);
}

/// `watcher` stops watching `target_id`; asserts 200 `{}`.
async fn drop_watch(watcher: &Session, target_id: &str) {
    let got = watcher.post(&list_path(&watcher.user_id), json!({"drop": [target_id]})).await;
    assert_eq!(got, (200, json!({})), "{} dropping {target_id}", watcher.user_id);
}

/// `target` answers `watcher_id`'s request; asserts 200 `{}`.
async fn answer(target: &Session, watcher_id: &str, allow: bool) {
    let got = target.post(&answer_path(watcher_id), json!({"allow": allow})).await;
    assert_eq!(got, (200, json!({})), "{} answering {watcher_id} with allow={allow}", target.user_id);
}

/// Waits until `session` has a request from `watcher_id`.
async fn wait_request(session: &Session, watcher_id: &str, deadline: Duration) {
    eventually(deadline, || async {
        let got = session.requesters().await;
        if got.iter().any(|w| w == watcher_id) { Ok(()) } else { Err(got) }
    })
    .await;
}

/// The entry for `user_id` in `session`'s own list, if any.
async fn entry(session: &Session, user_id: &str) -> Option<Value> {
    let (status, body) = session.get(&list_path(&session.user_id)).await;
    assert_eq!(status, 200, "GET own list of {}: {body}", session.user_id);
    body["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no `entries` array: {body}"))
        .iter()
        .find(|e| e["user_id"] == json!(user_id))
        .cloned()
}

/// Waits until `session`'s list entry for `user_id` satisfies `check`; returns it.
async fn wait_entry(
    session: &Session,
    user_id: &str,
    deadline: Duration,
    check: impl Fn(&Value) -> bool + Copy,
) -> Value {
    eventually(deadline, || async move {
        match entry(session, user_id).await {
            Some(e) if check(&e) => Ok(e),
            other => Err(other),
        }
    })
    .await
}

/// `session` puts its own presence and status text; asserts 200 `{}`.
async fn put_status(session: &Session, presence: &str, msg: &str) {
    let got = session.put(&status_path(&session.user_id), json!({"presence": presence, "status_msg": msg})).await;
    assert_eq!(got, (200, json!({})), "PUT status {presence} {msg:?} of {}", session.user_id);
}

/// The last `m.presence` content about `user_id` in a `/sync` answer.
fn presence_in(sync: &Value, user_id: &str) -> Option<Value> {
    sync["presence"]["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["sender"] == json!(user_id) && e["type"] == json!("m.presence"))
        .map(|e| e["content"].clone())
}

/// Whether a presence content is a known state with this presence and status text.
fn is_state(content: &Value, presence: &str, msg: &str) -> bool {
    content["presence"] == json!(presence)
        && content["status_msg"] == json!(msg)
        && content.get("tidings.unknown").is_none()
}

/// Syncs `stream` until `user_id`'s presence is `presence` with status `msg`.
async fn sync_until_state(stream: &mut Syncer, user_id: &str, presence: &str, msg: &str, deadline: Duration) -> Value {
    stream.until(deadline, |sync| presence_in(sync, user_id).filter(|c| is_state(c, presence, msg))).await
}

/// `server_name`'s entry in `admin`'s federation peers.
async fn peer(admin: &Session, server_name: &str) -> Value {
    let (status, body) = admin.get(PEERS).await;
    assert_eq!(status, 200, "GET {PEERS}: {body}");
    body["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no `peers` array: {body}"))
        .iter()
        .find(|p| p["server_name"] == json!(server_name))
        .cloned()
        .unwrap_or_else(|| panic!("{server_name} is not among the peers: {body}"))
}

/// An integer field of a peer entry.
fn num(entry: &Value, field: &str) -> u64 {
    entry[field].as_u64().unwrap_or_else(|| panic!("`{field}` is not an integer: {entry}"))
}

/// Waits until `field` of `server_name` at `admin` stops changing for `quiet`; returns it.
async fn settled(admin: &Session, server_name: &str, field: &str, quiet: Duration) -> u64 {
    let mut last = num(&peer(admin, server_name).await, field);
    loop {
        tokio::time::sleep(quiet).await;
        let now = num(&peer(admin, server_name).await, field);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// `watcher` (on another server) asks to watch `target`, who sees the request and
/// allows it; waits until the watcher's list says `accepted`.
async fn accept_across(watcher: &Session, target: &Session) {
    invite(watcher, &target.user_id).await;
    wait_request(target, &watcher.user_id, Duration::from_secs(10)).await;
    answer(target, &watcher.user_id, true).await;
    wait_entry(watcher, &target.user_id, Duration::from_secs(10), |e| e["subscription"] == json!("accepted")).await;
}

/// Asserts that the federation timers of a peer entry are off.
#[track_caller]
fn assert_timers_off(entry: &Value) {
    assert!(
        entry["short_watchdog_due_ts"].is_null() && entry["long_watchdog_due_ts"].is_null(),
        "no subscription either way, yet timers run: {entry}"
    );
}

#[tokio::test]
async fn consent_crosses_servers() {
    let servers = TestServer::start_federation(vec![quiet_opts("alpha.test", 200), quiet_opts("beta.test", 200)]).await;
    let (a, b) = (&servers[0], &servers[1]);
    let admin_a = a.create_admin("admin", PW).await;
    let admin_b = b.create_admin("admin", PW).await;
    let alice = a.register("alice", PW).await;
    let carol = a.register("carol", PW).await;
    let bob = b.register("bob", PW).await;

    // The invite travels: bob's server shows alice's request, in the list and in /sync.
    invite(&alice, &bob.user_id).await;
    let pending = entry(&alice, &bob.user_id).await.expect("bob is on alice's list at once");
    assert_eq!(pending["subscription"], json!("pending"), "{pending}");
    assert_eq!(pending["presence"], json!("unknown"), "{pending}");
    wait_request(&bob, &alice.user_id, Duration::from_secs(10)).await;
    let sync = bob.sync(None, 0).await;
    let in_sync: Vec<&Value> = sync["tidings.presence_requests"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no `tidings.presence_requests.events` in bob's initial sync: {sync}"))
        .iter()
        .filter(|r| r["user_id"] == json!(alice.user_id))
        .collect();
    assert_eq!(in_sync.len(), 1, "alice's request in bob's initial sync: {sync}");
    assert!(in_sync[0]["ts"].as_u64().is_some_and(|ts| ts > 1_600_000_000_000), "{sync}");
    // Nothing is accepted yet: no subscription either way, no timers.
    assert_timers_off(&peer(&admin_a, "beta.test").await);
    assert_timers_off(&peer(&admin_b, "alpha.test").await);

    // allow travels back.
    answer(&bob, &alice.user_id, true).await;
    let accepted =
        wait_entry(&alice, &bob.user_id, Duration::from_secs(10), |e| e["subscription"] == json!("accepted")).await;
    assert_eq!(accepted["user_id"], json!(bob.user_id), "{accepted}");
    assert!(!bob.requesters().await.contains(&alice.user_id), "an answered request is still listed");

    // deny travels back.
    invite(&carol, &bob.user_id).await;
    wait_request(&bob, &carol.user_id, Duration::from_secs(10)).await;
    answer(&bob, &carol.user_id, false).await;
    let denied =
        wait_entry(&carol, &bob.user_id, Duration::from_secs(10), |e| e["subscription"] == json!("denied")).await;
    assert_eq!(denied["presence"], json!("unknown"), "{denied}");
    assert!(denied.get("status_msg").is_none(), "{denied}");
    let (status, body) = carol.get(&status_path(&bob.user_id)).await;
    assert_matrix_error(&(status, body), 403, "M_FORBIDDEN");

    // allow: false revokes an accepted watcher, across servers too.
    answer(&bob, &alice.user_id, false).await;
    wait_entry(&alice, &bob.user_id, Duration::from_secs(10), |e| e["subscription"] == json!("denied")).await;
    // Asked again and accepted again.
    invite(&alice, &bob.user_id).await;
    wait_request(&bob, &alice.user_id, Duration::from_secs(10)).await;
    answer(&bob, &alice.user_id, true).await;
    wait_entry(&alice, &bob.user_id, Duration::from_secs(10), |e| e["subscription"] == json!("accepted")).await;

    // drop travels: the edge goes away on bob's server, so a new invite is a new
    // request there (had the drop not arrived, the old acceptance would still stand
    // and the invite would change nothing).
    drop_watch(&alice, &bob.user_id).await;
    assert!(entry(&alice, &bob.user_id).await.is_none(), "bob is still on alice's list after the drop");
    invite(&alice, &bob.user_id).await;
    wait_request(&bob, &alice.user_id, Duration::from_secs(10)).await;
    let again = entry(&alice, &bob.user_id).await.expect("bob on alice's list");
    assert_eq!(again["subscription"], json!("pending"), "{again}");
}

#[tokio::test]
async fn presence_reaches_the_remote_watcher_within_the_batch_window() {
    const BATCH_MS: u64 = 500;
    let servers =
        TestServer::start_federation(vec![quiet_opts("alpha.test", BATCH_MS), quiet_opts("beta.test", BATCH_MS)]).await;
    let (a, b) = (&servers[0], &servers[1]);
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    put_status(&alice, "online", "first").await;
    accept_across(&bob, &alice).await;

    // bob syncs (so his server subscribes) and gets alice's current state.
    let mut stream = bob.syncer();
    let first = sync_until_state(&mut stream, &alice.user_id, "online", "first", Duration::from_secs(10)).await;
    assert_eq!(first["currently_active"], json!(true), "{first}");
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_eq!((&listed["presence"], &listed["status_msg"]), (&json!("online"), &json!("first")), "{listed}");

    for (presence, msg) in [("unavailable", "second"), ("online", "third"), ("offline", "fourth")] {
        let started = Instant::now();
        put_status(&alice, presence, msg).await;
        let seen = sync_until_state(&mut stream, &alice.user_id, presence, msg, Duration::from_secs(10)).await;
        let took = ms(started.elapsed());
        assert!(
            took < BATCH_MS + 1500,
            "alice's change to {presence} reached bob's /sync after {took} ms (batch_ms {BATCH_MS}): {seen}"
        );
        let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
        assert_eq!(listed["subscription"], json!("accepted"), "{listed}");
        assert_eq!((&listed["presence"], &listed["status_msg"]), (&json!(presence), &json!(msg)), "{listed}");
    }
}

#[tokio::test]
async fn twenty_changes_in_one_batch_window_leave_as_one_transaction() {
    // Long enough that twenty committed PUTs of a debug build on a loaded machine fit
    // in half of it.
    const BATCH_MS: u64 = 3000;
    let servers =
        TestServer::start_federation(vec![quiet_opts("alpha.test", BATCH_MS), quiet_opts("beta.test", 200)]).await;
    let (a, b) = (&servers[0], &servers[1]);
    let admin_a = a.create_admin("admin", PW).await;
    let admin_b = b.create_admin("admin", PW).await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    put_status(&alice, "online", "start").await;
    accept_across(&bob, &alice).await;
    let mut stream = bob.syncer();
    sync_until_state(&mut stream, &alice.user_id, "online", "start", Duration::from_secs(15)).await;

    // Let the subscription's traffic end (the window of the answer must be closed).
    let sent_before = settled(&admin_a, "beta.test", "txns_sent", Duration::from_millis(BATCH_MS + 300)).await;
    let received_before = num(&peer(&admin_b, "alpha.test").await, "txns_received");

    let started = Instant::now();
    for i in 1..=20 {
        let presence = if i % 2 == 0 { "online" } else { "unavailable" };
        put_status(&alice, presence, &format!("change {i}")).await;
    }
    let put_time = ms(started.elapsed());
    assert!(put_time < BATCH_MS / 2, "the 20 PUTs took {put_time} ms, too long for one {BATCH_MS} ms window");

    let mut seen_msgs: Vec<String> = Vec::new();
    stream
        .until(Duration::from_secs(10), |sync| {
            let content = presence_in(sync, &alice.user_id)?;
            seen_msgs.push(content["status_msg"].as_str().unwrap_or_default().to_owned());
            is_state(&content, "online", "change 20").then_some(())
        })
        .await;
    assert_eq!(seen_msgs, vec!["change 20".to_owned()], "bob saw states older than the newest");

    // The acknowledgement is counted when the answer is back: wait for it, then make
    // sure nothing else follows for another window.
    let sent = eventually(Duration::from_secs(5), || async {
        let n = num(&peer(&admin_a, "beta.test").await, "txns_sent");
        if n > sent_before { Ok(n) } else { Err(n) }
    })
    .await;
    assert_eq!(sent - sent_before, 1, "twenty changes in one window left as {} transactions", sent - sent_before);
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_eq!((&listed["presence"], &listed["status_msg"]), (&json!("online"), &json!("change 20")), "{listed}");
    // Let another batch window pass (the timer under test: nothing of the twenty may
    // still be held), then send a marker change. Once bob sees it, every transaction
    // alpha formed before it has been received, so the counts are final.
    tokio::time::sleep(Duration::from_millis(BATCH_MS + 500)).await;
    put_status(&alice, "online", "marker").await;
    sync_until_state(&mut stream, &alice.user_id, "online", "marker", Duration::from_secs(10)).await;
    let received = num(&peer(&admin_b, "alpha.test").await, "txns_received");
    assert_eq!(
        received - received_before,
        2,
        "beta received {} transactions for the twenty changes and the marker",
        received - received_before
    );
    let sent_after = eventually(Duration::from_secs(5), || async {
        let n = num(&peer(&admin_a, "beta.test").await, "txns_sent");
        if n >= sent_before + 2 { Ok(n) } else { Err(n) }
    })
    .await;
    assert_eq!(sent_after - sent_before, 2, "more transactions followed the batch (the marker is one)");
}

/// Two servers with these timers, alice on the first watched by bob on the second,
/// who has synced and seen alice's state `online` / `status`.
async fn watched_pair(
    batch_ms: u64,
    short_ms: u64,
    long_ms: u64,
    status: &str,
) -> (Vec<TestServer>, Session, Session, Syncer) {
    let servers = TestServer::start_federation(vec![
        opts("alpha.test", batch_ms, short_ms, long_ms),
        opts("beta.test", batch_ms, short_ms, long_ms),
    ])
    .await;
    let alice = servers[0].register("alice", PW).await;
    let bob = servers[1].register("bob", PW).await;
    put_status(&alice, "online", status).await;
    accept_across(&bob, &alice).await;
    let mut stream = bob.syncer();
    sync_until_state(&mut stream, &alice.user_id, "online", status, Duration::from_secs(10)).await;
    (servers, alice, bob, stream)
}

#[tokio::test]
async fn idle_peers_exchange_reminders_on_the_short_period() {
    const BATCH_MS: u64 = 200;
    const SHORT_MS: u64 = 1000;
    const LONG_MS: u64 = 8000;
    const WINDOW_MS: u64 = 6000;
    let (servers, alice, bob, _stream) = watched_pair(BATCH_MS, SHORT_MS, LONG_MS, "idle").await;
    let admin_a = servers[0].create_admin("admin", PW).await;
    let admin_b = servers[1].create_admin("admin", PW).await;

    // A subscription exists both ways: alpha pushes to beta, beta asked alpha.
    let a_before = peer(&admin_a, "beta.test").await;
    let b_before = peer(&admin_b, "alpha.test").await;
    for (who, e) in [("alpha", &a_before), ("beta", &b_before)] {
        let now = now_ms();
        let short = num(e, "short_watchdog_due_ts");
        let long = num(e, "long_watchdog_due_ts");
        assert!(short + 300 >= now && short <= now + SHORT_MS + 300, "{who}'s short timer (now {now}): {e}");
        assert!(long + 300 >= now && long <= now + LONG_MS + 300, "{who}'s long timer (now {now}): {e}");
    }

    tokio::time::sleep(Duration::from_millis(WINDOW_MS)).await;
    let a_after = peer(&admin_a, "beta.test").await;
    let b_after = peer(&admin_b, "alpha.test").await;
    let da = num(&a_after, "txns_sent") - num(&a_before, "txns_sent");
    let db = num(&b_after, "txns_sent") - num(&b_before, "txns_sent");
    // A reminder at least every short period (plus the batch window and the timer
    // tick), from one side or the other; never more than one per period per side.
    let at_least = WINDOW_MS / (SHORT_MS + BATCH_MS + 400);
    let at_most = WINDOW_MS / SHORT_MS + 1;
    assert!(da + db >= at_least, "only {da} + {db} transactions in {WINDOW_MS} ms of idle (short {SHORT_MS} ms)");
    assert!(da <= at_most && db <= at_most, "{da} and {db} transactions in {WINDOW_MS} ms (short {SHORT_MS} ms)");
    assert!(
        num(&a_after, "txns_received") > num(&a_before, "txns_received")
            || num(&b_after, "txns_received") > num(&b_before, "txns_received"),
        "no traffic at all: {a_after} {b_after}"
    );
    // Nothing went stale: the reminders keep what bob knows of alice alive.
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_eq!((&listed["presence"], &listed["status_msg"]), (&json!("online"), &json!("idle")), "{listed}");
    for (who, e) in [("alpha", &a_after), ("beta", &b_after)] {
        let now = now_ms();
        let short = num(e, "short_watchdog_due_ts");
        assert!(short + 300 >= now && short <= now + SHORT_MS + 300, "{who}'s short timer (now {now}): {e}");
    }
}

#[tokio::test]
async fn steady_traffic_leaves_only_the_long_reminders() {
    const BATCH_MS: u64 = 200;
    const SHORT_MS: u64 = 1000;
    const LONG_MS: u64 = 8000;
    const EVERY_MS: u64 = 400;
    const CHANGES: u64 = 20;
    let (servers, alice, bob, mut stream) = watched_pair(BATCH_MS, SHORT_MS, LONG_MS, "steady 0").await;
    let admin_a = servers[0].create_admin("admin", PW).await;
    let admin_b = servers[1].create_admin("admin", PW).await;

    let a_before = peer(&admin_a, "beta.test").await;
    let b_before = peer(&admin_b, "alpha.test").await;
    let started = Instant::now();
    let mut b_short_dues = Vec::new();
    let mut a_short_dues = Vec::new();
    for i in 1..=CHANGES {
        let presence = if i % 2 == 0 { "online" } else { "unavailable" };
        put_status(&alice, presence, &format!("steady {i}")).await;
        tokio::time::sleep_until(started + Duration::from_millis(EVERY_MS * i)).await;
        let now = now_ms();
        let b = peer(&admin_b, "alpha.test").await;
        let a = peer(&admin_a, "beta.test").await;
        // The short timers never run out: each transaction (and its 2xx) resets them.
        for (who, e) in [("beta", &b), ("alpha", &a)] {
            let due = num(e, "short_watchdog_due_ts");
            assert!(due + 150 >= now, "{who}'s short timer ran out under steady traffic (now {now}, change {i}): {e}");
        }
        b_short_dues.push(num(&b, "short_watchdog_due_ts"));
        a_short_dues.push(num(&a, "short_watchdog_due_ts"));
    }
    let window = ms(started.elapsed());
    sync_until_state(&mut stream, &alice.user_id, "online", &format!("steady {CHANGES}"), Duration::from_secs(5)).await;
    // Every transaction either side sent has been acknowledged: the counts are final.
    let (a_after, b_after) = eventually(Duration::from_secs(5), || async {
        let a = peer(&admin_a, "beta.test").await;
        let b = peer(&admin_b, "alpha.test").await;
        let a_acked = num(&a, "txns_sent") - num(&a_before, "txns_sent");
        let b_got = num(&b, "txns_received") - num(&b_before, "txns_received");
        let b_acked = num(&b, "txns_sent") - num(&b_before, "txns_sent");
        let a_got = num(&a, "txns_received") - num(&a_before, "txns_received");
        if a_acked == b_got && b_acked == a_got { Ok((a, b)) } else { Err((a, b)) }
    })
    .await;

    // The short timers kept moving forward.
    for (who, dues) in [("beta", &b_short_dues), ("alpha", &a_short_dues)] {
        assert!(dues.windows(2).all(|w| w[1] >= w[0]), "{who}'s short timer went back: {dues:?}");
        let moved = dues.windows(2).filter(|w| w[1] > w[0]).count();
        assert!(moved * 4 >= dues.len() * 3, "{who}'s short timer was not reset by the traffic: {dues:?}");
    }
    // beta has nothing to say but reminders, and those only come on the long period
    // (at least 0.75 × long_watchdog_ms apart); idle, it would send one per short period.
    let db = num(&b_after, "txns_sent") - num(&b_before, "txns_sent");
    let long_reminders = window.div_ceil(LONG_MS * 3 / 4) + 1;
    assert!(db <= long_reminders, "beta sent {db} transactions in {window} ms of steady traffic (long {LONG_MS} ms)");
    // alpha sends the changes (one transaction each, as they are EVERY_MS apart and
    // the batch is shorter) and at most the long reminders on top.
    let da = num(&a_after, "txns_sent") - num(&a_before, "txns_sent");
    assert!(
        da >= CHANGES * 3 / 4 && da <= CHANGES + long_reminders,
        "alpha sent {da} transactions for {CHANGES} changes in {window} ms"
    );
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_eq!(listed["status_msg"], json!(format!("steady {CHANGES}")), "{listed}");
}

#[tokio::test]
async fn a_killed_peers_users_become_unknown_and_come_back() {
    const BATCH_MS: u64 = 200;
    const SHORT_MS: u64 = 1000;
    let (mut servers, alice, bob, mut stream) = watched_pair(BATCH_MS, SHORT_MS, 8000, "here").await;

    let killed = Instant::now();
    servers[0].kill9().await;
    let unknown = stream
        .until(Duration::from_millis(2 * SHORT_MS + 5000), |sync| {
            presence_in(sync, &alice.user_id).filter(|c| c["tidings.unknown"] == json!(true))
        })
        .await;
    let after = ms(killed.elapsed());
    assert_eq!(unknown["presence"], json!("offline"), "{unknown}");
    for key in ["status_msg", "currently_active"] {
        assert!(unknown.get(key).is_none(), "an unknown user's presence shows `{key}`: {unknown}");
    }
    // 2 × short after the last thing heard, which was at most about one short period
    // (plus the batch window) before the kill.
    assert!(after <= 2 * SHORT_MS + 1500, "alice turned unknown {after} ms after her server died");
    assert!(after >= 400, "alice turned unknown only {after} ms after her server died");
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_eq!(listed["subscription"], json!("accepted"), "{listed}");
    assert_eq!(listed["presence"], json!("unknown"), "{listed}");
    assert!(listed.get("status_msg").is_none(), "{listed}");
    let (status, body) = bob.get(&status_path(&alice.user_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["presence"], &body["tidings.unknown"]), (&json!("offline"), &json!(true)), "{body}");

    servers[0].restart().await;
    let restarted = Instant::now();
    let back = sync_until_state(&mut stream, &alice.user_id, "online", "here", Duration::from_secs(15)).await;
    let took = ms(restarted.elapsed());
    assert!(back.get("tidings.unknown").is_none(), "{back}");
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_eq!((&listed["presence"], &listed["status_msg"]), (&json!("online"), &json!("here")), "{listed}");
    eprintln!("alice was known again {took} ms after her server restarted");
}

#[tokio::test]
async fn a_change_queued_at_kill_9_is_delivered_after_the_restart() {
    const SENDER_BATCH_MS: u64 = 3000;
    let mut servers =
        TestServer::start_federation(vec![quiet_opts("alpha.test", SENDER_BATCH_MS), quiet_opts("beta.test", 200)])
            .await;
    let admin_b = servers[1].create_admin("admin", PW).await;
    let alice = servers[0].register("alice", PW).await;
    let bob = servers[1].register("bob", PW).await;
    put_status(&alice, "online", "before").await;
    accept_across(&bob, &alice).await;
    let mut stream = bob.syncer();
    sync_until_state(&mut stream, &alice.user_id, "online", "before", Duration::from_secs(15)).await;
    // alpha's last window closed with the push bob just saw; nothing is in flight.
    let received = settled(&admin_b, "alpha.test", "txns_received", Duration::from_millis(500)).await;

    put_status(&alice, "unavailable", "queued").await;
    // Still queued (the 3 s window runs): nothing left alpha since. No pause before
    // the kill: the change was acknowledged, so it must survive it.
    assert_eq!(num(&peer(&admin_b, "alpha.test").await, "txns_received"), received, "the change left early");
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_eq!(listed["status_msg"], json!("before"), "{listed}");

    servers[0].kill9().await;
    servers[0].restart().await;
    let got = sync_until_state(&mut stream, &alice.user_id, "unavailable", "queued", Duration::from_secs(20)).await;
    assert!(got.get("tidings.unknown").is_none(), "{got}");
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_eq!((&listed["presence"], &listed["status_msg"]), (&json!("unavailable"), &json!("queued")), "{listed}");
}

#[tokio::test]
async fn a_third_server_nobody_accepted_sees_nothing() {
    let servers = TestServer::start_federation(vec![
        quiet_opts("alpha.test", 200),
        quiet_opts("beta.test", 200),
        quiet_opts("gamma.test", 200),
    ])
    .await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);
    let admin_a = a.create_admin("admin", PW).await;
    let admin_c = c.create_admin("admin", PW).await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    let carol = c.register("carol", PW).await;
    let dave = c.register("dave", PW).await;
    let erin = c.register("erin", PW).await;
    put_status(&alice, "online", "public to bob").await;
    accept_across(&bob, &alice).await;
    // carol asks too, and is never answered; erin asks and is refused later.
    invite(&carol, &alice.user_id).await;
    wait_request(&alice, &carol.user_id, Duration::from_secs(10)).await;
    invite(&erin, &alice.user_id).await;
    wait_request(&alice, &erin.user_id, Duration::from_secs(10)).await;

    // Everyone syncs (so everyone's server would subscribe if it could).
    let mut bob_stream = bob.syncer();
    sync_until_state(&mut bob_stream, &alice.user_id, "online", "public to bob", Duration::from_secs(10)).await;
    let mut carol_stream = carol.syncer();
    let mut dave_stream = dave.syncer();
    for (who, stream) in [("carol", &mut carol_stream), ("dave", &mut dave_stream)] {
        let sync = stream.next(0).await;
        assert!(presence_in(&sync, &alice.user_id).is_none(), "{who}'s initial sync shows alice: {sync}");
    }

    put_status(&alice, "unavailable", "secret").await;
    sync_until_state(&mut bob_stream, &alice.user_id, "unavailable", "secret", Duration::from_secs(5)).await;
    // A marker from alpha to gamma after the change: alice refuses erin, which makes
    // no subscription. Once erin's list says so, whatever alpha had for gamma before
    // has arrived (a batch timer is never extended).
    answer(&alice, &erin.user_id, false).await;
    wait_entry(&erin, &alice.user_id, Duration::from_secs(10), |e| e["subscription"] == json!("denied")).await;
    for (who, stream) in [("carol", &mut carol_stream), ("dave", &mut dave_stream)] {
        let sync = stream.next(1000).await;
        assert!(presence_in(&sync, &alice.user_id).is_none(), "{who}'s sync shows alice: {sync}");
        let sync = stream.next(0).await;
        assert!(presence_in(&sync, &alice.user_id).is_none(), "{who}'s sync shows alice: {sync}");
    }
    let listed = entry(&carol, &alice.user_id).await.expect("alice on carol's list");
    assert_eq!((&listed["subscription"], &listed["presence"]), (&json!("pending"), &json!("unknown")), "{listed}");
    assert!(listed.get("status_msg").is_none(), "{listed}");
    for who in [&carol, &dave] {
        let (status, body) = who.get(&status_path(&alice.user_id)).await;
        assert_matrix_error(&(status, body.clone()), 403, "M_FORBIDDEN");
        assert!(body.get("status_msg").is_none(), "{body}");
    }
    // alpha sent gamma nothing but the refusal, and no timers run between them.
    let c_from_a = peer(&admin_c, "alpha.test").await;
    assert_eq!(num(&c_from_a, "txns_received"), 1, "gamma received more than the refusal from alpha: {c_from_a}");
    assert_timers_off(&c_from_a);
    let a_to_c = eventually(Duration::from_secs(5), || async {
        let e = peer(&admin_a, "gamma.test").await;
        if num(&e, "txns_sent") >= 1 { Ok(e) } else { Err(e) }
    })
    .await;
    assert_eq!(num(&a_to_c, "txns_sent"), 1, "alpha sent gamma more than the refusal: {a_to_c}");
    assert_timers_off(&a_to_c);
    assert!(num(&peer(&admin_a, "beta.test").await, "txns_sent") >= 1);
}

#[tokio::test]
async fn an_explicit_poll_stops_and_starts_the_subscription() {
    let servers = TestServer::start_federation(vec![quiet_opts("alpha.test", 200), quiet_opts("beta.test", 200)]).await;
    let admin_a = servers[0].create_admin("admin", PW).await;
    let admin_b = servers[1].create_admin("admin", PW).await;
    let alice = servers[0].register("alice", PW).await;
    let carol = servers[0].register("carol", PW).await;
    let bob = servers[1].register("bob", PW).await;
    put_status(&alice, "online", "one").await;
    accept_across(&bob, &alice).await;
    let mut stream = bob.syncer();
    sync_until_state(&mut stream, &alice.user_id, "online", "one", Duration::from_secs(10)).await;
    let sent = settled(&admin_a, "beta.test", "txns_sent", Duration::from_millis(500)).await;

    // bob stops watching: beta withdraws its subscription, so alpha pushes nothing more.
    let got = bob.put("/_tidings/client/v1/presence/poll", json!({"enabled": false})).await;
    assert_eq!(got, (200, json!({})));
    // The withdrawal has arrived once no timers run on either side.
    eventually(Duration::from_secs(5), || async {
        let a_to_b = peer(&admin_a, "beta.test").await;
        let b_to_a = peer(&admin_b, "alpha.test").await;
        let off = |e: &Value| e["short_watchdog_due_ts"].is_null() && e["long_watchdog_due_ts"].is_null();
        if off(&a_to_b) && off(&b_to_a) { Ok(()) } else { Err((a_to_b, b_to_a)) }
    })
    .await;
    put_status(&alice, "unavailable", "two").await;
    // A marker from alpha to beta after the change: carol asks to watch bob. Once bob
    // sees the request, whatever alpha had for beta before has arrived.
    invite(&carol, &bob.user_id).await;
    wait_request(&bob, &carol.user_id, Duration::from_secs(10)).await;
    let listed = entry(&bob, &alice.user_id).await.expect("alice on bob's list");
    assert_ne!(listed["status_msg"], json!("two"), "alice's change reached beta after bob stopped watching: {listed}");
    let a_to_b = eventually(Duration::from_secs(5), || async {
        let e = peer(&admin_a, "beta.test").await;
        if num(&e, "txns_sent") > sent { Ok(e) } else { Err(e) }
    })
    .await;
    assert_eq!(
        num(&a_to_b, "txns_sent"),
        sent + 1,
        "alpha still pushes alice to beta after bob stopped watching (PUT poll false); only the marker should have gone: {a_to_b}"
    );
    assert_timers_off(&a_to_b);
    assert_timers_off(&peer(&admin_b, "alpha.test").await);

    // bob starts again: beta subscribes again and gets alice's current state.
    let got = bob.put("/_tidings/client/v1/presence/poll", json!({"enabled": true})).await;
    assert_eq!(got, (200, json!({})));
    let listed = wait_entry(&bob, &alice.user_id, Duration::from_secs(10), |e| e["status_msg"] == json!("two")).await;
    assert_eq!(listed["presence"], json!("unavailable"), "{listed}");
}
