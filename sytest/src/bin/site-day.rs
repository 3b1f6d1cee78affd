//! `site-day`: one day of a thin site's federation traffic, replayed with time scaled,
//! counting every byte on its lines (spec/benchmarks.md, "The site-day").
//!
//! ```text
//! cargo build -p tidings -p tidings-sytest --bins   # bytes do not depend on the build
//! TIDINGS_BIN=$PWD/target/debug/tidings target/debug/site-day [--scale 480] [--only link|sessions|http]
//! ```
//!
//! With `SITE_DAY_CALLS=1` in the environment it also prints, from the servers' logs,
//! why each link call was made and how it ended.
//!
//! The day: `alpha.test` has 50 users, each watched by one user at each of 4 peer
//! sites (`beta`, `delta`, `epsilon`, `gamma`: 200 accepted watch edges); every user
//! changes presence 6 times an hour (toggling `online` and `unavailable`, the 50 users
//! staggered 12 s apart, so the site changes every 12 s); alpha's reader subscribes to
//! 20 feeds, which alpha (`fetch = "peers"`) gets through `beta.test`, the one peer
//! that fetches from the 20 fake origins; each origin publishes 10 new items in the
//! day (spread evenly, the feeds staggered). Timers set for a thin line: short watchdog
//! 10 min, long 6 h, `batch_ms` 60 s, feeds polled every 10 min, everything else at its
//! default.
//!
//! Each of the 4 site-to-peer links runs through two line emulators
//! ([`tidings_sytest::line`]), one per dialing direction, which count the TCP payload
//! exactly. In link mode each peer's HTTP `url` also runs through a counting relay,
//! so anything that left the link would be seen (only key fetches at start-up do);
//! in HTTP mode the two lines carry HTTP instead.
//!
//! **Time scale.** Every time of the configuration (watchdogs, `batch_ms`,
//! `idle_hangup_ms`, the maximum waits, feed intervals, `offline_after_ms`, ...), every
//! time of the schedule and the line's latency are divided by `--scale`, and the
//! line's rate multiplied by it, so the day has the same shape in fewer real seconds:
//! the same changes in the same batch windows, the same reminders and polls, the same
//! line time per byte. 480 (the default) plays the day in 3 minutes. The link's own
//! delays (its corks, the ping floor) follow the line's measured round trip, so they
//! scale with it. Not scaled: the servers' processing time (a millisecond of a
//! database commit is 0.48 s of virtual time at 480, which lengthens calls: connected
//! minutes are an overestimate, the more so the higher the scale), the flow control's
//! queueing thresholds and the handshake timeout.
//!
//! **Sessions** uses timers for a line that calls: `idle_hangup_ms` 5 s, presence
//! waits up to 3 h, short messages 10 min, bulk 6 h (it rides the presence calls); a
//! feed mirror heard from only at calls says it is alive every 3 h and is given up
//! after 12 h of silence (the seed's 10 and 40 minutes assume an open line).
//!
//! Printed: bytes on the lines during exactly 24 h of virtual time, by class and in
//! total, and for the link the calls, connected minutes and the cost at $1.50 a minute
//! (each call billed in whole minutes, as the seed's line is). After the day the run
//! checks that every watcher holds every user's last state and that the reader got all
//! 200 new items, once; it fails otherwise.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tidings_sytest::line::Line;
use tidings_sytest::origin::FeedOrigin;
use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::{Peer, ServerOptions, Session, TestServer, Value, free_port, json};
use tokio::time::Instant;

