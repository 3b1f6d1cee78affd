//! The stream: the spine of core. One counter orders everything a user may see
//! ([`Positions`]); a commit watermark keeps a position invisible until everything at
//! or below it has landed; a per-user [`Notifier`] wakes long polls.
//!
//! Each kind of thing a client sees (presence, presence requests, and later feeds,
//! room events, posts) is a [`crate::sync::Source`] that records the position of its
//! last change per item and answers `/sync` for a range of positions.

mod marks;
mod notifier;
mod positions;

pub use marks::Marks;
pub use notifier::Notifier;
pub use positions::Positions;
