//! History visibility: whether a user may see one event of a room, from the room's
//! `m.room.history_visibility` at that event and the user's membership history.
//! The spec's algorithm, for one site: `world_readable` shows all; a user joined at
//! the event sees it; `shared` shows it to one who joined at any point after;
//! `invited` to one invited (or joined) at the event; `joined` only while joined.

/// A user's member events in one room, oldest first, as (position, membership).
#[derive(Debug, Clone, Default)]
pub struct MembershipHistory(pub Vec<(u64, String)>);

impl MembershipHistory {
    /// The membership in force at `pos`: set by the newest member event before it.
    /// A user's own member event at `pos` counts from the event itself for joins
    /// (one sees one's own join), from before it for leaving (one sees one's own leave).
    pub fn at(&self, pos: u64) -> Option<&str> {
        let mut current = None;
        for (p, m) in &self.0 {
            if *p < pos || (*p == pos && m == "join") {
                current = Some(m.as_str());
            } else if *p == pos {
                // Leaving, being kicked or banned: the event itself is still seen.
                return current.or(Some(m.as_str()));
            }
        }
        current
    }

    /// Whether the user joined at some position after `pos`.
    pub fn joined_after(&self, pos: u64) -> bool {
        self.0.iter().any(|(p, m)| *p > pos && m == "join")
    }
}

/// Whether a user with `history` may see an event at `pos` sent when the room's
/// history visibility was `visibility`.
pub fn may_see(visibility: &str, history: &MembershipHistory, pos: u64) -> bool {
    if visibility == "world_readable" {
        return true;
    }
    let at = history.at(pos);
    if at == Some("join") {
        return true;
    }
    match visibility {
        "shared" => history.joined_after(pos),
        "invited" => at == Some("invite"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(u64, &str)]) -> MembershipHistory {
        MembershipHistory(entries.iter().map(|(p, m)| (*p, (*m).to_owned())).collect())
    }

    #[test]
    fn shared_shows_the_past_to_who_joins_later() {
        let h = history(&[(10, "join")]);
        assert!(may_see("shared", &h, 5));
        assert!(!may_see("joined", &h, 5));
        assert!(may_see("joined", &h, 10), "one's own join");
        assert!(may_see("joined", &h, 11));
    }

    #[test]
    fn leaving_ends_what_one_sees() {
        let h = history(&[(10, "join"), (20, "leave")]);
        assert!(may_see("joined", &h, 15));
        assert!(may_see("joined", &h, 20), "one's own leave");
        assert!(!may_see("joined", &h, 21));
        assert!(!may_see("shared", &h, 21), "no join after it");
        assert!(may_see("world_readable", &h, 21));
    }

    #[test]
    fn invited_shows_from_the_invite() {
        let h = history(&[(10, "invite"), (20, "join")]);
        assert!(may_see("invited", &h, 12));
        assert!(!may_see("invited", &h, 5));
        assert!(!may_see("joined", &h, 12));
        assert!(!may_see("invited", &history(&[]), 12), "a stranger sees nothing");
    }
}