const PW: &str = "site-day-password-1";
const SITE: &str = "alpha.test";
const PEERS: [&str; 4] = ["beta.test", "delta.test", "epsilon.test", "gamma.test"];
const USERS: usize = 50;
const CHANGES_PER_HOUR: u64 = 6;
const FEEDS: usize = 20;
const ITEMS_PER_DAY: u64 = 10;
const DAY_MS: u64 = 86_400_000;
const SHORT_MS: u64 = 600_000;
const LONG_MS: u64 = 21_600_000;
const BATCH_MS: u64 = 60_000;
const FEED_INTERVAL_MS: u64 = 600_000;
/// The seed's line.
const RATE: u64 = 240;
const LATENCY_MS: u64 = 1000;
const COST_PER_MINUTE: f64 = 1.50;
/// Sessions: hang up after this much of nothing (a call's exchange is over by then).
const SESSIONS_IDLE_HANGUP_MS: u64 = 5_000;
/// Sessions: presence waits for a call at most this long (coalescing meanwhile).
const SESSIONS_PRESENCE_WAIT_MS: u64 = 3 * 3_600_000;
/// Sessions: consent, subscriptions and a reminder silence asks for.
const SESSIONS_SHORT_WAIT_MS: u64 = 600_000;
/// Sessions: feed items ride the presence calls; alone they would call after this.
const SESSIONS_BULK_WAIT_MS: u64 = 6 * 3_600_000;
const ADMIN_PEERS: &str = "/_tidings/admin/v1/federation/peers";
const CLASSES: [&str; 4] = ["control", "presence", "short", "bulk"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// The link, `mode = "always"`.
    Link,
    /// The link, `mode = "sessions"`.
    Sessions,
    /// HTTP.
    Http,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Link => "link (always)",
            Mode::Sessions => "link (sessions)",
            Mode::Http => "http",
        }
    }
}

/// A virtual duration in real time.
#[derive(Clone, Copy)]
struct Scale(u64);

impl Scale {
    fn ms(self, virtual_ms: u64) -> u64 {
        (virtual_ms / self.0).max(1)
    }

    fn real(self, virtual_ms: u64) -> Duration {
        Duration::from_micros(virtual_ms * 1000 / self.0)
    }

    fn virtual_ms(self, real: Duration) -> f64 {
        real.as_secs_f64() * 1000.0 * self.0 as f64
    }
}

