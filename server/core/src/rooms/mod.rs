//! Rooms on one site: the room model (events built with ruma's types, IDs as
//! reference hashes, an append-only log ordered by stream position), the auth rules,
//! current state in memory, history visibility, reading, the directory, receipts
//! and typing, and rooms as a `/sync` source. See spec/rooms.md.

pub mod auth;
pub mod create;
pub mod directory;
pub mod ephemeral;
pub mod events;
pub mod filter;
pub mod members;
pub mod membership;
pub mod recent;
pub mod rendered;
pub mod service;
pub mod shared;
pub mod source;
pub mod state;
pub mod timeline;
pub mod typing;
pub mod unread;
pub mod visibility;

pub use create::{CreateRoom, Preset};
pub use directory::{DirectoryPage, PublicRoom};
pub use filter::{FilterLookup, NoStoredFilters};
pub use members::MembersQuery;
pub use service::RoomService;
pub use source::RoomsSource;
pub use timeline::{Context, Messages, MessagesQuery};
