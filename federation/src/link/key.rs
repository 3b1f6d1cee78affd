//! This server's static link key: an X25519 key pair in `<data_dir>/link.key`
//! (`x25519 <unpadded base64 of the 32-byte secret>`, mode 0600), made once and kept
//! across restarts. Its public half is published in `GET /_matrix/key/v2/server`
//! under [`LINK_KEY_FIELD`], covered by the ed25519 signature, so a peer's link key
//! is exactly as trustworthy as its verify key.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use curve25519_dalek::MontgomeryPoint;
use rand::RngCore;

/// The name of the key file inside the data directory.
pub const LINK_KEY_FILE: &str = "link.key";

/// The field of the key document that holds the link's public key (unpadded base64).
pub const LINK_KEY_FIELD: &str = "tidings.link_key";

/// The static X25519 key pair of the link's Noise handshakes.
pub struct LinkKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKey").field("public", &self.public_base64()).finish_non_exhaustive()
    }
}

impl LinkKey {
    /// The key pair of a 32-byte secret.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        Self { secret, public }
    }

    /// A fresh random key pair (tests, benchmarks).
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self::from_secret(secret)
    }

    /// Load `data_dir/link.key`, or create it (mode 0600). A file that exists but
    /// cannot be read stops start-up: the server must not change identity silently.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(LINK_KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let line = text.trim();
                let b64 = line
                    .strip_prefix("x25519 ")
                    .ok_or_else(|| format!("link key file {} must hold 'x25519 <base64>'", path.display()))?;
                let bytes = STANDARD_NO_PAD
                    .decode(b64.trim().trim_end_matches('='))
                    .map_err(|_| format!("link key file {}: not base64", path.display()))?;
                let secret: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| format!("link key file {}: the key is not 32 bytes", path.display()))?;
                Ok(Self::from_secret(secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(data_dir)
                    .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
                let key = Self::generate();
                write_secret(&path, &key.secret)?;
                tracing::info!(path = %path.display(), public = %key.public_base64(), "created link key");
                Ok(key)
            }
            Err(e) => Err(format!("cannot read link key file {}: {e}", path.display())),
        }
    }

    /// The secret half, for the Noise handshake.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public half.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The public half, unpadded standard base64, as published.
    pub fn public_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.public)
    }
}

/// Parse a published link key (unpadded or padded base64 of 32 bytes).
pub fn parse_public(b64: &str) -> Result<[u8; 32], String> {
    let bytes =
        STANDARD_NO_PAD.decode(b64.trim_end_matches('=')).map_err(|_| "the link key is not base64".to_owned())?;
    bytes.try_into().map_err(|_| "the link key is not 32 bytes".to_owned())
}

/// Write the secret with mode 0600 through a temporary file, synced, then renamed.
fn write_secret(path: &Path, secret: &[u8; 32]) -> Result<(), String> {
    let tmp = path.with_extension("key.tmp");
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    file.write_all(format!("x25519 {}\n", STANDARD_NO_PAD.encode(secret)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot move {} into place: {e}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_kept_across_loads_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = LinkKey::load_or_create(dir.path()).expect("create");
        let again = LinkKey::load_or_create(dir.path()).expect("load");
        assert_eq!(first.public(), again.public());
        assert_eq!(parse_public(&first.public_base64()).expect("parse"), *first.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(LINK_KEY_FILE)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
