//! This server's ed25519 signing key: `GET /_matrix/key/v2/server`.
//!
//! The key lives in `<data_dir>/signing.key`, one line in Synapse's format:
//! `ed25519 <version> <unpadded base64 of the 32-byte seed>`. The key ID is
//! `ed25519:<version>`; it is chosen at random once (6 alphanumeric characters) and
//! stays the same across restarts. The file is created with mode 0600.
//!
//! Signing goes through `ruma::signatures` (canonical JSON, `signatures` and `unsigned`
//! left out), so the result verifies with matrix-org's `signedjson`.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rand::Rng;
use ruma::signatures::{Ed25519KeyPair, JsonError, KeyPair};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

/// The name of the key file inside the data directory.
pub const KEY_FILE_NAME: &str = "signing.key";

/// Length of a freshly generated key version (the part after `ed25519:`).
const VERSION_LEN: usize = 6;

/// The largest integer canonical JSON allows (2^53 - 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// This server's signing key and its stable key ID.
pub struct ServerKey {
    key_pair: Ed25519KeyPair,
    version: String,
    key_id: String,
    public_key_base64: String,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("ServerKey")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key_base64)
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// Load `data_dir/signing.key`, or create it (mode 0600, data_dir included) when
    /// it does not exist yet.
    ///
    /// An existing file that cannot be read or does not hold exactly one ed25519 key
    /// is an error with a message fit for the operator: the server must not start
    /// with a new identity behind their back.
    pub fn load_or_create(data_dir: &Path) -> Result<ServerKey, String> {
        let path = data_dir.join(KEY_FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => {
                check_permissions(&path);
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("signing key file {} is not UTF-8 text; refusing to start", path.display()))?;
                let (version, seed) = parse_key_file(&text)
                    .map_err(|e| format!("signing key file {} is malformed: {e}; refusing to start", path.display()))?;
                Self::from_seed(&seed, version)
                    .map_err(|e| format!("signing key file {} holds an unusable key: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(data_dir)
                    .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
                let seed: [u8; 32] = rand::rngs::OsRng.r#gen();
                let version = random_version();
                write_key_file(&path, &version, &seed)?;
                tracing::info!(path = %path.display(), key_id = %format!("ed25519:{version}"), "created signing key");
                Self::from_seed(&seed, version)
            }
            Err(e) => Err(format!("cannot read signing key file {}: {e}; refusing to start", path.display())),
        }
    }

    /// A key from its 32-byte seed and version (the key ID is `ed25519:<version>`).
    pub fn from_seed(seed: &[u8; 32], version: String) -> Result<ServerKey, String> {
        validate_version(&version)?;
        let signing_key = SigningKey::from_bytes(seed);
        let der = signing_key.to_pkcs8_der().map_err(|e| format!("cannot encode the key as PKCS#8: {e}"))?;
        let key_pair = Ed25519KeyPair::from_der(der.as_bytes(), version.clone())
            .map_err(|e| format!("ruma refused the key: {e}"))?;
        let public_key_base64 = STANDARD_NO_PAD.encode(key_pair.public_key());
        Ok(ServerKey { key_id: format!("ed25519:{version}"), version, key_pair, public_key_base64 })
    }

    /// The key ID, `ed25519:<version>`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The version: the key ID without its `ed25519:` prefix.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The public half, unpadded standard base64 (as in `verify_keys`).
    pub fn public_key_base64(&self) -> &str {
        &self.public_key_base64
    }

    /// The key pair in ruma's type, for ruma's signing functions.
    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key_pair
    }

    /// Sign `object` as `server_name`: adds `signatures.<server_name>.<key_id>` over the
    /// object's canonical JSON without `signatures` and `unsigned`. Fails only when the
    /// object already has a `signatures` field that is not an object of objects.
    pub fn sign_json(&self, server_name: &str, object: &mut CanonicalJsonObject) -> Result<(), JsonError> {
        ruma::signatures::sign_json(server_name, &self.key_pair, object)
    }

    /// The raw signature of `message`, unpadded standard base64.
    pub fn sign_bytes_base64(&self, message: &[u8]) -> String {
        self.key_pair.sign(message).base64()
    }

    /// The body of `GET /_matrix/key/v2/server`: this key, valid until
    /// `now_ms + validity_ms`, signed by itself.
    pub fn server_keys_response(&self, server_name: &str, now_ms: u64, validity_ms: u64) -> serde_json::Value {
        self.server_keys_response_with(server_name, now_ms, validity_ms, &[])
    }

    /// [`Self::server_keys_response`] with more string fields, covered by the
    /// signature (the link key: `tidings.link_key`).
    pub fn server_keys_response_with(
        &self,
        server_name: &str,
        now_ms: u64,
        validity_ms: u64,
        extra: &[(&str, String)],
    ) -> serde_json::Value {
        let valid_until = now_ms.saturating_add(validity_ms).min(MAX_SAFE_INTEGER);
        let mut verify_key = CanonicalJsonObject::new();
        verify_key.insert("key".to_owned(), CanonicalJsonValue::String(self.public_key_base64.clone()));
        let mut verify_keys = CanonicalJsonObject::new();
        verify_keys.insert(self.key_id.clone(), CanonicalJsonValue::Object(verify_key));

        let mut object = CanonicalJsonObject::new();
        object.insert("server_name".to_owned(), CanonicalJsonValue::String(server_name.to_owned()));
        object.insert("valid_until_ts".to_owned(), CanonicalJsonValue::Integer(js_int_from(valid_until)));
        object.insert("verify_keys".to_owned(), CanonicalJsonValue::Object(verify_keys));
        object.insert("old_verify_keys".to_owned(), CanonicalJsonValue::Object(CanonicalJsonObject::new()));
        for (field, value) in extra {
            object.insert((*field).to_owned(), CanonicalJsonValue::String(value.clone()));
        }
        if let Err(e) = self.sign_json(server_name, &mut object) {
            // Unreachable: the object was built above without `signatures`.
            tracing::error!(error = %e, "signing the server key response failed");
        }
        CanonicalJsonValue::Object(object).into()
    }
}

