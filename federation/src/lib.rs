//! The server-server side of Tidings: configuration of peers and their watchdogs.
//! Signing keys, X-Matrix authentication, transactions and per-peer queues arrive
//! with the federation issue; see spec/federation.md.

pub mod config;
pub mod keyring;
pub mod keys;
pub mod xmatrix;
pub mod watchdog;

pub use config::{FederationConfig, PeerConfig};
