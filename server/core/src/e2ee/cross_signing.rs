//! Cross-signing: `keys/device_signing/upload` (a user's master, self-signing and
//! user-signing keys) and `keys/signatures/upload` (signatures onto one's own devices
//! and master key, and onto other users' master keys).
//!
//! What is stored is checked first: a key names its owner, its usage and exactly one
//! ed25519 public key; the self-signing and user-signing keys carry a valid signature
//! of the master key; every uploaded signature verifies against the key it claims,
//! over the very object that is stored (an object that differs from the stored one
//! is refused). Each change records a device-list change of the user whose keys
//! changed, so clients sharing a room with them hear of it in `device_lists.changed`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ruma::canonical_json::CanonicalJsonValue;
use ruma::encryption::{CrossSigningKey, KeyUsage};
use ruma::{OwnedUserId, SigningKeyAlgorithm, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::keys::{KeyService, MAX_USERS_PER_REQUEST};
use super::marks::ANY_USER;
use super::write_at;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::is_local;
use crate::storage::Store;
use crate::storage::cross_signing::SignatureRow;

/// Matrix base64: standard alphabet, padding optional.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The three kinds of cross-signing key, as stored and as named in the API.
const KINDS: [(&str, &str); 3] =
    [("master", "master_key"), ("self_signing", "self_signing_key"), ("user_signing", "user_signing_key")];

/// The body of `keys/device_signing/upload` without its `auth` (the handler checks that).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SigningKeysUpload {
    /// The new master key.
    pub master_key: Option<Value>,
    /// The new self-signing key (signed by the master key).
    pub self_signing_key: Option<Value>,
    /// The new user-signing key (signed by the master key).
    pub user_signing_key: Option<Value>,
}

impl SigningKeysUpload {
    fn get(&self, kind: &str) -> Option<&Value> {
        match kind {
            "master" => self.master_key.as_ref(),
            "self_signing" => self.self_signing_key.as_ref(),
            _ => self.user_signing_key.as_ref(),
        }
    }
}

/// The body of `keys/signatures/upload`: `user → key ID or device ID → signed object`.
pub type SignatureUploads = BTreeMap<OwnedUserId, BTreeMap<String, Value>>;

/// The `failures` of `keys/signatures/upload`: `user → key → {errcode, error}`.
pub type SignatureFailures = BTreeMap<OwnedUserId, BTreeMap<String, Value>>;

/// The answer of `keys/query` without its `failures`.
#[derive(Debug, Default, Serialize)]
pub struct KeyQueryAnswer {
    /// `user → device → keys`, with uploaded signatures merged in.
    pub device_keys: BTreeMap<OwnedUserId, Map<String, Value>>,
    /// Each user's master key, with the signatures the querier may see.
    pub master_keys: BTreeMap<OwnedUserId, Value>,
    /// Each user's self-signing key.
    pub self_signing_keys: BTreeMap<OwnedUserId, Value>,
    /// The querier's own user-signing key (nobody else's).
    pub user_signing_keys: BTreeMap<OwnedUserId, Value>,
}

/// A cross-signing key that passed its checks.
#[derive(Debug, Clone)]
struct CheckedKey {
    key_id: String,
    public: String,
    json: String,
    value: Value,
}

fn usage_of(kind: &str) -> KeyUsage {
    match kind {
        "master" => KeyUsage::Master,
        "self_signing" => KeyUsage::SelfSigning,
        _ => KeyUsage::UserSigning,
    }
}

/// `value` without `signatures` and `unsigned`: what a signature covers.
fn signed_part(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    v
}

/// The signature `signer`'s key `key_id` (public key `public`, base64) made over
/// `object`, verified; the signature as uploaded.
fn verify(object: &Value, signer: &str, key_id: &str, public: &str) -> Result<String> {
    let bad = |why: &str| Error::new(ErrorKind::InvalidSignature, format!("signature by {signer} {key_id}: {why}"));
    let signature = object["signatures"][signer][key_id].as_str().ok_or_else(|| bad("missing"))?;
    let canonical = match CanonicalJsonValue::try_from(object.clone()) {
        Ok(CanonicalJsonValue::Object(o)) => o,
        _ => return Err(Error::new(ErrorKind::BadJson, "a signed object must be canonical JSON")),
    };
    let text = ruma::signatures::to_canonical_json_string_for_signing(&canonical).map_err(|e| bad(&e.to_string()))?;
    let public = B64.decode(public).map_err(|_| bad("the public key is not base64"))?;
    let sig = B64.decode(signature).map_err(|_| bad("not base64"))?;
    ruma::signatures::verify_canonical_json_bytes(&SigningKeyAlgorithm::Ed25519, &public, &sig, text.as_bytes())
        .map_err(|_| bad("does not verify"))?;
    Ok(signature.to_owned())
}

