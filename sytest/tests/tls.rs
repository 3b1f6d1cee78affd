//! TLS, both ways, between real `tidings serve` processes on loopback, with a test CA
//! made here with rcgen (leaf certificates for 127.0.0.1, `localhost` and the server
//! name).
//!
//! Proves: two servers with HTTPS listeners federate over verified TLS (presence
//! crosses, the peers' URLs are `https://`, and the clients of the test talk HTTPS
//! too); a peer whose certificate comes from a CA the sender does not trust is refused
//! (its log says why, nothing arrives, and once the sender trusts that CA the queued
//! invite arrives); so is a peer whose certificate has expired; plain HTTP on the TLS port gets a clean 400 and the server keeps
//! serving; after SIGHUP the server presents the new certificate without a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tidings_sytest::paths::{answer_path, list_path, status_path};
use tidings_sytest::{ServerOptions, Session, TestServer, TlsFiles, Value, eventually, json, toml_string};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const PW: &str = "tls-test-pw-1";

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for 127.0.0.1, `localhost` and `server_name`: (certificate PEM, key PEM).
    fn leaf(&self, server_name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned(), server_name.to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, server_name);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf signed by the CA");
        (cert.pem(), key.serialize_pem())
    }

    /// Like [`Ca::leaf`], valid only during 2020: long expired.
    fn expired_leaf(&self, server_name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), server_name.to_owned()]).expect("leaf params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf signed by the CA");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a leaf for `server_name` into `dir` and returns `[tls]` for it.
    fn tls_files(&self, dir: &Path, server_name: &str) -> TlsFiles {
        let (cert, key) = self.leaf(server_name);
        let files = TlsFiles {
            cert: dir.join(format!("{server_name}.crt")),
            key: dir.join(format!("{server_name}.key")),
            ca_pem: self.pem(),
        };
        std::fs::write(&files.cert, cert).expect("writing the leaf certificate");
        std::fs::write(&files.key, key).expect("writing the leaf key");
        files
    }
}

/// Writes `pems` into `dir/name` and returns its path.
fn write_ca_file(dir: &Path, name: &str, pems: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pems.concat()).expect("writing a CA file");
    path
}

fn tls_opts(name: &str, tls: TlsFiles, ca_file: &Path) -> ServerOptions {
    ServerOptions { tls: Some(tls), offline_after_ms: 120_000, ..ServerOptions::named(name) }.with_key(
        "federation",
        "ca_file",
        &toml_string(&ca_file.to_string_lossy()),
    )
}

/// A reqwest client trusting exactly the system roots and `ca_pem`.
fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .build()
        .expect("https client")
}

/// `GET /versions` with `client`: the status, or the error with its sources.
async fn versions(client: &reqwest::Client, base: &str) -> Result<u16, String> {
    match client.get(format!("{base}/_matrix/client/versions")).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            Err(text)
        }
    }
}

async fn invite(watcher: &Session, target_id: &str) {
    let got = watcher.post(&list_path(&watcher.user_id), json!({"invite": [target_id]})).await;
    assert_eq!(got, (200, json!({})), "{} inviting {target_id}", watcher.user_id);
}

async fn wait_request(session: &Session, watcher_id: &str) {
    eventually(Duration::from_secs(15), || async {
        let got = session.requesters().await;
        if got.iter().any(|w| w == watcher_id) { Ok(()) } else { Err(got) }
    })
    .await;
}

