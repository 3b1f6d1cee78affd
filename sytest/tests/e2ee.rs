//! End-to-end encryption's server side between two users of one server, through
//! HTTP against the real binary: keys uploaded and queried, one-time keys claimed
//! once only (then the fallback key), to-device messages delivered exactly once and
//! kept across a `kill -9` until acknowledged, and the E2EE parts of `/sync`.

use serde_json::{Value, json};
use tidings_sytest::{ServerOptions, Session, TestServer, assert_matrix_error};

const V3: &str = "/_matrix/client/v3";

fn device_keys(s: &Session) -> Value {
    json!({
        "user_id": s.user_id,
        "device_id": s.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", s.device_id): "identity-key-of-".to_owned() + &s.device_id,
            format!("ed25519:{}", s.device_id): "signing-key-of-".to_owned() + &s.device_id,
        },
        "signatures": { s.user_id.clone(): { format!("ed25519:{}", s.device_id): "sig" } },
    })
}

fn otk(n: u32) -> (String, Value) {
    (format!("signed_curve25519:AAAA{n}"), json!({"key": format!("otk{n}"), "signatures": {}}))
}

async fn upload(s: &Session, body: Value) -> Value {
    let (status, answer) = s.post(&format!("{V3}/keys/upload"), body).await;
    assert_eq!(status, 200, "keys/upload for {}: {answer}", s.user_id);
    answer
}

