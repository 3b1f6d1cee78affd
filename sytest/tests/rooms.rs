//! Rooms against a real `tidings serve`: creation with presets, joining by ID and
//! alias, invites, kicks, bans, the auth rules' refusals, idempotent sends, event
//! IDs as content hashes, pagination both ways, redaction and the bad-input answers.

use tidings_sytest::rooms::{bodies, create_room, invite, join, room_path, send_event, send_text, try_send_text};
use tidings_sytest::{ServerOptions, TestServer, Value, assert_matrix_error, encode_component, json};

const PW: &str = "rooms-pw-1";

#[tokio::test]
async fn create_invite_join_talk_and_page_back() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let room = create_room(&alice, json!({"preset": "private_chat", "name": "Tea", "topic": "Leaves"})).await;
    assert!(room.starts_with('!') && room.ends_with(&format!(":{}", hs.server_name())), "{room}");

    // Invite-only: bob cannot join before the invite, and is told nothing of the room.
    let path = format!("/_matrix/client/v3/join/{}", encode_component(&room));
    assert_matrix_error(&bob.post(&path, json!({})).await, 404, "M_NOT_FOUND");
    invite(&alice, &room, &bob.user_id).await;
    join(&bob, &room).await;

    let (status, joined) = alice.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!((status, joined["joined_rooms"].clone()), (200, json!([room])));
    let (status, members) = bob.get(&room_path(&room, "/joined_members")).await;
    assert_eq!(status, 200, "{members}");
    let mut names: Vec<&String> = members["joined"].as_object().expect("joined").keys().collect();
    names.sort();
    assert_eq!(names, vec![&alice.user_id, &bob.user_id]);

    let mut sent = Vec::new();
    for i in 0..25 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        sent.push(send_text(who, &room, &format!("t{i}"), &format!("m{i}")).await);
    }
    // Back from the newest, in pages of 10, until `end` is gone.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut path = room_path(&room, "/messages?dir=b&limit=10");
        if let Some(f) = &from {
            path.push_str(&format!("&from={f}"));
        }
        let (status, page) = bob.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(bodies(&page["chunk"]));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected, "every message once, newest first");

    // Forward from the start, the same messages oldest first.
    let (_, page) = bob.get(&room_path(&room, "/messages?dir=f&limit=100")).await;
    let forward = bodies(&page["chunk"]);
    assert_eq!(forward, expected.iter().rev().cloned().collect::<Vec<_>>());
    assert!(page["end"].is_null(), "the whole room fits: no end token: {page}");
    let first_types: Vec<&str> =
        page["chunk"].as_array().expect("chunk")[..3].iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert_eq!(first_types, vec!["m.room.create", "m.room.member", "m.room.power_levels"]);

    // Forward from a token in the middle: exactly what came after it.
    let (_, back) = bob.get(&room_path(&room, "/messages?dir=b&limit=5")).await;
    let mid = back["end"].as_str().expect("end").to_owned();
    let (_, after) = bob.get(&room_path(&room, &format!("/messages?dir=f&from={mid}&limit=100"))).await;
    assert_eq!(bodies(&after["chunk"]), vec!["m20", "m21", "m22", "m23", "m24"]);

    // One event by ID; the ID is `$` + 43 characters of URL-safe base64.
    let id = &sent[3];
    assert!(id.starts_with('$') && id.len() == 44, "{id}");
    let (status, event) = alice.get(&room_path(&room, &format!("/event/{}", encode_component(id)))).await;
    assert_eq!((status, event["content"]["body"].clone()), (200, json!("m3")));

    // Filters on /messages: only bob's messages.
    let filter = encode_component(&json!({"senders": [bob.user_id]}).to_string());
    let (_, page) = alice.get(&room_path(&room, &format!("/messages?dir=b&limit=5&filter={filter}"))).await;
    assert_eq!(bodies(&page["chunk"]), vec!["m23", "m21", "m19", "m17", "m15"]);
}

