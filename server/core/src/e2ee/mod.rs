//! End-to-end encryption's server side: device keys, one-time and fallback keys
//! (`keys/upload`, `keys/query`, `keys/claim`, `keys/changes`), cross-signing keys
//! and signatures (`keys/device_signing/upload`, `keys/signatures/upload`), to-device messages
//! (`sendToDevice`), and their parts of `/sync` (`to_device`, `device_lists`,
//! `device_one_time_keys_count`, `device_unused_fallback_key_types`), each a
//! [`crate::sync::Source`] on the one stream. The server stores what devices upload
//! as they signed it and never reads an encrypted payload.

mod cross_signing;
mod keys;
pub(crate) mod marks;
mod shared_rooms;
mod sources;
mod to_device;
mod write;

pub use cross_signing::{KeyQueryAnswer, SignatureFailures, SignatureUploads, SigningKeysUpload};
pub use keys::{ClaimedKeys, KeyService, QueriedKeys, UploadKeys};
pub use marks::E2eeMarks;
pub use shared_rooms::{SelfOnly, SharedRooms};
pub use sources::{DeviceListsSource, KeyCountsSource, ToDeviceSource};
pub use to_device::ToDeviceService;
pub(crate) use write::write_at;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::accounts::Device;
    use crate::config::E2eeConfig;
    use crate::stream::{Notifier, Positions};

    fn device(user: &str, id: &str) -> Device {
        Device { user_id: ruma::UserId::parse(user).expect("user"), device_id: id.to_owned(), admin: false }
    }

    #[tokio::test]
    async fn to_device_messages_wait_until_a_later_token_acknowledges_them() {
        let db = crate::storage::memory();
        let positions = Arc::new(Positions::in_memory(0));
        let notifier = Arc::new(Notifier::new());
        let service = ToDeviceService::new(db, Arc::clone(&positions), notifier, "a.test", &E2eeConfig::default());
        let (alice, bob) = (device("@alice:a.test", "A"), device("@bob:a.test", "B"));
        let to_bob = || BTreeMap::from([(bob.user_id.clone(), BTreeMap::from([("B".to_owned(), json!({"k": 1}))]))]);
        service.send(&alice, "m.test", "t1", to_bob()).await.expect("sent");
        service.send(&alice, "m.test", "t1", to_bob()).await.expect("a retry is accepted");
        let upto = positions.visible();
        let first = service.for_sync(&bob.user_id, "B", None, upto).await.expect("sync");
        assert_eq!(first.len(), 1, "the retried transaction is applied once");
        let again = service.for_sync(&bob.user_id, "B", Some(0), upto).await.expect("sync");
        assert_eq!(again.len(), 1, "not acknowledged yet: delivered again");
        let acked = service.for_sync(&bob.user_id, "B", Some(upto), upto).await.expect("sync");
        assert!(acked.is_empty());
        let replay = service.for_sync(&bob.user_id, "B", Some(0), upto).await.expect("sync");
        assert!(replay.is_empty(), "acknowledged messages are deleted");
        assert_eq!(positions.visible(), positions.current(), "no position is left in flight");
    }

    #[tokio::test]
    async fn transaction_ids_are_kept_per_device_up_to_the_bound() {
        use crate::storage::e2ee::KEPT_TXNS_PER_DEVICE;
        let db = crate::storage::memory();
        let kept = db
            .write(|s| {
                for n in 0..=KEPT_TXNS_PER_DEVICE {
                    assert!(s.to_device_txn_put("@a:a.test", "A", &format!("t{n}"))?, "t{n} is new");
                }
                let newest_again = s.to_device_txn_put("@a:a.test", "A", &format!("t{KEPT_TXNS_PER_DEVICE}"))?;
                let other_device = s.to_device_txn_put("@a:a.test", "B", "t0")?;
                let oldest_again = s.to_device_txn_put("@a:a.test", "A", "t0")?;
                Ok((newest_again, other_device, oldest_again))
            })
            .await
            .expect("writes");
        assert_eq!(kept, (false, true, true), "a recent retry is caught; the oldest ID was let go");
    }
}
