//! Two servers' presence and watchdogs over a simulated day, in one process under
//! tokio's paused clock: a day of virtual time runs in seconds, and every message
//! exchanged is counted. The servers are real `Core`s and real federation senders;
//! only the wire is replaced, by a transport that hands each stored transaction to
//! the other core's exchange, as the receiving route does after verifying it, and
//! counts the bytes the HTTP transport would put on the wire for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};
use serde_json::Value;
use tidings_core::Core;
use tidings_core::clock::{SharedClock, TokioClock};
use tidings_core::config::{PeersConfig, PresenceConfig, RateLimitConfig};
use tidings_core::exchange::IncomingEdu;
use tidings_core::outbound::StoredTxn;
use tidings_core::presence::short_factor;
use tidings_federation::Federation;
use tidings_federation::config::{FederationConfig, PeerConfig};
use tidings_federation::http::{HttpTransport, answer_size};
use tidings_federation::keys::ServerKey;
use tidings_federation::transport::{BoxFuture, Delivery, Traffic, Transport};

const SHORT_MS: u64 = 60_000;
const LONG_MS: u64 = 3_600_000;
const BATCH_MS: u64 = 10_000;
const DAY_MS: u64 = 24 * 3_600_000;

/// What crossed in one direction.
#[derive(Debug, Default)]
struct Wire {
    txns: AtomicU64,
    bytes: AtomicU64,
    edus: Mutex<Vec<String>>,
}

/// Hands transactions to the other server's exchange; can be cut.
#[derive(Debug)]
struct MemoryWire {
    origin: String,
    target: Mutex<Option<Core>>,
    sizes: HttpTransport,
    cut: AtomicBool,
    wire: Arc<Wire>,
}

impl Transport for MemoryWire {
    fn deliver<'a>(&'a self, peer: &'a PeerConfig, txn: &'a StoredTxn, _: bool) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let target = self.target.lock().expect("lock").clone();
            let Some(target) = target.filter(|_| !self.cut.load(Ordering::SeqCst)) else {
                return Delivery { result: Err("the line is cut".into()), traffic: Traffic::default(), rtt_ms: None };
            };
            let bytes_sent = self.sizes.request_size(peer, txn).expect("signable");
            let body: Value = serde_json::from_str(&txn.body).expect("stored body");
            let edus: Vec<IncomingEdu> = body["edus"]
                .as_array()
                .expect("edus")
                .iter()
                .map(|e| IncomingEdu {
                    edu_type: e["edu_type"].as_str().unwrap_or_default().to_owned(),
                    content: e["content"].clone(),
                })
                .collect();
            {
                let mut log = self.wire.edus.lock().expect("lock");
                log.extend(edus.iter().map(|e| e.edu_type.clone()));
            }
            target.exchange.heard(&self.origin);
            let result =
                target.exchange.receive(&self.origin, &txn.txn_id, edus).await.map(|_| ()).map_err(|e| e.to_string());
            let traffic = Traffic { bytes_sent, bytes_received: answer_size() };
            if result.is_ok() {
                self.wire.txns.fetch_add(1, Ordering::SeqCst);
                self.wire.bytes.fetch_add(bytes_sent + answer_size(), Ordering::SeqCst);
            }
            Delivery { result, traffic, rtt_ms: Some(0) }
        })
    }
}

struct Site {
    core: Core,
    wire: Arc<MemoryWire>,
}

fn id(s: &str) -> OwnedUserId {
    UserId::parse(s).expect("user id")
}

