//! Feeds across sites, black-box: a fake origin on loopback and real `tidings`
//! processes federating over HTTP.
//!
//! Proves: three sites whose users read the same feed settle on one fetcher (the
//! lowest server name), so the origin sees one fetch per interval, and every user
//! gets each new item exactly once; a `fetch = "peers"` site never touches the
//! origin; a mirror that is killed is given up after `mirror_silence_ms` and the
//! origin takes over, with no item lost or repeated, and hands back when it
//! returns; a restart resumes without duplicates; the LAN mirror serves the cached
//! feed as Atom with conditional GET and `rel="cache"` links, and never fetches on
//! request.

use std::time::{Duration, Instant};

use tidings_sytest::feeds::{subscribe, synced_titles as synced};
use tidings_sytest::origin::FeedOrigin;
use tidings_sytest::{Method, ServerOptions, Session, Syncer, TestServer, Value, encode_component, eventually, json};

const PW: &str = "feeds-fed-pw-1";
/// Every poll interval here is exactly this (min = max), so fetches count intervals
/// (the spacing of requests to one host is set below it).
const INTERVAL_MS: u64 = 400;

fn site(name: &str, extra: &str) -> ServerOptions {
    ServerOptions::named(name).with_extra_toml(&format!(
        "[feeds]\nmin_interval_ms = {INTERVAL_MS}\nmax_interval_ms = {INTERVAL_MS}\nallow_private_addresses = true\n\
         mirror_silence_ms = 3000\nalive_interval_ms = 1000\nhost_spacing_ms = 100\n{extra}"
    ))
}

/// The caller's one feed as `GET /feeds` lists it.
async fn my_feed(s: &Session) -> Value {
    let (status, body) = s.get("/_tidings/client/v1/feeds").await;
    assert_eq!(status, 200, "{body}");
    body["feeds"][0].clone()
}

/// The one feed as the admin API shows it.
async fn admin_feed(admin: &Session) -> Value {
    let (status, body) = admin.get("/_tidings/admin/v1/feeds").await;
    assert_eq!(status, 200, "{body}");
    body["feeds"][0].clone()
}

/// Wait until `s`'s feed comes from `source`.
async fn wait_source(s: &Session, source: &str, within: Duration) {
    eventually(within, || async { my_feed(s).await["source"] == json!(source) }).await;
}

/// Sync `stream` until `title` arrives; every item title seen on the way.
async fn until_item(stream: &mut Syncer, title: &str, within: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    stream
        .until(within, |s| {
            seen.extend(synced(s));
            seen.iter().any(|t| t == title).then_some(())
        })
        .await;
    seen
}

/// A user on `hs` with a sync stream past its initial sync.
async fn reader(hs: &TestServer, name: &str) -> (Session, Syncer) {
    let s = hs.register(name, PW).await;
    let mut stream = s.syncer();
    stream.next(0).await;
    (s, stream)
}

/// Alpha fetches `origin`'s feed for its reader; then beta's reader subscribes and
/// ends up reading it through alpha. Beta's reader and its sync stream, started
/// before the subscription.
async fn alpha_then_beta(origin: &FeedOrigin, sites: &[TestServer]) -> (Session, Syncer) {
    let (ann, _) = reader(&sites[0], "ann").await;
    subscribe(&ann, &origin.feed_url()).await;
    wait_source(&ann, "origin", Duration::from_secs(20)).await;
    let (bob, stream) = reader(&sites[1], "bob").await;
    subscribe(&bob, &origin.feed_url()).await;
    // Beta may fetch once itself if alpha's announcement is still on its way; then
    // the tie-break hands the feed to alpha.
    wait_source(&bob, "peer:alpha.test", Duration::from_secs(20)).await;
    (bob, stream)
}