#[tokio::test]
async fn two_users_exchange_keys_and_claim_each_one_time_key_once() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;

    let otks: serde_json::Map<String, Value> = (1..=2).map(otk).collect();
    let answer = upload(
        &bob,
        json!({"device_keys": device_keys(&bob), "one_time_keys": otks,
        "fallback_keys": {"signed_curve25519:FB": {"key": "fallback", "fallback": true, "signatures": {}}}}),
    )
    .await;
    assert_eq!(answer["one_time_key_counts"]["signed_curve25519"], 2, "{answer}");
    upload(&alice, json!({"device_keys": device_keys(&alice)})).await;

    // Bob's counts and unused fallback key reach his sync.
    let bob_sync = bob.sync(None, 0).await;
    assert_eq!(bob_sync["device_one_time_keys_count"]["signed_curve25519"], 2, "{bob_sync}");
    assert_eq!(bob_sync["device_unused_fallback_key_types"], json!(["signed_curve25519"]), "{bob_sync}");

    let (status, query) =
        alice.post(&format!("{V3}/keys/query"), json!({"device_keys": {bob.user_id.clone(): []}})).await;
    assert_eq!(status, 200, "{query}");
    let keys = &query["device_keys"][&bob.user_id][&bob.device_id];
    assert_eq!(
        keys["keys"][format!("curve25519:{}", bob.device_id)],
        format!("identity-key-of-{}", bob.device_id),
        "{query}"
    );
    assert_eq!(keys["signatures"], device_keys(&bob)["signatures"], "keys come back as signed: {query}");

    let claim = json!({"one_time_keys": {bob.user_id.clone(): {bob.device_id.clone(): "signed_curve25519"}}});
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (status, claimed) = alice.post(&format!("{V3}/keys/claim"), claim.clone()).await;
        assert_eq!(status, 200, "{claimed}");
        let got = claimed["one_time_keys"][&bob.user_id][&bob.device_id].as_object().expect("a claimed key").clone();
        let (id, _) = got.iter().next().expect("one key");
        assert!(id.starts_with("signed_curve25519:AAAA"), "{claimed}");
        seen.push(id.clone());
    }
    seen.dedup();
    assert_eq!(seen.len(), 2, "each one-time key is handed out once: {seen:?}");
    // None left: the fallback key, again and again.
    for _ in 0..2 {
        let (_, claimed) = alice.post(&format!("{V3}/keys/claim"), claim.clone()).await;
        assert_eq!(
            claimed["one_time_keys"][&bob.user_id][&bob.device_id]["signed_curve25519:FB"]["key"], "fallback",
            "{claimed}"
        );
    }
    let bob_sync = bob.sync(None, 0).await;
    assert_eq!(bob_sync["device_one_time_keys_count"]["signed_curve25519"], 0, "{bob_sync}");
    assert_eq!(bob_sync["device_unused_fallback_key_types"], json!([]), "a used fallback key: {bob_sync}");

    // Keys only for oneself.
    let forged = json!({"device_keys": device_keys(&bob)});
    assert_matrix_error(&alice.post(&format!("{V3}/keys/upload"), forged).await, 400, "M_INVALID_PARAM");
    assert_matrix_error(
        &alice.post(&format!("{V3}/keys/upload"), json!({"one_time_keys": {"nocolon": {}}})).await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn one_time_keys_per_device_are_bounded_by_config() {
    let hs = TestServer::start(ServerOptions::default().with_key("e2ee", "max_one_time_keys_per_device", "3")).await;
    let alice = hs.register("alice", "alice-pw").await;
    upload(&alice, json!({"one_time_keys": (1..=3).map(otk).collect::<serde_json::Map<_, _>>()})).await;
    let answer = alice
        .post(
            &format!("{V3}/keys/upload"),
            json!({"one_time_keys": (4..=4).map(otk).collect::<serde_json::Map<_, _>>()}),
        )
        .await;
    assert_matrix_error(&answer, 429, "M_LIMIT_EXCEEDED");
    assert!(
        answer.1["error"].as_str().is_some_and(|e| e.contains("e2ee.max_one_time_keys_per_device")),
        "{}",
        answer.1
    );
}

#[tokio::test]
async fn to_device_messages_arrive_once_and_survive_a_kill_until_acknowledged() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;
    let bob2 = hs.client().login_device("bob", "bob-pw", "BOBTWO").await;
    let first = bob.sync(None, 0).await;
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();

    let send = |txn: &str, to: Value| {
        let alice = alice.clone();
        let path = format!("{V3}/sendToDevice/m.room_key_request/{txn}");
        async move { alice.put(&path, json!({"messages": to})).await }
    };
    let (status, body) = send("t1", json!({bob.user_id.clone(): {bob.device_id.clone(): {"n": 1}}})).await;
    assert_eq!(status, 200, "{body}");
    // The same transaction again sends nothing.
    let (status, _) = send("t1", json!({bob.user_id.clone(): {bob.device_id.clone(): {"n": 1}}})).await;
    assert_eq!(status, 200);
    let (status, _) = send("t2", json!({bob.user_id.clone(): {"*": {"n": 2}}})).await;
    assert_eq!(status, 200);

    let got = bob.sync(Some(&since), 10_000).await;
    let events = got["to_device"]["events"].as_array().expect("to_device events").clone();
    let ns: Vec<i64> = events.iter().filter_map(|e| e["content"]["n"].as_i64()).collect();
    assert_eq!(ns, vec![1, 2], "t1 once, then t2: {got}");
    assert_eq!(events[0]["sender"], alice.user_id.as_str(), "{got}");
    assert_eq!(events[0]["type"], "m.room_key_request", "{got}");
    let after = got["next_batch"].as_str().expect("next_batch").to_owned();

    // Not acknowledged yet (the next sync has not come): a kill -9 keeps them.
    hs.kill9().await;
    hs.restart().await;
    let again = bob.sync(Some(&since), 0).await;
    let ns: Vec<i64> = again["to_device"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["content"]["n"].as_i64())
        .collect();
    assert_eq!(ns, vec![1, 2], "unacknowledged messages survive a kill -9: {again}");

    // Syncing from the later token acknowledges them: never again.
    let acked = bob.sync(Some(&after), 0).await;
    assert_eq!(acked["to_device"]["events"], json!([]), "{acked}");
    let replay = bob.sync(Some(&since), 0).await;
    assert_eq!(replay["to_device"]["events"], json!([]), "acknowledged messages are gone: {replay}");

    // The "*" message reached Bob's other device too, and only once there.
    let other = bob2.sync(None, 0).await;
    let ns: Vec<i64> = other["to_device"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["content"]["n"].as_i64())
        .collect();
    assert_eq!(ns, vec![2], "{other}");
    let mut bob2_stream = bob2.syncer();
    bob2_stream.set_since(other["next_batch"].as_str().map(str::to_owned));
    let later = bob2_stream.next(0).await;
    assert_eq!(later["to_device"]["events"], json!([]), "{later}");

    assert_matrix_error(
        &alice.put(&format!("{V3}/sendToDevice/m.x/t3"), json!({"messages": {bob.user_id.clone(): {"X": 5}}})).await,
        400,
        "M_BAD_JSON",
    );
}