#[tokio::test]
async fn a_reused_txn_id_returns_the_first_event_and_sends_nothing() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let room = create_room(&alice, json!({})).await;
    let first = send_text(&alice, &room, "same-txn", "once").await;
    let again = send_text(&alice, &room, "same-txn", "twice?").await;
    assert_eq!(first, again);
    // Another device of the same user has its own transaction IDs.
    let other = hs.login("alice", PW).await;
    let other_id = send_text(&other, &room, "same-txn", "other device").await;
    assert_ne!(other_id, first);
    let (_, page) = alice.get(&room_path(&room, "/messages?dir=b&limit=10")).await;
    assert_eq!(bodies(&page["chunk"]), vec!["other device", "once"]);
    // The repeat of the other device gets its own first event back.
    assert_eq!(send_text(&other, &room, "same-txn", "other again?").await, other_id);

    // A transaction ID is scoped to its endpoint: the same ID in another room, as
    // another event type, or to redact, is a new transaction.
    let second_room = create_room(&alice, json!({})).await;
    let elsewhere = send_text(&alice, &second_room, "same-txn", "second room").await;
    assert_ne!(elsewhere, first);
    let notice = send_event(&alice, &room, "m.notice.test", "same-txn", json!({"body": "another type"})).await;
    assert_ne!(notice, first);
    let redact_path = room_path(&room, &format!("/redact/{}/same-txn", encode_component(&notice)));
    let (status, redaction) = alice.put(&redact_path, json!({})).await;
    assert_eq!(status, 200, "{redaction}");
    assert!(![first.as_str(), notice.as_str()].contains(&redaction["event_id"].as_str().unwrap_or("")), "{redaction}");
    let (_, page) = alice.get(&room_path(&second_room, "/messages?dir=b&limit=1")).await;
    assert_eq!(bodies(&page["chunk"]), vec!["second room"]);

    // The same after a restart on the same data_dir.
    let mut hs = hs;
    hs.restart().await;
    let alice = hs.client().session(&alice.user_id, &alice.access_token, &alice.device_id);
    assert_eq!(send_text(&alice, &room, "same-txn", "after restart").await, first);
    assert_eq!(send_text(&alice, &second_room, "same-txn", "after restart").await, elsewhere);
    let (_, again) = alice.put(&redact_path, json!({})).await;
    assert_eq!(again["event_id"], redaction["event_id"], "{again}");
}

