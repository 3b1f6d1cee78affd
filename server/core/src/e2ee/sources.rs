//! The E2EE parts of `/sync`, each a source on the one stream:
//! - [`ToDeviceSource`]: `to_device.events` for the syncing device;
//! - [`DeviceListsSource`]: `device_lists.changed`, the users sharing a room with the
//!   syncing user whose devices (or cross-signing keys) changed in the range, and
//!   `device_lists.left`, those who stopped sharing any room with them (incremental
//!   syncs only);
//! - [`KeyCountsSource`]: `device_one_time_keys_count` and
//!   `device_unused_fallback_key_types` of the syncing device, in every answer.

use std::sync::Arc;

use ruma::serde::Raw;
use ruma::{DeviceId, OneTimeKeyAlgorithm, UInt, UserId};
use serde_json::{Value, json};

use super::keys::KeyService;
use super::to_device::ToDeviceService;
use crate::error::{Error, Result};
use crate::sync::{BoxFuture, Source, SyncRange, SyncResponse};

/// What a per-device source adds for a sync that names no device: nothing.
fn nothing_without_a_device<'a>() -> BoxFuture<'a, Result<()>> {
    Box::pin(async { Ok(()) })
}

/// To-device messages in `/sync`.
#[derive(Debug)]
pub struct ToDeviceSource(pub Arc<ToDeviceService>);

impl Source for ToDeviceSource {
    fn collect<'a>(&'a self, _: &'a UserId, _: SyncRange, _: &'a mut SyncResponse) -> BoxFuture<'a, Result<()>> {
        nothing_without_a_device()
    }

    fn collect_for<'a>(
        &'a self,
        user: &'a UserId,
        device: &'a DeviceId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for message in self.0.for_sync(user, device.as_str(), range.since, range.upto).await? {
                let content: Value = serde_json::from_str(&message.content).map_err(Error::internal)?;
                let event = json!({ "sender": message.sender, "type": message.kind, "content": content });
                let raw = serde_json::value::to_raw_value(&event).map_err(Error::internal)?;
                out.to_device.events.push(Raw::from_json(raw));
            }
            Ok(())
        })
    }
}

/// `device_lists` in `/sync`.
#[derive(Debug)]
pub struct DeviceListsSource(pub Arc<KeyService>);

impl Source for DeviceListsSource {
    fn collect<'a>(
        &'a self,
        user: &'a UserId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(since) = range.since else { return Ok(()) };
            out.device_lists.changed = self.0.changed(user, since, range.upto).await?;
            out.device_lists.left = self.0.left(user, since, range.upto).await?;
            Ok(())
        })
    }
}

/// One-time key counts and unused fallback keys in `/sync`.
#[derive(Debug)]
pub struct KeyCountsSource(pub Arc<KeyService>);

impl Source for KeyCountsSource {
    fn collect<'a>(&'a self, _: &'a UserId, _: SyncRange, _: &'a mut SyncResponse) -> BoxFuture<'a, Result<()>> {
        nothing_without_a_device()
    }

    fn collect_for<'a>(
        &'a self,
        user: &'a UserId,
        device: &'a DeviceId,
        _range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (counts, fallbacks) = self.0.counts(user, device.as_str()).await?;
            // Clients read a missing count as "unknown"; say 0 for the one they all use.
            out.device_one_time_keys_count.insert(OneTimeKeyAlgorithm::SignedCurve25519, UInt::MIN);
            for (algorithm, n) in counts {
                out.device_one_time_keys_count
                    .insert(OneTimeKeyAlgorithm::from(algorithm.as_str()), UInt::new_saturating(n));
            }
            out.device_unused_fallback_key_types =
                Some(fallbacks.iter().map(|a| OneTimeKeyAlgorithm::from(a.as_str())).collect());
            Ok(())
        })
    }
}
