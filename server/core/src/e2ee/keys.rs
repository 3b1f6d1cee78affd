//! Device keys, one-time keys and fallback keys: upload, query, claim, changes.
//!
//! Keys are stored as the JSON the device signed. A device may upload keys only for
//! itself (`user_id` and `device_id` in its device keys must be its own). A one-time
//! key is handed out once: a claim deletes it in the same write that reads it, so two
//! claims never get the same key. When a device has no one-time key left, its
//! fallback key is handed out (and stays, marked used, until the device uploads a new
//! one).

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::{OwnedUserId, UserId};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::cross_signing::KeyQueryAnswer;
use super::marks::{ANY_USER, E2eeMarks, KeyCounts};
use super::shared_rooms::SharedRooms;
use super::write_at;
use crate::accounts::Device;
use crate::config::E2eeConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::is_local;
use crate::storage::Db;
use crate::stream::{Notifier, Positions};

/// The longest key ID (`algorithm:id`) accepted.
const MAX_KEY_ID_BYTES: usize = 255;
/// One upload carries at most this many one-time keys.
const MAX_KEYS_PER_UPLOAD: usize = 1000;
/// One query or claim names at most this many users.
pub const MAX_USERS_PER_REQUEST: usize = 1000;

/// The body of `keys/upload`.
#[derive(Debug, Default, Deserialize)]
pub struct UploadKeys {
    /// The device's signed identity keys.
    pub device_keys: Option<Value>,
    /// New one-time keys, `algorithm:id` → key.
    #[serde(default)]
    pub one_time_keys: BTreeMap<String, Value>,
    /// New fallback keys, `algorithm:id` → key.
    #[serde(default)]
    pub fallback_keys: BTreeMap<String, Value>,
}

/// The answer of `keys/query`: `user → device → keys`.
pub type QueriedKeys = BTreeMap<OwnedUserId, Map<String, Value>>;

/// The answer of `keys/claim`: `user → device → {key ID: key}`.
pub type ClaimedKeys = BTreeMap<OwnedUserId, Map<String, Value>>;

fn algorithm_of(key_id: &str) -> Result<&str> {
    match key_id.split_once(':') {
        Some((alg, id)) if !alg.is_empty() && !id.is_empty() && key_id.len() <= MAX_KEY_ID_BYTES => Ok(alg),
        _ => Err(Error::invalid_param(format!("'{key_id}' is not a key ID of the form algorithm:id"))),
    }
}

/// Keys of every device.
#[derive(Debug)]
pub struct KeyService {
    pub(super) db: Db,
    pub(super) positions: Arc<Positions>,
    pub(super) notifier: Arc<Notifier>,
    pub(super) shared: Arc<dyn SharedRooms>,
    pub(super) server_name: String,
    pub(super) config: E2eeConfig,
    pub(super) marks: Arc<E2eeMarks>,
}