async fn site(name: &str, peer: &str, clock: SharedClock, seed: u8) -> Site {
    let presence = PresenceConfig { batch_ms: BATCH_MS, ..PresenceConfig::default() };
    let rates = RateLimitConfig { enabled: false, ..RateLimitConfig::default() };
    let peers = PeersConfig {
        names: vec![peer.to_owned()],
        short_watchdog_ms: SHORT_MS,
        long_watchdog_ms: LONG_MS,
        ..PeersConfig::default()
    };
    let db = tidings_core::storage::temporary().expect("database");
    let (feeds, client) = (Default::default(), Default::default());
    let core = Core::with_db(db, name, &presence, &rates, clock, &peers, &feeds, &client).expect("core");
    let key = Arc::new(ServerKey::from_seed(&[seed; 32], "sim".into()).expect("key"));
    let wire = Arc::new(MemoryWire {
        origin: name.to_owned(),
        target: Mutex::new(None),
        sizes: HttpTransport::new(reqwest::Client::new(), Arc::clone(&key), name),
        cut: AtomicBool::new(false),
        wire: Arc::new(Wire::default()),
    });
    let config = FederationConfig {
        short_watchdog_ms: SHORT_MS,
        long_watchdog_ms: LONG_MS,
        ca_file: None,
        peers: vec![PeerConfig {
            server_name: peer.to_owned(),
            url: format!("http://{peer}:8008"),
            link: None,
            link_key: None,
        }],
    };
    let federation =
        Federation::with_transport(core.clone(), key, &config, 1 << 20, reqwest::Client::new(), Arc::clone(&wire) as _);
    tokio::spawn(federation.run());
    let background = core.clone();
    tokio::spawn(async move { background.run(std::future::pending()).await });
    for user in ["alice", "bob"] {
        let uid = format!("@{user}:{name}");
        core.db.write(move |s| s.insert_user(&uid, "x", false, 0).map(|_| ())).await.expect("user");
    }
    Site { core, wire }
}

/// Advance virtual time in steps, letting every task run in between.
async fn run_for(ms: u64) {
    let step = 1_000;
    let mut left = ms;
    while left > 0 {
        let d = left.min(step);
        tokio::time::sleep(Duration::from_millis(d)).await;
        left -= d;
    }
}

/// Transactions, reminders and bytes both ways so far.
#[derive(Debug, Clone, Copy)]
struct Tally {
    txns: u64,
    reminders: u64,
    bytes: u64,
}

impl Tally {
    fn take(a: &Site, b: &Site) -> Self {
        let reminders =
            |w: &Wire| w.edus.lock().expect("lock").iter().filter(|t| *t == "tidings.presence_reminder").count() as u64;
        Self {
            txns: a.wire.wire.txns.load(Ordering::SeqCst) + b.wire.wire.txns.load(Ordering::SeqCst),
            reminders: reminders(&a.wire.wire) + reminders(&b.wire.wire),
            bytes: a.wire.wire.bytes.load(Ordering::SeqCst) + b.wire.wire.bytes.load(Ordering::SeqCst),
        }
    }
}

impl std::ops::Sub for Tally {
    type Output = Tally;
    fn sub(self, o: Tally) -> Tally {
        Tally { txns: self.txns - o.txns, reminders: self.reminders - o.reminders, bytes: self.bytes - o.bytes }
    }
}

fn status_of(core: &Core, viewer: &UserId, target: &UserId) -> (bool, Option<String>) {
    let view = core.presence.view_as(viewer, target).expect("allowed");
    (view.known, view.snapshot.status_msg)
}

