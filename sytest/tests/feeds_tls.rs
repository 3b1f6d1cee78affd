//! Feeds over HTTPS, black-box: a fake origin serving RSS over TLS with a
//! certificate from a CA made here (rcgen), and real `tidings` processes.
//!
//! Proves: with the CA in `feeds.ca_file` the feed is fetched and its items arrive;
//! without it the certificate is refused (verified TLS, never a blind accept) and
//! the error is recorded on the feed for its subscriber.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tidings_sytest::feeds::subscribe;
use tidings_sytest::origin::rss;
use tidings_sytest::{ServerOptions, TestServer, eventually, json, toml_string};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const PW: &str = "feeds-tls-pw-1";

/// The fake origin's listener: TCP, then a TLS handshake with its certificate.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            // A client that refuses our certificate fails its handshake: wait for the next.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A CA, and an HTTPS origin for 127.0.0.1 with a leaf it signed; (CA PEM, feed URL).
async fn https_origin() -> (String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Feeds Test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).expect("self-signed CA");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf signed by the CA");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(leaf.der().to_vec())], key)
        .expect("server certificate");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = TlsListener { tcp, acceptor: TlsAcceptor::from(Arc::new(config)) };
    let body = rss(&["secure-1".to_owned()]);
    let app = Router::new().route("/feed.xml", get(move || std::future::ready(body.clone())));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (ca.pem(), format!("https://127.0.0.1:{}/feed.xml", addr.port()))
}

fn options(ca_file: Option<&std::path::Path>) -> ServerOptions {
    let mut toml = String::from("[feeds]\nmin_interval_ms = 500\nallow_private_addresses = true\n");
    if let Some(ca) = ca_file {
        toml.push_str(&format!("ca_file = {}\n", toml_string(&ca.display().to_string())));
    }
    ServerOptions::default().with_extra_toml(&toml)
}

#[tokio::test]
async fn an_https_feed_is_fetched_with_a_trusted_ca_and_refused_without() {
    let (ca_pem, url) = https_origin().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("feeds-ca.pem");
    std::fs::write(&ca_path, ca_pem).expect("write the CA");

    let trusting = TestServer::start(options(Some(&ca_path))).await;
    let alice = trusting.register("alice", PW).await;
    let id = subscribe(&alice, &url).await;
    let items = eventually(Duration::from_secs(20), || async {
        let (_, body) = alice.get(&format!("/_tidings/client/v1/feeds/{id}/items")).await;
        body["items"].as_array().filter(|i| !i.is_empty()).cloned()
    })
    .await;
    assert_eq!(items[0]["title"], json!("Item secure-1"));

    let doubting = TestServer::start(options(None)).await;
    let bob = doubting.register("bob", PW).await;
    subscribe(&bob, &url).await;
    let error = eventually(Duration::from_secs(20), || async {
        let (_, body) = bob.get("/_tidings/client/v1/feeds").await;
        body["feeds"][0]["error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("UnknownIssuer"),
        "the untrusted certificate is the recorded reason: {error}"
    );
    let (_, body) = bob.get("/_tidings/client/v1/feeds").await;
    assert!(body["feeds"][0]["last_fetched_ts"].is_null(), "never fetched: {body}");
}