struct Site {
    /// alpha, then the peers in [`PEERS`] order; held so they run as long as the
    /// site (dropping one stops it).
    servers: Vec<TestServer>,
    admins: Vec<Session>,
    /// Per peer: alpha dials through `.0`, the peer dials alpha through `.1`.
    lines: Vec<(Line, Line)>,
    /// Per peer, link mode: the relays in front of the HTTP urls (key fetches).
    relays: Vec<(Line, Line)>,
    origins: Vec<FeedOrigin>,
    users: Vec<Session>,
    watchers: Vec<Session>,
    reader: Session,
    feed_ids: Vec<String>,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Options of one site: thin-line timers, scaled.
fn options(name: &str, port: u16, scale: Scale, mode: Mode) -> ServerOptions {
    // A mirror heard from only at calls: in sessions its alive and silence timers
    // follow the calls, not the seed's always-open 10 and 40 minutes.
    let (alive_ms, silence_ms) = match mode {
        Mode::Sessions => (SESSIONS_PRESENCE_WAIT_MS, 4 * SESSIONS_PRESENCE_WAIT_MS),
        Mode::Link | Mode::Http => (600_000, 2_400_000),
    };
    let mut o = ServerOptions {
        port: Some(port),
        batch_ms: scale.ms(BATCH_MS),
        short_watchdog_ms: scale.ms(SHORT_MS),
        long_watchdog_ms: scale.ms(LONG_MS),
        offline_after_ms: scale.ms(2 * DAY_MS),
        idle_after_ms: scale.ms(2 * DAY_MS),
        ..ServerOptions::named(name)
    }
    .with_key("feeds", "min_interval_ms", &scale.ms(FEED_INTERVAL_MS).to_string())
    .with_key("feeds", "max_interval_ms", &scale.ms(FEED_INTERVAL_MS).to_string())
    .with_key("feeds", "alive_interval_ms", &scale.ms(alive_ms).to_string())
    .with_key("feeds", "mirror_silence_ms", &scale.ms(silence_ms).to_string())
    .with_key("feeds", "allow_private_addresses", "true");
    if name == SITE {
        o = o.with_key("feeds", "fetch", "\"peers\"");
    }
    match mode {
        Mode::Http => {}
        Mode::Link => {
            o = o
                .with_key("link", "mode", "\"always\"")
                .with_key("link", "resume_ms", &scale.ms(DAY_MS).to_string())
                .with_key("link", "cost_per_minute", &COST_PER_MINUTE.to_string());
        }
        Mode::Sessions => {
            o = o
                .with_key("link", "mode", "\"sessions\"")
                .with_key("link", "resume_ms", &scale.ms(DAY_MS).to_string())
                .with_key("link", "idle_hangup_ms", &scale.ms(SESSIONS_IDLE_HANGUP_MS).to_string())
                .with_key("link", "presence_max_wait_ms", &scale.ms(SESSIONS_PRESENCE_WAIT_MS).to_string())
                .with_key("link", "short_max_wait_ms", &scale.ms(SESSIONS_SHORT_WAIT_MS).to_string())
                .with_key("link", "bulk_max_wait_ms", &scale.ms(SESSIONS_BULK_WAIT_MS).to_string())
                .with_key("link", "cost_per_minute", &COST_PER_MINUTE.to_string());
        }
    }
    o
}

async fn start(mode: Mode, scale: Scale) -> Result<Site, String> {
    let http: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let link: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let rate = RATE * scale.0;
    let latency = scale.real(LATENCY_MS);
    let mut lines = Vec::new();
    let mut relays = Vec::new();
    let mut site = options(SITE, http[0], scale, mode);
    let mut peers = Vec::new();
    for (p, name) in PEERS.iter().enumerate() {
        let j = p + 1;
        let mut peer = options(name, http[j], scale, mode);
        if mode == Mode::Http {
            let to_peer = Line::start(loopback(http[j]), rate, latency).await;
            let to_site = Line::start(loopback(http[0]), rate, latency).await;
            site = site.with_peer(Peer::new(*name, format!("http://{}", to_peer.addr())));
            peer = peer.with_peer(Peer::new(SITE, format!("http://{}", to_site.addr())));
            lines.push((to_peer, to_site));
        } else {
            let to_peer = Line::start(loopback(link[j]), rate, latency).await;
            let to_site = Line::start(loopback(link[0]), rate, latency).await;
            let url_peer = Line::start(loopback(http[j]), 0, Duration::ZERO).await;
            let url_site = Line::start(loopback(http[0]), 0, Duration::ZERO).await;
            site = site.with_peer(
                Peer::new(*name, format!("http://{}", url_peer.addr()))
                    .with_extra_toml(&format!("link = \"{}\"", to_peer.addr())),
            );
            peer = peer
                .with_peer(
                    Peer::new(SITE, format!("http://{}", url_site.addr()))
                        .with_extra_toml(&format!("link = \"{}\"", to_site.addr())),
                )
                .with_key("link", "listen", &format!("\"127.0.0.1:{}\"", link[j]));
            lines.push((to_peer, to_site));
            relays.push((url_peer, url_site));
        }
        peers.push(peer);
    }
    if mode != Mode::Http {
        site = site.with_key("link", "listen", &format!("\"127.0.0.1:{}\"", link[0]));
    }
    let mut opts = vec![site];
    opts.extend(peers);
    let servers = TestServer::start_federation(opts).await;
    let mut admins = Vec::new();
    for s in &servers {
        admins.push(s.create_admin("admin", PW).await);
    }
    let mut origins = Vec::new();
    for f in 0..FEEDS {
        let old: Vec<String> = (0..ITEMS_PER_DAY).rev().map(|n| format!("f{f}-old{n}")).collect();
        let old: Vec<&str> = old.iter().map(String::as_str).collect();
        origins.push(FeedOrigin::start(&old).await);
    }
    let names: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
    let users = tidings_sytest::bench::register_all(servers[0].client(), names, PW, 2).await;
    let reader = servers[0].register("reader", PW).await;
    let mut watchers = Vec::new();
    for s in &servers[1..] {
        watchers.push(s.register("watcher", PW).await);
    }
    Ok(Site { servers, admins, lines, relays, origins, users, watchers, reader, feed_ids: Vec::new() })
}

async fn until<F, Fut>(what: &str, within: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn expect_ok(what: &str, answer: (u16, Value)) -> Result<(), String> {
    if answer.0 == 200 { Ok(()) } else { Err(format!("{what}: {} {}", answer.0, answer.1)) }
}

/// Watch edges, consent, feeds and first states, before the day starts.
async fn set_up(site: &mut Site) -> Result<(), String> {
    let ids: Vec<String> = site.users.iter().map(|u| u.user_id.clone()).collect();
    for w in &site.watchers {
        expect_ok("invite", w.post(&list_path(&w.user_id), json!({"invite": ids})).await).await?;
    }
    for u in &site.users {
        until(&format!("{}'s requests", u.user_id), Duration::from_secs(120), || async {
            let r = u.requesters().await;
            site.watchers.iter().all(|w| r.contains(&w.user_id))
        })
        .await?;
        for w in &site.watchers {
            expect_ok("allow", u.post(&answer_path(&w.user_id), json!({"allow": true})).await).await?;
        }
    }
    for w in &site.watchers {
        expect_ok("poll", w.put("/_tidings/client/v1/presence/poll", json!({"enabled": true})).await).await?;
    }
    for o in &site.origins {
        let (status, body) = site.reader.post("/_tidings/client/v1/feeds", json!({"url": o.feed_url()})).await;
        let id = body["feed_id"].as_str().filter(|_| status == 200).ok_or(format!("subscribe: {status} {body}"))?;
        site.feed_ids.push(id.to_owned());
    }
    for u in &site.users {
        expect_ok("status", u.put(&status_path(&u.user_id), json!({"presence": "online"})).await).await?;
    }
    let reader = &site.reader;
    let feed_ids = &site.feed_ids;
    until("the first items", Duration::from_secs(180), || async {
        let mut all = true;
        for id in feed_ids {
            all &= item_titles(reader, id).await.len() >= ITEMS_PER_DAY as usize;
        }
        all
    })
    .await?;
    for w in &site.watchers {
        until("first states", Duration::from_secs(120), || async { states(w).await.len() == USERS }).await?;
    }
    Ok(())
}

/// The presence of each watched user as `w`'s list shows it (users not yet accepted
/// or unknown left out).
async fn states(w: &Session) -> std::collections::HashMap<String, String> {
    let (_, body) = w.get(&list_path(&w.user_id)).await;
    body["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["subscription"] == json!("accepted") && e["presence"] != json!("unknown"))
                .filter_map(|e| Some((e["user_id"].as_str()?.to_owned(), e["presence"].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

async fn item_titles(reader: &Session, feed_id: &str) -> Vec<String> {
    let (_, body) = reader.get(&format!("/_tidings/client/v1/feeds/{feed_id}/items?limit=100")).await;
    body["items"]
        .as_array()
        .map(|i| i.iter().filter_map(|i| i["title"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// What one snapshot of the counters holds.
#[derive(Clone, Default)]
struct Counters {
    line: u64,
    relays: u64,
    by_class: [u64; 4],
}

async fn counters(site: &Site) -> Result<Counters, String> {
    let mut c = Counters {
        line: site.lines.iter().map(|(a, b)| a.bytes() + b.bytes()).sum(),
        relays: site.relays.iter().map(|(a, b)| a.bytes() + b.bytes()).sum(),
        by_class: [0; 4],
    };
    for (i, admin) in site.admins.iter().enumerate() {
        let (status, body) = admin.get(ADMIN_PEERS).await;
        if status != 200 {
            return Err(format!("{ADMIN_PEERS}: {status} {body}"));
        }
        for p in body["peers"].as_array().into_iter().flatten() {
            // The site's links only: alpha's entries, and each peer's entry for alpha.
            if i > 0 && p["server_name"] != json!(SITE) {
                continue;
            }
            for (k, class) in CLASSES.iter().enumerate() {
                c.by_class[k] += p["bytes_by_class"][class].as_u64().unwrap_or(0);
            }
        }
    }
    Ok(c)
}

/// One thing that happens in the day, at a virtual time.
enum Event {
    Presence { user: usize, change: u64 },
    Item { feed: usize, n: u64 },
}

fn schedule() -> Vec<(u64, Event)> {
    let mut events = Vec::new();
    let period = 3_600_000 / CHANGES_PER_HOUR;
    let stagger = period / USERS as u64;
    for change in 0..24 * CHANGES_PER_HOUR {
        for user in 0..USERS {
            events.push((change * period + user as u64 * stagger, Event::Presence { user, change }));
        }
    }
    let every = DAY_MS / ITEMS_PER_DAY;
    for n in 0..ITEMS_PER_DAY {
        for feed in 0..FEEDS {
            events.push((
                n * every + feed as u64 * (every / FEEDS as u64) + every / (2 * FEEDS as u64),
                Event::Item { feed, n },
            ));
        }
    }
    events.sort_by_key(|(t, _)| *t);
    events
}

fn presence_of(change: u64) -> &'static str {
    if change.is_multiple_of(2) { "unavailable" } else { "online" }
}

/// The figures of one day.
struct DayResult {
    mode: Mode,
    line: u64,
    relays: u64,
    by_class: [u64; 4],
    calls: usize,
    /// Of those, the calls that opened with a resume message (spec/link.md).
    resumed: usize,
    /// Per peer, in [`PEERS`] order: calls alpha made, calls the peer made.
    calls_by_line: Vec<(usize, usize)>,
    connected_min: f64,
    billed_min: u64,
}

async fn day(mode: Mode, scale: Scale) -> Result<DayResult, String> {
    eprintln!("site-day: {}: starting 5 servers and 20 origins", mode.name());
    let mut site = start(mode, scale).await?;
    eprintln!("site-day: {}: setting up watch edges and feeds", mode.name());
    set_up(&mut site).await?;
    // Let the setup's traffic drain (a few batch windows; in sessions, one call's wait).
    let drain = if mode == Mode::Sessions { SESSIONS_PRESENCE_WAIT_MS } else { 10 * BATCH_MS };
    tokio::time::sleep(scale.real(drain)).await;
    eprintln!("site-day: {}: replaying the day ({:?} real)", mode.name(), scale.real(DAY_MS));
    let before = counters(&site).await?;
    let start = Instant::now();
    let site = Arc::new(site);
    let mut puts = tokio::task::JoinSet::new();
    for (t, event) in schedule() {
        tokio::time::sleep_until(start + scale.real(t)).await;
        match event {
            Event::Presence { user, change } => {
                let site = Arc::clone(&site);
                puts.spawn(async move {
                    let u = &site.users[user];
                    let body = json!({"presence": presence_of(change)});
                    expect_ok("status", u.put(&status_path(&u.user_id), body).await).await
                });
            }
            Event::Item { feed, n } => site.origins[feed].publish(&format!("f{feed}-new{n}")),
        }
        while let Some(done) = puts.try_join_next() {
            done.map_err(|e| format!("a PUT task: {e}"))??;
        }
    }
    tokio::time::sleep_until(start + scale.real(DAY_MS)).await;
    let after = counters(&site).await?;
    let end = Instant::now();
    while let Some(done) = puts.join_next().await {
        done.map_err(|e| format!("a PUT task: {e}"))??;
    }
    let (mut calls, mut resumed, mut connected, mut billed) = (0, 0, 0.0, 0);
    let mut calls_by_line = Vec::new();
    for (a, b) in &site.lines {
        let in_day = |l: &Line| l.call_times().into_iter().filter(|(_, to)| to.unwrap_or(end) > start).count();
        calls_by_line.push((in_day(a), in_day(b)));
        let heads = a.heads().into_iter().chain(b.heads());
        for ((from, to), head) in a.call_times().into_iter().chain(b.call_times()).zip(heads) {
            let to = to.unwrap_or(end).min(end);
            if to <= start {
                continue;
            }
            calls += 1;
            resumed += usize::from(head.first() == Some(&0x80));
            let inside = to - from.max(start);
            connected += scale.virtual_ms(inside) / 60_000.0;
            billed += (scale.virtual_ms(to - from) / 60_000.0).ceil() as u64;
        }
    }
    if std::env::var_os("SITE_DAY_CALLS").is_some() {
        // Why each call was made and how it ended, from the servers' logs.
        let about_calls = ["calling:", "link up", "connection ended", "not delivered"];
        for srv in &site.servers {
            for l in srv.log().lines().filter(|l| about_calls.iter().any(|m| l.contains(m))) {
                eprintln!("{} {l}", srv.server_name());
            }
        }
    }
    // Everything arrived, once.
    let last: Vec<&str> = (0..USERS).map(|_| presence_of(24 * CHANGES_PER_HOUR - 1)).collect();
    for w in &site.watchers {
        until(&format!("{}'s last states", w.user_id), Duration::from_secs(120), || async {
            let s = states(w).await;
            site.users.iter().zip(&last).all(|(u, l)| s.get(&u.user_id).map(String::as_str) == Some(*l))
        })
        .await?;
    }
    for (f, id) in site.feed_ids.iter().enumerate() {
        let want: HashSet<String> = (0..ITEMS_PER_DAY).map(|n| format!("Item f{f}-new{n}")).collect();
        until(&format!("feed {f}'s new items"), Duration::from_secs(120), || async {
            let titles = item_titles(&site.reader, id).await;
            let new: Vec<&String> = titles.iter().filter(|t| want.contains(*t)).collect();
            let distinct: HashSet<&String> = new.iter().copied().collect();
            new.len() == want.len() && distinct.len() == want.len()
        })
        .await?;
    }
    Ok(DayResult {
        mode,
        line: after.line - before.line,
        relays: after.relays - before.relays,
        by_class: std::array::from_fn(|k| after.by_class[k] - before.by_class[k]),
        calls,
        resumed,
        calls_by_line,
        connected_min: connected,
        billed_min: billed,
    })
}

fn print(r: &DayResult) {
    println!("\n{}: bytes on the site's lines in 24 h", r.mode.name());
    let classified: u64 = r.by_class.iter().sum();
    for (k, class) in CLASSES.iter().enumerate() {
        println!("  {class:<10} {:>12}", r.by_class[k]);
    }
    println!("  {:<10} {:>12}", "other", r.line as i64 - classified as i64);
    println!("  {:<10} {:>12}  ({:.1} KB; aim < 207 KB)", "total", r.line, r.line as f64 / 1000.0);
    if r.mode != Mode::Http {
        println!("  HTTP outside the link during the day: {} B", r.relays);
        println!(
            "  calls {} ({} resumed), connected {:.1} min (aim < 15), billed {} min, cost ${:.2} at ${COST_PER_MINUTE:.2}/min",
            r.calls,
            r.resumed,
            r.connected_min,
            r.billed_min,
            r.billed_min as f64 * COST_PER_MINUTE
        );
        let lines: Vec<String> = PEERS
            .iter()
            .zip(&r.calls_by_line)
            .map(|(p, (by_site, by_peer))| format!("{p} {by_site} + {by_peer}"))
            .collect();
        println!("  calls per line (alpha's + the peer's): {}", lines.join(", "));
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut scale = 480;
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--scale", Some(v)) => match v.parse::<u64>() {
                Ok(s) if s > 0 => scale = s,
                _ => {
                    eprintln!("site-day: --scale takes a whole number above 0");
                    return ExitCode::FAILURE;
                }
            },
            ("--only", Some(v)) => {
                only = Some(match v.as_str() {
                    "link" => Mode::Link,
                    "sessions" => Mode::Sessions,
                    "http" => Mode::Http,
                    _ => {
                        eprintln!("site-day: --only takes link, sessions or http");
                        return ExitCode::FAILURE;
                    }
                })
            }
            _ => {
                eprintln!("usage: site-day [--scale N] [--only link|sessions|http]");
                return ExitCode::FAILURE;
            }
        }
    }
    tidings_sytest::bench::run_against_release("site-day", || async move {
        let scale = Scale(scale);
        println!("site-day at scale {} (a day in {:?})", scale.0, scale.real(DAY_MS));
        for mode in [Mode::Link, Mode::Sessions, Mode::Http] {
            if only.is_some_and(|o| o != mode) {
                continue;
            }
            match day(mode, scale).await {
                Ok(r) => print(&r),
                Err(e) => {
                    eprintln!("site-day: {}: {e}", mode.name());
                    return ExitCode::FAILURE;
                }
            }
        }
        ExitCode::SUCCESS
    })
}
