//! `/sync` with rooms against a real `tidings serve`: joined rooms with state and
//! timeline, incremental timelines, `limited` with a `prev_batch` that `/messages`
//! continues from without a gap, invites with stripped state, leaves, filters
//! (timeline limit, types, lazy-loaded members), typing, receipts, unread and
//! highlight counts, and no event skipped or repeated under concurrent senders.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use tidings_sytest::rooms::{bodies, create_room, invite, join, room_path, send_event, send_text, timeline};
use tidings_sytest::{ServerOptions, Session, TestServer, Value, encode_component, json};

const PW: &str = "rooms-sync-pw";

fn state_types(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["state"]["events"]
        .as_array()
        .map(|a| a.iter().map(|e| e["type"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn initial_incremental_limited_and_prev_batch() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "Sync room"})).await;
    join(&bob, &room).await;
    send_text(&alice, &room, "a0", "hello").await;

    let one = json!({"room": {"timeline": {"limit": 1}}}).to_string();
    let (status, first) = bob.sync_with(&[("filter", &one)]).await;
    assert_eq!(status, 200, "{first}");
    let joined = &first["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], json!(true), "{joined}");
    assert!(joined.is_object(), "bob's initial sync has the room: {first}");
    assert_eq!(bodies(timeline(&first, &room)), vec!["hello"]);
    let types = state_types(&first, &room);
    for t in ["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name", "m.room.member"] {
        assert!(types.iter().any(|x| x == t), "the state before the timeline has {t}: {types:?}");
    }
    // With the default limit (10) the whole room fits: its state events are in the timeline.
    let whole = bob.sync(None, 0).await;
    let events = timeline(&whole, &room).as_array().expect("timeline").clone();
    assert_eq!(events.first().map(|e| e["type"].clone()), Some(json!("m.room.create")), "{whole}");
    assert!(state_types(&whole, &room).is_empty(), "nothing before the create event: {whole}");
    assert_eq!(joined["summary"]["m.joined_member_count"], json!(2), "{joined}");
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();

    // A long poll wakes for a new message, and carries only it.
    let bob2 = bob.clone();
    let since2 = since.clone();
    let poll = tokio::spawn(async move { bob2.sync(Some(&since2), 20_000).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_text(&alice, &room, "a1", "are you there").await;
    let woke = tokio::time::timeout(Duration::from_secs(5), poll).await.expect("woke in time").expect("task");
    assert_eq!(bodies(timeline(&woke, &room)), vec!["are you there"]);
    assert_ne!(woke["rooms"]["join"][&room]["timeline"]["limited"], json!(true), "{woke}");
    assert!(state_types(&woke, &room).is_empty(), "no state in an unlimited incremental sync");
    let since = woke["next_batch"].as_str().expect("next_batch").to_owned();

    // 15 messages and a topic change with a timeline limit of 5: limited, the topic in state.
    alice.put(&room_path(&room, "/state/m.room.topic"), json!({"topic": "new"})).await;
    for i in 0..15 {
        send_text(&alice, &room, &format!("b{i}"), &format!("n{i}")).await;
    }
    let filter = json!({"room": {"timeline": {"limit": 5}}}).to_string();
    let (status, limited) = bob.sync_with(&[("since", &since), ("filter", &filter)]).await;
    assert_eq!(status, 200, "{limited}");
    let tl = &limited["rooms"]["join"][&room]["timeline"];
    assert_eq!(tl["limited"], json!(true), "{tl}");
    assert_eq!(bodies(&tl["events"]), vec!["n10", "n11", "n12", "n13", "n14"]);
    assert!(state_types(&limited, &room).contains(&"m.room.topic".to_owned()), "the gap's state change: {limited}");
    // prev_batch continues back without a gap, down to the previous since.
    let prev = tl["prev_batch"].as_str().expect("prev_batch");
    let path = room_path(&room, &format!("/messages?dir=b&from={prev}&to={since}&limit=100"));
    let (_, page) = bob.get(&path).await;
    let back: Vec<String> = bodies(&page["chunk"]);
    assert_eq!(back, (0..10).rev().map(|i| format!("n{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn invites_leaves_and_history_visibility_in_sync() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let room = create_room(&alice, json!({"name": "Private", "topic": "hush"})).await;
    send_text(&alice, &room, "s0", "before the invite").await;
    let mut stream = bob.syncer();
    stream.next(0).await;
    invite(&alice, &room, &bob.user_id).await;
    let invite_sync = stream.until(Duration::from_secs(10), |s| s["rooms"]["invite"].get(&room).cloned()).await;
    let stripped = invite_sync["invite_state"]["events"].as_array().expect("invite_state");
    let types: Vec<&str> = stripped.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert!(types.contains(&"m.room.name") && types.contains(&"m.room.member"), "{types:?}");
    assert!(!stripped.iter().any(|e| e["type"] == "m.room.message"), "no messages in an invite: {invite_sync}");
    join(&bob, &room).await;
    let joined = stream.until(Duration::from_secs(10), |s| s["rooms"]["join"].get(&room).cloned()).await;
    // History is shared (private_chat): the message before the invite is visible.
    assert!(bodies(&joined["timeline"]["events"]).contains(&"before the invite".to_owned()), "{joined}");
    let state: Vec<&str> =
        joined["state"]["events"].as_array().expect("state").iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert!(state.contains(&"m.room.create"), "a new join carries the full state: {state:?}");

    // Kicked: the room moves to `leave`, with the kick in its timeline.
    alice.post(&room_path(&room, "/kick"), json!({"user_id": bob.user_id})).await;
    let left = stream.until(Duration::from_secs(10), |s| s["rooms"]["leave"].get(&room).cloned()).await;
    let events = left["timeline"]["events"].as_array().expect("timeline");
    assert!(events.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == json!(bob.user_id)), "{left}");
    // After that, what alice says stays hidden from bob: in sync and in /messages.
    send_text(&alice, &room, "s1", "after the kick").await;
    let marker_room = create_room(&bob, json!({})).await;
    send_text(&bob, &marker_room, "m0", "marker").await;
    stream.until(Duration::from_secs(10), |s| s["rooms"]["join"].get(&marker_room).cloned()).await;
    let (status, page) = bob.get(&room_path(&room, "/messages?dir=b&limit=50")).await;
    assert_eq!(status, 200, "{page}");
    assert!(!bodies(&page["chunk"]).contains(&"after the kick".to_owned()), "{page}");
    assert!(bodies(&page["chunk"]).contains(&"before the invite".to_owned()), "{page}");
}

#[tokio::test]
async fn joined_visibility_hides_what_came_before_the_join() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let room = create_room(
        &alice,
        json!({"preset": "public_chat",
               "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}]}),
    )
    .await;
    send_text(&alice, &room, "h0", "before bob").await;
    join(&bob, &room).await;
    send_text(&alice, &room, "h1", "after bob").await;
    let (_, page) = bob.get(&room_path(&room, "/messages?dir=b&limit=50")).await;
    assert_eq!(bodies(&page["chunk"]), vec!["after bob"]);
    let sync = bob.sync(None, 0).await;
    assert_eq!(bodies(timeline(&sync, &room)), vec!["after bob"]);
}

#[tokio::test]
async fn filters_typing_receipts_and_unread_counts() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    let carol = hs.register("carol", PW).await;
    join(&carol, &room).await;
    send_text(&carol, &room, "c0", "carol speaks").await;
    send_event(&alice, &room, "org.example.custom", "x0", json!({"n": 1})).await;

    // Types filter and lazy-loaded members: only messages; only carol's (and bob's own) member event.
    let filter = json!({"room": {"timeline": {"types": ["m.room.message"]},
                                  "state": {"lazy_load_members": true}}})
    .to_string();
    let (_, sync) = bob.sync_with(&[("filter", &filter)]).await;
    let events = timeline(&sync, &room).as_array().expect("timeline").clone();
    assert!(events.iter().all(|e| e["type"] == "m.room.message"), "{events:?}");
    let members: Vec<String> = sync["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .expect("state")
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
        .collect();
    assert!(members.contains(&carol.user_id), "{members:?}");
    assert!(!members.contains(&alice.user_id), "alice sent nothing in the timeline: {members:?}");
    // not_rooms drops the room.
    let filter = json!({"room": {"not_rooms": [room]}}).to_string();
    let (_, sync) = bob.sync_with(&[("filter", &filter)]).await;
    assert!(sync["rooms"]["join"].get(&room).is_none(), "{sync}");

    // Unread: two messages from alice, one mentioning bob.
    let mut stream = bob.syncer();
    stream.next(0).await;
    send_text(&alice, &room, "a1", "plain").await;
    let mention = send_text(&alice, &room, "a2", "hey bob, look").await;
    let counts = stream
        .until(Duration::from_secs(10), |s| {
            let c = &s["rooms"]["join"][&room]["unread_notifications"];
            (c["notification_count"].as_u64()? >= 3).then(|| c.clone())
        })
        .await;
    assert_eq!(counts, json!({"notification_count": 3, "highlight_count": 1}), "carol's, then alice's two");
    // Each sync counts on from the last; a redaction takes a counted message out again.
    let again = send_text(&alice, &room, "a3", "bob: and again").await;
    let room_id = room.as_str();
    let unread_is = |want: Value| {
        move |s: &Value| {
            let c = &s["rooms"]["join"][room_id]["unread_notifications"];
            (c.is_object() && *c == want).then_some(())
        }
    };
    stream.until(Duration::from_secs(10), unread_is(json!({"notification_count": 4, "highlight_count": 2}))).await;
    let redact = room_path(&room, &format!("/redact/{}/r1", encode_component(&mention)));
    assert_eq!(bob.put(&redact, json!({})).await.0, 403, "bob may not redact alice's message");
    assert_eq!(alice.put(&redact, json!({})).await.0, 200);
    stream.until(Duration::from_secs(10), unread_is(json!({"notification_count": 3, "highlight_count": 1}))).await;
    let mention = again;
    // A read receipt clears them, and shows in everyone's ephemeral.
    let receipt = room_path(&room, &format!("/receipt/m.read/{}", encode_component(&mention)));
    assert_eq!(bob.post(&receipt, json!({})).await, (200, json!({})));
    let after = stream
        .until(Duration::from_secs(10), |s| {
            let c = &s["rooms"]["join"][&room]["unread_notifications"];
            (c["notification_count"].as_u64()? == 0).then(|| s.clone())
        })
        .await;
    let eph = after["rooms"]["join"][&room]["ephemeral"]["events"].as_array().expect("ephemeral").clone();
    let receipt_event = eph.iter().find(|e| e["type"] == "m.receipt").expect("m.receipt");
    assert!(receipt_event["content"][&mention]["m.read"][&bob.user_id]["ts"].is_u64(), "{receipt_event}");
    let mut alice_stream = alice.syncer();
    let seen = alice_stream
        .until(Duration::from_secs(10), |s| {
            s["rooms"]["join"][&room]["ephemeral"]["events"]
                .as_array()?
                .iter()
                .find(|e| e["type"] == "m.receipt")
                .cloned()
        })
        .await;
    assert!(seen["content"][&mention]["m.read"][&bob.user_id].is_object(), "{seen}");

    // Typing: shows, then stops.
    let typing = room_path(&room, &format!("/typing/{}", encode_component(&alice.user_id)));
    assert_eq!(alice.put(&typing, json!({"typing": true, "timeout": 20000})).await, (200, json!({})));
    let typing_ids = |s: &Value| -> Option<Vec<Value>> {
        s["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()?
            .iter()
            .find(|e| e["type"] == "m.typing")
            .and_then(|e| e["content"]["user_ids"].as_array().cloned())
    };
    let ids = stream.until(Duration::from_secs(10), |s| typing_ids(s).filter(|ids| !ids.is_empty())).await;
    assert_eq!(ids, vec![json!(alice.user_id)]);
    assert_eq!(alice.put(&typing, json!({"typing": false})).await, (200, json!({})));
    stream.until(Duration::from_secs(10), |s| typing_ids(s).filter(|ids| ids.is_empty())).await;
    // Typing for someone else is refused; so is typing in a room one is not in.
    let other = room_path(&room, &format!("/typing/{}", encode_component(&bob.user_id)));
    assert_eq!(alice.put(&other, json!({"typing": true})).await.0, 403);
}

#[tokio::test]
async fn typing_expires_on_its_timeout() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    let mut stream = bob.syncer();
    stream.next(0).await;
    let typing = room_path(&room, &format!("/typing/{}", encode_component(&alice.user_id)));
    // Long enough that bob's next sync, on a loaded machine, still finds her typing.
    alice.put(&typing, json!({"typing": true, "timeout": 3000})).await;
    let ids = |s: &Value| -> Option<Vec<Value>> {
        s["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()?
            .iter()
            .find(|e| e["type"] == "m.typing")
            .and_then(|e| e["content"]["user_ids"].as_array().cloned())
    };
    stream.until(Duration::from_secs(10), |s| ids(s).filter(|i| !i.is_empty())).await;
    // Nobody stops it: the timer does, and the long poll wakes for it.
    stream.until(Duration::from_secs(10), |s| ids(s).filter(|i| i.is_empty())).await;
}

/// Every message of `room` a syncer sees, following `limited` gaps back with `/messages`.
async fn read_all(reader: Session, room: String, since: String, expected: usize) -> Vec<String> {
    let filter = json!({"room": {"timeline": {"limit": 50}}}).to_string();
    let mut since = Some(since);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < expected && tokio::time::Instant::now() < deadline {
        let mut params = vec![("filter", filter.as_str()), ("timeout", "5000")];
        if let Some(s) = &since {
            params.push(("since", s.as_str()));
        }
        let (status, sync) = reader.sync_with(&params).await;
        assert_eq!(status, 200, "{sync}");
        let tl = &sync["rooms"]["join"][&room]["timeline"];
        if let (Some(prev), Some(s), true) = (tl["prev_batch"].as_str(), &since, tl["limited"] == json!(true)) {
            // Fill the gap between the last sync and this timeline.
            let mut gap = Vec::new();
            let mut from = prev.to_owned();
            loop {
                let path = room_path(&room, &format!("/messages?dir=b&from={from}&to={s}&limit=100"));
                let (_, page) = reader.get(&path).await;
                gap.extend(bodies(&page["chunk"]));
                match page["end"].as_str() {
                    Some(end) => from = end.to_owned(),
                    None => break,
                }
            }
            gap.reverse();
            seen.extend(gap);
        }
        seen.extend(bodies(&tl["events"]));
        since = Some(sync["next_batch"].as_str().expect("next_batch").to_owned());
    }
    seen
}

#[tokio::test]
async fn no_event_is_skipped_or_repeated_under_concurrent_senders() {
    const WRITERS: usize = 20;
    const EACH: usize = 50;
    let hs = TestServer::start(ServerOptions::default()).await;
    let owner = hs.register("owner", PW).await;
    let room = create_room(&owner, json!({"preset": "public_chat"})).await;
    let reader = hs.register("reader", PW).await;
    join(&reader, &room).await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let s = hs.register(&format!("w{w}"), PW).await;
        join(&s, &room).await;
        writers.push(s);
    }
    let since = reader.sync(None, 0).await["next_batch"].as_str().expect("next_batch").to_owned();
    let reading = tokio::spawn(read_all(reader.clone(), room.clone(), since, WRITERS * EACH));
    let mut tasks = Vec::new();
    for (w, s) in writers.into_iter().enumerate() {
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                send_text(&s, &room, &format!("t{i}"), &format!("{w}:{i}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let seen = reading.await.expect("reader");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no message twice");
    assert_eq!(seen.len(), WRITERS * EACH, "every message once");
    // Each writer's messages arrive in the order they were sent.
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    for m in &seen {
        let (w, i) = m.split_once(':').expect("w:i");
        let (w, i): (usize, usize) = (w.parse().expect("w"), i.parse().expect("i"));
        if let Some(prev) = last.insert(w, i) {
            assert!(i > prev, "writer {w}: {i} after {prev}");
        }
    }
    // And the sync order is the room's order, as /messages pages it.
    let mut forward = Vec::new();
    let mut from = "s0".to_owned();
    loop {
        let (_, page) = reader.get(&room_path(&room, &format!("/messages?dir=f&from={from}&limit=200"))).await;
        forward.extend(bodies(&page["chunk"]));
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    assert_eq!(forward, seen, "sync and /messages agree on the order");
}

/// A woken long poll reads a room's newest events, and counts its unread ones, from
/// memory (a window of the newest 64 events per room); a range the window does not
/// hold (a client away for longer, a server just restarted) is read from the store.
/// The answers must be the same either way: this walks a client across both.
#[tokio::test]
async fn timelines_and_unread_counts_agree_past_the_window_and_across_a_restart() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    let hundred = json!({"room": {"timeline": {"limit": 100}}}).to_string();
    let token = |sync: &Value| sync["next_batch"].as_str().expect("next_batch").to_owned();
    let sync_since = |since: String| {
        let (bob, filter) = (bob.clone(), hundred.clone());
        async move {
            let (status, body) = bob.sync_with(&[("since", &since), ("filter", &filter)]).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let counts = |sync: &Value| sync["rooms"]["join"][&room]["unread_notifications"].clone();
    let (_, first) = bob.sync_with(&[("filter", &hundred)]).await;
    let before_all = token(&first);

    // 80 messages: more than the window holds.
    for i in 0..80 {
        send_text(&alice, &room, &format!("w{i}"), &format!("m{i}")).await;
    }
    let all = sync_since(before_all.clone()).await;
    let want: Vec<String> = (0..80).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies(timeline(&all, &room)), want, "all 80, in order");
    assert_ne!(all["rooms"]["join"][&room]["timeline"]["limited"], json!(true), "not limited");
    assert_eq!(counts(&all), json!({"notification_count": 80, "highlight_count": 0}));

    // Continued from there (the window holds the range): two more, one a mention.
    let after_80 = token(&all);
    send_text(&alice, &room, "w80", "plain").await;
    send_text(&alice, &room, "w81", "bob, look").await;
    let more = sync_since(after_80).await;
    assert_eq!(bodies(timeline(&more, &room)), vec!["plain", "bob, look"]);
    assert_eq!(counts(&more), json!({"notification_count": 82, "highlight_count": 1}));

    // After a restart the window starts empty: the same tokens give the same answers.
    let after_82 = token(&more);
    hs.restart().await;
    send_text(&alice, &room, "w82", "after the restart").await;
    let resumed = sync_since(after_82).await;
    assert_eq!(bodies(timeline(&resumed, &room)), vec!["after the restart"]);
    assert_eq!(counts(&resumed), json!({"notification_count": 83, "highlight_count": 1}));
    let next = token(&resumed);
    send_text(&alice, &room, "w83", "and once more").await;
    let continued = sync_since(next).await;
    assert_eq!(bodies(timeline(&continued, &room)), vec!["and once more"]);
    assert_eq!(counts(&continued), json!({"notification_count": 84, "highlight_count": 1}));
    let from_the_start = sync_since(before_all).await;
    assert_eq!(bodies(timeline(&from_the_start, &room)).len(), 84);
    assert_eq!(counts(&from_the_start), json!({"notification_count": 84, "highlight_count": 1}));
}
