//! Presence endpoints: Matrix status, and the `/_tidings/client/v1/presence` extension.

pub mod devices;
pub mod list;
pub mod poll;
pub mod requests;
pub mod status;
