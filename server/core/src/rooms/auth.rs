//! The auth rules (room version 10, on one site): whether an event may be added to a
//! room in its current state. Membership transitions and join rules, power levels for
//! events and state, the rules of power level changes, invites, kicks, bans and
//! redactions. Pure: it reads a [`RoomState`] and answers `M_FORBIDDEN` with a reason.

use ruma::UserId;
use serde_json::Value;

use super::events::NewEvent;
use super::state::{Action, RoomState};
use crate::error::{Error, Result};

/// Check that `sender` may add `event` to `room`.
pub fn check(room: &RoomState, sender: &str, event: &NewEvent) -> Result<()> {
    if event.event_type == "m.room.create" {
        return match room.head {
            None if event.state_key.as_deref() == Some("") => Ok(()),
            None => Err(Error::forbidden("m.room.create must have an empty state_key")),
            Some(_) => Err(Error::forbidden("the room already has a create event")),
        };
    }
    if room.head.is_none() {
        return Err(Error::forbidden("the first event of a room must be m.room.create"));
    }
    if let Some(key) = &event.state_key
        && key.starts_with('@')
        && key != sender
        && event.event_type != "m.room.member"
    {
        return Err(Error::forbidden("a state key that is a user ID may only be set by that user"));
    }
    if event.event_type == "m.room.member" {
        return membership(room, sender, event);
    }
    if !room.is_joined(sender) {
        return Err(Error::forbidden("you are not joined to this room"));
    }
    let levels = room.levels();
    let needed = levels.event(&event.event_type, event.state_key.is_some());
    let have = levels.user(sender);
    if have < needed {
        return Err(Error::forbidden(format!(
            "sending {} needs power level {needed}; you have {have}",
            event.event_type
        )));
    }
    if event.event_type == "m.room.power_levels" {
        power_levels_change(room, sender, &event.content)?;
    }
    Ok(())
}

/// Whether `sender` may redact an event sent by `original_sender`: their own always
/// (if they may send redactions at all), another's with the `redact` level.
pub fn check_redaction(room: &RoomState, sender: &str, original_sender: &str) -> Result<()> {
    if sender == original_sender {
        return Ok(());
    }
    let levels = room.levels();
    if levels.user(sender) >= levels.action(Action::Redact) {
        return Ok(());
    }
    Err(Error::forbidden("redacting others' events needs the redact power level"))
}

fn membership(room: &RoomState, sender: &str, event: &NewEvent) -> Result<()> {
    let target = event.state_key.as_deref().unwrap_or_default();
    if UserId::parse(target).is_err() {
        return Err(Error::forbidden("the state_key of m.room.member must be a user ID"));
    }
    let Some(wanted) = event.membership() else {
        return Err(Error::forbidden("m.room.member needs a membership"));
    };
    let current = room.membership(target);
    let sender_joined = room.is_joined(sender);
    let levels = room.levels();
    let (sender_level, target_level) = (levels.user(sender), levels.user(target));
    match wanted {
        "join" => {
            if sender != target {
                return Err(Error::forbidden("only a user may join themselves"));
            }
            // The creator's own join right after the create event.
            if room.state.len() == 1 && sender == room.creator {
                return Ok(());
            }
            match current {
                Some("ban") => Err(Error::forbidden("you are banned from this room")),
                Some("join") | Some("invite") => Ok(()),
                _ if room.join_rule() == "public" => Ok(()),
                _ => Err(Error::forbidden("this room is invite-only and you are not invited")),
            }
        }
        "invite" => {
            if !sender_joined {
                return Err(Error::forbidden("you are not joined to this room"));
            }
            match current {
                Some("ban") => Err(Error::forbidden("the user is banned from this room")),
                Some("join") => Err(Error::forbidden("the user is already in the room")),
                _ if sender_level < levels.action(Action::Invite) => {
                    Err(Error::forbidden("inviting needs a higher power level"))
                }
                _ => Ok(()),
            }
        }
        "leave" if sender == target => match current {
            Some("join") | Some("invite") | Some("knock") => Ok(()),
            Some("ban") => Err(Error::forbidden("you are banned from this room")),
            _ => Err(Error::forbidden("you are not in this room")),
        },
        "leave" => {
            if !sender_joined {
                return Err(Error::forbidden("you are not joined to this room"));
            }
            if current == Some("ban") {
                if sender_level < levels.action(Action::Ban) {
                    return Err(Error::forbidden("unbanning needs the ban power level"));
                }
                return Ok(());
            }
            if !matches!(current, Some("join") | Some("invite") | Some("knock")) {
                return Err(Error::forbidden("the user is not in this room"));
            }
            if sender_level < levels.action(Action::Kick) || sender_level <= target_level {
                return Err(Error::forbidden("kicking needs the kick power level and more power than the user"));
            }
            Ok(())
        }
        "ban" => {
            if !sender_joined {
                return Err(Error::forbidden("you are not joined to this room"));
            }
            if sender_level < levels.action(Action::Ban) || sender_level <= target_level {
                return Err(Error::forbidden("banning needs the ban power level and more power than the user"));
            }
            Ok(())
        }
        "knock" => Err(Error::forbidden("this room does not allow knocking")),
        other => Err(Error::forbidden(format!("unknown membership '{other}'"))),
    }
}