#[tokio::test(start_paused = true)]
async fn a_day_of_presence_between_two_sites() {
    let clock: SharedClock = Arc::new(TokioClock::new());
    let alpha = site("alpha.test", "beta.test", Arc::clone(&clock), 1).await;
    let beta = site("beta.test", "alpha.test", Arc::clone(&clock), 2).await;
    *alpha.wire.target.lock().expect("lock") = Some(beta.core.clone());
    *beta.wire.target.lock().expect("lock") = Some(alpha.core.clone());
    let (alice, bob) = (id("@alice:alpha.test"), id("@bob:beta.test"));

    // Consent, both ways through the wire: alice asks, bob allows.
    alpha.core.consent.invite(&alice, &bob).await.expect("invite");
    run_for(2 * BATCH_MS).await;
    assert_eq!(beta.core.consent.requests(&bob).len(), 1, "the invite crossed");
    beta.core.consent.answer(&bob, &alice, true).await.expect("answer");
    alpha.core.presence.set_polling(&alice, true);
    beta.core.presence.set_status(&bob, "PHONE", PresenceState::Online, Some("hour 0".into())).await.expect("status");
    // The answer crosses, alpha subscribes, beta answers with bob's state: three
    // batch windows, one after the other.
    run_for(4 * BATCH_MS).await;
    assert_eq!(status_of(&alpha.core, &alice, &bob), (true, Some("hour 0".into())), "bob's state reached alice");

    // An idle day: nothing changes; only the watchdogs speak.
    let idle = Tally::take(&alpha, &beta);
    run_for(DAY_MS).await;
    let idle = Tally::take(&alpha, &beta) - idle;
    println!(
        "idle peer-day (one user watched across): {} transactions, {} reminders, {} bytes as HTTP counts them",
        idle.txns, idle.reminders, idle.bytes
    );
    // One end reminds per short period (the quicker end; its reminder resets the
    // other's short timer), plus the long timer's few.
    let quicker = short_factor("alpha.test", "beta.test").min(short_factor("beta.test", "alpha.test"));
    let per_day = (DAY_MS as f64 / (SHORT_MS as f64 * quicker)).round() as u64;
    assert!(
        idle.reminders >= per_day * 97 / 100 && idle.reminders <= per_day * 103 / 100 + 30,
        "about one reminder per short period of the quicker end: {} for {per_day}",
        idle.reminders
    );
    assert_eq!(idle.txns, idle.reminders, "nothing but reminders on an idle day");
    assert_eq!(status_of(&alpha.core, &alice, &bob), (true, Some("hour 0".into())), "bob stayed known all day");

    let (to_beta_0, to_alpha_0) =
        (alpha.wire.wire.txns.load(Ordering::SeqCst), beta.wire.wire.txns.load(Ordering::SeqCst));
    let (bytes_0a, bytes_0b) =
        (alpha.wire.wire.bytes.load(Ordering::SeqCst), beta.wire.wire.bytes.load(Ordering::SeqCst));

    // A day: bob changes his status once an hour; each change reaches alice within
    // the batch window.
    for hour in 1..=24 {
        beta.core
            .presence
            .set_status(&bob, "PHONE", PresenceState::Online, Some(format!("hour {hour}")))
            .await
            .expect("status");
        run_for(BATCH_MS + 1_000).await;
        assert_eq!(status_of(&alpha.core, &alice, &bob), (true, Some(format!("hour {hour}"))), "hour {hour}");
        run_for(3_600_000 - BATCH_MS - 1_000).await;
    }
    let to_beta = alpha.wire.wire.txns.load(Ordering::SeqCst) - to_beta_0;
    let to_alpha = beta.wire.wire.txns.load(Ordering::SeqCst) - to_alpha_0;
    let bytes = alpha.wire.wire.bytes.load(Ordering::SeqCst) - bytes_0a + beta.wire.wire.bytes.load(Ordering::SeqCst)
        - bytes_0b;
    let reminders =
        |w: &Wire| w.edus.lock().expect("lock").iter().filter(|t| *t == "tidings.presence_reminder").count();
    println!(
        "day with a change an hour: alpha->beta {to_beta} txns, beta->alpha {to_alpha} txns, {bytes} bytes as HTTP counts them; reminders {} + {}",
        reminders(&alpha.wire.wire),
        reminders(&beta.wire.wire)
    );
    assert!(
        to_beta + to_alpha <= idle.txns + 3 * 24,
        "a change an hour adds a few transactions an hour, not more: {to_beta} + {to_alpha} against {} idle",
        idle.txns
    );
    assert_eq!(status_of(&alpha.core, &alice, &bob), (true, Some("hour 24".into())));

    // The line is cut: after 2 x short with nothing heard, bob is unknown at alpha;
    // when it is back, so is bob.
    alpha.wire.cut.store(true, Ordering::SeqCst);
    beta.wire.cut.store(true, Ordering::SeqCst);
    run_for(2 * SHORT_MS + 5_000).await;
    assert!(!status_of(&alpha.core, &alice, &bob).0, "bob went unknown at alpha while beta was silent");
    alpha.wire.cut.store(false, Ordering::SeqCst);
    beta.wire.cut.store(false, Ordering::SeqCst);
    // Retries back off for at most 5 minutes; within that and a batch window, the
    // peers resubscribe and bob is known again.
    run_for(6 * 60_000).await;
    assert_eq!(status_of(&alpha.core, &alice, &bob), (true, Some("hour 24".into())), "bob is known again");
}
