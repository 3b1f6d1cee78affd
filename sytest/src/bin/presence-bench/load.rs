//! The load, the same for every server: 1,000 long-polling watchers, PUT workers for a
//! fixed time, a drain, and what each of them saw.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidings_sytest::{Value, encode_component, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::contender::Tolerances;
use crate::procfs::{Meter, Usage};
use crate::setup::Population;
use crate::{TARGETS, WATCHERS};

/// The `timeout` of every long poll.
const SYNC_TIMEOUT_MS: u64 = 30_000;
/// Client-side limit on one `/sync` (long poll plus slack).
const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Client-side limit on one PUT; it bounds how long the load can overrun `--seconds`.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the watcher tasks may take to stop once told to.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Pause after an error before a watcher or a load worker tries again.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// What the load is, apart from the server.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How long the PUT workers run.
    pub seconds: u64,
    /// How many PUT workers.
    pub concurrency: usize,
    /// The server's phase deadlines.
    pub tolerances: Tolerances,
    /// Extra query parameters of every watcher `/sync`.
    pub sync_query: String,
}

/// One PUT of the load.
#[derive(Debug)]
pub struct PutRecord {
    /// The N of its `"seq N"`.
    pub seq: u64,
    /// The target's index.
    pub target: usize,
    /// When it was sent.
    pub sent: Instant,
    /// Send to answer.
    pub latency: Duration,
    /// `None` when answered 200 `{}`; else what went wrong.
    pub error: Option<String>,
}

/// One presence event of its target that a watcher saw.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// The N of its `"seq N"`.
    pub seq: u64,
    /// When the `/sync` carrying it returned.
    pub at: Instant,
}

/// What one watcher saw over the whole run.
#[derive(Debug, Default)]
pub struct WatcherLog {
    /// Its index in `0..WATCHERS`.
    pub index: usize,
    /// Its target's events, in arrival order.
    pub seen: Vec<Seen>,
    /// Presence events of anyone but itself and its target.
    pub foreign_events: u64,
    /// Its target's events whose `status_msg` is not `"seq N"`.
    pub unparsed_status: u64,
}

/// Everything a load run measured, for `figures` to reduce.
#[derive(Debug)]
pub struct Raw {
    /// Every PUT.
    pub puts: Vec<PutRecord>,
    /// The watchers that stopped in time.
    pub logs: Vec<WatcherLog>,
    /// From the first PUT to the last answer.
    pub load_elapsed: Duration,
    /// How long the drain took.
    pub drain: Duration,
    /// Watchers that had not seen their target's last accepted change after the drain.
    pub watchers_behind: usize,
    /// `/sync` answers during the load.
    pub syncs_during_load: u64,
    /// `/sync` requests that failed, over the whole run.
    pub sync_errors: u64,
    /// The first of them.
    pub first_sync_error: Option<String>,
    /// Memory and CPU.
    pub usage: Usage,
}

/// Who a watcher is and whom it watches.
#[derive(Debug, Clone)]
struct WatcherId {
    index: usize,
    user_id: String,
    token: String,
    /// The user ID of its target.
    target: String,
}

/// A target as the load generator uses it.
#[derive(Debug, Clone)]
struct TargetAuth {
    status_url: String,
    token: String,
}

/// Counters all watchers share.
#[derive(Debug, Default)]
struct SyncCounters {
    /// Watchers done with their first `/sync` of the load phase.
    ready: AtomicUsize,
    /// `/sync` requests answered 200.
    completed: AtomicU64,
    /// `/sync` requests that failed (status or transport).
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Per watcher: 1 + the highest seq of its target seen so far (0: none yet).
    last_seen: Vec<AtomicU64>,
}

impl SyncCounters {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }

    fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The watcher tasks and what they share.
struct Watchers {
    tasks: Vec<JoinHandle<WatcherLog>>,
    counters: Arc<SyncCounters>,
    stop: watch::Sender<bool>,
}

/// Runs the load against the server at `base` (process `pid`) with the users of `pop`.
///
/// # Errors
///
/// When the watchers do not all get going within the server's ready deadline.
pub async fn run(base: &str, pid: u32, pop: &Population, plan: &Plan, name: &str) -> Result<Raw, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(WATCHERS + TARGETS + 100)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let watchers = start_watchers(&http, base, pop, &plan.sync_query);
    if let Err(e) = wait_ready(&watchers, plan.tolerances, name).await {
        let _ = watchers.stop.send(true);
        return Err(e);
    }
    let mut meter = Meter::start(pid);
    let syncs_start = watchers.counters.completed.load(Ordering::Relaxed);
    println!("[{name}] load: {} PUT workers for {} s ...", plan.concurrency, plan.seconds);
    let load_start = Instant::now();
    let puts = put_load(&http, base, pop, plan).await;
    let load_elapsed = load_start.elapsed();
    meter.load_done();
    let syncs_during_load = watchers.counters.completed.load(Ordering::Relaxed) - syncs_start;
    let drain_start = Instant::now();
    let watchers_behind = drain(&watchers.counters, &puts, plan.tolerances.drain_deadline).await;
    let drain = drain_start.elapsed();
    let usage = meter.finish();
    let counters = Arc::clone(&watchers.counters);
    let logs = stop_watchers(watchers).await;
    Ok(Raw {
        puts,
        logs,
        load_elapsed,
        drain,
        watchers_behind,
        syncs_during_load,
        sync_errors: counters.errors.load(Ordering::Relaxed),
        first_sync_error: counters.first_error(),
        usage,
    })
}

