//! A user's devices (`/devices`, `/delete_devices`): list, get, rename, delete.
//! Deleting a device logs it out (its token stops working at once) and removes its
//! end-to-end keys and waiting to-device messages in the same write, and records a
//! device-list change so the users who share a room with its owner hear of it.
//! Logout goes through here too, for the same reasons.

use std::sync::Arc;

use ruma::UserId;

use crate::accounts::AccountService;
use crate::e2ee::marks::ANY_USER;
use crate::e2ee::{E2eeMarks, SharedRooms, write_at};
use crate::error::{Error, Result};
use crate::storage::Db;
use crate::stream::{Notifier, Positions};

/// The longest display name accepted.
const MAX_NAME_BYTES: usize = 256;
/// One `delete_devices` names at most this many devices.
pub const MAX_DEVICES_PER_DELETE: usize = 1000;

/// One device as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its ID.
    pub device_id: String,
    /// Its display name, if set.
    pub display_name: Option<String>,
}

/// Devices of every user.
#[derive(Debug)]
pub struct DeviceService {
    db: Db,
    accounts: Arc<AccountService>,
    positions: Arc<Positions>,
    notifier: Arc<Notifier>,
    shared: Arc<dyn SharedRooms>,
    marks: Arc<E2eeMarks>,
}

impl DeviceService {
    /// Devices in `db`; tokens are forgotten through `accounts`.
    pub fn new(
        db: Db,
        accounts: Arc<AccountService>,
        positions: Arc<Positions>,
        notifier: Arc<Notifier>,
        shared: Arc<dyn SharedRooms>,
        marks: Arc<E2eeMarks>,
    ) -> Arc<Self> {
        Arc::new(Self { db, accounts, positions, notifier, shared, marks })
    }

    /// Every device of `user`.
    pub async fn list(&self, user: &UserId) -> Result<Vec<DeviceInfo>> {
        let id = user.to_string();
        let rows = self.db.read(move |s| s.devices_of(&id)).await?;
        Ok(rows.into_iter().map(|(device_id, display_name)| DeviceInfo { device_id, display_name }).collect())
    }

    /// One device of `user`; `M_NOT_FOUND` if it has none by that ID.
    pub async fn get(&self, user: &UserId, device_id: &str) -> Result<DeviceInfo> {
        self.list(user)
            .await?
            .into_iter()
            .find(|d| d.device_id == device_id)
            .ok_or_else(|| Error::not_found(format!("{user} has no device {device_id}")))
    }

    /// Rename a device of `user`.
    pub async fn rename(&self, user: &UserId, device_id: &str, name: Option<String>) -> Result<()> {
        if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) {
            return Err(Error::invalid_param(format!("a device name is at most {MAX_NAME_BYTES} bytes")));
        }
        let (id, dev) = (user.to_string(), device_id.to_owned());
        let found = self.db.write(move |s| s.device_rename(&id, &dev, name.as_deref())).await?;
        if !found {
            return Err(Error::not_found(format!("{user} has no device {device_id}")));
        }
        Ok(())
    }

    /// Delete devices of `user` (unknown IDs are skipped, as the spec asks): their
    /// tokens, keys and waiting messages. The IDs deleted.
    pub async fn delete(&self, user: &UserId, device_ids: Vec<String>) -> Result<Vec<String>> {
        if device_ids.len() > MAX_DEVICES_PER_DELETE {
            return Err(Error::invalid_param(format!("one request deletes at most {MAX_DEVICES_PER_DELETE} devices")));
        }
        let wake = self.shared.users_sharing_with(user).await?;
        let id = user.to_string();
        let marks = Arc::clone(&self.marks);
        let removed = write_at(&self.db, &self.positions, &self.notifier, wake, move |s, pos| {
            let mut removed = Vec::new();
            for device in device_ids {
                if let Some(hash) = s.delete_device(&id, &device)? {
                    s.e2ee_delete_device(&id, &device)?;
                    removed.push((device, hash));
                }
            }
            if !removed.is_empty() {
                marks.device_lists.raise(ANY_USER, pos);
                s.device_list_changed(&id, pos)?;
            }
            let changed = !removed.is_empty();
            Ok((removed, changed))
        })
        .await;
        self.marks.counts_changed();
        let removed = removed?;
        let hashes: Vec<&str> = removed.iter().map(|(_, h)| h.as_str()).collect();
        self.accounts.forget_token_hashes(&hashes);
        Ok(removed.into_iter().map(|(d, _)| d).collect())
    }

    /// Delete every device of `user`; the IDs deleted.
    pub async fn delete_all(&self, user: &UserId) -> Result<Vec<String>> {
        let ids = self.list(user).await?.into_iter().map(|d| d.device_id).collect();
        self.delete(user, ids).await
    }
}