#[tokio::test]
async fn three_sites_share_one_fetch_per_interval_and_each_user_sees_each_item_once() {
    let origin = FeedOrigin::start(&["a1"]).await;
    let sites =
        TestServer::start_federation(vec![site("alpha.test", ""), site("beta.test", ""), site("gamma.test", "")]).await;
    let mut readers = Vec::new();
    for (hs, name) in sites.iter().zip(["ann", "bob", "cat"]) {
        let (s, stream) = reader(hs, name).await;
        subscribe(&s, &origin.feed_url()).await;
        readers.push((s, stream));
    }
    // They settle: alpha (the lowest name) fetches, the others subscribe through it.
    let within = Duration::from_secs(20);
    wait_source(&readers[0].0, "origin", within).await;
    wait_source(&readers[1].0, "peer:alpha.test", within).await;
    wait_source(&readers[2].0, "peer:alpha.test", within).await;
    for (s, stream) in &mut readers {
        let seen = until_item(stream, "Item a1", within).await;
        assert_eq!(seen, vec!["Item a1"], "{}: the first item, once", s.user_id);
    }

    // Steady state: over 12 intervals the origin sees about 12 fetches, not 36.
    tokio::time::sleep(Duration::from_millis(2 * INTERVAL_MS)).await; // let the start-up fetches pass
    let start = Instant::now();
    let before = origin.fetch_count();
    tokio::time::sleep(Duration::from_millis(12 * INTERVAL_MS)).await;
    let fetches = origin.fetch_count() - before;
    let intervals = start.elapsed().as_millis() as usize / INTERVAL_MS as usize;
    // At most one fetch per interval (three sites fetching would make three); at least
    // half as many (a loaded machine runs each poll's timer late).
    assert!(
        (intervals / 2..=intervals + 2).contains(&fetches),
        "{fetches} origin fetches in {intervals} intervals: one site should fetch, once per interval"
    );
    let admins = [sites[0].create_admin("root", PW).await, sites[1].create_admin("root", PW).await];
    let alpha = admin_feed(&admins[0]).await;
    assert_eq!(alpha["remote_watchers"], json!(2), "beta and gamma report their watchers: {alpha}");
    let beta = admin_feed(&admins[1]).await;
    assert_eq!(beta["source"], json!("peer:alpha.test"), "{beta}");

    // A new item reaches every user once; a second one is the barrier that no repeat follows.
    origin.publish("a2");
    for (s, stream) in &mut readers {
        assert_eq!(until_item(stream, "Item a2", within).await, vec!["Item a2"], "{}", s.user_id);
    }
    origin.publish("a3");
    for (s, stream) in &mut readers {
        assert_eq!(until_item(stream, "Item a3", within).await, vec!["Item a3"], "{}: no repeat", s.user_id);
    }
}

#[tokio::test]
async fn a_peers_site_never_touches_the_origin() {
    let origin = FeedOrigin::start(&["p1"]).await;
    let sites =
        TestServer::start_federation(vec![site("shore.test", ""), site("ship.test", "fetch = \"peers\"")]).await;
    let (sailor, mut stream) = reader(&sites[1], "sailor").await;
    subscribe(&sailor, &origin.feed_url()).await;
    let within = Duration::from_secs(20);
    assert_eq!(until_item(&mut stream, "Item p1", within).await, vec!["Item p1"]);
    assert_eq!(my_feed(&sailor).await["source"], json!("peer:shore.test"));
    origin.publish("p2");
    assert_eq!(until_item(&mut stream, "Item p2", within).await, vec!["Item p2"]);
    // Every fetch the origin saw is one shore counted; ship counted none.
    let shore_admin = sites[0].create_admin("root", PW).await;
    let ship_admin = sites[1].create_admin("root", PW).await;
    // Shore keeps fetching while it is asked: its count lies between what the origin
    // saw just before (less one fetch under way) and just after.
    let seen_before = origin.fetch_count() as u64;
    let shore = admin_feed(&shore_admin).await;
    let seen_after = origin.fetch_count() as u64;
    let ship = admin_feed(&ship_admin).await;
    let counted = shore["fetches"].as_u64().unwrap_or(0);
    assert!(
        (seen_before.saturating_sub(1)..=seen_after).contains(&counted),
        "origin saw {seen_before} to {seen_after}, shore made {counted}: {shore}"
    );
    assert_eq!(ship["fetches"], json!(0), "ship never fetched: {ship}");
    assert_eq!(shore["subscribers"], json!(0), "shore fetches it for ship alone: {shore}");
}

