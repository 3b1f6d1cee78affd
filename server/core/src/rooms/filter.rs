//! Filters: which events of which rooms a client asked for (ruma's
//! `FilterDefinition` and `RoomEventFilter`), and the seam through which a stored
//! filter is found by its ID ([`FilterLookup`]; the filter store fills it).

use ruma::api::client::filter::{FilterDefinition, RoomEventFilter};
use ruma::{RoomId, UserId};

use crate::storage::rooms::EventRow;

/// Finds a filter a user stored (`POST /user/{userId}/filter`) by its ID.
pub trait FilterLookup: Send + Sync + std::fmt::Debug {
    /// The filter, or `None` if there is none by that ID (the default filter applies).
    fn lookup(&self, user: &UserId, filter_id: &str) -> Option<FilterDefinition>;
}

/// No stored filters: every ID means the default filter.
#[derive(Debug, Default)]
pub struct NoStoredFilters;

impl FilterLookup for NoStoredFilters {
    fn lookup(&self, _user: &UserId, _filter_id: &str) -> Option<FilterDefinition> {
        None
    }
}

/// Read `?filter=`: inline JSON (starts with `{`) or a stored filter's ID. A filter
/// that is neither valid JSON of the right shape nor a known ID is the default.
pub fn resolve(raw: Option<&str>, user: &UserId, lookup: &dyn FilterLookup) -> crate::Result<FilterDefinition> {
    match raw.map(str::trim) {
        None | Some("") => Ok(FilterDefinition::default()),
        Some(text) if text.starts_with('{') => serde_json::from_str(text).map_err(|e| {
            crate::Error::new(crate::ErrorKind::BadJson, format!("the filter is not a valid filter: {e}"))
        }),
        Some(id) => Ok(lookup.lookup(user, id).unwrap_or_default()),
    }
}

/// Whether a type matches a filter's pattern (`*` matches any run of characters).
fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == event_type,
        Some((head, tail)) => {
            event_type.starts_with(head)
                && event_type.len() >= head.len() + tail.len()
                && type_matches_rest(tail, &event_type[head.len()..])
        }
    }
}

fn type_matches_rest(pattern: &str, rest: &str) -> bool {
    if !pattern.contains('*') {
        return rest.ends_with(pattern);
    }
    (0..=rest.len()).filter(|i| rest.is_char_boundary(*i)).any(|i| type_matches(pattern, &rest[i..]))
}

/// Whether an event passes a room event filter (types, not_types, senders, not_senders).
pub fn event_matches(filter: &RoomEventFilter, row: &EventRow) -> bool {
    if let Some(types) = &filter.types
        && !types.iter().any(|t| type_matches(t, &row.event_type))
    {
        return false;
    }
    if filter.not_types.iter().any(|t| type_matches(t, &row.event_type)) {
        return false;
    }
    if let Some(senders) = &filter.senders
        && !senders.iter().any(|s| s.as_str() == row.sender)
    {
        return false;
    }
    !filter.not_senders.iter().any(|s| s.as_str() == row.sender)
}

/// Whether a room passes the filter's `rooms`/`not_rooms` (of the room filter and of one part).
pub fn room_matches(def: &FilterDefinition, part: &RoomEventFilter, room: &RoomId) -> bool {
    let in_list = |list: &Option<Vec<ruma::OwnedRoomId>>| list.as_ref().is_none_or(|l| l.iter().any(|r| r == room));
    in_list(&def.room.rooms)
        && !def.room.not_rooms.iter().any(|r| r == room)
        && in_list(&part.rooms)
        && !part.not_rooms.iter().any(|r| r == room)
}

/// Whether the filter asks for lazy-loaded members.
pub fn lazy_members(part: &RoomEventFilter) -> bool {
    matches!(part.lazy_load_options, ruma::api::client::filter::LazyLoadOptions::Enabled { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(t: &str, sender: &str) -> EventRow {
        EventRow { event_type: t.into(), sender: sender.into(), ..EventRow::default() }
    }

    #[test]
    fn types_with_wildcards_and_senders() {
        let f: RoomEventFilter =
            serde_json::from_value(json!({"types": ["m.room.*"], "not_types": ["m.room.member"]})).expect("filter");
        assert!(event_matches(&f, &row("m.room.message", "@a:x")));
        assert!(!event_matches(&f, &row("m.room.member", "@a:x")));
        assert!(!event_matches(&f, &row("org.example", "@a:x")));
        let f: RoomEventFilter = serde_json::from_value(json!({"not_senders": ["@a:x"]})).expect("filter");
        assert!(!event_matches(&f, &row("m.room.message", "@a:x")));
        assert!(event_matches(&f, &row("m.room.message", "@b:x")));
        assert!(type_matches("*", "anything") && type_matches("a*c", "abbc") && !type_matches("a*c", "abd"));
    }

    #[test]
    fn inline_filters_parse_and_unknown_ids_are_the_default() {
        let alice = UserId::parse("@alice:x").expect("user");
        let def = resolve(Some(r#"{"room":{"timeline":{"limit":3}}}"#), &alice, &NoStoredFilters).expect("inline");
        assert_eq!(def.room.timeline.limit.map(u64::from), Some(3));
        let def = resolve(Some("17"), &alice, &NoStoredFilters).expect("an ID");
        assert!(def.room.timeline.limit.is_none());
        assert!(resolve(Some("{not json"), &alice, &NoStoredFilters).is_err());
    }
}
