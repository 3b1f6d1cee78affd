//! End-to-end encryption's server side between two users of one server, through
//! HTTP against the real binary: keys uploaded and queried, one-time keys claimed
//! once only (then the fallback key), to-device messages delivered exactly once and
//! kept across a `kill -9` until acknowledged, the E2EE parts of `/sync`, and a
//! deleted or logged-out device's keys gone.

use serde_json::{Value, json};
use tidings_sytest::{ServerOptions, Session, TestServer, assert_matrix_error};

const V3: &str = "/_matrix/client/v3";

/// Alice, Bob and Carol on `hs`; Alice made a room and Bob joined it (Carol is in
/// none).
async fn alice_and_bob_share_a_room(hs: &TestServer) -> (Session, Session, Session) {
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;
    let carol = hs.register("carol", "carol-pw").await;
    let (status, created) = alice.post(&format!("{V3}/createRoom"), json!({"invite": [bob.user_id.clone()]})).await;
    assert_eq!(status, 200, "{created}");
    let room_id = created["room_id"].as_str().expect("room_id").to_owned();
    let (status, joined) =
        bob.post(&format!("{V3}/join/{}", tidings_sytest::encode_component(&room_id)), json!({})).await;
    assert_eq!(status, 200, "{joined}");
    (alice, bob, carol)
}

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
async fn logging_out_removes_the_devices_keys_and_tells_who_shares_a_room() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let (alice, bob, _) = alice_and_bob_share_a_room(&hs).await;
    upload(&alice, json!({"device_keys": device_keys(&alice), "one_time_keys": (1..=2).map(otk).collect::<serde_json::Map<_, _>>()})).await;
    let before = query_keys(&bob, &alice).await;
    assert!(before["device_keys"][&alice.user_id].get(&alice.device_id).is_some(), "uploaded: {before}");
    let since = bob.sync(None, 0).await["next_batch"].as_str().expect("next_batch").to_owned();

    let (status, body) = alice.post(&format!("{V3}/logout"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let after = bob.sync(Some(&since), 10_000).await;
    assert_eq!(after["device_lists"]["changed"], json!([alice.user_id]), "a logout is a device change: {after}");
    let query = query_keys(&bob, &alice).await;
    assert!(query["device_keys"][&alice.user_id].get(&alice.device_id).is_none(), "its keys are gone: {query}");
    let (_, claimed) = bob
        .post(
            &format!("{V3}/keys/claim"),
            json!({"one_time_keys": {alice.user_id.clone(): {alice.device_id.clone(): "signed_curve25519"}}}),
        )
        .await;
    assert_eq!(claimed["one_time_keys"], json!({}), "its one-time keys are gone: {claimed}");
}

#[tokio::test]
async fn device_changes_reach_the_users_who_share_a_room_and_nobody_else() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let (alice, bob, carol) = alice_and_bob_share_a_room(&hs).await;
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

/// An ed25519 key of a test, made from a fixed seed, that signs JSON as Matrix does.
struct Ed25519(ed25519_dalek::SigningKey);

impl Ed25519 {
    fn new(seed: u8) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    /// The public key, unpadded base64.
    fn public(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0.verifying_key().as_bytes())
    }

    /// Add `signatures.{user}.{key_id}` over the canonical JSON of `object`.
    fn sign(&self, object: &mut Value, user: &str, key_id: &str) {
        use base64::Engine;
        use ed25519_dalek::Signer;
        let Ok(ruma::CanonicalJsonValue::Object(canonical)) = ruma::CanonicalJsonValue::try_from(object.clone()) else {
            panic!("not canonical JSON: {object}")
        };
        let text = ruma::signatures::to_canonical_json_string_for_signing(&canonical).expect("canonical");
        let signature =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0.sign(text.as_bytes()).to_bytes());
        if !object["signatures"].is_object() {
            object["signatures"] = json!({});
        }
        if !object["signatures"][user].is_object() {
            object["signatures"][user] = json!({});
        }
        object["signatures"][user][key_id] = json!(signature);
    }
}

/// `keys/query` by `who` for all of `target`'s keys.
async fn query_keys(who: &Session, target: &Session) -> Value {
    let (status, answer) =
        who.post(&format!("{V3}/keys/query"), json!({"device_keys": {target.user_id.clone(): []}})).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Device keys with a real ed25519 key, signed by it.
fn signed_device_keys(s: &Session, key: &Ed25519) -> Value {
    let mut keys = json!({
        "user_id": s.user_id,
        "device_id": s.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", s.device_id): "identity-key-of-".to_owned() + &s.device_id,
            format!("ed25519:{}", s.device_id): key.public(),
        },
    });
    key.sign(&mut keys, &s.user_id, &format!("ed25519:{}", s.device_id));
    keys
}

/// A cross-signing key of `usage` for `user`, signed by `master` unless it is the master key.
fn cross_signing_key(user: &str, usage: &str, key: &Ed25519, master: Option<&Ed25519>) -> Value {
    let mut value = json!({
        "user_id": user,
        "usage": [usage],
        "keys": { format!("ed25519:{}", key.public()): key.public() },
    });
    if let Some(master) = master {
        master.sign(&mut value, user, &format!("ed25519:{}", master.public()));
    }
    value
}