#[tokio::test]
async fn public_rooms_join_by_alias_and_appear_in_the_directory() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let room = create_room(
        &alice,
        json!({"preset": "public_chat", "visibility": "public", "room_alias_name": "lobby", "name": "The Lobby"}),
    )
    .await;
    let alias = format!("#lobby:{}", hs.server_name());
    let (status, resolved) = bob.get(&format!("/_matrix/client/v3/directory/room/{}", encode_component(&alias))).await;
    assert_eq!((status, resolved["room_id"].clone()), (200, json!(room)));
    join(&bob, &alias).await;
    let (status, list) = bob.get("/_matrix/client/v3/publicRooms").await;
    assert_eq!(status, 200, "{list}");
    let chunk = list["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.len(), 1, "{list}");
    assert_eq!(chunk[0]["room_id"], json!(room));
    assert_eq!(chunk[0]["num_joined_members"], json!(2));
    assert_eq!(chunk[0]["name"], json!("The Lobby"));
    assert_eq!(chunk[0]["canonical_alias"], json!(alias));
    // Redacting the name event takes the name out of the directory too.
    let (_, state) = alice.get(&room_path(&room, "/state")).await;
    let name_event = state
        .as_array()
        .and_then(|events| events.iter().find(|e| e["type"] == "m.room.name"))
        .and_then(|e| e["event_id"].as_str())
        .expect("the name event")
        .to_owned();
    let redact = room_path(&room, &format!("/redact/{}/n1", encode_component(&name_event)));
    assert_eq!(alice.put(&redact, json!({})).await.0, 200);
    let (_, list) = bob.get("/_matrix/client/v3/publicRooms").await;
    assert!(list["chunk"][0].get("name").is_none(), "{list}");
    assert_eq!(bob.get(&room_path(&room, "/state/m.room.name")).await, (200, json!({})));
    // A private room is not listed; the search term filters.
    create_room(&alice, json!({"name": "Secret"})).await;
    let (_, list) =
        bob.post("/_matrix/client/v3/publicRooms", json!({"filter": {"generic_search_term": "lobby"}})).await;
    assert_eq!(list["chunk"].as_array().map(Vec::len), Some(1), "{list}");
    let (_, list) =
        bob.post("/_matrix/client/v3/publicRooms", json!({"filter": {"generic_search_term": "secret"}})).await;
    assert_eq!(list["chunk"].as_array().map(Vec::len), Some(0), "{list}");
    // A taken alias is refused.
    let (status, body) = alice.post("/_matrix/client/v3/createRoom", json!({"room_alias_name": "lobby"})).await;
    assert_matrix_error(&(status, body), 400, "M_ROOM_IN_USE");
    // Another alias by PUT, and its removal.
    let second = format!("#hall:{}", hs.server_name());
    let path = format!("/_matrix/client/v3/directory/room/{}", encode_component(&second));
    assert_eq!(alice.put(&path, json!({"room_id": room})).await, (200, json!({})));
    assert_eq!(bob.get(&path).await.1["room_id"], json!(room));
    assert_matrix_error(&bob.delete(&path).await, 403, "M_FORBIDDEN");
    assert_eq!(alice.delete(&path).await, (200, json!({})));
    assert_matrix_error(&bob.get(&path).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn auth_rules_kick_ban_power_levels_and_redactions() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let bob = hs.register("bob", PW).await;
    let eve = hs.register("eve", PW).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&bob, &room).await;
    join(&eve, &room).await;

    // Bob (level 0) may not set the topic, kick or ban; alice (100) may.
    assert_matrix_error(
        &bob.put(&room_path(&room, "/state/m.room.topic/"), json!({"topic": "x"})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(alice.put(&room_path(&room, "/state/m.room.topic"), json!({"topic": "ok"})).await.0, 200);
    let (status, topic) = bob.get(&room_path(&room, "/state/m.room.topic")).await;
    assert_eq!((status, topic), (200, json!({"topic": "ok"})));
    assert_matrix_error(
        &bob.post(&room_path(&room, "/kick"), json!({"user_id": eve.user_id})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_matrix_error(
        &bob.post(&room_path(&room, "/kick"), json!({"user_id": alice.user_id})).await,
        403,
        "M_FORBIDDEN",
    );

    // A redaction: one's own always, another's only with the redact level.
    let eves = send_text(&eve, &room, "e1", "rude").await;
    let redact = |id: &str, txn: &str| room_path(&room, &format!("/redact/{}/{txn}", encode_component(id)));
    assert_matrix_error(&bob.put(&redact(&eves, "r1"), json!({})).await, 403, "M_FORBIDDEN");
    let (status, r) = alice.put(&redact(&eves, "r2"), json!({"reason": "spam"})).await;
    assert_eq!(status, 200, "{r}");
    let (_, event) = bob.get(&room_path(&room, &format!("/event/{}", encode_component(&eves)))).await;
    assert_eq!(event["content"], json!({}), "the content is gone: {event}");
    assert_eq!(event["unsigned"]["redacted_because"]["event_id"], r["event_id"], "{event}");

    // Kick: eve is out and may not send; she may join again (public room).
    assert_eq!(
        alice.post(&room_path(&room, "/kick"), json!({"user_id": eve.user_id, "reason": "cool off"})).await.0,
        200
    );
    assert_matrix_error(&try_send_text(&eve, &room, "e2", "still here?").await, 403, "M_FORBIDDEN");
    join(&eve, &room).await;
    // Ban: she is out, may not join again, until unbanned.
    assert_eq!(alice.post(&room_path(&room, "/ban"), json!({"user_id": eve.user_id})).await.0, 200);
    let join_path = format!("/_matrix/client/v3/join/{}", encode_component(&room));
    assert_matrix_error(&eve.post(&join_path, json!({})).await, 403, "M_FORBIDDEN");
    assert_matrix_error(
        &alice.post(&room_path(&room, "/invite"), json!({"user_id": eve.user_id})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(alice.post(&room_path(&room, "/unban"), json!({"user_id": eve.user_id})).await.0, 200);
    join(&eve, &room).await;

    // Power levels: alice raises bob to 50; now bob sets the topic; he may not raise himself past 50.
    let (_, mut levels) = alice.get(&room_path(&room, "/state/m.room.power_levels/")).await;
    levels["users"][&bob.user_id] = json!(50);
    assert_eq!(alice.put(&room_path(&room, "/state/m.room.power_levels"), levels.clone()).await.0, 200);
    assert_eq!(bob.put(&room_path(&room, "/state/m.room.topic"), json!({"topic": "bob's"})).await.0, 200);
    levels["users"][&bob.user_id] = json!(100);
    assert_matrix_error(&bob.put(&room_path(&room, "/state/m.room.power_levels"), levels).await, 403, "M_FORBIDDEN");

    // Leave, then forget.
    assert_eq!(bob.post(&room_path(&room, "/leave"), json!({})).await, (200, json!({})));
    assert_matrix_error(&try_send_text(&bob, &room, "b1", "gone").await, 403, "M_FORBIDDEN");
    assert_eq!(bob.post(&room_path(&room, "/forget"), json!({})).await, (200, json!({})));
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let room = create_room(&alice, json!({})).await;
    // Over 65,536 bytes: 413.
    let big = "x".repeat(70_000);
    assert_matrix_error(&try_send_text(&alice, &room, "big", &big).await, 413, "M_TOO_LARGE");
    // Not canonical JSON (a float): 400.
    let path = room_path(&room, "/send/m.room.message/f1");
    assert_matrix_error(&alice.put(&path, json!({"body": "x", "n": 1.5})).await, 400, "M_BAD_JSON");
    // A state key too long, a bad room ID, an unknown room.
    let long_key = "k".repeat(300);
    assert_matrix_error(
        &alice.put(&room_path(&room, &format!("/state/org.example/{long_key}")), json!({})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_matrix_error(&alice.get("/_matrix/client/v3/rooms/not-a-room/state").await, 400, "M_INVALID_PARAM");
    let unknown = format!("!nope:{}", hs.server_name());
    assert_matrix_error(&try_send_text(&alice, &unknown, "u1", "hi").await, 404, "M_NOT_FOUND");
    // createRoom: unknown preset, other server's invitee, unsupported version.
    let create = |body: Value| alice.post("/_matrix/client/v3/createRoom", body);
    assert_matrix_error(&create(json!({"preset": "party"})).await, 400, "M_INVALID_PARAM");
    assert_matrix_error(&create(json!({"invite": ["@x:elsewhere.test"]})).await, 403, "M_FORBIDDEN");
    assert_matrix_error(&create(json!({"room_version": "1"})).await, 400, "M_UNSUPPORTED_ROOM_VERSION");
    // Membership through the state endpoint is refused.
    let member = room_path(&room, &format!("/state/m.room.member/{}", encode_component(&alice.user_id)));
    assert_matrix_error(&alice.put(&member, json!({"membership": "leave"})).await, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn sends_and_room_creation_are_rate_limited() {
    let opts = ServerOptions::default()
        .with_rate_limits(true)
        .with_key("rate_limits", "room_send", "{ per_second = 0.001, burst = 3 }")
        .with_key("rate_limits", "room_create", "{ per_second = 0.001, burst = 1 }");
    let hs = TestServer::start(opts).await;
    let alice = hs.register("alice", PW).await;
    let room = create_room(&alice, json!({})).await;
    assert_matrix_error(&alice.post("/_matrix/client/v3/createRoom", json!({})).await, 429, "M_LIMIT_EXCEEDED");
    for i in 0..3 {
        send_text(&alice, &room, &format!("r{i}"), "ok").await;
    }
    let limited = try_send_text(&alice, &room, "r3", "too many").await;
    assert_matrix_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{}", limited.1);
}
