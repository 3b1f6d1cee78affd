//! `presence-bench`: how fast one Tidings server fans presence changes out to
//! long-polling watchers, and what that costs it.
//!
//! Run it against the release build:
//!
//! ```text
//! cargo build --release -p tidings && cargo run --release -p tidings-sytest --bin presence-bench [-- --seconds N --concurrency N]
//! ```
//!
//! # The load
//!
//! One server on loopback (rate limits off, registration open, presence timers long
//! enough that nothing goes idle or offline during the run, `RUST_LOG=warn`).
//!
//! * Setup: 100 *targets* and 1,000 *watchers* register over HTTP, 16 at a time (each
//!   registration costs the server an argon2 hash). Watcher `i` asks to watch target
//!   `i % 100` (`POST /_tidings/client/v1/presence/list/{watcher}`) and that target
//!   allows it (`POST /_tidings/client/v1/presence/requests/{watcher}`): 1,000 accepted
//!   edges, 10 watchers per target, one target per watcher.
//! * Watchers: each of the 1,000 runs an initial `/sync`, then long-polls
//!   `/sync?since=...&timeout=30000` in a loop over one shared HTTP client with a
//!   connection pool large enough for all of them. When a `/sync` returns, the watcher
//!   notes the instant and the `status_msg` (`"seq N"`) of every presence event of its
//!   target in the answer.
//! * Load: `--concurrency` workers (default 48) PUT
//!   `/_matrix/client/v3/presence/{target}/status` with
//!   `{"presence":"online","status_msg":"seq N"}` (N is unique, so every PUT is a real
//!   change) back to back for `--seconds` (default 10). Each worker owns a fixed share of
//!   the targets, so the PUTs to one target never overlap and its sequence numbers
//!   rise. The instant each PUT is sent is recorded under its N.
//! * Drain: once the load stops, the watchers keep syncing until each has seen the last
//!   accepted change of its target (at most 10 s); then everything is stopped.
//!
//! # Reading the figures
//!
//! * `updates_per_s`: PUTs answered 200 per second of load; `put_latency_*`: send to
//!   answer of those PUTs. The load generator is closed-loop, so this is what the server
//!   sustains at that concurrency, not an offered rate.
//! * `delivery_delay_*`: for every (watcher, N) a watcher saw for the first time, the
//!   instant its `/sync` returned minus the instant PUT N was sent; it includes the
//!   PUT's own latency and the watcher's HTTP round trip.
//! * Changes coalesce: a watcher whose `/sync` is not parked when several changes land
//!   sees only the newest on its next `/sync`. `watcher_updates_expected` is 10 × the
//!   accepted PUTs, `events_delivered` the distinct (watcher, N) pairs seen, and
//!   `updates_coalesced` the difference. Coalescing is correct behaviour; a watcher that
//!   never reaches its target's last change (`watchers_behind_after_drain`) is not.
//! * Correctness counters that must be 0: `foreign_events` (presence of a user the
//!   watcher does not watch), `out_of_order_events` (an older N after a newer one),
//!   `unknown_seq_events`, `put_errors`, `sync_errors`, `watchers_behind_after_drain`.
//! * `server_peak_rss_*`: the server's `VmHWM`; the `_load` figure is taken after the
//!   peak was reset at the end of setup (`/proc/PID/clear_refs`), so argon2's memory
//!   during registration does not hide what the load costs; compare it with
//!   `server_rss_at_load_start_mib`, which is what setup left resident (with glibc's
//!   malloc, argon2's 19 MiB blocks freed on the blocking pool's threads are largely
//!   kept, so this can be gigabytes). `server_cpu_per_s`: the
//!   server's user+system CPU seconds per second of load (2.0 = two cores busy).
//! * Everything runs on one machine: the server, the load generator and the 1,000
//!   watchers share its cores (`bench_cpu_per_s` is this process's share), so the
//!   figures are a floor for what the server does on a machine of its own.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidings_sytest::{ServerOptions, Session, TestServer, Value, encode_component, json};
use tokio::sync::watch;

