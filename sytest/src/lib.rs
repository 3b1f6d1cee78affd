//! `tidings-sytest`: black-box tests for Tidings, in the spirit of Matrix's SyTest.
//!
//! Tests start real `tidings` processes on loopback ports, each with its own temporary
//! data directory, and talk to them over HTTP only. Nothing here links against the
//! server's crates.
//!
//! Build the binary first (`cargo build -p tidings`), or point `TIDINGS_BIN` at it; see
//! [`tidings_bin`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings_sytest::{ServerOptions, TestServer, eventually};
//!
//! # async fn demo() {
//! let hs = TestServer::start(ServerOptions::named("hs1.test")).await;
//! let alice = hs.register("alice", "secret-pw").await;
//! let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await;
//! assert_eq!(status, 200, "{body}");
//! let presence = eventually(Duration::from_secs(5), || async {
//!     let sync = alice.sync(None, 0).await;
//!     sync["presence"]["events"].as_array().filter(|e| !e.is_empty()).cloned()
//! })
//! .await;
//! # let _ = presence;
//! # }
//! ```
//!
//! When a test panics, every [`TestServer`] it owned prints its log to stderr as it is
//! dropped (set `TIDINGS_SYTEST_SHOW_LOGS=1` to print them always).

pub mod bench;
mod binary;
mod client;
mod config;
pub mod consent;
pub mod feeds;
pub mod line;
pub mod origin;
pub mod paths;
mod ports;
pub mod rooms;
mod server;
pub mod synapse;
mod wait;

pub use binary::tidings_bin;
pub use client::{Client, RawResponse, Session, Syncer, assert_matrix_error, encode_component};
pub use config::{Peer, ServerOptions, TlsFiles, toml_string};
pub use ports::free_port;
pub use reqwest::Method;
pub use serde_json::{Value, json};
pub use server::{StartError, TestServer};
pub use wait::{Check, POLL_INTERVAL, eventually, try_eventually};