#[tokio::test]
async fn a_full_to_device_queue_refuses_more() {
    let hs = TestServer::start(ServerOptions::default().with_key("e2ee", "max_to_device_queue", "2")).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;
    for txn in ["a", "b"] {
        let (status, body) = alice
            .put(
                &format!("{V3}/sendToDevice/m.x/{txn}"),
                json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {}}}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let answer = alice
        .put(
            &format!("{V3}/sendToDevice/m.x/c"),
            json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {}}}}),
        )
        .await;
    assert_matrix_error(&answer, 429, "M_LIMIT_EXCEEDED");
    assert!(answer.1["error"].as_str().is_some_and(|e| e.contains("e2ee.max_to_device_queue")), "{}", answer.1);
}

#[tokio::test]
async fn device_list_changes_reach_sync_and_keys_changes_and_deleting_a_device_removes_its_keys() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let phone = hs.register("alice", "alice-pw").await;
    let laptop = hs.client().login_device("alice", "alice-pw", "LAPTOP").await;
    let first = phone.sync(None, 0).await;
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    upload(&laptop, json!({"device_keys": device_keys(&laptop), "one_time_keys": (1..=1).map(otk).collect::<serde_json::Map<_, _>>()})).await;
    let next = phone.sync(Some(&since), 10_000).await;
    assert_eq!(next["device_lists"]["changed"], json!([phone.user_id]), "{next}");
    let upto = next["next_batch"].as_str().expect("next_batch").to_owned();
    let (status, changes) = phone.get(&format!("{V3}/keys/changes?from={since}&to={upto}")).await;
    assert_eq!(status, 200, "{changes}");
    assert_eq!(changes["changed"], json!([phone.user_id]), "{changes}");
    let (_, none) = phone.get(&format!("{V3}/keys/changes?from={upto}&to={upto}")).await;
    assert_eq!(none["changed"], json!([]), "{none}");

    let (status, body) = phone
        .post(
            &format!("{V3}/delete_devices"),
            json!({"devices": ["LAPTOP"],
        "auth": {"type": "m.login.password", "user": "alice", "password": "alice-pw"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let gone = phone.sync(Some(&upto), 10_000).await;
    assert_eq!(gone["device_lists"]["changed"], json!([phone.user_id]), "a deleted device is a change: {gone}");
    let (_, query) = phone.post(&format!("{V3}/keys/query"), json!({"device_keys": {phone.user_id.clone(): []}})).await;
    assert!(query["device_keys"][&phone.user_id].get("LAPTOP").is_none(), "its keys are gone: {query}");
    let (_, claimed) = phone
        .post(
            &format!("{V3}/keys/claim"),
            json!({"one_time_keys": {phone.user_id.clone(): {"LAPTOP": "signed_curve25519"}}}),
        )
        .await;
    assert_eq!(claimed["one_time_keys"], json!({}), "{claimed}");
}

#[tokio::test]
async fn device_changes_reach_the_users_who_share_a_room_and_nobody_else() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;
    let carol = hs.register("carol", "carol-pw").await;
    let (status, created) = alice.post(&format!("{V3}/createRoom"), json!({"invite": [bob.user_id.clone()]})).await;
    assert_eq!(status, 200, "{created}");
    let room_id = created["room_id"].as_str().expect("room_id").to_owned();
    let (status, joined) =
        bob.post(&format!("{V3}/join/{}", tidings_sytest::encode_component(&room_id)), json!({})).await;
    assert_eq!(status, 200, "{joined}");
    let alice_since = alice.sync(None, 0).await["next_batch"].as_str().expect("next_batch").to_owned();
    let carol_since = carol.sync(None, 0).await["next_batch"].as_str().expect("next_batch").to_owned();

    upload(&bob, json!({"device_keys": device_keys(&bob)})).await;
    let seen = alice.sync(Some(&alice_since), 10_000).await;
    assert!(
        seen["device_lists"]["changed"].as_array().is_some_and(|c| c.iter().any(|u| u == bob.user_id.as_str())),
        "alice shares a room with bob: {seen}"
    );
    // Carol shares none: a marker of her own (her keys) comes, bob's change does not.
    upload(&carol, json!({"device_keys": device_keys(&carol)})).await;
    let carols = carol.sync(Some(&carol_since), 10_000).await;
    assert_eq!(carols["device_lists"]["changed"], json!([carol.user_id]), "{carols}");
}