/// `value` as a canonical JSON integer; callers clamp to 2^53 - 1 first.
fn js_int_from(value: u64) -> ruma::Int {
    ruma::Int::try_from(value.min(MAX_SAFE_INTEGER)).unwrap_or(ruma::Int::MAX)
}

/// A fresh random key version: `VERSION_LEN` ASCII letters and digits.
fn random_version() -> String {
    rand::rngs::OsRng.sample_iter(&rand::distributions::Alphanumeric).take(VERSION_LEN).map(char::from).collect()
}

/// Key versions are what Matrix allows in a key ID: `[A-Za-z0-9_]+`.
fn validate_version(version: &str) -> Result<(), String> {
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("key version '{version}' must be 1 or more of A-Z, a-z, 0-9 and _"));
    }
    Ok(())
}

/// Parse `ed25519 <version> <base64 seed>`: one key line, blank lines ignored.
fn parse_key_file(text: &str) -> Result<(String, [u8; 32]), String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines.next().ok_or("the file is empty")?;
    if lines.next().is_some() {
        return Err("it holds more than one key line; Tidings uses exactly one".to_owned());
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [algorithm, version, seed_b64] = fields.as_slice() else {
        return Err("expected one line 'ed25519 <version> <base64 seed>'".to_owned());
    };
    if *algorithm != "ed25519" {
        return Err(format!("algorithm '{algorithm}' is not supported, only ed25519"));
    }
    validate_version(version)?;
    let seed = ruma::serde::Base64::<ruma::serde::base64::Standard>::parse(seed_b64)
        .map_err(|_| "the seed is not valid base64".to_owned())?;
    let seed: [u8; 32] = seed
        .as_bytes()
        .try_into()
        .map_err(|_| format!("the seed is {} bytes long, expected 32", seed.as_bytes().len()))?;
    Ok(((*version).to_owned(), seed))
}

/// Write the key file with mode 0600: into a temporary file first, synced, then
/// renamed into place, so a crash never leaves a half-written key behind.
fn write_key_file(path: &Path, version: &str, seed: &[u8; 32]) -> Result<(), String> {
    let tmp = path.with_extension("key.tmp");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot remove stale {}: {e}", tmp.display()));
        }
        _ => {}
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| format!("cannot create signing key file {}: {e}", tmp.display()))?;
    let line = format!("ed25519 {version} {}\n", STANDARD_NO_PAD.encode(seed));
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write signing key file {}: {e}", path.display()))?;
    // Make the rename itself durable; not every platform can sync a directory.
    if let Some(dir) = path.parent()
        && let Ok(dir) = fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Tighten a key file others can read back to 0600 (and say so).