/// A power level change: nothing may be raised above, or changed from at or above,
/// the sender's own level (except the sender lowering themselves).
fn power_levels_change(room: &RoomState, sender: &str, content: &Value) -> Result<()> {
    let Some(existing) = room.get("m.room.power_levels", "") else { return Ok(()) };
    let mine = room.levels().user(sender);
    let level = |v: Option<&Value>| v.and_then(Value::as_i64);
    let old = &existing.content;
    for field in ["ban", "kick", "invite", "redact", "events_default", "state_default", "users_default"] {
        let (a, b) = (level(old.get(field)), level(content.get(field)));
        if a != b && (a.unwrap_or(0) > mine || b.unwrap_or(0) > mine) {
            return Err(Error::forbidden(format!("you cannot change '{field}' beyond your own power level")));
        }
    }
    for map in ["events", "users"] {
        let empty = serde_json::Map::new();
        let (a, b) = (
            old.get(map).and_then(Value::as_object).unwrap_or(&empty),
            content.get(map).and_then(Value::as_object).unwrap_or(&empty),
        );
        for key in a.keys().chain(b.keys()) {
            let (x, y) = (level(a.get(key)), level(b.get(key)));
            if x == y {
                continue;
            }
            if x.unwrap_or(0) > mine || y.unwrap_or(0) > mine {
                return Err(Error::forbidden(format!("you cannot set '{key}' beyond your own power level")));
            }
            if map == "users" && key != sender && x.unwrap_or(0) >= mine {
                return Err(Error::forbidden(format!("you cannot change the level of {key}, who has as much power")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rooms::EventRow;
    use ruma::RoomId;
    use serde_json::json;

    const ALICE: &str = "@alice:hs.test";
    const BOB: &str = "@bob:hs.test";
    const EVE: &str = "@eve:hs.test";

    fn room(join_rule: &str) -> RoomState {
        let mut room = RoomState::new(RoomId::parse("!r:hs.test").expect("room"), ALICE);
        let mut pos = 0;
        let mut add = |room: &mut RoomState, t: &str, k: &str, sender: &str, content: Value| {
            pos += 1;
            let row = EventRow {
                pos,
                depth: pos,
                event_id: format!("$e{pos}"),
                event_type: t.into(),
                state_key: Some(k.into()),
                sender: sender.into(),
                ..EventRow::default()
            };
            room.apply(&row, content);
        };
        add(&mut room, "m.room.create", "", ALICE, json!({"creator": ALICE, "room_version": "10"}));
        add(&mut room, "m.room.member", ALICE, ALICE, json!({"membership": "join"}));
        add(&mut room, "m.room.power_levels", "", ALICE, json!({"users": {ALICE: 100}}));
        add(&mut room, "m.room.join_rules", "", ALICE, json!({"join_rule": join_rule}));
        add(&mut room, "m.room.member", BOB, BOB, json!({"membership": "join"}));
        room
    }

    fn member(target: &str, membership: &str) -> NewEvent {
        NewEvent::state("m.room.member", target, json!({ "membership": membership }))
    }

    #[test]
    fn joins_follow_the_join_rule() {
        assert!(check(&room("public"), EVE, &member(EVE, "join")).is_ok());
        assert!(check(&room("invite"), EVE, &member(EVE, "join")).is_err());
        assert!(check(&room("public"), EVE, &member(BOB, "join")).is_err(), "nobody joins another");
    }

    #[test]
    fn invites_then_join_and_bans_stick() {
        let mut r = room("invite");
        assert!(check(&r, EVE, &member(EVE, "invite")).is_err(), "an outsider cannot invite");
        assert!(check(&r, BOB, &member(EVE, "invite")).is_ok(), "invite level is 0 by default");
        r.apply(
            &EventRow {
                pos: 10,
                depth: 10,
                event_id: "$i".into(),
                event_type: "m.room.member".into(),
                state_key: Some(EVE.into()),
                ..EventRow::default()
            },
            json!({"membership": "ban"}),
        );
        assert!(check(&r, EVE, &member(EVE, "join")).is_err(), "banned");
        assert!(check(&r, BOB, &member(EVE, "invite")).is_err(), "a banned user cannot be invited");
        assert!(check(&r, BOB, &member(EVE, "leave")).is_err(), "bob lacks the ban level to unban");
        assert!(check(&r, ALICE, &member(EVE, "leave")).is_ok(), "alice may unban");
    }

    #[test]
    fn kicks_need_more_power_than_the_target() {
        let r = room("public");
        assert!(check(&r, BOB, &member(ALICE, "leave")).is_err());
        assert!(check(&r, ALICE, &member(BOB, "leave")).is_ok());
        assert!(check(&r, ALICE, &member(BOB, "ban")).is_ok());
        assert!(check(&r, BOB, &member(BOB, "leave")).is_ok(), "anyone may leave");
    }

    #[test]
    fn state_needs_the_state_level_and_messages_need_a_join() {
        let r = room("public");
        let topic = NewEvent::state("m.room.topic", "", json!({"topic": "t"}));
        assert!(check(&r, BOB, &topic).is_err(), "state_default 50 > 0");
        assert!(check(&r, ALICE, &topic).is_ok());
        let msg = NewEvent::message("m.room.message", json!({"body": "x"}));
        assert!(check(&r, BOB, &msg).is_ok());
        assert!(check(&r, EVE, &msg).is_err(), "not joined");
        let mine = NewEvent::state("org.example.x", ALICE, json!({}));
        assert!(check(&r, ALICE, &mine).is_ok());
        assert!(check(&r, ALICE, &NewEvent::state("org.example.x", BOB, json!({}))).is_err());
    }

    #[test]
    fn power_levels_cannot_exceed_the_sender() {
        let r = room("public");
        let raise_bob = NewEvent::state("m.room.power_levels", "", json!({"users": {ALICE: 100, BOB: 50}}));
        assert!(check(&r, ALICE, &raise_bob).is_ok());
        let demote_alice = NewEvent::state("m.room.power_levels", "", json!({"users": {ALICE: 0}}));
        assert!(check(&r, ALICE, &demote_alice).is_ok(), "one may lower oneself");
        let over = NewEvent::state("m.room.power_levels", "", json!({"users": {ALICE: 100, BOB: 101}}));
        assert!(check(&r, ALICE, &over).is_err());
    }

    #[test]
    fn redactions_of_others_need_the_level() {
        let r = room("public");
        assert!(check_redaction(&r, BOB, BOB).is_ok());
        assert!(check_redaction(&r, BOB, ALICE).is_err());
        assert!(check_redaction(&r, ALICE, BOB).is_ok());
    }
}
