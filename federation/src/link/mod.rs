//! The link: a second federation transport for thin lines (spec/link.md). With `link`
//! set for a peer, everything for it goes over one long-lived TCP connection,
//! authenticated and encrypted with Noise KK ([`noise`]; after a cut, resumed with a
//! single-use ticket, [`resume`]; both sealed by [`cipher`]), framed in priority classes
//! ([`frame`]), compressed with brotli ([`compress`]), flow-controlled so
//! the line's buffers never fill ([`flow`]), acknowledged per transaction after the
//! far side committed it ([`session`]). The same stored transactions as HTTP, so the
//! durable outbox stays the source of truth.

pub mod budget;
pub mod calls;
pub mod cipher;
pub mod compact;
pub mod compress;
pub mod config;
pub mod flow;
pub mod frame;
pub mod key;
pub mod listener;
pub mod noise;
pub mod resume;
pub mod session;
pub mod transport;
pub mod txn;
pub mod yielding;

pub use config::{LinkConfig, LinkMode};
pub use key::LinkKey;
pub use transport::{LinkStatus, LinkTransport, Links};
