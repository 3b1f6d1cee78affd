//! What clients call at start-up, through HTTP against the real binary: filters,
//! push rules, capabilities, `/.well-known/matrix/client`, profile avatars, devices
//! (with user-interactive auth for deletion) and account data (global and per room,
//! in `/sync`). Only the owner reads or writes their own state.

use std::time::Duration;

use serde_json::{Value, json};
use tidings_sytest::{ServerOptions, Session, TestServer, assert_matrix_error, encode_component, toml_string};

const V3: &str = "/_matrix/client/v3";

fn user_path(s: &Session, rest: &str) -> String {
    format!("{V3}/user/{}{rest}", encode_component(&s.user_id))
}

#[tokio::test]
async fn filters_are_stored_per_user_and_only_their_owner_reads_them() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;
    let filter = json!({"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": true}}});
    let (status, body) = alice.post(&user_path(&alice, "/filter"), filter.clone()).await;
    assert_eq!(status, 200, "{body}");
    let id = body["filter_id"].as_str().expect("a string filter_id").to_owned();
    let (status, again) = alice.post(&user_path(&alice, "/filter"), filter).await;
    assert_eq!((status, again["filter_id"].as_str()), (200, Some(id.as_str())), "the same filter keeps its ID");

    let (status, got) = alice.get(&user_path(&alice, &format!("/filter/{id}"))).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["room"]["timeline"]["limit"], 10, "{got}");
    assert_eq!(got["room"]["state"]["lazy_load_members"], true, "{got}");

    assert_matrix_error(&bob.get(&user_path(&alice, &format!("/filter/{id}"))).await, 403, "M_FORBIDDEN");
    assert_matrix_error(&bob.post(&user_path(&alice, "/filter"), json!({})).await, 403, "M_FORBIDDEN");
    assert_matrix_error(&alice.get(&user_path(&alice, "/filter/999")).await, 404, "M_NOT_FOUND");
    assert_matrix_error(&alice.post(&user_path(&alice, "/filter"), json!({"room": 5})).await, 400, "M_BAD_JSON");

    // A sync naming the filter (or an inline one) is answered.
    let (status, body) = alice.sync_with(&[("filter", &id)]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn push_rules_start_as_the_spec_default_and_edits_persist_and_reach_sync() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let (status, all) = alice.get(&format!("{V3}/pushrules/")).await;
    assert_eq!(status, 200, "{all}");
    let ids = |v: &Value, kind: &str| -> Vec<String> {
        v["global"][kind]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["rule_id"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(ids(&all, "override").contains(&".m.rule.master".to_owned()), "{all}");
    assert!(ids(&all, "underride").contains(&".m.rule.message".to_owned()), "{all}");

    // The initial sync carries the rules as account data, as clients expect.
    let first = alice.sync(None, 0).await;
    let pushed =
        first["account_data"]["events"].as_array().and_then(|e| e.iter().find(|e| e["type"] == "m.push_rules"));
    assert!(pushed.is_some(), "{first}");

    let rule = format!("{V3}/pushrules/global/content/cats");
    let (status, body) = alice.put(&rule, json!({"pattern": "cat*", "actions": ["notify"]})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .put(&format!("{V3}/pushrules/global/content/dogs?before=cats"), json!({"pattern": "dog*", "actions": []}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, content) = alice.get(&format!("{V3}/pushrules/global/content/")).await;
    let order: Vec<&str> = content.as_array().expect("rules").iter().filter_map(|r| r["rule_id"].as_str()).collect();
    let (dogs, cats) = (order.iter().position(|r| *r == "dogs"), order.iter().position(|r| *r == "cats"));
    assert!(dogs.is_some() && dogs < cats, "dogs goes before cats: {order:?}");

    let (status, body) = alice.put(&format!("{rule}/enabled"), json!({"enabled": false})).await;
    assert_eq!(status, 200, "{body}");
    let (_, enabled) = alice.get(&format!("{rule}/enabled")).await;
    assert_eq!(enabled, json!({"enabled": false}));
    let (status, body) = alice.put(&format!("{rule}/actions"), json!({"actions": ["dont_notify"]})).await;
    assert_eq!(status, 200, "{body}");
    let (_, actions) = alice.get(&format!("{rule}/actions")).await;
    assert_eq!(actions, json!({"actions": ["dont_notify"]}));

    let master = format!("{V3}/pushrules/global/override/.m.rule.master");
    let (status, body) = alice.put(&format!("{master}/enabled"), json!({"enabled": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_matrix_error(&alice.delete(&master).await, 403, "M_FORBIDDEN");
    assert_matrix_error(&alice.get(&format!("{V3}/pushrules/global/content/nope")).await, 404, "M_NOT_FOUND");
    assert_matrix_error(&alice.get(&format!("{V3}/pushrules/global/nonsense/x")).await, 400, "M_INVALID_PARAM");
    assert_matrix_error(
        &alice
            .put(&format!("{V3}/user/{}/account_data/m.push_rules", encode_component(&alice.user_id)), json!({}))
            .await,
        405,
        "M_UNRECOGNIZED",
    );

    // An edit wakes the owner's sync with the whole set.
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let (status, body) = alice.delete(&format!("{V3}/pushrules/global/content/dogs")).await;
    assert_eq!(status, 200, "{body}");
    let next = alice.sync(Some(&since), 10_000).await;
    let rules = next["account_data"]["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "m.push_rules"))
        .unwrap_or_else(|| panic!("no m.push_rules in {next}"));
    let content: Vec<&str> = rules["content"]["global"]["content"]
        .as_array()
        .expect("content rules")
        .iter()
        .filter_map(|r| r["rule_id"].as_str())
        .collect();
    assert!(content.contains(&"cats") && !content.contains(&"dogs"), "{rules}");

    hs.restart().await;
    let (_, master_rule) = alice.get(&master).await;
    assert_eq!(master_rule["enabled"], true, "edits survive a restart: {master_rule}");
    let (_, cats) = alice.get(&rule).await;
    assert_eq!((cats["enabled"].clone(), cats["pattern"].clone()), (json!(false), json!("cat*")), "{cats}");
}

#[tokio::test]
async fn capabilities_well_known_and_avatars() {
    let hs = TestServer::start(ServerOptions::default().with_key(
        "client",
        "base_url",
        &toml_string("https://chat.example"),
    ))
    .await;
    let plain = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let (status, caps) = alice.get(&format!("{V3}/capabilities")).await;
    assert_eq!(status, 200, "{caps}");
    assert!(caps["capabilities"]["m.room_versions"]["default"].is_string(), "{caps}");
    assert_matrix_error(&hs.client().get(&format!("{V3}/capabilities")).await, 401, "M_MISSING_TOKEN");

    let (status, wk) = hs.client().get("/.well-known/matrix/client").await;
    assert_eq!((status, wk["m.homeserver"]["base_url"].clone()), (200, json!("https://chat.example")), "{wk}");
    let (status, wk) = plain.client().get("/.well-known/matrix/client").await;
    assert_eq!(status, 200, "{wk}");
    assert_eq!(wk["m.homeserver"]["base_url"], json!(plain.base_url()), "without base_url: the address asked: {wk}");

    let avatar = format!("{V3}/profile/{}/avatar_url", encode_component(&alice.user_id));
    assert_matrix_error(&alice.get(&avatar).await, 404, "M_NOT_FOUND");
    let (status, body) = alice.put(&avatar, json!({"avatar_url": "mxc://hs/abc"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, got) = hs.client().get(&avatar).await;
    assert_eq!(got, json!({"avatar_url": "mxc://hs/abc"}));
    let (_, profile) = hs.client().get(&format!("{V3}/profile/{}", encode_component(&alice.user_id))).await;
    assert_eq!(profile["avatar_url"], "mxc://hs/abc", "{profile}");
    assert_matrix_error(&alice.put(&avatar, json!({"avatar_url": "https://evil"})).await, 400, "M_INVALID_PARAM");
    let bob = hs.register("bob", "bob-pw").await;
    assert_matrix_error(&bob.put(&avatar, json!({"avatar_url": "mxc://hs/x"})).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn devices_are_listed_renamed_and_deleted_with_password_auth() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let phone = hs.register("alice", "alice-pw").await;
    let laptop = hs.client().login_device("alice", "alice-pw", "LAPTOP").await;
    let tablet = hs.client().login_device("alice", "alice-pw", "TABLET").await;
    let (status, list) = phone.get(&format!("{V3}/devices")).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> =
        list["devices"].as_array().expect("devices").iter().filter_map(|d| d["device_id"].as_str()).collect();
    assert!(ids.contains(&"LAPTOP") && ids.contains(&"TABLET") && ids.contains(&phone.device_id.as_str()), "{list}");

    let (status, body) = phone.put(&format!("{V3}/devices/LAPTOP"), json!({"display_name": "Work laptop"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, laptop_info) = phone.get(&format!("{V3}/devices/LAPTOP")).await;
    assert_eq!(laptop_info, json!({"device_id": "LAPTOP", "display_name": "Work laptop"}));
    assert_matrix_error(&phone.get(&format!("{V3}/devices/NOPE")).await, 404, "M_NOT_FOUND");
    let bob = hs.register("bob", "bob-pw").await;
    assert_matrix_error(&bob.get(&format!("{V3}/devices/LAPTOP")).await, 404, "M_NOT_FOUND");

    // Deleting needs the password: first a 401 with the flows and a session.
    let (status, challenge) =
        phone.request(tidings_sytest::Method::DELETE, &format!("{V3}/devices/LAPTOP"), Some(json!({}))).await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(challenge["flows"][0]["stages"], json!(["m.login.password"]), "{challenge}");
    let session = challenge["session"].as_str().expect("a session").to_owned();
    let auth = |password: &str| {
        json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                        "password": password, "session": session}})
    };
    let (status, wrong) =
        phone.request(tidings_sytest::Method::DELETE, &format!("{V3}/devices/LAPTOP"), Some(auth("nope"))).await;
    assert_eq!((status, wrong["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{wrong}");
    let (status, _) = laptop.get(&format!("{V3}/account/whoami")).await;
    assert_eq!(status, 200, "a refused deletion leaves the device alone");
    let (status, body) =
        phone.request(tidings_sytest::Method::DELETE, &format!("{V3}/devices/LAPTOP"), Some(auth("alice-pw"))).await;
    assert_eq!(status, 200, "{body}");
    assert_matrix_error(&laptop.get(&format!("{V3}/account/whoami")).await, 401, "M_UNKNOWN_TOKEN");

    let (status, _) = phone.post(&format!("{V3}/delete_devices"), json!({"devices": ["TABLET"]})).await;
    assert_eq!(status, 401);
    let (status, body) = phone
        .post(
            &format!("{V3}/delete_devices"),
            json!({"devices": ["TABLET", "GONE"],
        "auth": {"type": "m.login.password", "user": "alice", "password": "alice-pw"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_matrix_error(&tablet.get(&format!("{V3}/account/whoami")).await, 401, "M_UNKNOWN_TOKEN");
    let (_, list) = phone.get(&format!("{V3}/devices")).await;
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test]
async fn account_data_is_private_global_and_per_room_and_arrives_in_sync() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let alice = hs.register("alice", "alice-pw").await;
    let bob = hs.register("bob", "bob-pw").await;
    let global = user_path(&alice, "/account_data/org.example.settings");
    let (status, created) = alice.post(&format!("{V3}/createRoom"), json!({})).await;
    assert_eq!(status, 200, "{created}");
    let room_id = created["room_id"].as_str().expect("room_id").to_owned();
    let room = user_path(&alice, &format!("/rooms/{}/account_data/m.tag", encode_component(&room_id)));
    let elsewhere = user_path(&alice, "/rooms/!room:elsewhere.test/account_data/m.tag");
    assert_matrix_error(&alice.get(&global).await, 404, "M_NOT_FOUND");

    let first = alice.sync(None, 0).await;
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let (status, body) = alice.put(&global, json!({"theme": "dark"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.put(&room, json!({"tags": {"u.work": {}}})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.put(&elsewhere, json!({"tags": {"u.hidden": {}}})).await;
    assert_eq!(status, 200, "{body}");
    let next = alice.sync(Some(&since), 10_000).await;
    let events = next["account_data"]["events"].as_array().expect("account_data events");
    assert!(events.iter().any(|e| e["type"] == "org.example.settings" && e["content"]["theme"] == "dark"), "{next}");
    let room_events = &next["rooms"]["join"][&room_id]["account_data"]["events"];
    assert_eq!(room_events[0]["type"], "m.tag", "{next}");
    assert_eq!(room_events[0]["content"]["tags"]["u.work"], json!({}), "{next}");
    assert!(next["rooms"]["join"].get("!room:elsewhere.test").is_none(), "only rooms alice is joined to: {next}");

    // Only the owner.
    assert_matrix_error(&bob.get(&global).await, 403, "M_FORBIDDEN");
    assert_matrix_error(&bob.put(&global, json!({"theme": "light"})).await, 403, "M_FORBIDDEN");
    assert_matrix_error(&bob.get(&room).await, 403, "M_FORBIDDEN");
    let bob_sync = bob.sync(None, 0).await;
    assert!(!bob_sync.to_string().contains("org.example.settings"), "{bob_sync}");
    assert_matrix_error(&alice.put(&global, json!(["not", "an", "object"])).await, 400, "M_BAD_JSON");

    hs.restart().await;
    let (status, got) = alice.get(&global).await;
    assert_eq!((status, got), (200, json!({"theme": "dark"})));
    let (_, got) = alice.get(&room).await;
    assert_eq!(got, json!({"tags": {"u.work": {}}}));
    let initial = alice.sync(None, 0).await;
    assert!(
        initial["account_data"]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "org.example.settings"))
    );
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn account_data_entries_are_bounded_by_config() {
    let hs = TestServer::start(ServerOptions::default().with_key("client", "max_account_data_per_user", "2")).await;
    let alice = hs.register("alice", "alice-pw").await;
    for kind in ["a.one", "a.two"] {
        let (status, body) = alice.put(&user_path(&alice, &format!("/account_data/{kind}")), json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    let answer = alice.put(&user_path(&alice, "/account_data/a.three"), json!({})).await;
    assert_matrix_error(&answer, 429, "M_LIMIT_EXCEEDED");
    assert!(answer.1["error"].as_str().is_some_and(|e| e.contains("client.max_account_data_per_user")), "{}", answer.1);
    let (status, _) = alice.put(&user_path(&alice, "/account_data/a.one"), json!({"again": true})).await;
    assert_eq!(status, 200, "rewriting an entry is not a new one");
}
