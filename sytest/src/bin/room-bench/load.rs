//! Setup, load and measurement of one server for `room-bench`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_sytest::bench::{concurrently, register_all};
use tidings_sytest::rooms::room_path;
use tidings_sytest::{Client, Method, Session, Value, encode_component, json};
use tokio::time::Instant;

use crate::procfs::Meter;
use crate::{Args, MEMBERS, ROOMS};

const PASSWORD: &str = "room-bench-password";
const SETUP_WIDTH: usize = 16;
const POLL_MS: u64 = 30_000;

/// What one server did under the load.
#[derive(Debug, Default)]
pub struct Figures {
    sent: u64,
    seconds: f64,
    send_latency: Vec<Duration>,
    delivery: Vec<Duration>,
    expected: u64,
    duplicates: u64,
    limited: u64,
    send_errors: u64,
    sync_errors: u64,
    peak_kib: Option<u64>,
    rss_start_kib: Option<u64>,
    server_cpu_per_s: Option<f64>,
    bench_cpu_per_s: Option<f64>,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

impl Figures {
    /// Messages accepted per second of load.
    pub fn msgs_per_s(&self) -> f64 {
        self.sent as f64 / self.seconds
    }

    fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.delivery.len() as u64)
    }

    /// Whether nothing was lost, doubled or refused.
    pub fn clean(&self) -> bool {
        self.missing() == 0 && self.duplicates == 0 && self.send_errors == 0 && self.sync_errors == 0
    }

    /// Print one server's figures.
    pub fn print(&self, name: &str) {
        println!("[{name}] msgs_per_s              {:.0}", self.msgs_per_s());
        println!("[{name}] messages_sent           {}", self.sent);
        println!(
            "[{name}] send_latency_ms         p50 {:.1}  p99 {:.1}",
            pct(&self.send_latency, 0.5),
            pct(&self.send_latency, 0.99)
        );
        println!(
            "[{name}] delivery_ms             p50 {:.1}  p99 {:.1}  max {:.1}",
            pct(&self.delivery, 0.5),
            pct(&self.delivery, 0.99),
            pct(&self.delivery, 1.0)
        );
        println!("[{name}] deliveries              {} of {} expected", self.delivery.len(), self.expected);
        println!("[{name}] missing                 {}", self.missing());
        println!("[{name}] duplicates              {}", self.duplicates);
        println!("[{name}] limited_timelines       {}", self.limited);
        println!("[{name}] send_errors             {}", self.send_errors);
        println!("[{name}] sync_errors             {}", self.sync_errors);
        let mib = |k: Option<u64>| k.map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        println!("[{name}] server_rss_at_start_mib {}", mib(self.rss_start_kib));
        println!("[{name}] server_peak_rss_mib     {}", mib(self.peak_kib));
        if let Some(cpu) = self.server_cpu_per_s {
            println!("[{name}] server_cpu_per_s        {cpu:.2}");
        }
        if let Some(cpu) = self.bench_cpu_per_s {
            println!("[{name}] bench_cpu_per_s         {cpu:.2}");
        }
    }

    /// The paced run against its aim: p99 delivery under 50 ms at 100 times Synapse's rate.
    pub fn paced_summary(paced: &Figures, rate: f64) {
        println!(
            "PACED at {rate:.0} msgs/s offered: {:.0} accepted, delivery p50 {:.1} ms, p99 {:.1} ms",
            paced.msgs_per_s(),
            pct(&paced.delivery, 0.5),
            pct(&paced.delivery, 0.99)
        );
    }

    /// The side-by-side table and the ratio.
    pub fn compare(ours: &Figures, theirs: &Figures) {
        println!("figure | Tidings | Synapse | ratio");
        let ratio = ours.msgs_per_s() / theirs.msgs_per_s();
        println!("msgs_per_s | {:.0} | {:.0} | {ratio:.1}x", ours.msgs_per_s(), theirs.msgs_per_s());
        for (label, p) in [("delivery_p50_ms", 0.5), ("delivery_p99_ms", 0.99)] {
            let (a, b) = (pct(&ours.delivery, p), pct(&theirs.delivery, p));
            println!("{label} | {a:.1} | {b:.1} | {:.1}x", b / a);
        }
        let (a, b) = (ours.peak_kib.unwrap_or(0) as f64 / 1024.0, theirs.peak_kib.unwrap_or(0) as f64 / 1024.0);
        println!("server_peak_rss_mib | {a:.1} | {b:.1} | {:.1}x", b / a.max(0.1));
        println!("RATIO msgs/s Tidings/Synapse: {ratio:.1}");
    }
}

/// What one member saw.
#[derive(Debug, Default)]
struct MemberLog {
    delivery: Vec<Duration>,
    duplicates: u64,
    limited: u64,
    errors: u64,
}

