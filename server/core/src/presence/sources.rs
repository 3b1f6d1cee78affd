//! Presence as `/sync` sources: the presence a user may see, and the requests
//! waiting for their answer.

use std::sync::Arc;

use ruma::UserId;
use ruma::events::presence::PresenceEvent;
use ruma::serde::Raw;
use serde_json::json;

use super::PresenceService;
use super::render::presence_event;
use crate::error::{Error, Result};
use crate::sync::{BoxFuture, Source, SyncRange, SyncResponse};

/// `presence.events`: the user's own presence and that of accepted targets.
#[derive(Debug)]
pub struct PresenceSource(pub Arc<PresenceService>);

impl Source for PresenceSource {
    fn collect<'a>(
        &'a self,
        user: &'a UserId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for view in self.0.changes_for(user, range) {
                let event = presence_event(&view);
                let raw = serde_json::value::to_raw_value(&event).map_err(Error::internal)?;
                out.presence.events.push(Raw::<PresenceEvent>::from_json(raw));
            }
            Ok(())
        })
    }
}

/// `tidings.presence_requests`: who asks to watch the user (all pending in an
/// initial sync, new ones after).
#[derive(Debug)]
pub struct PresenceRequestsSource(pub Arc<PresenceService>);

/// The top-level key of the requests in `/sync`.
pub const PRESENCE_REQUESTS_KEY: &str = "tidings.presence_requests";

impl Source for PresenceRequestsSource {
    fn collect<'a>(
        &'a self,
        user: &'a UserId,
        range: SyncRange,
        out: &'a mut SyncResponse,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let events: Vec<_> = self
                .0
                .requests_for(user, range)
                .into_iter()
                .map(|(who, edge)| json!({ "user_id": who, "ts": edge.ts }))
                .collect();
            out.extensions.insert(PRESENCE_REQUESTS_KEY.to_owned(), json!({ "events": events }));
            Ok(())
        })
    }
}
