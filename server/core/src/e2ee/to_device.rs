//! To-device messages (`sendToDevice/{type}/{txnId}`): queued per device at a stream
//! position, delivered by `/sync` until the device acknowledges them by syncing with
//! a later token, then deleted. A message survives restarts (`kill -9` included)
//! until it was acknowledged. A transaction ID is applied once per sending device.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ruma::{OwnedUserId, UserId};
use serde_json::Value;

use super::write_at;
use crate::accounts::Device;
use crate::config::E2eeConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::is_local;
use crate::storage::Db;
use crate::storage::e2ee::ToDeviceRow;
use crate::stream::{Marks, Notifier, Positions};

/// The device ID that means "every device of the user".
const ALL_DEVICES: &str = "*";
/// One request addresses at most this many users.
const MAX_USERS: usize = 1000;

/// To-device messages of every device.
#[derive(Debug)]
pub struct ToDeviceService {
    db: Db,
    positions: Arc<Positions>,
    notifier: Arc<Notifier>,
    server_name: String,
    config: E2eeConfig,
    /// Per user: the newest position of a message queued for one of their devices.
    marks: Arc<Marks>,
    /// Per device (`user`, `device`): a sync read at this position found its queue
    /// empty. With no message queued for the user since, it still is.
    empty_at: Mutex<HashMap<(String, String), u64>>,
}

/// Devices whose empty queue is remembered at most; past it the memory starts afresh.
const MAX_EMPTY_REMEMBERED: usize = 100_000;

impl ToDeviceService {
    /// Messages queued in `db`, bounded by `config`.
    pub fn new(
        db: Db,
        positions: Arc<Positions>,
        notifier: Arc<Notifier>,
        server_name: &str,
        config: &E2eeConfig,
    ) -> Arc<Self> {
        let marks = Arc::new(Marks::new(positions.visible()));
        Arc::new(Self {
            db,
            positions,
            notifier,
            server_name: server_name.to_owned(),
            config: config.clone(),
            marks,
            empty_at: Mutex::default(),
        })
    }

    /// Queue `messages` (`user → device or "*" → content`) of type `kind` from
    /// `sender`, once per `txn_id` of the sending device. Users of other servers are
    /// skipped (to-device does not cross servers yet); a full queue refuses the whole
    /// request (429), so nothing is half sent.
    pub async fn send(
        &self,
        sender: &Device,
        kind: &str,
        txn_id: &str,
        messages: BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    ) -> Result<()> {
        if messages.len() > MAX_USERS {
            return Err(Error::invalid_param(format!("one request addresses at most {MAX_USERS} users")));
        }
        let mut queued: Vec<(String, String, String)> = Vec::new();
        for (user, devices) in messages {
            if !is_local(&user, &self.server_name) {
                tracing::debug!(%user, "to-device message for another server dropped");
                continue;
            }
            for (device, content) in devices {
                if !content.is_object() {
                    return Err(Error::new(ErrorKind::BadJson, "a to-device message's content is a JSON object"));
                }
                let json = serde_json::to_string(&content).map_err(Error::internal)?;
                if json.len() > self.config.max_to_device_bytes {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        format!(
                            "a to-device message is at most {} bytes (e2ee.max_to_device_bytes)",
                            self.config.max_to_device_bytes
                        ),
                    ));
                }
                queued.push((user.to_string(), device, json));
            }
        }
        let wake: Vec<OwnedUserId> = {
            let mut users: Vec<&str> = queued.iter().map(|(u, _, _)| u.as_str()).collect();
            users.dedup();
            users.into_iter().filter_map(|u| UserId::parse(u).ok()).collect()
        };
        let (from, from_device, kind, txn, cap) = (
            sender.user_id.to_string(),
            sender.device_id.clone(),
            kind.to_owned(),
            txn_id.to_owned(),
            self.config.max_to_device_queue,
        );
        let marks = Arc::clone(&self.marks);
        write_at(&self.db, &self.positions, &self.notifier, wake, move |s, pos| {
            for (user, _, _) in &queued {
                marks.raise(user, pos);
            }
            if !s.to_device_txn_put(&from, &from_device, &txn)? {
                return Ok(((), false));
            }
            for (user, device, content) in &queued {
                let targets: Vec<String> = if device == ALL_DEVICES {
                    s.devices_of(user)?.into_iter().map(|(d, _)| d).collect()
                } else {
                    vec![device.clone()]
                };
                for target in targets {
                    if s.to_device_count(user, &target)? >= cap {
                        return Err(Error::new(
                            ErrorKind::LimitExceeded { retry_after_ms: 1000 },
                            format!("{user}'s device {target} has {cap} messages waiting (e2ee.max_to_device_queue)"),
                        ));
                    }
                    let row = ToDeviceRow {
                        stream_pos: pos,
                        sender: from.clone(),
                        kind: kind.clone(),
                        content: content.clone(),
                    };
                    s.to_device_put(user, &target, &row)?;
                }
            }
            Ok(((), true))
        })
        .await
    }

    /// The messages for `device` of `user` in the range a sync answers: those at or
    /// below `upto`. Those at or below `since` were delivered before and the device
    /// has now acknowledged them: they are deleted first.
    pub async fn for_sync(
        &self,
        user: &UserId,
        device: &str,
        since: Option<u64>,
        upto: u64,
    ) -> Result<Vec<ToDeviceRow>> {
        let key = (user.to_string(), device.to_owned());
        if self.known_empty(&key, upto) {
            return Ok(Vec::new());
        }
        let (u, d) = key.clone();
        let mut waiting = self.db.read(move |s| s.to_device_waiting(&u, &d, upto)).await?;
        if waiting.is_empty() {
            let mut empty = self.empty_at.lock().unwrap_or_else(|p| p.into_inner());
            if empty.len() >= MAX_EMPTY_REMEMBERED {
                empty.clear();
            }
            empty.insert(key, upto);
        }
        if let Some(since) = since
            && waiting.first().is_some_and(|m| m.stream_pos <= since)
        {
            let (u, d) = (user.to_string(), device.to_owned());
            self.db.write(move |s| s.to_device_ack(&u, &d, since)).await?;
            waiting.retain(|m| m.stream_pos > since);
        }
        Ok(waiting)
    }

    /// Whether the device's queue is known to be empty at `upto`: a read found it
    /// empty at a position at or above every message queued for the user since
    /// start-up (messages are queued, with their position's mark raised, before the
    /// position is visible, so one at or below `upto` would have raised it).
    fn known_empty(&self, key: &(String, String), upto: u64) -> bool {
        let empty = self.empty_at.lock().unwrap_or_else(|p| p.into_inner());
        empty.get(key).is_some_and(|at| *at <= upto && self.marks.newest(&key.0) <= *at)
    }
}
