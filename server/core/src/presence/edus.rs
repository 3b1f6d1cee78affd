//! The presence EDUs between servers, their typed codec: Matrix's `m.presence`, and
//! Tidings' own consent and subscription EDUs under
//! the `tidings.` prefix. Core builds and reads their contents; the federation crate
//! only carries them in transactions.

use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};

/// Matrix presence push: `{"push": [PresenceUpdate, ...]}`.
pub const PRESENCE: &str = "m.presence";
/// A remote user asks to watch one of ours: `{"watcher", "target"}`.
pub const INVITE: &str = "tidings.presence_invite";
/// The answer to an invite: `{"watcher", "target", "allow"}`.
pub const ANSWER: &str = "tidings.presence_answer";
/// A watcher stops watching: `{"watcher", "target"}`.
pub const DROP: &str = "tidings.presence_drop";
/// Which of the receiver's users the sender wants pushed: `{"add", "remove", "replace"}`.
pub const SUBSCRIBE: &str = "tidings.presence_subscribe";
/// A status reminder: digests of what each side holds, `{"pushed", "held"}`.
pub const REMINDER: &str = "tidings.presence_reminder";

/// One user's state in an `m.presence` push, in the spec's format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceUpdate {
    /// Whose.
    pub user_id: OwnedUserId,
    /// online / unavailable / offline.
    pub presence: String,
    /// Milliseconds since the user was last active.
    #[serde(default)]
    pub last_active_ago: u64,
    /// Active within the last minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currently_active: Option<bool>,
    /// Status text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_msg: Option<String>,
}

/// `m.presence` content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceEdu {
    /// The updates.
    pub push: Vec<PresenceUpdate>,
}

/// Content of invite and drop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEdge {
    /// Who watches.
    pub watcher: OwnedUserId,
    /// Who is watched.
    pub target: OwnedUserId,
}

/// Content of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerEdu {
    /// Who asked.
    pub watcher: OwnedUserId,
    /// Who answers.
    pub target: OwnedUserId,
    /// Allowed or not.
    pub allow: bool,
}

/// Content of a subscription change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscribeEdu {
    /// Users to push from now on (the receiver answers with their current state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<OwnedUserId>,
    /// Users to push no more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<OwnedUserId>,
    /// `add` is the whole set: forget any other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
}

/// Content of a reminder: short digests, so a reminder when nothing changed is tiny.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReminderEdu {
    /// Digest of the states the sender promised to push to the receiver.
    pub pushed: String,
    /// Digest of the states the sender holds from the receiver's users.
    pub held: String,
}
