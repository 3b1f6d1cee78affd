//! A backlog larger than one transaction drains without a new wake-up.
//!
//! One transaction carries at most 100 EDUs (and a transport's byte budget). When the
//! outbox of a lane holds more, the rest must follow as soon as the first is
//! acknowledged: nothing else will wake that lane (the wake-up that queued the rows
//! was spent on the first transaction). A sender that waited for the next wake-up
//! kept the rest of a large feed backlog queued until something unrelated happened.
//!
//! The rows go straight into the stopped sender's outbox table (real rows, as a feed
//! relay writes them); the receiver drops them as feed items for a feed it does not
//! know, after they crossed.

use std::time::Duration;

use tidings_sytest::{ServerOptions, TestServer, json, try_eventually};

const PW: &str = "federation-backlog-pw-1";
/// More than two transactions' worth of EDUs (100 each).
const ROWS: usize = 250;

/// Queue `rows` bulk-lane EDUs for `destination` in the (stopped) server's outbox.
fn queue_bulk(data_dir: &std::path::Path, destination: &str, rows: usize) {
    let db = rusqlite::Connection::open(data_dir.join("tidings.sqlite")).expect("open the sender's database");
    for n in 0..rows {
        let content = json!({"feed_id": "f-backlog", "items": [{"item_id": format!("i{n}"), "title": "ice"}]});
        db.execute(
            "INSERT INTO federation_outbox (destination, edu_type, content, created_ts, lane) VALUES (?1, 'tidings.feed_items', ?2, 0, 1)",
            rusqlite::params![destination, content.to_string()],
        )
        .expect("queue a bulk EDU");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_several_transactions_drains_without_another_wake_up() {
    let mut servers = TestServer::start_federation(vec![
        ServerOptions { batch_ms: 100, ..ServerOptions::named("sender.test") },
        ServerOptions { batch_ms: 100, ..ServerOptions::named("receiver.test") },
    ])
    .await;
    let receiver_admin = servers[1].create_admin("admin", PW).await;
    let sender_admin = servers[0].create_admin("admin", PW).await;
    let before = receiver_admin.federation_peer("sender.test").await["txns_received"].as_u64().unwrap_or(0);

    servers[0].stop().await;
    queue_bulk(&servers[0].data_dir(), "receiver.test", ROWS);
    servers[0].restart().await;

    let drained = try_eventually(Duration::from_secs(30), || async {
        let entry = sender_admin.federation_peer("receiver.test").await;
        if entry["queue_len"] == json!(0) { Ok(()) } else { Err(entry) }
    })
    .await;
    if let Err(entry) = drained {
        panic!("the backlog of {ROWS} bulk EDUs did not drain: {entry}");
    }
    let received = receiver_admin.federation_peer("sender.test").await["txns_received"].as_u64().unwrap_or(0) - before;
    assert!(received >= 3, "{ROWS} EDUs take at least 3 transactions of 100; the receiver counted {received}");
}
