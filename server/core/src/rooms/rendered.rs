//! Events rendered once for every viewer. A message in a room of ten is shown to
//! ten long polls; parsing its stored JSON, applying redaction and dropping the
//! server-only fields each time was a tenth of a woken sync's work. What differs per
//! viewer (`unsigned.age`, the sender's `transaction_id`) is added to a copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::events::base_event;
use crate::storage::rooms::EventRow;

/// Rendered events kept at most; past it the cache starts afresh.
const MAX_RENDERED: usize = 4096;

/// A rendered event and its `origin_server_ts`.
pub type Base = Arc<(Value, u64)>;

/// By event ID: the redaction it was rendered under and the rendering.
#[derive(Debug, Default)]
pub struct Rendered(Mutex<HashMap<String, (Option<String>, Base)>>);

impl Rendered {
    /// The viewer-independent rendering of `row`.
    pub fn of(&self, row: &EventRow) -> Base {
        {
            let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((redacted_by, base)) = known.get(&row.event_id)
                && *redacted_by == row.redacted_by
            {
                return Arc::clone(base);
            }
        }
        let base = Arc::new(base_event(row));
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_RENDERED {
            known.clear();
        }
        known.insert(row.event_id.clone(), (row.redacted_by.clone(), Arc::clone(&base)));
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_redaction_renders_again() {
        let cache = Rendered::default();
        let mut row = EventRow {
            event_id: "$e".into(),
            event_type: "m.room.message".into(),
            json: json!({"type": "m.room.message", "content": {"body": "hi"}, "origin_server_ts": 5, "depth": 3})
                .to_string(),
            ..EventRow::default()
        };
        let first = cache.of(&row);
        assert_eq!(first.0["content"]["body"], "hi");
        assert!(first.0.get("depth").is_none() && first.1 == 5);
        assert!(Arc::ptr_eq(&first, &cache.of(&row)), "rendered once");
        row.redacted_by = Some("$r".into());
        assert!(cache.of(&row).0["content"].get("body").is_none());
    }
}