fn presence_in(sync: &Value, user_id: &str) -> Option<Value> {
    sync["presence"]["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["sender"] == json!(user_id) && e["type"] == json!("m.presence"))
        .map(|e| e["content"].clone())
}

/// The peer entry `server_name` in `admin`'s federation stats.
async fn peer_stats(admin: &Session, server_name: &str) -> Value {
    let (status, body) = admin.get("/_tidings/admin/v1/federation/peers").await;
    assert_eq!(status, 200, "{body}");
    body["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["server_name"] == json!(server_name)).cloned())
        .unwrap_or_else(|| panic!("{server_name} not among the peers: {body}"))
}

#[tokio::test]
async fn presence_crosses_between_servers_over_verified_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Tidings test CA");
    let ca_file = write_ca_file(dir.path(), "peers-ca.pem", &[ca.pem()]);
    let servers = TestServer::start_federation(vec![
        tls_opts("alpha.test", ca.tls_files(dir.path(), "alpha.test"), &ca_file),
        tls_opts("beta.test", ca.tls_files(dir.path(), "beta.test"), &ca_file),
    ])
    .await;
    let (a, b) = (&servers[0], &servers[1]);
    assert!(a.base_url().starts_with("https://"), "{}", a.base_url());
    for s in [a, b] {
        let peers = &s.options().peers;
        assert!(peers.iter().all(|p| p.url.starts_with("https://")), "peers of {}: {peers:?}", s.server_name());
    }

    // Clients over HTTPS (the harness's client trusts the test CA).
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    invite(&bob, &alice.user_id).await;
    wait_request(&alice, &bob.user_id).await;
    let got = alice.post(&answer_path(&bob.user_id), json!({"allow": true})).await;
    assert_eq!(got, (200, json!({})));
    let got = alice.put(&status_path(&alice.user_id), json!({"presence": "online", "status_msg": "over tls"})).await;
    assert_eq!(got, (200, json!({})));

    let mut stream = bob.syncer();
    let seen = stream
        .until(Duration::from_secs(15), |sync| {
            presence_in(sync, &alice.user_id).filter(|c| c["status_msg"] == json!("over tls"))
        })
        .await;
    assert_eq!(seen["presence"], json!("online"), "{seen}");

    // Both directions went over TLS: each side received transactions from the other.
    let admin_a = a.create_admin("root", PW).await;
    let admin_b = b.create_admin("root", PW).await;
    eventually(Duration::from_secs(10), || async {
        let from_b = peer_stats(&admin_a, "beta.test").await;
        let from_a = peer_stats(&admin_b, "alpha.test").await;
        if from_b["txns_received"].as_u64() > Some(0) && from_a["txns_received"].as_u64() > Some(0) {
            Ok(())
        } else {
            Err((from_b, from_a))
        }
    })
    .await;
    for s in [a, b] {
        assert!(!s.log().contains("transaction not delivered"), "a delivery failed on {}", s.server_name());
    }
}

#[tokio::test]
async fn a_peer_whose_certificate_comes_from_an_untrusted_ca_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = Ca::new("Trusted test CA");
    let other = Ca::new("Other test CA");
    let only_trusted = write_ca_file(dir.path(), "trusted.pem", &[trusted.pem()]);
    let both = write_ca_file(dir.path(), "both.pem", &[trusted.pem(), other.pem()]);
    // alpha trusts only `trusted`; beta's certificate is from `other`. beta trusts both.
    let mut servers = TestServer::start_federation(vec![
        tls_opts("alpha.test", trusted.tls_files(dir.path(), "alpha.test"), &only_trusted),
        tls_opts("beta.test", other.tls_files(dir.path(), "beta.test"), &both),
    ])
    .await;
    let alice = servers[0].register("alice", PW).await;
    let bob = servers[1].register("bob", PW).await;
    let admin_b = servers[1].create_admin("root", PW).await;

    invite(&alice, &bob.user_id).await;
    // The positive marker: alpha tried, and its log says why it failed.
    let reason = eventually(Duration::from_secs(15), || async {
        servers[0]
            .log()
            .lines()
            .find(|l| l.contains("transaction not delivered") && l.contains("beta.test"))
            .map(str::to_owned)
    })
    .await;
    assert!(
        reason.contains("certificate") && (reason.contains("UnknownIssuer") || reason.contains("unknown issuer")),
        "the log does not say the certificate's issuer is unknown: {reason}"
    );
    // Nothing reached beta in the clear or otherwise.
    let stats = peer_stats(&admin_b, "alpha.test").await;
    assert_eq!(stats["txns_received"], json!(0), "{stats}");
    assert!(bob.requesters().await.is_empty(), "bob got a request through an untrusted peer");
    let got = admin_b.get("/_tidings/admin/v1/server").await;
    assert_eq!(got.0, 200, "beta keeps serving: {}", got.1);

    // Once alpha trusts beta's CA, the queued invite is delivered.
    let alpha = &mut servers[0];
    let opts = alpha.options_mut();
    opts.extra_keys.retain(|(section, key, _)| !(section == "federation" && key == "ca_file"));
    opts.extra_keys.push(("federation".into(), "ca_file".into(), toml_string(&both.to_string_lossy())));
    alpha.restart().await;
    wait_request(&bob, &alice.user_id).await;
}