/// Alpha and beta, beta reading through alpha; alpha is killed while an item is
/// published, and after 3 s of silence beta fetches it itself: nothing lost, d1 not
/// again. The sites, the origin, beta's reader and its stream.
async fn mirror_dies() -> (FeedOrigin, Vec<TestServer>, Session, Syncer) {
    let origin = FeedOrigin::start(&["d1"]).await;
    let mut sites = TestServer::start_federation(vec![site("alpha.test", ""), site("beta.test", "")]).await;
    let (bob, mut stream) = alpha_then_beta(&origin, &sites).await;
    let within = Duration::from_secs(20);
    assert_eq!(until_item(&mut stream, "Item d1", within).await, vec!["Item d1"]);
    sites[0].kill9().await;
    origin.publish("d2");
    wait_source(&bob, "origin", within).await;
    assert_eq!(until_item(&mut stream, "Item d2", within).await, vec!["Item d2"], "nothing lost, d1 not again");
    (origin, sites, bob, stream)
}

#[tokio::test]
async fn a_dying_mirror_is_replaced_without_loss_or_repeats() {
    mirror_dies().await;
}

#[tokio::test]
async fn a_returning_mirror_takes_the_feed_back_without_repeats() {
    let (origin, mut sites, bob, mut stream) = mirror_dies().await;
    let within = Duration::from_secs(20);

    // Alpha comes back and fetches again; beta hands the feed back (alpha sorts lower).
    sites[0].restart().await;
    wait_source(&bob, "peer:alpha.test", within).await;
    origin.publish("d3");
    assert_eq!(until_item(&mut stream, "Item d3", within).await, vec!["Item d3"], "no repeats after the hand-back");
    origin.publish("d4");
    assert_eq!(until_item(&mut stream, "Item d4", within).await, vec!["Item d4"]);
}

#[tokio::test]
async fn a_restart_resumes_without_duplicates() {
    let origin = FeedOrigin::start(&["r1"]).await;
    let mut sites = TestServer::start_federation(vec![site("alpha.test", ""), site("beta.test", "")]).await;
    let (_bob, mut stream) = alpha_then_beta(&origin, &sites).await;
    let within = Duration::from_secs(20);
    assert_eq!(until_item(&mut stream, "Item r1", within).await, vec!["Item r1"]);
    sites[1].restart().await;
    origin.publish("r2");
    assert_eq!(until_item(&mut stream, "Item r2", within).await, vec!["Item r2"], "r1 not again after the restart");
}

#[tokio::test]
async fn the_lan_mirror_serves_atom_with_conditional_get_and_never_fetches_on_request() {
    let origin = FeedOrigin::start(&["m1", "m0"]).await;
    let sites = TestServer::start_federation(vec![site("alpha.test", ""), site("beta.test", "")]).await;
    let (_bob, mut stream) = alpha_then_beta(&origin, &sites).await;
    let within = Duration::from_secs(20);
    until_item(&mut stream, "Item m1", within).await;

    let path = format!("/_tidings/mirror/{}", encode_component(&origin.feed_url()));
    let client = sites[1].client();
    let first = client.raw(Method::GET, &path, &[], Vec::new()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("content-type"), Some("application/atom+xml; charset=utf-8"));
    let doc = first.text();
    assert!(doc.contains("<title>Item m1</title>") && doc.contains("<title>Item m0</title>"), "{doc}");
    let cache = format!("<link rel=\"cache\" href=\"{}/_tidings/mirror/\"", sites[0].base_url());
    assert!(doc.contains(&cache), "beta links to alpha, which mirrors the feed: {doc}");
    let etag = first.header("etag").expect("an ETag").to_owned();
    let again = client.raw(Method::GET, &path, &[("if-none-match", etag.as_str())], Vec::new()).await;
    assert_eq!(again.status, 304);

    // Never an open proxy: a feed nobody here reads is 404, and nothing is fetched.
    let before = origin.fetch_count();
    let other = format!("/_tidings/mirror/{}", encode_component(&format!("{}/other.xml", origin.base)));
    let refused = client.raw(Method::GET, &other, &[], Vec::new()).await;
    assert_eq!(refused.status, 404);
    assert_eq!(refused.json()["errcode"], json!("M_NOT_FOUND"));
    // Barrier: the next poll of the real feed (alpha's) comes; other.xml was never asked for.
    eventually(within, || async { origin.fetch_count() > before }).await;
    assert_eq!(origin.other_requests(), 0, "the mirror fetched on request");
}
