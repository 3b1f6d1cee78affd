//! Ten peers' long watchdog timers fire spread out, not together (seed 003: "stagger
//! the expiry of the longer-term watchdog timers for different peer HSes").
//!
//! One hub and ten real peer servers. A hub user watches one user on each peer, so
//! every link has a subscription and its timers run. The short period is long, so
//! once set-up traffic has settled, the only traffic is long-timer reminders (from
//! either end). The test records when each link's first reminder crosses, as the hub's
//! admin API counts transactions, and asserts the ten moments are spread, not a burst.

use std::time::Duration;

use tidings_sytest::{Peer, ServerOptions, TestServer, encode_component, eventually, free_port, json};
use tokio::time::Instant;

const PW: &str = "stagger-pw-1";
const PEERS: &str = "/_tidings/admin/v1/federation/peers";
const SPOKES: usize = 10;
const LONG_MS: u64 = 12_000;

fn opts(name: &str, port: u16, peers: Vec<Peer>) -> ServerOptions {
    ServerOptions {
        port: Some(port),
        peers,
        batch_ms: 100,
        short_watchdog_ms: 600_000,
        long_watchdog_ms: LONG_MS,
        offline_after_ms: 600_000,
        ..ServerOptions::named(name)
    }
}

fn traffic(entry: &serde_json::Value) -> u64 {
    entry["txns_sent"].as_u64().unwrap_or(0) + entry["txns_received"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_peers_long_timers_fire_spread_out() {
    let hub_port = free_port();
    let hub_url = format!("http://127.0.0.1:{hub_port}");
    let names: Vec<String> = (0..SPOKES).map(|i| format!("spoke{i}.test")).collect();
    let ports: Vec<u16> = (0..SPOKES).map(|_| free_port()).collect();
    let mut spokes = Vec::new();
    for (name, port) in names.iter().zip(&ports) {
        spokes.push(TestServer::start(opts(name, *port, vec![Peer::new("hub.test", hub_url.clone())])).await);
    }
    let hub_peers =
        names.iter().zip(&ports).map(|(n, p)| Peer::new(n.clone(), format!("http://127.0.0.1:{p}"))).collect();
    let hub = TestServer::start(opts("hub.test", hub_port, hub_peers)).await;
    let admin = hub.create_admin("admin", PW).await;
    let watcher = hub.register("watcher", PW).await;

    // The watcher asks one user on each spoke; each allows.
    let mut watched = Vec::new();
    for spoke in &spokes {
        watched.push(spoke.register("friend", PW).await);
    }
    let invite: Vec<String> = watched.iter().map(|s| s.user_id.clone()).collect();
    let list = format!("/_tidings/client/v1/presence/list/{}", encode_component(&watcher.user_id));
    let (status, body) = watcher.post(&list, json!({ "invite": invite })).await;
    assert_eq!(status, 200, "{body}");
    let answer = format!("/_tidings/client/v1/presence/requests/{}", encode_component(&watcher.user_id));
    for friend in &watched {
        eventually(Duration::from_secs(10), || async {
            let (_, body) = friend.get("/_tidings/client/v1/presence/requests").await;
            body["requests"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
        let (status, body) = friend.post(&answer, json!({ "allow": true })).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = watcher.put("/_tidings/client/v1/presence/poll", json!({ "enabled": true })).await;
    assert_eq!(status, 200, "{body}");

    // Every link's timers run once its subscription is in place.
    eventually(Duration::from_secs(10), || async {
        let (_, body) = admin.get(PEERS).await;
        let peers = body["peers"].as_array().cloned().unwrap_or_default();
        peers.len() == SPOKES && peers.iter().all(|p| p["long_watchdog_due_ts"].is_u64())
    })
    .await;
    // Let the set-up traffic (answers, subscriptions, pushes) settle.
    let mut baseline = Vec::new();
    let mut last_change = Instant::now();
    while last_change.elapsed() < Duration::from_millis(1500) {
        let (_, body) = admin.get(PEERS).await;
        let now: Vec<u64> = body["peers"].as_array().map(|p| p.iter().map(traffic).collect()).unwrap_or_default();
        if now != baseline {
            baseline = now;
            last_change = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Record when each link's first reminder crosses.
    let started = Instant::now();
    let mut fired: Vec<Option<u64>> = vec![None; SPOKES];
    while fired.iter().any(Option::is_none) {
        assert!(started.elapsed() < Duration::from_millis(LONG_MS + 5_000), "not every link reminded: {fired:?}");
        let (_, body) = admin.get(PEERS).await;
        let peers = body["peers"].as_array().cloned().unwrap_or_default();
        for (i, peer) in peers.iter().enumerate() {
            if fired[i].is_none() && traffic(peer) > baseline[i] {
                fired[i] = Some(started.elapsed().as_millis() as u64);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut times: Vec<u64> = fired.into_iter().flatten().collect();
    times.sort_unstable();
    println!("first reminder per link, ms after the quiet point: {times:?}");
    let span = times[SPOKES - 1] - times[0];
    assert!(span >= 1_000, "ten links reminded within {span} ms: a burst, not staggered ({times:?})");
    let worst = times.iter().map(|&t| times.iter().filter(|&&u| u >= t && u < t + 250).count()).max().unwrap_or(0);
    assert!(worst <= 5, "{worst} of ten links reminded within 250 ms ({times:?})");
}