#[tokio::test]
async fn a_peer_with_an_expired_certificate_is_refused_with_the_reason_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Tidings test CA");
    let ca_file = write_ca_file(dir.path(), "ca.pem", &[ca.pem()]);
    let alpha_tls = ca.tls_files(dir.path(), "alpha.test");
    let beta_tls = ca.tls_files(dir.path(), "beta.test");
    let servers = TestServer::start_federation(vec![
        tls_opts("alpha.test", alpha_tls, &ca_file),
        tls_opts("beta.test", beta_tls.clone(), &ca_file),
    ])
    .await;
    let (a, b) = (&servers[0], &servers[1]);
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    let admin_b = b.create_admin("root", PW).await;

    // beta's certificate is replaced by an expired one (picked up by SIGHUP).
    let log_before = b.log().len();
    let (cert, key) = ca.expired_leaf("beta.test");
    std::fs::write(&beta_tls.key, key).expect("writing the key");
    std::fs::write(&beta_tls.cert, cert).expect("writing the certificate");
    let pid = b.pid().expect("beta runs");
    let status = std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status().expect("kill -HUP");
    assert!(status.success());
    eventually(Duration::from_secs(10), || async {
        b.log().get(log_before..).is_some_and(|l| l.contains("TLS certificate reloaded"))
    })
    .await;

    invite(&alice, &bob.user_id).await;
    let reason = eventually(Duration::from_secs(15), || async {
        a.log().lines().find(|l| l.contains("transaction not delivered") && l.contains("beta.test")).map(str::to_owned)
    })
    .await;
    assert!(
        reason.contains("Expired") || reason.contains("expired"),
        "the log does not say the certificate expired: {reason}"
    );
    let stats = peer_stats(&admin_b, "alpha.test").await;
    assert_eq!(stats["txns_received"], json!(0), "{stats}");
    assert!(bob.requesters().await.is_empty(), "bob got a request through an expired certificate");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_fails_cleanly_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Tidings test CA");
    let ca_file = write_ca_file(dir.path(), "ca.pem", &[ca.pem()]);
    let hs = TestServer::start(tls_opts("tls.test", ca.tls_files(dir.path(), "tls.test"), &ca_file)).await;

    // A raw plain-HTTP request gets a 400 Matrix error in plain HTTP, then the close.
    let mut raw = tokio::net::TcpStream::connect(hs.addr()).await.expect("connect");
    raw.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("the server closes after its answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"errcode\":\"M_UNRECOGNIZED\""), "{answer}");

    // reqwest over http:// sees the same answer, not a hang.
    let plain = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
    let status = versions(&plain, &format!("http://127.0.0.1:{}", hs.port())).await;
    assert_eq!(status, Ok(400));

    // A TLS record of garbage: the handshake fails, the connection closes.
    let mut junk = tokio::net::TcpStream::connect(hs.addr()).await.expect("connect");
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]).await.expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), junk.read_to_end(&mut rest))
        .await
        .expect("the server closes a failed handshake");

    // HTTPS still works.
    assert_eq!(versions(&https_client(&ca.pem()), &hs.base_url()).await, Ok(200));
    let alice = hs.register("alice", PW).await;
    let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 200, "{body}");
    let log = hs.log();
    assert!(log.contains("plain HTTP on the TLS listener"), "the plain-HTTP client is not logged:\n{log}");
}

#[tokio::test]
async fn after_sighup_the_new_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old_ca = Ca::new("Old test CA");
    let new_ca = Ca::new("New test CA");
    let ca_file = write_ca_file(dir.path(), "ca.pem", &[old_ca.pem()]);
    let files = old_ca.tls_files(dir.path(), "reload.test");
    let hs = TestServer::start(tls_opts("reload.test", files.clone(), &ca_file)).await;
    let pid = hs.pid().expect("a running server");
    // A new client for every check: a client resuming a TLS session would not see the
    // certificate again.
    let old = old_ca.pem();
    let new = new_ca.pem();
    let trusts_old = || https_client(&old);
    let trusts_new = || https_client(&new);
    assert_eq!(versions(&trusts_old(), &hs.base_url()).await, Ok(200));
    let refused = versions(&trusts_new(), &hs.base_url()).await;
    assert!(refused.is_err(), "a client trusting only the new CA accepted the old certificate: {refused:?}");

    // The renewal: new files in place, then SIGHUP.
    let (cert, key) = new_ca.leaf("reload.test");
    std::fs::write(&files.key, key).expect("writing the new key");
    std::fs::write(&files.cert, cert).expect("writing the new certificate");
    let status = std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status().expect("kill -HUP");
    assert!(status.success());

    eventually(Duration::from_secs(10), || async {
        let log = hs.log();
        log.lines().any(|l| l.contains("TLS certificate reloaded") && l.contains("SIGHUP"))
    })
    .await;
    eventually(Duration::from_secs(10), || async { versions(&trusts_new(), &hs.base_url()).await == Ok(200) }).await;
    let refused = versions(&trusts_old(), &hs.base_url()).await;
    assert!(refused.is_err(), "the old certificate is still served: {refused:?}");
    assert_eq!(hs.pid(), Some(pid), "the server was restarted");

    // A half-renewal (a key that does not fit) is refused and the current one kept.
    let (_, stray_key) = old_ca.leaf("reload.test");
    std::fs::write(&files.key, stray_key).expect("writing a mismatched key");
    let status = std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status().expect("kill -HUP");
    assert!(status.success());
    eventually(Duration::from_secs(10), || async { hs.log().contains("cannot reload the TLS certificate") }).await;
    assert_eq!(versions(&trusts_new(), &hs.base_url()).await, Ok(200));
}
