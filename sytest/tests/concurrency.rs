//! Nothing is lost from `/sync` while many requests race with a long poll.
//!
//! Proves that when 300 users ask to watch one target concurrently (16 requests in
//! flight at a time) while the target long-polls `/sync`, every one of the 300
//! requests arrives in `tidings.presence_requests` of some incremental sync: a
//! request whose stream position was handed out, but whose row was not yet visible
//! when a racing sync read the stream, must not be skipped for good. And that when
//! several users change their status again and again while their watchers long-poll,
//! every watcher's last view of every user is that user's final status.
//!
//! The end of each scenario is a positive barrier, never a pause: after everything
//! was acknowledged, one more user makes a marker change; once the marker arrives in
//! a sync, everything acknowledged before it must have arrived too (positions only
//! grow). A marker lost to the same race is reported and the next one is sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_sytest::bench::{concurrently, register_all};
use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::{ServerOptions, Session, TestServer, Value, eventually, json, try_eventually};

const PW: &str = "concurrency-pw-1";
/// How many users ask to watch the target.
const WATCHERS: usize = 300;
/// How many requests are in flight at a time.
const WIDTH: usize = 16;
/// How many times the request scenario runs (each with a new target): the race is a
/// matter of scheduling, and one run of 300 already shows it most of the time.
const RUNS: usize = 2;
/// Marker users kept in reserve, in case a marker itself falls into the race.
const MARKERS: usize = 3;
/// Long-poll timeout of the syncing side.
const LONG_POLL_MS: u64 = 30_000;

/// The user IDs in `tidings.presence_requests.events` of one sync answer.
fn request_senders(sync: &Value) -> Vec<String> {
    sync["tidings.presence_requests"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["user_id"].as_str().map(str::to_owned))
        .collect()
}

/// What the target's sync loop saw: how often each user ID came, over how many syncs.
#[derive(Default)]
struct Seen {
    counts: HashMap<String, usize>,
    syncs: usize,
}