/// The JSON of a stored object, parsed.
fn parse(json: &str) -> Result<Value> {
    serde_json::from_str(json).map_err(Error::internal)
}

/// Merge `rows` (signatures onto `target_key`) into `object`'s `signatures`.
fn merge<'a>(object: &mut Value, rows: impl Iterator<Item = &'a SignatureRow>) {
    for row in rows {
        if !object["signatures"].is_object() {
            object["signatures"] = json!({});
        }
        if !object["signatures"][&row.signer_user].is_object() {
            object["signatures"][&row.signer_user] = json!({});
        }
        object["signatures"][&row.signer_user][&row.signer_key_id] = Value::String(row.signature.clone());
    }
}

impl KeyService {
    /// Check one uploaded key of `kind` for `user`.
    fn check_signing_key(&self, user: &UserId, kind: &str, value: &Value) -> Result<CheckedKey> {
        let name = KINDS.iter().find(|(k, _)| *k == kind).map_or(kind, |(_, n)| *n);
        let key: CrossSigningKey = serde_json::from_value(value.clone())
            .map_err(|e| Error::new(ErrorKind::BadJson, format!("{name} is not a cross-signing key: {e}")))?;
        if key.user_id != user {
            return Err(Error::invalid_param(format!("{name} must name the uploading user")));
        }
        if !key.usage.contains(&usage_of(kind)) {
            return Err(Error::invalid_param(format!("{name} must have the usage \"{kind}\"")));
        }
        let mut keys = key.keys.iter();
        let (Some((key_id, public)), None) = (keys.next(), keys.next()) else {
            return Err(Error::invalid_param(format!("{name} must carry exactly one key")));
        };
        if key_id.algorithm() != ruma::SigningKeyAlgorithm::Ed25519 || key_id.key_name() != public.as_str() {
            return Err(Error::invalid_param(format!("{name} must be an ed25519 key named after itself")));
        }
        let json = serde_json::to_string(value).map_err(Error::internal)?;
        let max = self.config.max_device_keys_bytes;
        if json.len() > max {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("a cross-signing key is at most {max} bytes (e2ee.max_device_keys_bytes)"),
            ));
        }
        Ok(CheckedKey { key_id: key_id.to_string(), public: public.clone(), json, value: value.clone() })
    }

    /// Whether storing `upload` needs user-interactive auth: not when the user has
    /// no master key yet, nor when every key in it equals the one stored (a retry).
    pub async fn signing_upload_needs_auth(&self, user: &UserId, upload: &SigningKeysUpload) -> Result<bool> {
        let id = user.to_string();
        let stored = self.db.read(move |s| s.cross_signing_get(&id)).await?;
        if !stored.iter().any(|(kind, _, _)| kind == "master") {
            return Ok(false);
        }
        for (kind, _) in KINDS {
            if let Some(new) = upload.get(kind) {
                let old = stored.iter().find(|(k, _, _)| k == kind).map(|(_, _, json)| parse(json)).transpose()?;
                if old.as_ref() != Some(new) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Store `user`'s new cross-signing keys. A new master key drops the
    /// self-signing and user-signing keys it does not come with (they were signed by
    /// the old one) and the signatures onto the old master key.
    pub async fn upload_signing_keys(&self, user: &UserId, upload: SigningKeysUpload) -> Result<()> {
        let mut checked: Vec<(&'static str, CheckedKey)> = Vec::new();
        for (kind, _) in KINDS {
            if let Some(value) = upload.get(kind) {
                checked.push((kind, self.check_signing_key(user, kind, value)?));
            }
        }
        if checked.is_empty() {
            return Ok(());
        }
        let wake = self.shared.users_sharing_with(user).await?;
        let id = user.to_string();
        let marks = std::sync::Arc::clone(&self.marks);
        write_at(&self.db, &self.positions, &self.notifier, wake, move |s, pos| {
            let stored = s.cross_signing_get(&id)?;
            let old_master = stored.iter().find(|(k, _, _)| k == "master").map(|(_, key_id, _)| key_id.clone());
            let new_master = checked.iter().find(|(k, _)| *k == "master").map(|(_, c)| c.clone());
            let master = match (&new_master, &stored.iter().find(|(k, _, _)| k == "master")) {
                (Some(m), _) => (m.key_id.clone(), m.public.clone()),
                (None, Some((_, key_id, _))) => {
                    (key_id.clone(), key_id.strip_prefix("ed25519:").unwrap_or(key_id).to_owned())
                }
                (None, None) => {
                    return Err(Error::invalid_param("upload a master key before the other cross-signing keys"));
                }
            };
            for (kind, key) in &checked {
                if *kind != "master" {
                    verify(&key.value, &id, &master.0, &master.1)?;
                }
            }
            let master_replaced = new_master.as_ref().is_some_and(|m| old_master.as_deref() != Some(m.key_id.as_str()));
            if master_replaced {
                if let Some(old) = &old_master {
                    s.signatures_delete(&id, old.strip_prefix("ed25519:").unwrap_or(old))?;
                }
                for (kind, _, _) in &stored {
                    if kind != "master" && !checked.iter().any(|(k, _)| k == kind) {
                        s.cross_signing_delete(&id, kind)?;
                    }
                }
            }
            let mut changed = master_replaced;
            for (kind, key) in &checked {
                let same = stored.iter().any(|(k, _, json)| k == kind && *json == key.json);
                if !same {
                    s.cross_signing_put(&id, kind, &key.key_id, &key.json)?;
                    changed = true;
                }
            }
            if changed {
                marks.device_lists.raise(ANY_USER, pos);
                s.device_list_changed(&id, pos)?;
            }
            Ok(((), changed))
        })
        .await
    }

    /// Store the signatures `signer` uploads; what could not be stored, per key.
    pub async fn upload_signatures(&self, signer: &UserId, uploads: SignatureUploads) -> Result<SignatureFailures> {
        if uploads.len() > MAX_USERS_PER_REQUEST {
            return Err(Error::invalid_param(format!("one upload names at most {MAX_USERS_PER_REQUEST} users")));
        }
        let mut wake = self.shared.users_sharing_with(signer).await?;
        for target in uploads.keys().filter(|u| *u != signer && is_local(u, &self.server_name)) {
            wake.extend(self.shared.users_sharing_with(target).await?);
        }
        wake.sort();
        wake.dedup();
        let (signer, server_name) = (signer.to_owned(), self.server_name.clone());
        let max = self.config.max_signatures_per_key;
        let marks = std::sync::Arc::clone(&self.marks);
        write_at(&self.db, &self.positions, &self.notifier, wake, move |s, pos| {
            let mut failures = SignatureFailures::new();
            let mut changed_users: Vec<String> = Vec::new();
            for (target, objects) in uploads {
                for (key, object) in objects {
                    let stored = if is_local(&target, &server_name) {
                        store_signature(s, &signer, &target, &key, &object, max)
                    } else {
                        Err(Error::not_found("keys of other servers are not known here"))
                    };
                    match stored {
                        Ok(()) => changed_users.push(target.to_string()),
                        Err(e) => {
                            failures
                                .entry(target.clone())
                                .or_default()
                                .insert(key, json!({"errcode": e.kind().errcode(), "error": e.message()}));
                        }
                    }
                }
            }
            changed_users.sort();
            changed_users.dedup();
            for user in &changed_users {
                marks.device_lists.raise(ANY_USER, pos);
                s.device_list_changed(user, pos)?;
            }
            Ok((failures, !changed_users.is_empty()))
        })
        .await
    }

    /// The cross-signing part of a query by `querier` for `user`, into `out`, and the
    /// signatures merged into `devices` (that user's device keys).
    pub(super) fn query_cross_signing(
        s: &dyn Store,
        querier: &UserId,
        user: &OwnedUserId,
        devices: &mut Map<String, Value>,
        out: &mut KeyQueryAnswer,
    ) -> Result<()> {
        let signatures = s.signatures_of(user.as_str())?;
        for (device_id, keys) in devices.iter_mut() {
            merge(keys, signatures.iter().filter(|r| &r.target_key == device_id));
        }
        for (kind, key_id, json) in s.cross_signing_get(user.as_str())? {
            let mut value = parse(&json)?;
            match kind.as_str() {
                "master" => {
                    let public = key_id.strip_prefix("ed25519:").unwrap_or(&key_id);
                    // Signatures by other users' user-signing keys are shown only to their signer.
                    merge(
                        &mut value,
                        signatures.iter().filter(|r| {
                            r.target_key == public
                                && (r.signer_user == user.as_str() || r.signer_user == querier.as_str())
                        }),
                    );
                    out.master_keys.insert(user.clone(), value);
                }
                "self_signing" => {
                    out.self_signing_keys.insert(user.clone(), value);
                }
                _ if user == querier => {
                    out.user_signing_keys.insert(user.clone(), value);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Check and store one signed object `signer` uploads onto `target`'s `key` (a
/// device ID or a master key's public key).
fn store_signature(s: &dyn Store, signer: &UserId, target: &UserId, key: &str, object: &Value, max: u64) -> Result<()> {
    let (signer_id, target_id) = (signer.as_str(), target.as_str());
    let signing = s.cross_signing_get(signer_id)?;
    let signing_key = |kind: &str| {
        signing
            .iter()
            .find(|(k, _, _)| k == kind)
            .map(|(_, key_id, _)| (key_id.clone(), key_id.strip_prefix("ed25519:").unwrap_or(key_id).to_owned()))
    };
    let target_master = s
        .cross_signing_get(target_id)?
        .into_iter()
        .find(|(k, _, _)| k == "master")
        .map(|(_, key_id, json)| (key_id.strip_prefix("ed25519:").unwrap_or(&key_id).to_owned(), json));
    let mut rows: Vec<SignatureRow> = Vec::new();
    let row = |key_id: &str, signature: String| SignatureRow {
        target_key: key.to_owned(),
        signer_user: signer_id.to_owned(),
        signer_key_id: key_id.to_owned(),
        signature,
    };
    let same_as = |stored: &str| -> Result<()> {
        if signed_part(&parse(stored)?) != signed_part(object) {
            return Err(Error::invalid_param("the signed object differs from the stored one"));
        }
        Ok(())
    };
    if signer == target {
        if let Some((_, device_keys)) = s.device_keys_get(target_id, Some(key))?.into_iter().next() {
            // One's own device, signed by one's self-signing key.
            same_as(&device_keys)?;
            let (key_id, public) = signing_key("self_signing")
                .ok_or_else(|| Error::not_found("upload a self-signing key before signing devices"))?;
            rows.push(row(&key_id, verify(object, signer_id, &key_id, &public)?));
        } else if let Some((_, master_json)) = target_master.as_ref().filter(|(public, _)| public == key) {
            // One's own master key, signed by one's devices.
            same_as(master_json)?;
            let by_devices = object["signatures"][signer_id].as_object().cloned().unwrap_or_default();
            for key_id in by_devices.keys() {
                let Some(device) = key_id.strip_prefix("ed25519:") else { continue };
                if device == key {
                    continue; // the master key's own self-signature
                }
                let Some((_, keys)) = s.device_keys_get(target_id, Some(device))?.into_iter().next() else {
                    continue;
                };
                let Some(public) = parse(&keys)?["keys"][key_id].as_str().map(str::to_owned) else { continue };
                rows.push(row(key_id, verify(object, signer_id, key_id, &public)?));
            }
            if rows.is_empty() {
                return Err(Error::new(ErrorKind::InvalidSignature, "no signature by a device of the user"));
            }
        } else {
            return Err(Error::not_found(format!("{target} has no device or master key {key}")));
        }
    } else {
        // Another user's master key, signed by the signer's user-signing key.
        let (_, master_json) = target_master
            .filter(|(public, _)| public == key)
            .ok_or_else(|| Error::not_found(format!("{target} has no master key {key}")))?;
        same_as(&master_json)?;
        let (key_id, public) = signing_key("user_signing")
            .ok_or_else(|| Error::not_found("upload a user-signing key before signing other users"))?;
        rows.push(row(&key_id, verify(object, signer_id, &key_id, &public)?));
    }
    let existing = s.signatures_of(target_id)?;
    let new = rows
        .iter()
        .filter(|r| {
            !existing.iter().any(|e| {
                e.target_key == r.target_key && e.signer_user == r.signer_user && e.signer_key_id == r.signer_key_id
            })
        })
        .count() as u64;
    if s.signature_count(target_id, key)? + new > max {
        return Err(Error::new(
            ErrorKind::LimitExceeded { retry_after_ms: 0 },
            format!("a key carries at most {max} uploaded signatures (e2ee.max_signatures_per_key)"),
        ));
    }
    for r in &rows {
        s.signature_put(target_id, r)?;
    }
    Ok(())
}