fn check_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = %format!("{mode:o}"), "signing key file was readable by others; setting mode 0600");
                if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(0o600)) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot set mode 0600 on the signing key file");
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::serde::Base64;
    use ruma::signatures::{PublicKeyMap, PublicKeySet, verify_json};

    fn verify(response: &serde_json::Value, server_name: &str, key_id: &str, key_b64: &str) -> bool {
        let serde_json::Value::Object(map) = response.clone() else { return false };
        let Ok(object) = ruma::canonical_json::try_from_json_map(map) else { return false };
        let Ok(key) = Base64::parse(key_b64) else { return false };
        let mut set = PublicKeySet::new();
        set.insert(key_id.to_owned(), key);
        let mut keys = PublicKeyMap::new();
        keys.insert(server_name.to_owned(), set);
        verify_json(&keys, &object).is_ok()
    }

    #[test]
    fn created_then_reloaded_with_the_same_id_and_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let first = ServerKey::load_or_create(&data_dir).expect("create");
        assert!(first.key_id().starts_with("ed25519:"));
        assert_eq!(first.version().len(), VERSION_LEN);
        assert!(first.version().bytes().all(|b| b.is_ascii_alphanumeric()));
        let text = fs::read_to_string(data_dir.join(KEY_FILE_NAME)).expect("read");
        assert!(text.starts_with(&format!("ed25519 {} ", first.version())), "{text}");
        assert!(!data_dir.join("signing.key.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(data_dir.join(KEY_FILE_NAME)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = ServerKey::load_or_create(&data_dir).expect("reload");
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64(), second.public_key_base64());
        assert_eq!(first.sign_bytes_base64(b"x"), second.sign_bytes_base64(b"x"));
        let other = ServerKey::load_or_create(&dir.path().join("other")).expect("create other");
        assert_ne!(first.public_key_base64(), other.public_key_base64());
    }

    #[test]
    fn malformed_or_unreadable_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE_NAME);
        for bad in [
            "",
            "ed25519 abc",
            "rsa abc AAAA",
            "ed25519 ab-c AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "ed25519 abc !!!",
            "ed25519 abc AAAA",
            "ed25519 a AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\ned25519 b AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            fs::write(&path, bad).expect("write");
            let err = ServerKey::load_or_create(dir.path()).expect_err(bad);
            assert!(err.contains("signing.key") && err.contains("refusing to start"), "{err}");
        }
        fs::remove_file(&path).expect("rm");
        fs::create_dir(&path).expect("a directory where the file should be");
        let err = ServerKey::load_or_create(dir.path()).expect_err("a directory is no key file");
        assert!(err.contains("cannot read signing key file"), "{err}");
    }

    #[test]
    fn synapse_style_files_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Padded base64 and Synapse's `a_XXXX` versions are accepted.
        let line = format!("ed25519 a_Abc1 {}\n", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        fs::write(dir.path().join(KEY_FILE_NAME), line).expect("write");
        let key = ServerKey::load_or_create(dir.path()).expect("load");
        assert_eq!(key.key_id(), "ed25519:a_Abc1");
        let same = ServerKey::from_seed(&[7u8; 32], "a_Abc1".to_owned()).expect("from seed");
        assert_eq!(key.public_key_base64(), same.public_key_base64());
    }

    #[test]
    fn signed_key_response_verifies_and_tampering_fails() {
        let key = ServerKey::from_seed(&[1u8; 32], "abc123".to_owned()).expect("key");
        let response = key.server_keys_response("alpha.test", 1_000, 86_400_000);
        assert_eq!(response["server_name"], "alpha.test");
        assert_eq!(response["valid_until_ts"], 86_401_000);
        assert_eq!(response["verify_keys"]["ed25519:abc123"]["key"], key.public_key_base64());
        assert_eq!(response["old_verify_keys"], serde_json::json!({}));
        let sig = response["signatures"]["alpha.test"]["ed25519:abc123"].as_str().expect("signature");
        assert!(!sig.ends_with('='));
        assert!(verify(&response, "alpha.test", "ed25519:abc123", key.public_key_base64()));

        let mut tampered = response.clone();
        tampered["valid_until_ts"] = serde_json::json!(86_401_001);
        assert!(!verify(&tampered, "alpha.test", "ed25519:abc123", key.public_key_base64()));
        let mut renamed = response.clone();
        renamed["server_name"] = serde_json::json!("beta.test");
        assert!(!verify(&renamed, "alpha.test", "ed25519:abc123", key.public_key_base64()));
        let other = ServerKey::from_seed(&[2u8; 32], "abc123".to_owned()).expect("key");
        assert!(!verify(&response, "alpha.test", "ed25519:abc123", other.public_key_base64()));
    }

    #[test]
    fn signature_matches_the_spec_canonical_form() {
        // The signed bytes are the canonical JSON (sorted keys, no spaces) without
        // `signatures`: check against a hand-made canonical string.
        let key = ServerKey::from_seed(&[3u8; 32], "k1".to_owned()).expect("key");
        let response = key.server_keys_response("alpha.test", 5, 10);
        let canonical = format!(
            r#"{{"old_verify_keys":{{}},"server_name":"alpha.test","valid_until_ts":15,"verify_keys":{{"ed25519:k1":{{"key":"{}"}}}}}}"#,
            key.public_key_base64()
        );
        assert_eq!(response["signatures"]["alpha.test"]["ed25519:k1"], key.sign_bytes_base64(canonical.as_bytes()));
    }
}