/// Per room: when each message (by seq) was sent, and the last accepted seq once the load ended.
struct RoomLoad {
    sent_at: Mutex<Vec<Option<Instant>>>,
    final_seq: AtomicI64,
}

fn sync_path(since: &str, synapse: bool) -> String {
    let filter = json!({
        "room": {"timeline": {"limit": 100, "types": ["m.room.message"]}, "state": {"lazy_load_members": true}},
        "presence": {"not_types": ["*"]},
    });
    let mut path = format!(
        "/_matrix/client/v3/sync?timeout={POLL_MS}&since={}&filter={}",
        encode_component(since),
        encode_component(&filter.to_string())
    );
    if synapse {
        path.push_str("&set_presence=offline");
    }
    path
}

/// Set up the rooms on the server behind `client`, run the load, measure it.
/// Set up fresh users and rooms on the server behind `client` and run the load:
/// back to back, or paced at `rate` messages per second in all.
pub async fn measure(
    name: &str,
    client: Client,
    pid: u32,
    args: Args,
    rate: Option<f64>,
    synapse: bool,
) -> Result<Figures, String> {
    let setup = Instant::now();
    let tag = rand_tag();
    let names: Vec<String> = (0..ROOMS * MEMBERS).map(|i| format!("rb{tag}u{i}")).collect();
    let users = Arc::new(register_all(client.clone(), names, PASSWORD, SETUP_WIDTH).await);
    println!("[{name}] registered {} users in {:.1} s", users.len(), setup.elapsed().as_secs_f64());
    let u = Arc::clone(&users);
    let rooms: Vec<String> = concurrently(ROOMS, SETUP_WIDTH, move |r| {
        let u = Arc::clone(&u);
        async move {
            let owner = &u[r * MEMBERS];
            let invite: Vec<&str> = (1..MEMBERS).map(|m| u[r * MEMBERS + m].user_id.as_str()).collect();
            let (status, body) =
                owner.post("/_matrix/client/v3/createRoom", json!({"preset": "private_chat", "invite": invite})).await;
            assert_eq!(status, 200, "createRoom: {body}");
            let room = body["room_id"].as_str().unwrap_or_default().to_owned();
            for m in 1..MEMBERS {
                let path = format!("/_matrix/client/v3/join/{}", encode_component(&room));
                let (status, body) = u[r * MEMBERS + m].post(&path, json!({})).await;
                assert_eq!(status, 200, "join: {body}");
            }
            room
        }
    })
    .await;
    let rooms = Arc::new(rooms);
    let u = Arc::clone(&users);
    let sinces: Vec<String> = concurrently(ROOMS * MEMBERS, SETUP_WIDTH, move |i| {
        let u = Arc::clone(&u);
        async move {
            let (status, body) = u[i].get("/_matrix/client/v3/sync?timeout=0").await;
            assert_eq!(status, 200, "initial sync: {body}");
            body["next_batch"].as_str().unwrap_or_default().to_owned()
        }
    })
    .await;
    println!("[{name}] setup took {:.1} s", setup.elapsed().as_secs_f64());

    let loads: Arc<Vec<RoomLoad>> = Arc::new(
        (0..ROOMS).map(|_| RoomLoad { sent_at: Mutex::new(Vec::new()), final_seq: AtomicI64::new(-1) }).collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(tokio::sync::Notify::new());
    let seen_max: Arc<Vec<AtomicI64>> = Arc::new((0..ROOMS * MEMBERS).map(|_| AtomicI64::new(-1)).collect());
    let mut members = Vec::new();
    for (i, since) in sinces.into_iter().enumerate() {
        let (session, room_id, room) = (users[i].clone(), rooms[i / MEMBERS].clone(), i / MEMBERS);
        let (loads, stop, stopped, seen_max) =
            (Arc::clone(&loads), Arc::clone(&stop), Arc::clone(&stopped), Arc::clone(&seen_max));
        members.push(tokio::spawn(async move {
            member(session, room_id, room, since, synapse, loads, stop, stopped, &seen_max[i]).await
        }));
    }
    // Let every member park its first long poll.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut meter = Meter::start(pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    for w in 0..args.concurrency {
        let (users, rooms, loads) = (Arc::clone(&users), Arc::clone(&rooms), Arc::clone(&loads));
        let (sent, errors, latencies) = (Arc::clone(&sent), Arc::clone(&errors), Arc::clone(&latencies));
        let concurrency = args.concurrency;
        // Paced: each worker sends every `concurrency / rate` seconds, the workers
        // spread over that interval.
        let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
        senders.push(tokio::spawn(async move {
            let mine: Vec<usize> = (0..ROOMS).filter(|r| r % concurrency == w).collect();
            let mut seq = vec![0usize; ROOMS];
            let mut local = Vec::new();
            let mut k = 0;
            while Instant::now() < deadline {
                if let Some(interval) = interval {
                    let slot = started + interval.mul_f64(k as f64 + w as f64 / concurrency as f64);
                    tokio::time::sleep_until(slot).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let r = mine[k % mine.len()];
                k += 1;
                let n = seq[r];
                seq[r] += 1;
                let sender = &users[r * MEMBERS + n % MEMBERS];
                let path = room_path(&rooms[r], &format!("/send/m.room.message/b{n}"));
                let at = Instant::now();
                loads[r].sent_at.lock().unwrap_or_else(|p| p.into_inner()).push(Some(at));
                let body = json!({"msgtype": "m.text", "body": format!("seq {n}")});
                let answer = sender
                    .client()
                    .try_request(
                        Method::PUT,
                        &path,
                        Some(&sender.access_token),
                        Some(body),
                        Some(Duration::from_secs(30)),
                    )
                    .await;
                match answer {
                    Ok((200, _)) => {
                        local.push(at.elapsed());
                        sent.fetch_add(1, Ordering::Relaxed);
                        loads[r].final_seq.store(n as i64, Ordering::SeqCst);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Some(slot) = loads[r].sent_at.lock().unwrap_or_else(|p| p.into_inner()).get_mut(n) {
                            *slot = None;
                        }
                    }
                }
            }
            latencies.lock().unwrap_or_else(|p| p.into_inner()).extend(local);
        }));
    }
    for s in senders {
        s.await.map_err(|e| format!("a sender failed: {e}"))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    meter.load_done();
    // Drain: until every member saw its room's last accepted message.
    let drain_until = Instant::now() + Duration::from_secs(if synapse { 30 } else { 10 });
    while Instant::now() < drain_until {
        let behind = (0..ROOMS * MEMBERS)
            .filter(|i| seen_max[*i].load(Ordering::SeqCst) < loads[i / MEMBERS].final_seq.load(Ordering::SeqCst))
            .count();
        if behind == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    stopped.notify_waiters();
    let usage = meter.finish();
    let mut figures = Figures {
        sent: sent.load(Ordering::Relaxed),
        seconds,
        send_errors: errors.load(Ordering::Relaxed),
        peak_kib: usage.load_peak_kib,
        rss_start_kib: usage.rss_at_load_start_kib,
        server_cpu_per_s: usage.server_cpu_ticks.map(|t| t as f64 / usage.clk_tck as f64 / seconds),
        bench_cpu_per_s: usage.bench_cpu_ticks.map(|t| t as f64 / usage.clk_tck as f64 / seconds),
        ..Figures::default()
    };
    figures.send_latency = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    figures.send_latency.sort();
    figures.expected = figures.sent * MEMBERS as u64;
    for m in members {
        let log = m.await.map_err(|e| format!("a member failed: {e}"))?;
        figures.delivery.extend(log.delivery);
        figures.duplicates += log.duplicates;
        figures.limited += log.limited;
        figures.sync_errors += log.errors;
    }
    figures.delivery.sort();
    Ok(figures)
}

#[allow(clippy::too_many_arguments)] // one member's share of the shared state
async fn member(
    session: Session,
    room_id: String,
    room: usize,
    mut since: String,
    synapse: bool,
    loads: Arc<Vec<RoomLoad>>,
    stop: Arc<AtomicBool>,
    stopped: Arc<tokio::sync::Notify>,
    seen_max: &AtomicI64,
) -> MemberLog {
    let mut log = MemberLog::default();
    let mut seen = std::collections::HashSet::new();
    while !stop.load(Ordering::SeqCst) {
        let path = sync_path(&since, synapse);
        let request = session.client().try_request(
            Method::GET,
            &path,
            Some(&session.access_token),
            None,
            Some(Duration::from_millis(POLL_MS + 30_000)),
        );
        let answer = tokio::select! {
            a = request => a,
            _ = stopped.notified() => break,
        };
        let now = Instant::now();
        let body: Value = match answer {
            Ok((200, body)) => body,
            _ => {
                log.errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Some(next) = body["next_batch"].as_str() {
            since = next.to_owned();
        }
        let timeline = &body["rooms"]["join"][&room_id]["timeline"];
        if timeline["limited"] == json!(true) {
            log.limited += 1;
        }
        for event in timeline["events"].as_array().into_iter().flatten() {
            let Some(n) = event["content"]["body"].as_str().and_then(|b| b.strip_prefix("seq ")) else { continue };
            let Ok(n) = n.parse::<usize>() else { continue };
            if !seen.insert(n) {
                log.duplicates += 1;
                continue;
            }
            seen_max.fetch_max(n as i64, Ordering::SeqCst);
            let sent_at = loads[room].sent_at.lock().unwrap_or_else(|p| p.into_inner()).get(n).copied().flatten();
            if let Some(at) = sent_at {
                log.delivery.push(now.saturating_duration_since(at));
            }
        }
    }
    log
}

fn rand_tag() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{:x}", nanos % 0xffff)
}