/// Runs the request scenario once: every watcher asks to watch `target` (who has no
/// requests yet), then the markers one by one until one arrives. Returns the IDs of
/// the watchers (and markers) whose request never reached the target's `/sync`.
async fn run_request_scenario(run: usize, watchers: &[Session], target: &Session, markers: &[Session]) -> Vec<String> {
    // The target's stream starts before the first request, so every request is news
    // to an incremental sync.
    let mut stream = target.syncer();
    let initial = stream.next(0).await;
    assert!(request_senders(&initial).is_empty(), "requests before any was made: {initial}");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let collector = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let sync = stream.next(LONG_POLL_MS).await;
                let mut seen = seen.lock().expect("seen lock");
                seen.syncs += 1;
                for user_id in request_senders(&sync) {
                    *seen.counts.entry(user_id).or_default() += 1;
                }
            }
        })
    };

    let target_id = target.user_id.clone();
    let invites = {
        let watchers = Arc::new(watchers.to_vec());
        concurrently(WATCHERS, WIDTH, move |i| {
            let (watcher, target_id) = (watchers[i].clone(), target_id.clone());
            async move { watcher.post(&list_path(&watcher.user_id), json!({"invite": [target_id]})).await }
        })
        .await
    };
    for (watcher, answer) in watchers.iter().zip(&invites) {
        assert_eq!(answer, &(200, json!({})), "{} inviting the target", watcher.user_id);
    }
    let all: HashSet<String> = watchers.iter().map(|w| w.user_id.clone()).collect();
    // Every acknowledged request is pending for the target.
    eventually(Duration::from_secs(10), || async {
        let pending: HashSet<String> = target.requesters().await.into_iter().collect();
        let missing: Vec<&String> = all.difference(&pending).collect();
        if missing.is_empty() { Ok(()) } else { Err(format!("{} not pending: {missing:?}", missing.len())) }
    })
    .await;

    // The barrier: a marker request made after all others were acknowledged.
    let mut lost_markers = Vec::new();
    let mut marker_seen = false;
    for marker in markers {
        let got = marker.post(&list_path(&marker.user_id), json!({"invite": [target.user_id]})).await;
        assert_eq!(got, (200, json!({})), "{} inviting the target", marker.user_id);
        let arrived = try_eventually(Duration::from_secs(10), || async {
            seen.lock().expect("seen lock").counts.contains_key(&marker.user_id)
        })
        .await;
        if arrived.is_ok() {
            marker_seen = true;
            break;
        }
        lost_markers.push(marker.user_id.clone());
    }
    collector.abort();
    let seen = seen.lock().expect("seen lock");
    assert!(
        marker_seen,
        "run {run}: not one of {MARKERS} marker requests reached the target's /sync ({} syncs): {lost_markers:?}",
        seen.syncs
    );
    let mut missing: Vec<String> = all.iter().filter(|w| !seen.counts.contains_key(*w)).cloned().collect();
    missing.sort();
    eprintln!(
        "run {run}: {} incremental syncs carried the requests of {} of {WATCHERS} watchers; lost markers: {lost_markers:?}",
        seen.syncs,
        WATCHERS - missing.len()
    );
    missing.extend(lost_markers);
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_presence_requests_all_reach_the_long_polling_target() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let names: Vec<String> = (0..WATCHERS).map(|i| format!("watcher{i:03}")).collect();
    let watchers = register_all(hs.client(), names, PW, WIDTH).await;
    let others: Vec<String> = (0..RUNS)
        .flat_map(|run| {
            std::iter::once(format!("target{run}")).chain((0..MARKERS).map(move |m| format!("marker{run}x{m}")))
        })
        .collect();
    let others = register_all(hs.client(), others, PW, WIDTH).await;
    let mut failures = Vec::new();
    // Each run asks a new target, so the watchers are registered once.
    for (i, group) in others.chunks(1 + MARKERS).enumerate() {
        let run = i + 1;
        let missing = run_request_scenario(run, &watchers, &group[0], &group[1..]).await;
        if !missing.is_empty() {
            failures.push(format!(
                "run {run}: {} of {WATCHERS} acknowledged requests never reached the target's /sync: {missing:?}",
                missing.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Users whose status changes, watchers of all of them, and changes per user.
const TARGETS: usize = 8;
const VIEWERS: usize = 10;
const CHANGES: usize = 40;

/// The last `status_msg` of each sender in a sync answer's `presence.events`.
fn statuses(sync: &Value) -> Vec<(String, String)> {
    sync["presence"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["sender"].as_str()?.to_owned(), e["content"]["status_msg"].as_str()?.to_owned())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watcher_ends_on_every_users_final_status() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let targets = register_all(hs.client(), (0..TARGETS).map(|i| format!("target{i}")).collect(), PW, WIDTH).await;
    let viewers = register_all(hs.client(), (0..VIEWERS).map(|i| format!("viewer{i}")).collect(), PW, WIDTH).await;
    let marker = hs.register("marker", PW).await;
    let mut watched: Vec<Session> = targets.clone();
    watched.push(marker.clone());
    let watched_ids: Vec<String> = watched.iter().map(|t| t.user_id.clone()).collect();
    for viewer in &viewers {
        let got = viewer.post(&list_path(&viewer.user_id), json!({"invite": watched_ids})).await;
        assert_eq!(got, (200, json!({})), "{} inviting", viewer.user_id);
    }
    for target in &watched {
        for viewer in &viewers {
            let got = target.post(&answer_path(&viewer.user_id), json!({"allow": true})).await;
            assert_eq!(got, (200, json!({})), "{} allowing {}", target.user_id, viewer.user_id);
        }
    }

    // Each viewer long-polls, remembering the last status it saw of each user.
    let last_seen: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::new(Mutex::new(vec![BTreeMap::new(); VIEWERS]));
    let mut loops = Vec::new();
    for (v, viewer) in viewers.iter().enumerate() {
        let mut stream = viewer.syncer();
        stream.next(0).await;
        let last_seen = Arc::clone(&last_seen);
        loops.push(tokio::spawn(async move {
            loop {
                let sync = stream.next(LONG_POLL_MS).await;
                let mut all = last_seen.lock().expect("last_seen lock");
                for (sender, msg) in statuses(&sync) {
                    all[v].insert(sender, msg);
                }
            }
        }));
    }

    let targets = Arc::new(targets);
    let puts = {
        let targets = Arc::clone(&targets);
        concurrently(TARGETS, TARGETS, move |t| {
            let target = targets[t].clone();
            async move {
                for n in 0..CHANGES {
                    let body = json!({"presence": "online", "status_msg": format!("change {n}")});
                    let got = target.put(&status_path(&target.user_id), body).await;
                    if got != (200, json!({})) {
                        return Err(format!("{} PUT change {n}: {got:?}", target.user_id));
                    }
                }
                Ok(())
            }
        })
        .await
    };
    for result in puts {
        if let Err(e) = result {
            panic!("{e}");
        }
    }
    let last = format!("change {}", CHANGES - 1);

    // The barrier: the marker user changes after every target's last change.
    let got = marker.put(&status_path(&marker.user_id), json!({"presence": "online", "status_msg": "marker"})).await;
    assert_eq!(got, (200, json!({})));
    let outcome = try_eventually(Duration::from_secs(20), || async {
        let all = last_seen.lock().expect("last_seen lock");
        let waiting: Vec<usize> =
            (0..VIEWERS).filter(|&v| all[v].get(&marker.user_id).map(String::as_str) != Some("marker")).collect();
        if waiting.is_empty() { Ok(()) } else { Err(format!("viewers without the marker: {waiting:?}")) }
    })
    .await;
    for l in &loops {
        l.abort();
    }
    if let Err(why) = outcome {
        panic!("the marker change did not reach every viewer's /sync: {why}");
    }
    let all = last_seen.lock().expect("last_seen lock");
    let mut wrong = Vec::new();
    for (v, seen) in all.iter().enumerate() {
        for target in targets.iter() {
            let got = seen.get(&target.user_id).map_or("nothing", String::as_str);
            if got != last {
                wrong.push(format!("viewer{v} last saw {} as {got:?}", target.user_id));
            }
        }
    }
    assert!(wrong.is_empty(), "not every watcher's last view is the final {last:?}:\n{}", wrong.join("\n"));
}
