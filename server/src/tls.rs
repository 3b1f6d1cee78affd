//! HTTPS on the listener (`[tls] cert`, `key`), with rustls.
//!
//! The certificate is served through a [`ResolvesServerCert`] whose current
//! certificate is swapped in place: on SIGHUP, and when the modification time or size
//! of either file changes (checked every [`WATCH_INTERVAL`]). A renewal therefore needs
//! no restart, and connections already open keep the certificate they shook hands
//! with. A reload that fails (a half-written file, a key that does not match the
//! certificate) is logged and the old certificate stays in service; it is tried again
//! when the files change again or on the next SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// How often the certificate files are checked for a change.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The crypto provider of the listener: ring, like reqwest's rustls.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read and check `cert` (a PEM chain) and `key` (a PEM private key): both parse, and
/// the key belongs to the first certificate. Errors name `tls.cert` or `tls.key` and
/// the file.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("tls.cert {}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.cert {}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tls.cert {}: no PEM CERTIFICATE in the file", cert.display()));
    }
    let key_pem = std::fs::read(key).map_err(|e| format!("tls.key {}: {e}", key.display()))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("tls.key {}: not a PEM private key: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, &provider())
        .map_err(|e| format!("tls.key {} does not fit tls.cert {}: {e}", key.display(), cert.display()))
}

/// A short fingerprint of the served certificate for the logs: SHA-256 of the leaf's
/// DER, the first 8 bytes in hex.
fn fingerprint(key: &CertifiedKey) -> String {
    use sha2::Digest as _;
    let leaf = key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    sha2::Sha256::digest(leaf).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What the files looked like at the last load attempt.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The listener's current certificate, swappable.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: Mutex<(Stamp, Stamp)>,
}

impl CertStore {
    /// Load `[tls]`; fails (naming the key and file) when the files are unusable.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, String> {
        let stamps = (stamp(&config.cert), stamp(&config.key));
        let key = load_certified_key(&config.cert, &config.key)?;
        tracing::info!(cert = %config.cert.display(), fingerprint = %fingerprint(&key), "TLS certificate loaded");
        Ok(Arc::new(Self {
            cert: config.cert.clone(),
            key: config.key.clone(),
            current: RwLock::new(Arc::new(key)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// Load the files again and serve them from the next handshake on; on failure
    /// keep the current certificate. `reason` goes into the log.
    pub fn reload(&self, reason: &str) {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
        match load_certified_key(&self.cert, &self.key) {
            Ok(key) => {
                let fingerprint = fingerprint(&key);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                tracing::info!(%reason, cert = %self.cert.display(), %fingerprint, "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(%reason, error = %e, "cannot reload the TLS certificate; still serving the previous one");
            }
        }
    }

    /// Whether either file changed since the last load attempt.
    fn changed(&self) -> bool {
        let now = (stamp(&self.cert), stamp(&self.key));
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) != now
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner())))
    }
}

/// The TLS side of the listener: the acceptor, and the task that reloads its
/// certificate (aborted when this is dropped).
pub struct Tls {
    /// Accepts TLS on a TCP stream with the current certificate.
    pub acceptor: TlsAcceptor,
    reloader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        self.reloader.abort();
    }
}

impl Tls {
    /// Load `[tls]` and start watching for SIGHUP and file changes.
    pub fn start(config: &TlsConfig) -> Result<Self, String> {
        let store = CertStore::load(config)?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&store) as Arc<dyn ResolvesServerCert>);
        // The listener speaks HTTP/1.1 only (axum is built with http1).
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let reloader = tokio::spawn(watch(store)?);
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(server)), reloader })
    }
}

/// The reload loop: SIGHUP, or a change of the files.
fn watch(store: Arc<CertStore>) -> Result<impl Future<Output = ()> + Send + 'static, String> {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot listen for SIGHUP (TLS certificate reload): {e}"))?;
    Ok(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let sighup = hangup.recv();
            #[cfg(not(unix))]
            let sighup = std::future::pending::<Option<()>>();
            tokio::select! {
                Some(()) = sighup => store.reload("SIGHUP"),
                _ = tick.tick() => {
                    if store.changed() {
                        store.reload("the files changed");
                    }
                }
            }
        }
    })
}