/// Users whose presence changes.
const TARGETS: usize = 100;
/// Users who watch one target each (so each target has `WATCHERS / TARGETS` watchers).
const WATCHERS: usize = 1_000;
/// Registrations and consent calls in flight at once during setup.
const SETUP_CONCURRENCY: usize = 16;
/// The `timeout` of every long poll.
const SYNC_TIMEOUT_MS: u64 = 30_000;
/// Client-side limit on one `/sync` (long poll plus slack).
const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Client-side limit on one PUT.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the watchers may take to reach their target's last change after the load.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long all watchers may take to finish their initial sync.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the watcher tasks may take to stop once told to.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Pause after an error before a watcher or a load worker tries again.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Password of every benchmark user.
const PASSWORD: &str = "presence-bench-password";

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Args {
    seconds: u64,
    concurrency: usize,
}

const USAGE: &str = "usage: presence-bench [--seconds N] [--concurrency N]\n\
    \n  --seconds N      how long the load runs (default 10)\
    \n  --concurrency N  PUTs in flight at once, 1..=100 (default 48)\
    \n\nTIDINGS_BIN names the server binary; unset, target/release/tidings is used.";

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args { seconds: 10, concurrency: 48 };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let raw = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                raw.parse().map_err(|_| format!("{name}: not a whole number: {raw}"))
            };
            match arg.as_str() {
                "--seconds" => args.seconds = value("--seconds")?,
                "--concurrency" => {
                    args.concurrency = usize::try_from(value("--concurrency")?).map_err(|e| e.to_string())?
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if args.seconds == 0 {
            return Err("--seconds must be at least 1".to_owned());
        }
        if !(1..=TARGETS).contains(&args.concurrency) {
            return Err(format!("--concurrency must be 1..={TARGETS} (each worker owns its own targets)"));
        }
        Ok(args)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("presence-bench: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tidings_sytest::bench::run_against_release("presence-bench", || run(args))
}

/// A target as the load generator uses it.
#[derive(Debug, Clone)]
struct TargetAuth {
    status_url: String,
    token: String,
}

/// One PUT of the load.
#[derive(Debug)]
struct PutRecord {
    seq: u64,
    target: usize,
    sent: Instant,
    latency: Duration,
    /// `None` when answered 200 `{}`; else what went wrong.
    error: Option<String>,
}

/// Who a watcher is and whom it watches.
#[derive(Debug, Clone)]
struct WatcherId {
    /// Its index in `0..WATCHERS`.
    index: usize,
    user_id: String,
    token: String,
    /// The user ID of its target.
    target: String,
}

/// One presence event of its target that a watcher saw.
#[derive(Debug, Clone, Copy)]
struct Seen {
    seq: u64,
    at: Instant,
}

/// What one watcher saw over the whole run.
#[derive(Debug, Default)]
struct WatcherLog {
    seen: Vec<Seen>,
    foreign_events: u64,
    unparsed_status: u64,
}

/// Counters all watchers share.
#[derive(Debug, Default)]
struct SyncCounters {
    /// Watchers done with their initial sync.
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
}

async fn run(args: Args) -> ExitCode {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let bin = tidings_sytest::tidings_bin();
    println!("presence-bench: {TARGETS} targets, {WATCHERS} watchers ({} per target)", WATCHERS / TARGETS);
    println!("server binary: {}", bin.display());
    if !bin.to_string_lossy().contains("release") {
        println!("WARNING: TIDINGS_BIN does not look like a release build; figures will be off");
    }
    println!(
        "machine: {cores} cores, shared by the server, the load generator and all {WATCHERS} watchers \
         (this is not the server alone)"
    );

    let opts = ServerOptions {
        registration_open: true,
        rate_limits: false,
        offline_after_ms: 600_000,
        idle_after_ms: 600_000,
        rust_log: Some("warn".to_owned()),
        ..ServerOptions::named("bench.test")
    };
    let mut server = TestServer::start(opts).await;
    let Some(pid) = server.pid() else {
        eprintln!("presence-bench: the server has no pid");
        return ExitCode::FAILURE;
    };
    println!("server: {} (pid {pid}, RUST_LOG=warn)", server.base_url());

    // ---- Setup ----
    let setup_start = Instant::now();
    let client = server.client();
    let targets = tidings_sytest::bench::register_all(
        client.clone(),
        (0..TARGETS).map(|i| format!("target-{i:03}")).collect(),
        PASSWORD,
        SETUP_CONCURRENCY,
    )
    .await;
    println!("registered {TARGETS} targets in {:.1} s", setup_start.elapsed().as_secs_f64());
    let watchers = tidings_sytest::bench::register_all(
        client.clone(),
        (0..WATCHERS).map(|i| format!("watcher-{i:04}")).collect(),
        PASSWORD,
        SETUP_CONCURRENCY,
    )
    .await;
    let registered = setup_start.elapsed();
    println!("registered {WATCHERS} watchers; {} users in {:.1} s", TARGETS + WATCHERS, registered.as_secs_f64());
    arrange_consent(&targets, &watchers).await;
    check_lists(&targets, &watchers).await;
    let setup = setup_start.elapsed();
    println!(
        "setup took {:.1} s ({:.1} s registering {} users at {SETUP_CONCURRENCY} in flight, {:.1} s for {} \
         invite+allow pairs)",
        setup.as_secs_f64(),
        registered.as_secs_f64(),
        TARGETS + WATCHERS,
        (setup - registered).as_secs_f64(),
        WATCHERS
    );

    // ---- Watchers ----
    let http = match reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(WATCHERS + TARGETS + 100)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            eprintln!("presence-bench: cannot build the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base = server.base_url();
    let counters = Arc::new(SyncCounters {
        last_seen: (0..WATCHERS).map(|_| AtomicU64::new(0)).collect(),
        ..SyncCounters::default()
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut watcher_tasks = Vec::with_capacity(WATCHERS);
    for (i, session) in watchers.iter().enumerate() {
        let task = watch_loop(
            http.clone(),
            base.clone(),
            WatcherId {
                index: i,
                user_id: session.user_id.clone(),
                token: session.access_token.clone(),
                target: targets[i % TARGETS].user_id.clone(),
            },
            Arc::clone(&counters),
            stop_rx.clone(),
        );
        watcher_tasks.push(tokio::spawn(task));
    }
    let ready_start = Instant::now();
    while counters.ready.load(Ordering::Relaxed) < WATCHERS {
        if ready_start.elapsed() > READY_DEADLINE {
            eprintln!(
                "presence-bench: only {} of {WATCHERS} watchers finished an initial sync within {READY_DEADLINE:?}; \
                 first error: {:?}",
                counters.ready.load(Ordering::Relaxed),
                counters.first_error.lock().unwrap_or_else(|p| p.into_inner())
            );
            let _ = stop_tx.send(true);
            server.stop().await;
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let every watcher park its first long poll (and its own presence settle).
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "{WATCHERS} watchers synced once in {:.1} s and are long-polling",
        ready_start.elapsed().as_secs_f64() - 1.0
    );

    // ---- Load ----
    let setup_peak_kib = vm_hwm_kib(pid);
    let rss_before_load_kib = proc_status_kib(pid, "VmRSS:");
    let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let clk_tck = clock_ticks_per_second();
    let server_cpu_start = cpu_ticks(pid);
    let bench_cpu_start = cpu_ticks(std::process::id());
    let syncs_start = counters.completed.load(Ordering::Relaxed);
    let target_auth: Arc<Vec<TargetAuth>> = Arc::new(
        targets
            .iter()
            .map(|t| TargetAuth {
                status_url: format!("{base}/_matrix/client/v3/presence/{}/status", encode_component(&t.user_id)),
                token: t.access_token.clone(),
            })
            .collect(),
    );
    println!("load: {} PUT workers for {} s ...", args.concurrency, args.seconds);
    let seq = Arc::new(AtomicU64::new(0));
    let load_start = Instant::now();
    let deadline = load_start + Duration::from_secs(args.seconds);
    let mut workers = Vec::with_capacity(args.concurrency);
    for w in 0..args.concurrency {
        let mine: Vec<usize> = (w..TARGETS).step_by(args.concurrency).collect();
        workers.push(tokio::spawn(put_worker(
            http.clone(),
            Arc::clone(&target_auth),
            mine,
            Arc::clone(&seq),
            deadline,
        )));
    }
    let mut puts: Vec<PutRecord> = Vec::new();
    for worker in workers {
        match worker.await {
            Ok(records) => puts.extend(records),
            Err(e) => eprintln!("presence-bench: a load worker failed: {e}"),
        }
    }
    let load_elapsed = load_start.elapsed();
    let server_cpu = cpu_ticks(pid).zip(server_cpu_start).map(|(end, start)| end.saturating_sub(start));
    let bench_cpu = cpu_ticks(std::process::id()).zip(bench_cpu_start).map(|(end, start)| end.saturating_sub(start));
    let syncs_during_load = counters.completed.load(Ordering::Relaxed) - syncs_start;

    // ---- Drain ----
    let mut final_seq: Vec<Option<u64>> = vec![None; TARGETS];
    for p in puts.iter().filter(|p| p.error.is_none()) {
        let slot = &mut final_seq[p.target];
        *slot = Some(slot.map_or(p.seq, |s| s.max(p.seq)));
    }
    let behind = |counters: &SyncCounters| {
        (0..WATCHERS)
            .filter(|&i| final_seq[i % TARGETS].is_some_and(|s| counters.last_seen[i].load(Ordering::Relaxed) < s + 1))
            .count()
    };
    let drain_start = Instant::now();
    while behind(&counters) > 0 && drain_start.elapsed() < DRAIN_DEADLINE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = drain_start.elapsed();
    let watchers_behind = behind(&counters);
    let load_peak_kib = vm_hwm_kib(pid);
    let rss_after_load_kib = proc_status_kib(pid, "VmRSS:");

    // ---- Stop ----
    let _ = stop_tx.send(true);
    let stop_start = Instant::now();
    let mut logs: Vec<WatcherLog> = Vec::with_capacity(WATCHERS);
    let mut unfinished = 0;
    for mut task in watcher_tasks {
        let left = STOP_DEADLINE.saturating_sub(stop_start.elapsed());
        match tokio::time::timeout(left, &mut task).await {
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
    drop(http);
    let exit = server.stop().await;
    let server_log = server.log();

    // ---- Figures ----
    let ok_puts: Vec<&PutRecord> = puts.iter().filter(|p| p.error.is_none()).collect();
    let mut put_latencies: Vec<Duration> = ok_puts.iter().map(|p| p.latency).collect();
    put_latencies.sort_unstable();
    let put_errors: Vec<&PutRecord> = puts.iter().filter(|p| p.error.is_some()).collect();
    let by_seq: HashMap<u64, &PutRecord> = puts.iter().map(|p| (p.seq, p)).collect();
    let mut accepted_per_target = [0u64; TARGETS];
    for p in &ok_puts {
        accepted_per_target[p.target] += 1;
    }
    let expected: u64 = (0..WATCHERS).map(|i| accepted_per_target[i % TARGETS]).sum();

    let mut delays: Vec<Duration> = Vec::new();
    let (mut repeats, mut out_of_order, mut unknown_seq, mut foreign, mut unparsed) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (i, log) in logs.iter().enumerate() {
        foreign += log.foreign_events;
        unparsed += log.unparsed_status;
        let mut highest: Option<u64> = None;
        for s in &log.seen {
            let Some(put) = by_seq.get(&s.seq).filter(|p| p.target == i % TARGETS) else {
                unknown_seq += 1;
                continue;
            };
            match highest {
                Some(h) if s.seq == h => repeats += 1,
                Some(h) if s.seq < h => out_of_order += 1,
                _ => {
                    highest = Some(s.seq);
                    if put.error.is_none() {
                        delays.push(s.at.saturating_duration_since(put.sent));
                    }
                }
            }
        }
    }
    delays.sort_unstable();
    let delivered = delays.len() as u64;
    let coalesced = expected.saturating_sub(delivered);
    let secs = load_elapsed.as_secs_f64();
    let log_problems: Vec<&str> =
        server_log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked")).collect();

    if let Some(p) = put_errors.first() {
        println!("first PUT error: {}", p.error.as_deref().unwrap_or_default());
    }
    if let Some(e) = counters.first_error.lock().unwrap_or_else(|p| p.into_inner()).as_deref() {
        println!("first /sync error: {e}");
    }
    for line in log_problems.iter().take(10) {
        println!("server log: {line}");
    }

    println!();
    println!("===== presence-bench results =====");
    println!("machine_cores: {cores} (server, load generator and watchers all share them)");
    println!("users: {TARGETS} targets, {WATCHERS} watchers, {WATCHERS} accepted watch edges");
    println!("setup_s: {:.1}", setup.as_secs_f64());
    println!("put_concurrency: {}", args.concurrency);
    println!("load_s: {secs:.2}");
    println!("updates_accepted: {}", ok_puts.len());
    println!("updates_per_s: {:.0}", ok_puts.len() as f64 / secs);
    println!("put_errors: {}", put_errors.len());
    println!("put_latency_p50_ms: {}", ms(percentile(&put_latencies, 0.50)));
    println!("put_latency_p99_ms: {}", ms(percentile(&put_latencies, 0.99)));
    println!("put_latency_max_ms: {}", ms(put_latencies.last().copied()));
    println!("watcher_updates_expected: {expected}");
    println!("events_delivered: {delivered}");
    println!(
        "updates_coalesced: {coalesced} ({:.1}% of expected)",
        if expected == 0 { 0.0 } else { 100.0 * coalesced as f64 / expected as f64 }
    );
    println!("repeat_deliveries: {repeats}");
    println!("delivery_delay_p50_ms: {}", ms(percentile(&delays, 0.50)));
    println!("delivery_delay_p99_ms: {}", ms(percentile(&delays, 0.99)));
    println!("delivery_delay_max_ms: {}", ms(delays.last().copied()));
    println!("syncs_per_s: {:.0}", syncs_during_load as f64 / secs);
    println!("sync_errors: {}", counters.errors.load(Ordering::Relaxed));
    println!("drain_ms: {}", drain.as_millis());
    println!("watchers_behind_after_drain: {watchers_behind}");
    println!("foreign_events: {foreign}");
    println!("out_of_order_events: {out_of_order}");
    println!("unknown_seq_events: {}", unknown_seq + unparsed);
    println!("server_peak_rss_setup_mib: {}", mib(setup_peak_kib));
    if hwm_reset {
        println!("server_peak_rss_load_mib: {}", mib(load_peak_kib));
    } else {
        println!("server_peak_rss_total_mib: {} (could not reset VmHWM after setup)", mib(load_peak_kib));
    }
    println!("server_rss_at_load_start_mib: {}", mib(rss_before_load_kib));
    println!("server_rss_at_load_end_mib: {}", mib(rss_after_load_kib));
    println!("server_cpu_per_s: {}", cpu_per_s(server_cpu, clk_tck, secs));
    println!("bench_cpu_per_s: {}", cpu_per_s(bench_cpu, clk_tck, secs));
    println!("server_log_warnings: {}", log_problems.len());
    println!("server_exit: {}", exit.map_or_else(|| "not running".to_owned(), |s| s.to_string()));

    let clean = put_errors.is_empty()
        && counters.errors.load(Ordering::Relaxed) == 0
        && watchers_behind == 0
        && foreign == 0
        && out_of_order == 0
        && unknown_seq + unparsed == 0
        && exit.is_some_and(|s| s.success());
    if clean {
        ExitCode::SUCCESS
    } else {
        println!("RESULT: problems seen (see the counters above)");
        ExitCode::FAILURE
    }
}

/// Watcher `i` invites target `i % TARGETS`, which allows it.
async fn arrange_consent(targets: &[Session], watchers: &[Session]) {
    let targets = Arc::new(targets.to_vec());
    let watchers = Arc::new(watchers.to_vec());
    tidings_sytest::bench::concurrently(WATCHERS, SETUP_CONCURRENCY, move |i| {
        let (targets, watchers) = (Arc::clone(&targets), Arc::clone(&watchers));
        async move {
            let (watcher, target) = (&watchers[i], &targets[i % TARGETS]);
            let list = format!("/_tidings/client/v1/presence/list/{}", encode_component(&watcher.user_id));
            let (status, body) = watcher.post(&list, json!({ "invite": [target.user_id] })).await;
            assert_eq!(status, 200, "{} inviting {}: {body}", watcher.user_id, target.user_id);
            let answer = format!("/_tidings/client/v1/presence/requests/{}", encode_component(&watcher.user_id));
            let (status, body) = target.post(&answer, json!({ "allow": true })).await;
            assert_eq!(status, 200, "{} allowing {}: {body}", target.user_id, watcher.user_id);
        }
    })
    .await;
}

/// Spot-checks that the edges are accepted.
async fn check_lists(targets: &[Session], watchers: &[Session]) {
    for i in [0, WATCHERS / 2 + 7, WATCHERS - 1] {
        let watcher = &watchers[i];
        let list = format!("/_tidings/client/v1/presence/list/{}", encode_component(&watcher.user_id));
        let (status, body) = watcher.get(&list).await;
        assert_eq!(status, 200, "GET list of {}: {body}", watcher.user_id);
        let entries = body["entries"].as_array().cloned().unwrap_or_default();
        assert!(
            entries.len() == 1
                && entries[0]["user_id"] == targets[i % TARGETS].user_id.as_str()
                && entries[0]["subscription"] == "accepted",
            "the list of {} is not one accepted entry for {}: {body}",
            watcher.user_id,
            targets[i % TARGETS].user_id
        );
    }
}

/// One watcher: an initial sync, then long polls until told to stop.
async fn watch_loop(
    http: reqwest::Client,
    base: String,
    who: WatcherId,
    counters: Arc<SyncCounters>,
    mut stop: watch::Receiver<bool>,
) -> WatcherLog {
    let mut log = WatcherLog::default();
    let mut since: Option<String> = None;
    loop {
        let url = match &since {
            None => format!("{base}/_matrix/client/v3/sync?timeout=0"),
            Some(s) => {
                format!("{base}/_matrix/client/v3/sync?since={}&timeout={SYNC_TIMEOUT_MS}", encode_component(s))
            }
        };
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
        let body: Value = match answer {
            Ok((200, body)) => match serde_json::from_slice(&body) {
                Ok(body) => body,
                Err(e) => {
                    counters.error(format!("/sync answered 200 with a body that is not JSON: {e}"));
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    continue;
                }
            },
            Ok((status, body)) => {
                counters.error(format!("/sync answered {status}: {}", String::from_utf8_lossy(&body)));
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
            Err(e) => {
                counters.error(format!("/sync failed: {e}"));
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let Some(next) = body["next_batch"].as_str() else {
            counters.error(format!("/sync answered without next_batch: {body}"));
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        };
        if since.is_none() {
            counters.ready.fetch_add(1, Ordering::Relaxed);
        }
        since = Some(next.to_owned());
        counters.completed.fetch_add(1, Ordering::Relaxed);
        let me = &counters.last_seen[who.index];
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
                    me.fetch_max(seq + 1, Ordering::Relaxed);
                }
                None => log.unparsed_status += 1,
            }
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
            Err(e) => Some(format!("PUT status failed: {e}")),
        };
        let failed = error.is_some();
        records.push(PutRecord { seq: n, target, sent, latency, error });
        if failed {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    records
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Milliseconds with one decimal, or `n/a`.
fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".to_owned(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

/// KiB as MiB with one decimal, or `n/a`.
fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// CPU seconds per wall-clock second, or `n/a`.
fn cpu_per_s(ticks: Option<u64>, clk_tck: u64, secs: f64) -> String {
    ticks.map_or_else(|| "n/a".to_owned(), |t| format!("{:.2} cpu-s/s", t as f64 / clk_tck as f64 / secs))
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

/// A `kB` field (`VmRSS:`, `VmHWM:`, ...) of `/proc/PID/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): the
    // 3rd field of the line is the first here, so utime (14th) and stime (15th) are
    // at 11 and 12.
    let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 when unknown.
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}
