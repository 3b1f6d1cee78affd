//! A person who is not in a room learns nothing of it: every room endpoint answers
//! a private room exactly as it answers one that does not exist, `/sync` carries
//! nothing of it, and aliases of private rooms do not resolve for outsiders. Public
//! rooms are known to anyone (they may join), but their history is read only by members.

use tidings_sytest::rooms::{create_room, room_path, send_text};
use tidings_sytest::{Method, ServerOptions, Session, TestServer, Value, encode_component, json};

const PW: &str = "rooms-privacy-pw";

/// Every room endpoint an outsider could try, as (method, path, body).
fn probes(room: &str, event: &str, me: &str) -> Vec<(Method, String, Option<Value>)> {
    let e = encode_component(event);
    let get = |tail: String| (Method::GET, room_path(room, &tail), None);
    vec![
        get("/state".into()),
        get("/state/m.room.name".into()),
        get("/state/m.room.member/".to_owned() + &encode_component(me)),
        get("/members".into()),
        get("/joined_members".into()),
        get("/messages?dir=b".into()),
        get(format!("/event/{e}")),
        get(format!("/context/{e}")),
        (Method::GET, format!("/_matrix/client/v1/rooms/{}/relations/{e}", encode_component(room)), None),
        (Method::GET, format!("/_matrix/client/v1/rooms/{}/threads", encode_component(room)), None),
        (Method::PUT, room_path(room, "/send/m.room.message/p1"), Some(json!({"body": "x"}))),
        (Method::PUT, room_path(room, "/state/m.room.topic"), Some(json!({"topic": "x"}))),
        (Method::PUT, room_path(room, &format!("/redact/{e}/p2")), Some(json!({}))),
        (Method::POST, room_path(room, &format!("/receipt/m.read/{e}")), Some(json!({}))),
        (Method::POST, room_path(room, "/read_markers"), Some(json!({"m.fully_read": event}))),
        (Method::PUT, room_path(room, &format!("/typing/{}", encode_component(me))), Some(json!({"typing": true}))),
        (Method::POST, room_path(room, "/invite"), Some(json!({"user_id": me}))),
        (Method::POST, room_path(room, "/leave"), Some(json!({}))),
        (Method::POST, room_path(room, "/forget"), Some(json!({}))),
        (Method::POST, format!("/_matrix/client/v3/join/{}", encode_component(room)), Some(json!({}))),
        (Method::GET, format!("/_matrix/client/v3/directory/list/room/{}", encode_component(room)), None),
    ]
}

async fn answers(who: &Session, room: &str, event: &str) -> Vec<(u16, Value)> {
    let mut out = Vec::new();
    for (method, path, body) in probes(room, event, &who.user_id) {
        out.push(who.request(method, &path, body).await);
    }
    out
}

#[tokio::test]
async fn an_outsider_cannot_tell_a_private_room_from_none() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let eve = hs.register("eve", PW).await;
    let room = create_room(&alice, json!({"name": "Secret plans", "room_alias_name": "plans"})).await;
    let event = send_text(&alice, &room, "s1", "the plan").await;
    let typing = room_path(&room, &format!("/typing/{}", encode_component(&alice.user_id)));
    alice.put(&typing, json!({"typing": true, "timeout": 30000})).await;

    let real = answers(&eve, &room, &event).await;
    let fake_room = format!("!doesnotexist:{}", hs.server_name());
    let fake_event = "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let none = answers(&eve, &fake_room, fake_event).await;
    for ((i, a), b) in real.iter().enumerate().zip(none.iter()) {
        assert_eq!(a, b, "probe {i} ({:?}) tells the real room from none", probes(&room, &event, "")[i].1);
        assert!(a.0 == 404, "probe {i}: {a:?}");
    }
    // The alias of a private room does not resolve for eve either.
    let alias = format!("#plans:{}", hs.server_name());
    let (status, body) = eve.get(&format!("/_matrix/client/v3/directory/room/{}", encode_component(&alias))).await;
    let unknown = format!("#nothing:{}", hs.server_name());
    let other = eve.get(&format!("/_matrix/client/v3/directory/room/{}", encode_component(&unknown))).await;
    assert_eq!((status, &body), (other.0, &other.1));
    assert_eq!(status, 404);
    // Nor does anything of it reach eve's sync, initial or after more activity.
    let sync = eve.sync(None, 0).await;
    let text = sync.to_string();
    assert!(!text.contains(&room) && !text.contains("Secret plans"), "{sync}");
    send_text(&alice, &room, "s2", "more plans").await;
    let marker = create_room(&eve, json!({})).await;
    let next = eve.sync(sync["next_batch"].as_str(), 0).await;
    assert!(next["rooms"]["join"].get(&marker).is_some(), "eve sees her own room: {next}");
    assert!(!next.to_string().contains(&room), "{next}");
    // And it is not in the public directory.
    let (_, list) = eve.get("/_matrix/client/v3/publicRooms").await;
    assert!(!list.to_string().contains(&room), "{list}");
}

#[tokio::test]
async fn a_public_room_is_known_but_its_history_is_for_members() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", PW).await;
    let eve = hs.register("eve", PW).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    let event = send_text(&alice, &room, "p1", "members only").await;
    for tail in ["/messages?dir=b", "/state", "/members", "/joined_members"] {
        let (status, body) = eve.get(&room_path(&room, tail)).await;
        assert_eq!(status, 403, "{tail}: {body}");
        assert!(!body.to_string().contains("members only"), "{body}");
    }
    let (status, _) = eve.get(&room_path(&room, &format!("/event/{}", encode_component(&event)))).await;
    assert_eq!(status, 404, "an event of a room one is not in is not found");
    // Two users' rooms never mix in sync: eve's sync holds none of alice's rooms.
    let sync = eve.sync(None, 0).await;
    assert!(!sync.to_string().contains(&room), "{sync}");
}
