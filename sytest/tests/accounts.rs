//! Accounts over the client-server API: registration with user-interactive auth
//! (`m.login.dummy`), username checks, closed registration, password login by localpart
//! and by full user ID, device reuse, `whoami`, logout of one token and of all, tokens
//! that survive a restart, and the profile endpoints.
//!
//! Every check is an HTTP request to a real `tidings serve` process; the codes and
//! shapes are those of INTERFACE.md and the Matrix client-server spec.

use tidings_sytest::{
    Client, Method, ServerOptions, Session, TestServer, Value, assert_matrix_error, encode_component, json,
};

const REGISTER: &str = "/_matrix/client/v3/register";
const LOGIN: &str = "/_matrix/client/v3/login";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

/// `GET /register/available?username=...` without a token.
async fn available(client: &Client, username: &str) -> (u16, Value) {
    client.get(&format!("{REGISTER}/available?username={}", encode_component(username))).await
}

/// A password login with `m.id.user`; returns the raw answer.
async fn try_login(client: &Client, user: &str, password: &str) -> (u16, Value) {
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    });
    client.post(LOGIN, body).await
}

/// `GET /account/whoami` with `token`.
async fn whoami(client: &Client, token: &str) -> (u16, Value) {
    client.request(Method::GET, WHOAMI, Some(token), None).await
}

/// Asserts that `body` is a successful login or registration for `user_id`.
#[track_caller]
fn assert_logged_in(body: &Value, user_id: &str) {
    assert_eq!(body["user_id"], json!(user_id), "{body}");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()), "no access_token: {body}");
    assert!(body["device_id"].as_str().is_some_and(|d| !d.is_empty()), "no device_id: {body}");
}

/// Asserts that `session`'s token works and belongs to its user and device.
async fn assert_token_valid(session: &Session) {
    let answer = whoami(session.client(), &session.access_token).await;
    assert_eq!(answer.0, 200, "whoami with a valid token: {}", answer.1);
    assert_eq!(answer.1["user_id"], json!(session.user_id), "{}", answer.1);
    assert_eq!(answer.1["device_id"], json!(session.device_id), "{}", answer.1);
}

/// Asserts that `token` was invalidated.
async fn assert_token_dead(client: &Client, token: &str) {
    assert_matrix_error(&whoami(client, token).await, 401, "M_UNKNOWN_TOKEN");
}

fn profile_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/profile/{}", encode_component(user_id))
}

#[tokio::test]
async fn register_without_auth_offers_dummy_flow_then_completes_with_session() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let client = hs.client();

    let first = client.post(REGISTER, json!({"username": "uia", "password": "pw-uia-1"})).await;
    assert_eq!(first.0, 401, "a registration without auth starts UIA: {}", first.1);
    let flows = first.1["flows"].as_array().unwrap_or_else(|| panic!("no `flows` array: {}", first.1));
    let offers_dummy = flows.iter().any(|flow| {
        flow["stages"].as_array().is_some_and(|stages| stages.len() == 1 && stages[0] == json!("m.login.dummy"))
    });
    assert!(offers_dummy, "no flow with the single stage m.login.dummy: {}", first.1);
    let session = first.1["session"].as_str().unwrap_or_else(|| panic!("no string `session`: {}", first.1));
    assert!(!session.is_empty());

    // The first step must not have created the account.
    let (status, body) = available(&client, "uia").await;
    assert_eq!((status, &body["available"]), (200, &json!(true)), "{body}");

    let second = client
        .post(
            REGISTER,
            json!({
                "username": "uia",
                "password": "pw-uia-1",
                "auth": {"type": "m.login.dummy", "session": session},
            }),
        )
        .await;
    assert_eq!(second.0, 200, "{}", second.1);
    assert_logged_in(&second.1, &hs.user_id("uia"));
    let token = second.1["access_token"].as_str().expect("checked above");
    let (status, me) = whoami(&client, token).await;
    assert_eq!((status, &me["user_id"]), (200, &json!(hs.user_id("uia"))), "{me}");
}

