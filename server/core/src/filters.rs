//! Sync filters (`/user/{userId}/filter`): stored per user as ruma's
//! [`FilterDefinition`], numbered from 0. [`FilterService::get`] is the one lookup
//! the rooms source calls for `/sync?filter=`: a stored filter's ID or an inline JSON
//! definition, the way the spec lets clients send either.

use std::collections::HashMap;
use std::sync::Mutex;

use ruma::api::client::filter::FilterDefinition;
use ruma::{OwnedUserId, UserId};

use crate::config::ClientConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::Db;

/// Stored filters kept in memory at most; past it the cache starts afresh.
const MAX_CACHED: usize = 10_000;

/// Filters of each user.
#[derive(Debug)]
pub struct FilterService {
    db: Db,
    max_per_user: u64,
    max_bytes: usize,
    /// Filters read before. A stored filter never changes (the API has no way to
    /// edit or delete one), so a clients' long polls, which name the same filter
    /// each time, do not read it again.
    cache: Mutex<HashMap<(OwnedUserId, u64), FilterDefinition>>,
}

impl FilterService {
    /// Filters stored in `db`, bounded by `config`.
    pub fn new(db: Db, config: &ClientConfig) -> Self {
        Self {
            db,
            max_per_user: config.max_filters_per_user,
            max_bytes: config.max_account_data_bytes,
            cache: Mutex::default(),
        }
    }

    /// Store `filter` for `user`; its ID (an identical filter keeps its ID, so a
    /// client that posts the same filter at every start uses one row).
    pub async fn create(&self, user: &UserId, filter: &FilterDefinition) -> Result<String> {
        let json = serde_json::to_string(filter).map_err(Error::internal)?;
        if json.len() > self.max_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("a filter is at most {} bytes (client.max_account_data_bytes)", self.max_bytes),
            ));
        }
        let (user_id, cap) = (user.to_string(), self.max_per_user);
        let id = self.db.write(move |s| s.filter_put(&user_id, &json, cap)).await?;
        let id = id.ok_or_else(|| {
            Error::new(
                ErrorKind::LimitExceeded { retry_after_ms: 0 },
                format!("one user stores at most {cap} filters (client.max_filters_per_user)"),
            )
        })?;
        Ok(id.to_string())
    }

    /// The stored filter `filter_id` of `user`; `M_NOT_FOUND` if there is none.
    pub async fn stored(&self, user: &UserId, filter_id: &str) -> Result<FilterDefinition> {
        let not_found = || Error::not_found(format!("no filter {filter_id} for {user}"));
        let id: u64 = filter_id.parse().map_err(|_| not_found())?;
        if let Some(known) = self.cached(user, id) {
            return Ok(known);
        }
        let user_id = user.to_string();
        let json = self.db.read(move |s| s.filter_get(&user_id, id)).await?.ok_or_else(not_found)?;
        self.remember(user, id, &json)
    }

    fn cached(&self, user: &UserId, id: u64) -> Option<FilterDefinition> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&(user.to_owned(), id)).cloned()
    }

    fn remember(&self, user: &UserId, id: u64, json: &str) -> Result<FilterDefinition> {
        let filter: FilterDefinition = serde_json::from_str(json).map_err(Error::internal)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert((user.to_owned(), id), filter.clone());
        Ok(filter)
    }

    /// [`Self::stored`] on the calling thread, for the rooms source's synchronous
    /// filter lookup (one small read).
    pub fn stored_blocking(&self, user: &UserId, filter_id: &str) -> Result<FilterDefinition> {
        let not_found = || Error::not_found(format!("no filter {filter_id} for {user}"));
        let id: u64 = filter_id.parse().map_err(|_| not_found())?;
        if let Some(known) = self.cached(user, id) {
            return Ok(known);
        }
        let user_id = user.to_string();
        let json = self.db.read_blocking(move |s| s.filter_get(&user_id, id))?.ok_or_else(not_found)?;
        self.remember(user, id, &json)
    }

    /// The filter a `/sync?filter=` names: inline JSON (it starts with `{`) or the ID
    /// of one of `user`'s stored filters. An unknown ID is `M_NOT_FOUND`, inline JSON
    /// that is no filter `M_BAD_JSON`.
    pub async fn get(&self, user: &UserId, id_or_inline_json: &str) -> Result<FilterDefinition> {
        if id_or_inline_json.trim_start().starts_with('{') {
            return serde_json::from_str(id_or_inline_json)
                .map_err(|e| Error::new(ErrorKind::BadJson, format!("the inline filter is not a filter: {e}")));
        }
        self.stored(user, id_or_inline_json).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> ruma::OwnedUserId {
        ruma::owned_user_id!("@alice:a.test")
    }

    #[tokio::test]
    async fn filters_round_trip_reuse_ids_and_stop_at_the_cap() {
        let config = ClientConfig { max_filters_per_user: 2, ..ClientConfig::default() };
        let filters = FilterService::new(crate::storage::memory(), &config);
        let mut f: FilterDefinition =
            serde_json::from_value(serde_json::json!({"room": {"timeline": {"limit": 7}}})).expect("a filter");
        let a = filters.create(&alice(), &f).await.expect("created");
        assert_eq!(filters.create(&alice(), &f).await.expect("same"), a, "an identical filter keeps its ID");
        let got = filters.get(&alice(), &a).await.expect("stored");
        assert_eq!(got.room.timeline.limit.map(u64::from), Some(7));
        f.room.timeline.limit = Some(8u32.into());
        let b = filters.create(&alice(), &f).await.expect("second");
        assert_ne!(a, b);
        f.room.timeline.limit = Some(9u32.into());
        let e = filters.create(&alice(), &f).await.expect_err("past the cap");
        assert!(e.message().contains("client.max_filters_per_user"), "{}", e.message());
        let bob = ruma::owned_user_id!("@bob:a.test");
        assert_eq!(filters.get(&bob, &a).await.expect_err("not bob's").kind(), ErrorKind::NotFound);
        let inline = filters.get(&bob, r#"{"room":{"timeline":{"limit":3}}}"#).await.expect("inline");
        assert_eq!(inline.room.timeline.limit.map(u64::from), Some(3));
    }
}