impl KeyService {
    /// Keys stored in `db`; device-list changes wake the users `shared` names.
    pub fn new(
        db: Db,
        positions: Arc<Positions>,
        notifier: Arc<Notifier>,
        shared: Arc<dyn SharedRooms>,
        server_name: &str,
        config: &E2eeConfig,
        marks: Arc<E2eeMarks>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            positions,
            notifier,
            shared,
            server_name: server_name.to_owned(),
            config: config.clone(),
            marks,
        })
    }

    /// Who shares a room with `user`, for the device-list parts of sync and `keys/changes`.
    pub async fn sharing_with(&self, user: &UserId) -> Result<Vec<OwnedUserId>> {
        self.shared.users_sharing_with(user).await
    }

    /// Store what `device` uploads; the device's unclaimed one-time keys per algorithm after.
    pub async fn upload(&self, device: &Device, upload: UploadKeys) -> Result<BTreeMap<String, u64>> {
        let device_keys = match upload.device_keys {
            Some(keys) => Some(self.check_device_keys(device, keys)?),
            None => None,
        };
        if upload.one_time_keys.len() > MAX_KEYS_PER_UPLOAD {
            return Err(Error::invalid_param(format!(
                "one upload carries at most {MAX_KEYS_PER_UPLOAD} one-time keys"
            )));
        }
        let mut otks = Vec::with_capacity(upload.one_time_keys.len());
        for (id, key) in &upload.one_time_keys {
            otks.push((id.clone(), algorithm_of(id)?.to_owned(), self.key_json(key)?));
        }
        let mut fallbacks = Vec::with_capacity(upload.fallback_keys.len());
        for (id, key) in &upload.fallback_keys {
            fallbacks.push((id.clone(), algorithm_of(id)?.to_owned(), self.key_json(key)?));
        }
        let wake = if device_keys.is_some() { self.shared.users_sharing_with(&device.user_id).await? } else { vec![] };
        let (user, dev, cap) =
            (device.user_id.to_string(), device.device_id.clone(), self.config.max_one_time_keys_per_device);
        let marks = Arc::clone(&self.marks);
        let written = write_at(&self.db, &self.positions, &self.notifier, wake, move |s, pos| {
            let mut changed = false;
            if let Some(keys) = device_keys {
                let old = s.device_keys_get(&user, Some(&dev))?;
                if old.first().is_none_or(|(_, k)| *k != keys) {
                    s.device_keys_put(&user, &dev, &keys)?;
                    marks.device_lists.raise(ANY_USER, pos);
                    s.device_list_changed(&user, pos)?;
                    changed = true;
                }
            }
            for (id, alg, key) in &otks {
                s.otk_add(&user, &dev, id, alg, key)?;
            }
            for (id, alg, key) in &fallbacks {
                s.fallback_put(&user, &dev, alg, id, key)?;
            }
            let counts: BTreeMap<String, u64> = s.otk_counts(&user, &dev)?.into_iter().collect();
            if counts.values().sum::<u64>() > cap {
                return Err(Error::new(
                    ErrorKind::LimitExceeded { retry_after_ms: 0 },
                    format!("one device holds at most {cap} one-time keys (e2ee.max_one_time_keys_per_device)"),
                ));
            }
            Ok((counts, changed))
        })
        .await;
        self.marks.counts_changed();
        written
    }

    fn key_json(&self, key: &Value) -> Result<String> {
        let json = serde_json::to_string(key).map_err(Error::internal)?;
        if json.len() > self.config.max_device_keys_bytes {
            return Err(Error::new(ErrorKind::TooLarge, "a key is larger than e2ee.max_device_keys_bytes"));
        }
        Ok(json)
    }

    fn check_device_keys(&self, device: &Device, keys: Value) -> Result<String> {
        if keys["user_id"] != device.user_id.as_str() || keys["device_id"] != device.device_id.as_str() {
            return Err(Error::invalid_param("device_keys must name the uploading user and device"));
        }
        if !keys["keys"].is_object() || !keys["algorithms"].is_array() {
            return Err(Error::new(ErrorKind::BadJson, "device_keys needs `algorithms` and `keys`"));
        }
        let json = serde_json::to_string(&keys).map_err(Error::internal)?;
        if json.len() > self.config.max_device_keys_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "device keys are at most {} bytes (e2ee.max_device_keys_bytes)",
                    self.config.max_device_keys_bytes
                ),
            ));
        }
        Ok(json)
    }

    /// The device keys of the named devices (all of a user's for an empty list),
    /// each with `unsigned.device_display_name` and the signatures uploaded onto it,
    /// and the users' cross-signing keys as `querier` may see them. Users of other
    /// servers are left out (keys do not cross servers yet).
    pub async fn query(&self, querier: &UserId, wanted: BTreeMap<OwnedUserId, Vec<String>>) -> Result<KeyQueryAnswer> {
        if wanted.len() > MAX_USERS_PER_REQUEST {
            return Err(Error::invalid_param(format!("one query names at most {MAX_USERS_PER_REQUEST} users")));
        }
        let wanted: Vec<(OwnedUserId, Vec<String>)> =
            wanted.into_iter().filter(|(u, _)| is_local(u, &self.server_name)).collect();
        let querier = querier.to_owned();
        self.db
            .read(move |s| {
                let mut out = KeyQueryAnswer::default();
                for (user, devices) in wanted {
                    let names: BTreeMap<String, Option<String>> = s.devices_of(user.as_str())?.into_iter().collect();
                    let mut found = Map::new();
                    for (device_id, keys) in s.device_keys_get(user.as_str(), None)? {
                        if !devices.is_empty() && !devices.contains(&device_id) {
                            continue;
                        }
                        let Some(name) = names.get(&device_id) else { continue };
                        let mut keys: Value = serde_json::from_str(&keys).map_err(Error::internal)?;
                        if let Some(name) = name {
                            keys["unsigned"]["device_display_name"] = Value::String(name.clone());
                        }
                        found.insert(device_id, keys);
                    }
                    KeyService::query_cross_signing(s, &querier, &user, &mut found, &mut out)?;
                    out.device_keys.insert(user, found);
                }
                Ok(out)
            })
            .await
    }

    /// Claim one key of the given algorithm for each named device: a one-time key
    /// (deleted as it is handed out), else its fallback key.
    pub async fn claim(&self, wanted: BTreeMap<OwnedUserId, BTreeMap<String, String>>) -> Result<ClaimedKeys> {
        if wanted.len() > MAX_USERS_PER_REQUEST {
            return Err(Error::invalid_param(format!("one claim names at most {MAX_USERS_PER_REQUEST} users")));
        }
        let wanted: Vec<(OwnedUserId, BTreeMap<String, String>)> =
            wanted.into_iter().filter(|(u, _)| is_local(u, &self.server_name)).collect();
        let claimed = self
            .db
            .write(move |s| {
                let mut out = ClaimedKeys::new();
                for (user, devices) in wanted {
                    let mut claimed = Map::new();
                    for (device_id, algorithm) in devices {
                        let key = match s.otk_claim(user.as_str(), &device_id, &algorithm)? {
                            Some(k) => Some(k),
                            None => s.fallback_claim(user.as_str(), &device_id, &algorithm)?,
                        };
                        if let Some((key_id, key)) = key {
                            let key: Value = serde_json::from_str(&key).map_err(Error::internal)?;
                            claimed.insert(device_id, Value::Object(Map::from_iter([(key_id, key)])));
                        }
                    }
                    if !claimed.is_empty() {
                        out.insert(user, claimed);
                    }
                }
                Ok(out)
            })
            .await;
        self.marks.counts_changed();
        claimed
    }

    /// The users who share a room with `user` and whose device lists changed in
    /// `(since, upto]`.
    pub async fn changed(&self, user: &UserId, since: u64, upto: u64) -> Result<Vec<OwnedUserId>> {
        if since >= upto {
            return Ok(Vec::new());
        }
        if !self.marks.device_lists.changed_after(ANY_USER, since) {
            return Ok(Vec::new());
        }
        let shared = self.shared.users_sharing_with(user).await?;
        let changed = self.db.read(move |s| s.device_lists_changed_between(since, upto)).await?;
        Ok(shared.into_iter().filter(|u| changed.iter().any(|c| c == u.as_str())).collect())
    }

    /// The users who shared a room with `user` at `since` and share none now.
    pub async fn left(&self, user: &UserId, since: u64, upto: u64) -> Result<Vec<OwnedUserId>> {
        self.shared.users_no_longer_sharing(user, since, upto).await
    }

    /// The unclaimed one-time keys per algorithm and the unused fallback key
    /// algorithms of one device.
    pub async fn counts(&self, user: &UserId, device: &str) -> Result<KeyCounts> {
        let (user, device) = (user.to_string(), device.to_owned());
        if let Some(known) = self.marks.counts(&user, &device) {
            return Ok(known);
        }
        let generation = self.marks.generation();
        let (u, d) = (user.clone(), device.clone());
        let read = self.db.read(move |s| Ok((s.otk_counts(&u, &d)?, s.fallback_unused(&u, &d)?))).await?;
        self.marks.keep_counts(&user, &device, generation, &read);
        Ok(read)
    }
}