#[tokio::test]
async fn cross_signing_keys_need_the_password_to_replace_and_signatures_are_verified_and_merged() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let (alice, bob, carol) = alice_and_bob_share_a_room(&hs).await;
    let alice_device = Ed25519::new(1);
    upload(&alice, json!({"device_keys": signed_device_keys(&alice, &alice_device)})).await;
    let bob_since = bob.sync(None, 0).await["next_batch"].as_str().expect("next_batch").to_owned();

    // The first upload needs no password (there is no master key yet).
    let (master, ssk, usk) = (Ed25519::new(10), Ed25519::new(11), Ed25519::new(12));
    let keys = json!({
        "master_key": cross_signing_key(&alice.user_id, "master", &master, None),
        "self_signing_key": cross_signing_key(&alice.user_id, "self_signing", &ssk, Some(&master)),
        "user_signing_key": cross_signing_key(&alice.user_id, "user_signing", &usk, Some(&master)),
    });
    let (status, answer) = alice.post(&format!("{V3}/keys/device_signing/upload"), keys.clone()).await;
    assert_eq!((status, answer), (200, json!({})));
    let seen = bob.sync(Some(&bob_since), 10_000).await;
    assert!(
        seen["device_lists"]["changed"].as_array().is_some_and(|c| c.iter().any(|u| u == alice.user_id.as_str())),
        "a cross-signing change is a device-list change: {seen}"
    );
    // The same keys again (a retry) need no password either.
    let (status, _) = alice.post(&format!("{V3}/keys/device_signing/upload"), keys.clone()).await;
    assert_eq!(status, 200);

    let by_bob = query_keys(&bob, &alice).await;
    assert_eq!(by_bob["master_keys"][&alice.user_id], keys["master_key"], "{by_bob}");
    assert_eq!(by_bob["self_signing_keys"][&alice.user_id], keys["self_signing_key"], "{by_bob}");
    assert_eq!(by_bob["user_signing_keys"], json!({}), "only alice sees her user-signing key: {by_bob}");
    let by_alice = query_keys(&alice, &alice).await;
    assert_eq!(by_alice["user_signing_keys"][&alice.user_id], keys["user_signing_key"], "{by_alice}");

    // Alice signs her device with her self-signing key; everyone sees the signature.
    let mut device = signed_device_keys(&alice, &alice_device);
    let ssk_id = format!("ed25519:{}", ssk.public());
    ssk.sign(&mut device, &alice.user_id, &ssk_id);
    let (status, answer) = alice
        .post(
            &format!("{V3}/keys/signatures/upload"),
            json!({alice.user_id.clone(): {alice.device_id.clone(): device}}),
        )
        .await;
    assert_eq!((status, answer.clone()), (200, json!({"failures": {}})), "{answer}");
    let by_bob = query_keys(&bob, &alice).await;
    let sigs = &by_bob["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id];
    assert!(sigs[&ssk_id].is_string() && sigs[format!("ed25519:{}", alice.device_id)].is_string(), "{by_bob}");

    // A signature by a key that is not hers, or of an object that differs from the
    // stored one, is refused.
    let mut forged = signed_device_keys(&alice, &alice_device);
    Ed25519::new(99).sign(&mut forged, &alice.user_id, &ssk_id);
    let mut altered = signed_device_keys(&alice, &alice_device);
    altered["algorithms"] = json!(["m.olm.v1.curve25519-aes-sha2"]);
    ssk.sign(&mut altered, &alice.user_id, &ssk_id);
    let (_, answer) = alice
        .post(
            &format!("{V3}/keys/signatures/upload"),
            json!({alice.user_id.clone(): {alice.device_id.clone(): forged}}),
        )
        .await;
    assert_eq!(answer["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE", "{answer}");
    let (_, answer) = alice
        .post(
            &format!("{V3}/keys/signatures/upload"),
            json!({alice.user_id.clone(): {alice.device_id.clone(): altered}}),
        )
        .await;
    assert_eq!(answer["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_PARAM", "{answer}");

    // Bob signs alice's master key with his user-signing key: bob sees it, carol not.
    let (bob_master, bob_usk) = (Ed25519::new(30), Ed25519::new(31));
    let (status, _) = bob
        .post(
            &format!("{V3}/keys/device_signing/upload"),
            json!({
                "master_key": cross_signing_key(&bob.user_id, "master", &bob_master, None),
                "user_signing_key": cross_signing_key(&bob.user_id, "user_signing", &bob_usk, Some(&bob_master)),
            }),
        )
        .await;
    assert_eq!(status, 200);
    let mut alices_master = keys["master_key"].clone();
    let bob_usk_id = format!("ed25519:{}", bob_usk.public());
    bob_usk.sign(&mut alices_master, &bob.user_id, &bob_usk_id);
    let (status, answer) = bob
        .post(&format!("{V3}/keys/signatures/upload"), json!({alice.user_id.clone(): {master.public(): alices_master}}))
        .await;
    assert_eq!((status, answer.clone()), (200, json!({"failures": {}})), "{answer}");
    let by_bob = query_keys(&bob, &alice).await;
    assert!(by_bob["master_keys"][&alice.user_id]["signatures"][&bob.user_id][&bob_usk_id].is_string(), "{by_bob}");
    let by_carol = query_keys(&carol, &alice).await;
    assert!(by_carol["master_keys"][&alice.user_id]["signatures"].get(&bob.user_id).is_none(), "{by_carol}");

    // A self-signing key the master key did not sign is refused.
    let (status, answer) = alice
        .post(
            &format!("{V3}/keys/device_signing/upload"),
            json!({"self_signing_key": cross_signing_key(&alice.user_id, "self_signing", &Ed25519::new(13), Some(&Ed25519::new(14)))}),
        )
        .await;
    assert_eq!(status, 401, "a new key needs the password first: {answer}");
    let (status, answer) = alice
        .post(
            &format!("{V3}/keys/device_signing/upload"),
            json!({"self_signing_key": cross_signing_key(&alice.user_id, "self_signing", &Ed25519::new(13), Some(&Ed25519::new(14))),
                   "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "alice-pw"}}),
        )
        .await;
    assert_matrix_error(&(status, answer), 400, "M_INVALID_SIGNATURE");

    // Replacing the master key: 401 with the password flow, a wrong password is
    // refused, the right one stores it.
    let new_master = Ed25519::new(20);
    let replace = json!({"master_key": cross_signing_key(&alice.user_id, "master", &new_master, None)});
    let (status, challenge) = alice.post(&format!("{V3}/keys/device_signing/upload"), replace.clone()).await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.password"]}]), "{challenge}");
    let session = challenge["session"].as_str().expect("session").to_owned();
    let mut wrong = replace.clone();
    wrong["auth"] = json!({"type": "m.login.password", "session": session, "user": "alice", "password": "nope"});
    let (status, refused) = alice.post(&format!("{V3}/keys/device_signing/upload"), wrong).await;
    assert_eq!((status, refused["errcode"].clone()), (401, json!("M_FORBIDDEN")), "{refused}");
    assert_eq!(query_keys(&carol, &alice).await["master_keys"][&alice.user_id], keys["master_key"], "nothing changed");
    let mut right = replace.clone();
    right["auth"] = json!({"type": "m.login.password", "session": session, "user": "alice", "password": "alice-pw"});
    let (status, _) = alice.post(&format!("{V3}/keys/device_signing/upload"), right).await;
    assert_eq!(status, 200);
    let after = query_keys(&bob, &alice).await;
    assert_eq!(after["master_keys"][&alice.user_id], replace["master_key"], "{after}");
    assert!(
        after["self_signing_keys"].get(&alice.user_id).is_none(),
        "the self-signing key the old master key signed is dropped: {after}"
    );
}

#[tokio::test]
async fn device_lists_left_names_who_no_longer_shares_any_room() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;
    let mut rooms = Vec::new();
    for _ in 0..2 {
        let (status, created) = alice.post(&format!("{V3}/createRoom"), json!({"invite": [bob.user_id.clone()]})).await;
        assert_eq!(status, 200, "{created}");
        let room_id = created["room_id"].as_str().expect("room_id").to_owned();
        let (status, _) =
            bob.post(&format!("{V3}/join/{}", tidings_sytest::encode_component(&room_id)), json!({})).await;
        assert_eq!(status, 200);
        rooms.push(room_id);
    }
    let since = alice.sync(None, 0).await["next_batch"].as_str().expect("next_batch").to_owned();
    let leave = |room: &str| {
        let path = format!("{V3}/rooms/{}/leave", tidings_sytest::encode_component(room));
        let bob = &bob;
        async move {
            let (status, body) = bob.post(&path, json!({})).await;
            assert_eq!(status, 200, "{body}");
        }
    };

    // Bob leaves one room: he still shares the other, so he has not left.
    leave(&rooms[0]).await;
    let first = alice.sync(Some(&since), 10_000).await;
    assert!(first["rooms"]["join"][&rooms[0]]["timeline"]["events"].is_array(), "the leave woke alice: {first}");
    assert!(first["device_lists"]["left"].as_array().is_none_or(|l| l.is_empty()), "{first}");
    let mid = first["next_batch"].as_str().expect("next_batch").to_owned();

    // He leaves the second: now he shares nothing with alice.
    leave(&rooms[1]).await;
    let second = alice.sync(Some(&mid), 10_000).await;
    assert_eq!(second["device_lists"]["left"], json!([bob.user_id]), "{second}");
    let upto = second["next_batch"].as_str().expect("next_batch").to_owned();
    let (status, changes) = alice.get(&format!("{V3}/keys/changes?from={since}&to={upto}")).await;
    assert_eq!((status, changes["left"].clone()), (200, json!([bob.user_id])), "{changes}");
    let (_, later) = alice.get(&format!("{V3}/keys/changes?from={upto}&to={upto}")).await;
    assert_eq!(later["left"], json!([]), "{later}");
}