#[tokio::test]
async fn register_with_dummy_auth_and_no_session_succeeds_at_once() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let (status, body) = hs
        .client()
        .post(REGISTER, json!({"username": "eager", "password": "pw-eager", "auth": {"type": "m.login.dummy"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_logged_in(&body, &hs.user_id("eager"));
    // The new account can log in with its password.
    let again = hs.login("eager", "pw-eager").await;
    assert_eq!(again.user_id, hs.user_id("eager"));
}

#[tokio::test]
async fn register_uses_the_given_device_id() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let (status, body) = hs
        .client()
        .post(
            REGISTER,
            json!({
                "username": "withdev",
                "password": "pw-withdev",
                "device_id": "PHONE1",
                "initial_device_display_name": "My phone",
                "auth": {"type": "m.login.dummy"},
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_id"], json!("PHONE1"), "{body}");
    let (status, me) = whoami(&hs.client(), body["access_token"].as_str().unwrap()).await;
    assert_eq!((status, &me["device_id"]), (200, &json!("PHONE1")), "{me}");
}

#[tokio::test]
async fn register_without_a_username_generates_one() {
    // The spec: "If omitted, the homeserver MUST generate a Matrix ID local part."
    let hs = TestServer::start(ServerOptions::default()).await;
    let (status, body) =
        hs.client().post(REGISTER, json!({"password": "pw-anon", "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(status, 200, "{body}");
    let user_id = body["user_id"].as_str().unwrap_or_else(|| panic!("no user_id: {body}"));
    let localpart = user_id
        .strip_prefix('@')
        .and_then(|rest| rest.strip_suffix(&format!(":{}", hs.server_name())))
        .unwrap_or_else(|| panic!("{user_id} is not a local user ID"));
    assert!(!localpart.is_empty(), "{user_id}");
    hs.login(localpart, "pw-anon").await;
}

#[tokio::test]
async fn register_with_inhibit_login_returns_no_token() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let (status, body) = hs
        .client()
        .post(
            REGISTER,
            json!({
                "username": "quiet",
                "password": "pw-quiet",
                "inhibit_login": true,
                "auth": {"type": "m.login.dummy"},
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], json!(hs.user_id("quiet")), "{body}");
    assert!(body.get("access_token").is_none(), "inhibit_login must not return a token: {body}");
    assert!(body.get("device_id").is_none(), "inhibit_login must not return a device: {body}");
}

#[tokio::test]
async fn registering_a_taken_username_is_user_in_use() {
    let hs = TestServer::start(ServerOptions::default()).await;
    hs.register("taken", "pw-first").await;
    let answer = hs
        .client()
        .post(REGISTER, json!({"username": "taken", "password": "pw-second", "auth": {"type": "m.login.dummy"}}))
        .await;
    assert_matrix_error(&answer, 400, "M_USER_IN_USE");
    // The original password still works: the account was not overwritten.
    hs.login("taken", "pw-first").await;
    let answer = try_login(&hs.client(), "taken", "pw-second").await;
    assert_matrix_error(&answer, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn registering_an_invalid_username_is_invalid_username() {
    let hs = TestServer::start(ServerOptions::default()).await;
    for bad in ["Bad Name", "white space", "colon:inside", "@at"] {
        let answer = hs
            .client()
            .post(REGISTER, json!({"username": bad, "password": "pw-bad", "auth": {"type": "m.login.dummy"}}))
            .await;
        assert_matrix_error(&answer, 400, "M_INVALID_USERNAME");
    }
}

#[tokio::test]
async fn register_available_reports_free_taken_and_invalid_names() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let client = hs.client();
    let (status, body) = available(&client, "free.name").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"available": true}));

    hs.register("occupied", "pw-occupied").await;
    assert_matrix_error(&available(&client, "occupied").await, 400, "M_USER_IN_USE");
    assert_matrix_error(&available(&client, "Not Valid").await, 400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn closed_registration_is_forbidden() {
    let hs = TestServer::start(ServerOptions { registration_open: false, ..ServerOptions::default() }).await;
    let client = hs.client();
    let with_auth = client
        .post(REGISTER, json!({"username": "nope", "password": "pw-nope", "auth": {"type": "m.login.dummy"}}))
        .await;
    assert_matrix_error(&with_auth, 403, "M_FORBIDDEN");
    let without_auth = client.post(REGISTER, json!({"username": "nope", "password": "pw-nope"})).await;
    assert_matrix_error(&without_auth, 403, "M_FORBIDDEN");

    // Nothing was created, and the operator can still create accounts with the CLI.
    assert_matrix_error(&try_login(&client, "nope", "pw-nope").await, 403, "M_FORBIDDEN");
    let out = hs.create_user("operator-made", "pw-operator", false).await;
    assert!(out.status.success(), "create-user: {}", String::from_utf8_lossy(&out.stderr));
    hs.login("operator-made", "pw-operator").await;
}

#[tokio::test]
async fn login_flows_include_password() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let (status, body) = hs.client().get(LOGIN).await;
    assert_eq!(status, 200, "{body}");
    let flows = body["flows"].as_array().unwrap_or_else(|| panic!("no `flows` array: {body}"));
    assert!(flows.iter().any(|f| f["type"] == json!("m.login.password")), "{body}");
}

#[tokio::test]
async fn login_by_localpart_and_by_full_user_id() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let registered = hs.register("ada", "pw-ada").await;

    let (status, body) = try_login(&hs.client(), "ada", "pw-ada").await;
    assert_eq!(status, 200, "{body}");
    assert_logged_in(&body, &hs.user_id("ada"));

    let (status, by_id) = try_login(&hs.client(), &hs.user_id("ada"), "pw-ada").await;
    assert_eq!(status, 200, "{by_id}");
    assert_logged_in(&by_id, &hs.user_id("ada"));

    // Each login is a new device with its own token; all of them stay valid.
    let devices = [&registered.device_id, body["device_id"].as_str().unwrap(), by_id["device_id"].as_str().unwrap()];
    assert!(devices[0] != devices[1] && devices[1] != devices[2] && devices[0] != devices[2], "{devices:?}");
    assert_token_valid(&registered).await;
    for answer in [&body, &by_id] {
        let (status, me) = whoami(&hs.client(), answer["access_token"].as_str().unwrap()).await;
        assert_eq!((status, &me["device_id"]), (200, &answer["device_id"]), "{me}");
    }
}

#[tokio::test]
async fn login_with_a_wrong_password_is_forbidden() {
    let hs = TestServer::start(ServerOptions::default()).await;
    hs.register("bea", "pw-right").await;
    assert_matrix_error(&try_login(&hs.client(), "bea", "pw-wrong").await, 403, "M_FORBIDDEN");
    assert_matrix_error(&try_login(&hs.client(), &hs.user_id("bea"), "").await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn login_as_an_unknown_user_is_forbidden() {
    let hs = TestServer::start(ServerOptions::default()).await;
    assert_matrix_error(&try_login(&hs.client(), "ghost", "pw-ghost").await, 403, "M_FORBIDDEN");
    assert_matrix_error(&try_login(&hs.client(), &hs.user_id("ghost"), "pw-ghost").await, 403, "M_FORBIDDEN");
    // A local user's name on another server is not that local user.
    hs.register("ghost", "pw-ghost").await;
    assert_matrix_error(&try_login(&hs.client(), "@ghost:elsewhere.test", "pw-ghost").await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn login_with_an_unsupported_type_is_rejected() {
    let hs = TestServer::start(ServerOptions::default()).await;
    hs.register("cat", "pw-cat").await;
    let (status, body) = hs
        .client()
        .post(LOGIN, json!({"type": "m.login.bogus", "identifier": {"type": "m.id.user", "user": "cat"}}))
        .await;
    assert_eq!(status, 400, "an unknown login type is a bad request: {body}");
    assert!(body["errcode"].is_string() && body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn login_on_an_existing_device_reuses_it_and_invalidates_its_old_token() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let first = hs.register("dev", "pw-dev").await;
    let other = hs.login("dev", "pw-dev").await;

    let again = hs.client().login_device("dev", "pw-dev", &first.device_id).await;
    assert_eq!(again.device_id, first.device_id, "the given device_id is reused");
    assert_ne!(again.access_token, first.access_token, "a new login gets a new token");
    assert_token_dead(&hs.client(), &first.access_token).await;
    assert_token_valid(&again).await;
    // Other devices are untouched.
    assert_token_valid(&other).await;
}

#[tokio::test]
async fn login_with_another_users_device_id_leaves_that_device_alone() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let owner = hs.register("rae", "pw-rae").await;
    hs.register("sam", "pw-sam").await;
    let (status, body) = hs
        .client()
        .post(
            LOGIN,
            json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "sam"},
                "password": "pw-sam",
                "device_id": owner.device_id,
            }),
        )
        .await;
    if status == 200 {
        assert_logged_in(&body, &hs.user_id("sam"));
    }
    // Whatever sam got, rae's device and token are untouched.
    assert_token_valid(&owner).await;
}

#[tokio::test]
async fn login_with_a_new_device_id_uses_that_id() {
    let hs = TestServer::start(ServerOptions::default()).await;
    hs.register("eve", "pw-eve").await;
    let session = hs.client().login_device("eve", "pw-eve", "MYLAPTOP").await;
    assert_eq!(session.device_id, "MYLAPTOP");
    assert_token_valid(&session).await;
}

#[tokio::test]
async fn whoami_names_the_user_and_device() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let fay = hs.register("fay", "pw-fay").await;
    let (status, body) = fay.get(WHOAMI).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], json!(hs.user_id("fay")), "{body}");
    assert_eq!(body["device_id"], json!(fay.device_id), "{body}");
    if let Some(is_guest) = body.get("is_guest") {
        assert_eq!(is_guest, &json!(false), "{body}");
    }
}

#[tokio::test]
async fn logout_invalidates_only_that_token() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let phone = hs.register("gus", "pw-gus").await;
    let laptop = hs.login("gus", "pw-gus").await;

    let (status, body) = phone.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!((status, &body), (200, &json!({})), "{body}");
    assert_token_dead(&hs.client(), &phone.access_token).await;
    assert_token_valid(&laptop).await;
    // A second logout with the dead token is refused as unknown.
    assert_matrix_error(&phone.post("/_matrix/client/v3/logout", json!({})).await, 401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn logout_needs_no_request_body() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let one = hs.register("hugo", "pw-hugo").await;
    let two = hs.login("hugo", "pw-hugo").await;
    for (session, path) in [(&one, "/_matrix/client/v3/logout"), (&two, "/_matrix/client/v3/logout/all")] {
        let auth = format!("Bearer {}", session.access_token);
        let resp = hs.client().raw(Method::POST, path, &[("Authorization", &auth)], Vec::new()).await;
        assert_eq!((resp.status, resp.json()), (200, json!({})), "POST {path} without a body: {}", resp.text());
        assert_token_dead(&hs.client(), &session.access_token).await;
    }
}

#[tokio::test]
async fn logout_all_invalidates_every_token_of_the_user_only() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let one = hs.register("hal", "pw-hal").await;
    let two = hs.login("hal", "pw-hal").await;
    let three = hs.login(&hs.user_id("hal"), "pw-hal").await;
    let neighbour = hs.register("ida", "pw-ida").await;

    let (status, body) = two.post("/_matrix/client/v3/logout/all", json!({})).await;
    assert_eq!((status, &body), (200, &json!({})), "{body}");
    for session in [&one, &two, &three] {
        assert_token_dead(&hs.client(), &session.access_token).await;
    }
    assert_token_valid(&neighbour).await;
    // The password still works afterwards.
    let fresh = hs.login("hal", "pw-hal").await;
    assert_token_valid(&fresh).await;
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let mut hs = TestServer::start(ServerOptions::default()).await;
    let jo = hs.register("jo", "pw-jo").await;
    let second = hs.login("jo", "pw-jo").await;
    hs.restart().await;
    assert_token_valid(&jo).await;
    assert_token_valid(&second).await;
    hs.login("jo", "pw-jo").await;
    // The account is still there: the name is still taken.
    assert_matrix_error(&available(&hs.client(), "jo").await, 400, "M_USER_IN_USE");
}

#[tokio::test]
async fn setting_my_displayname_shows_in_my_profile() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let kim = hs.register("kim", "pw-kim").await;
    let viewer = hs.register("lou", "pw-lou").await;

    let path = format!("{}/displayname", profile_path(&kim.user_id));
    let (status, body) = kim.put(&path, json!({"displayname": "Kim K."})).await;
    assert_eq!((status, &body), (200, &json!({})), "{body}");

    for session in [&kim, &viewer] {
        let (status, profile) = session.get(&profile_path(&kim.user_id)).await;
        assert_eq!(status, 200, "{profile}");
        assert_eq!(profile["displayname"], json!("Kim K."), "{profile}");
        assert!(profile.as_object().unwrap().values().all(|v| !v.is_null()), "no null fields: {profile}");
    }
}

#[tokio::test]
async fn a_fresh_profile_has_no_null_fields() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let max = hs.register("max", "pw-max").await;
    let (status, profile) = max.get(&profile_path(&max.user_id)).await;
    assert_eq!(status, 200, "{profile}");
    let fields = profile.as_object().unwrap_or_else(|| panic!("a profile is an object: {profile}"));
    for (key, value) in fields {
        assert!(value.is_string(), "profile field {key} must be a string or left out: {profile}");
    }
}

#[tokio::test]
async fn setting_another_users_displayname_is_forbidden() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let ned = hs.register("ned", "pw-ned").await;
    let ola = hs.register("ola", "pw-ola").await;
    let path = format!("{}/displayname", profile_path(&ola.user_id));
    assert_matrix_error(&ned.put(&path, json!({"displayname": "hijacked"})).await, 403, "M_FORBIDDEN");
    let (status, profile) = ola.get(&profile_path(&ola.user_id)).await;
    assert_eq!(status, 200, "{profile}");
    assert_ne!(profile["displayname"], json!("hijacked"), "{profile}");
}

#[tokio::test]
async fn profile_of_an_unknown_local_user_is_not_found() {
    let hs = TestServer::start(ServerOptions::default()).await;
    let pia = hs.register("pia", "pw-pia").await;
    assert_matrix_error(&pia.get(&profile_path(&hs.user_id("nobody"))).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn r0_paths_work_for_login() {
    let hs = TestServer::start(ServerOptions::default()).await;
    hs.register("quinn", "pw-quinn").await;
    let (status, flows) = hs.client().get("/_matrix/client/r0/login").await;
    assert_eq!(status, 200, "{flows}");
    assert!(flows["flows"].as_array().is_some_and(|f| f.iter().any(|f| f["type"] == "m.login.password")), "{flows}");

    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "quinn"},
        "password": "pw-quinn",
    });
    let (status, answer) = hs.client().post("/_matrix/client/r0/login", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_logged_in(&answer, &hs.user_id("quinn"));
    let (status, me) = whoami(&hs.client(), answer["access_token"].as_str().unwrap()).await;
    assert_eq!((status, &me["user_id"]), (200, &json!(hs.user_id("quinn"))), "{me}");
}