/// Spawns one long-polling task per watcher, each starting from its initial sync.
fn start_watchers(http: &reqwest::Client, base: &str, pop: &Population, sync_query: &str) -> Watchers {
    let counters = Arc::new(SyncCounters {
        last_seen: (0..WATCHERS).map(|_| AtomicU64::new(0)).collect(),
        ..SyncCounters::default()
    });
    let (stop, stop_rx) = watch::channel(false);
    let tasks = pop
        .watchers
        .iter()
        .enumerate()
        .map(|(i, session)| {
            let who = WatcherId {
                index: i,
                user_id: session.user_id.clone(),
                token: session.access_token.clone(),
                target: pop.targets[i % TARGETS].user_id.clone(),
            };
            let urls = SyncUrls { base: base.to_owned(), query: sync_query.to_owned() };
            let task =
                watch_loop(http.clone(), urls, who, pop.since[i].clone(), Arc::clone(&counters), stop_rx.clone());
            tokio::spawn(task)
        })
        .collect();
    Watchers { tasks, counters, stop }
}

/// Waits until every watcher has had its first answer, then lets the long polls park.
async fn wait_ready(watchers: &Watchers, tolerances: Tolerances, name: &str) -> Result<(), String> {
    let start = Instant::now();
    while watchers.counters.ready.load(Ordering::Relaxed) < WATCHERS {
        if start.elapsed() > tolerances.ready_deadline {
            return Err(format!(
                "only {} of {WATCHERS} watchers got a first /sync answer within {:?}; first error: {:?}",
                watchers.counters.ready.load(Ordering::Relaxed),
                tolerances.ready_deadline,
                watchers.counters.first_error()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = start.elapsed();
    tokio::time::sleep(tolerances.settle).await;
    println!(
        "[{name}] {WATCHERS} watchers answered in {:.1} s and are long-polling ({:.0} s to settle)",
        ready.as_secs_f64(),
        tolerances.settle.as_secs_f64()
    );
    Ok(())
}

/// The PUT workers, each owning a fixed share of the targets, until `plan.seconds` pass.
async fn put_load(http: &reqwest::Client, base: &str, pop: &Population, plan: &Plan) -> Vec<PutRecord> {
    let targets: Arc<Vec<TargetAuth>> = Arc::new(
        pop.targets
            .iter()
            .map(|t| TargetAuth {
                status_url: format!("{base}/_matrix/client/v3/presence/{}/status", encode_component(&t.user_id)),
                token: t.access_token.clone(),
            })
            .collect(),
    );
    let seq = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(plan.seconds);
    let workers: Vec<_> = (0..plan.concurrency)
        .map(|w| {
            let mine: Vec<usize> = (w..TARGETS).step_by(plan.concurrency).collect();
            tokio::spawn(put_worker(http.clone(), Arc::clone(&targets), mine, Arc::clone(&seq), deadline))
        })
        .collect();
    let mut puts = Vec::new();
    for worker in workers {
        match worker.await {
            Ok(records) => puts.extend(records),
            Err(e) => eprintln!("presence-bench: a load worker failed: {e}"),
        }
    }
    puts
}

/// Waits (at most `deadline`) until each watcher has seen its target's last accepted
/// change; how many have not.
async fn drain(counters: &SyncCounters, puts: &[PutRecord], deadline: Duration) -> usize {
    let mut final_seq: Vec<Option<u64>> = vec![None; TARGETS];
    for p in puts.iter().filter(|p| p.error.is_none()) {
        let slot = &mut final_seq[p.target];
        *slot = Some(slot.map_or(p.seq, |s| s.max(p.seq)));
    }
    let behind = || {
        (0..WATCHERS)
            .filter(|&i| final_seq[i % TARGETS].is_some_and(|s| counters.last_seen[i].load(Ordering::Relaxed) < s + 1))
            .count()
    };
    let start = Instant::now();
    while behind() > 0 && start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    behind()
}

/// Tells the watchers to stop and collects their logs (aborting those too slow).
async fn stop_watchers(watchers: Watchers) -> Vec<WatcherLog> {
    let _ = watchers.stop.send(true);
    let start = Instant::now();
    let mut logs = Vec::with_capacity(WATCHERS);
    let mut unfinished = 0;
    for mut task in watchers.tasks {
        match tokio::time::timeout(STOP_DEADLINE.saturating_sub(start.elapsed()), &mut task).await {
            Ok(Ok(log)) => logs.push(log),
            Ok(Err(e)) => eprintln!("presence-bench: a watcher failed: {e}"),
            Err(_) => {
                task.abort();
                unfinished += 1;
            }
        }
    }
    if unfinished > 0 {
        eprintln!("presence-bench: {unfinished} watchers did not stop within {STOP_DEADLINE:?}; aborted them");
    }
    logs
}

/// Where a watcher's `/sync` requests go.
#[derive(Debug, Clone)]
struct SyncUrls {
    base: String,
    /// Appended to every URL (`&name=value...`).
    query: String,
}

impl SyncUrls {
    fn url(&self, since: &str, timeout_ms: u64) -> String {
        format!(
            "{}/_matrix/client/v3/sync?since={}&timeout={timeout_ms}{}",
            self.base,
            encode_component(since),
            self.query
        )
    }
}

/// One watcher: a first `/sync` that does not wait (it counts the watcher ready), then
/// long polls until told to stop.
async fn watch_loop(
    http: reqwest::Client,
    urls: SyncUrls,
    who: WatcherId,
    mut since: String,
    counters: Arc<SyncCounters>,
    mut stop: watch::Receiver<bool>,
) -> WatcherLog {
    let mut log = WatcherLog { index: who.index, ..WatcherLog::default() };
    let mut first = true;
    loop {
        let url = urls.url(&since, if first { 0 } else { SYNC_TIMEOUT_MS });
        let request = async {
            let resp = http.get(&url).bearer_auth(&who.token).timeout(SYNC_REQUEST_TIMEOUT).send().await?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let answer = tokio::select! {
            answer = request => answer,
            _ = stop.wait_for(|s| *s) => return log,
        };
        let at = Instant::now();
        let Some((body, next)) = parse_sync(answer, &counters) else {
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        };
        if first {
            counters.ready.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        since = next;
        counters.completed.fetch_add(1, Ordering::Relaxed);
        note_presence(&body, &who, at, &counters.last_seen[who.index], &mut log);
    }
}

/// A `/sync` answer's body and `next_batch`, or `None` (counted as an error).
fn parse_sync<B: AsRef<[u8]>>(
    answer: Result<(u16, B), reqwest::Error>,
    counters: &SyncCounters,
) -> Option<(Value, String)> {
    let body: Value = match answer {
        Ok((200, body)) => match serde_json::from_slice(body.as_ref()) {
            Ok(body) => body,
            Err(e) => {
                counters.error(format!("/sync answered 200 with a body that is not JSON: {e}"));
                return None;
            }
        },
        Ok((status, body)) => {
            counters.error(format!("/sync answered {status}: {}", String::from_utf8_lossy(body.as_ref())));
            return None;
        }
        Err(e) => {
            counters.error(format!("/sync failed: {}", error_chain(&e)));
            return None;
        }
    };
    match body["next_batch"].as_str() {
        Some(next) => {
            let next = next.to_owned();
            Some((body, next))
        }
        None => {
            counters.error(format!("/sync answered without next_batch: {body}"));
            None
        }
    }
}

/// Notes the presence events of one `/sync` answer in `log` and `last_seen`.
fn note_presence(body: &Value, who: &WatcherId, at: Instant, last_seen: &AtomicU64, log: &mut WatcherLog) {
    for event in body["presence"]["events"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let sender = event["sender"].as_str().unwrap_or_default();
        if sender == who.user_id {
            continue;
        }
        if sender != who.target {
            // Anyone but ourselves and our target is a leak.
            log.foreign_events += 1;
            continue;
        }
        let Some(msg) = event["content"]["status_msg"].as_str() else { continue };
        match msg.strip_prefix("seq ").and_then(|n| n.parse::<u64>().ok()) {
            Some(seq) => {
                log.seen.push(Seen { seq, at });
                last_seen.fetch_max(seq + 1, Ordering::Relaxed);
            }
            None => log.unparsed_status += 1,
        }
    }
}

/// One load worker: PUTs a new status to each of its targets in turn until `deadline`.
async fn put_worker(
    http: reqwest::Client,
    targets: Arc<Vec<TargetAuth>>,
    mine: Vec<usize>,
    seq: Arc<AtomicU64>,
    deadline: Instant,
) -> Vec<PutRecord> {
    let mut records = Vec::new();
    for &target in mine.iter().cycle() {
        if Instant::now() >= deadline {
            break;
        }
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let auth = &targets[target];
        let body = json!({ "presence": "online", "status_msg": format!("seq {n}") });
        let sent = Instant::now();
        let answer = async {
            let resp =
                http.put(&auth.status_url).bearer_auth(&auth.token).json(&body).timeout(PUT_TIMEOUT).send().await?;
            let status = resp.status().as_u16();
            let text = resp.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        }
        .await;
        let latency = sent.elapsed();
        let error = match answer {
            Ok((200, text)) if text.trim() == "{}" => None,
            Ok((status, text)) => Some(format!("PUT status answered {status}: {text}")),
            Err(e) => Some(format!("PUT status failed: {}", error_chain(&e))),
        };
        let failed = error.is_some();
        records.push(PutRecord { seq: n, target, sent, latency, error });
        if failed {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    records
}

/// An error with all its sources, `a: b: c`.
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
