//! `/sync`: wait until something the user may see passes their token, then ask every
//! [`Source`] for what changed in `(since, upto]`. The service knows no source by
//! name; a new kind of thing a client sees is one more source.

mod response;
mod service;
mod source;
mod token;

pub use response::SyncResponse;
pub use service::{MAX_TIMEOUT, SyncRequest, SyncService};
pub use source::{BoxFuture, Source, SyncRange};
pub use token::SyncToken;
