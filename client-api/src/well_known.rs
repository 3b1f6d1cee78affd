//! `GET /.well-known/matrix/client`: where clients find this homeserver. The base
//! URL is `client.base_url` when configured, else the `Host` the client used, else
//! the listener's address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::HOST;
use serde_json::{Value, json};

/// What `/.well-known/matrix/client` is built from.
#[derive(Debug, Clone)]
pub struct WellKnown {
    /// `client.base_url`, if configured.
    pub base_url: Option<Arc<str>>,
    /// `http` or `https` (the listener's).
    pub scheme: &'static str,
    /// The listener's address.
    pub listen: SocketAddr,
}

impl WellKnown {
    /// The base URL to announce for a request that named `host`.
    pub fn base_url(&self, host: Option<&str>) -> String {
        if let Some(url) = &self.base_url {
            return url.to_string();
        }
        let host = host.filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()));
        match host {
            Some(h) => format!("{}://{h}", self.scheme),
            None => format!("{}://{}", self.scheme, self.listen),
        }
    }
}

/// The discovery document.
pub async fn get_well_known(State(well_known): State<WellKnown>, headers: HeaderMap) -> Json<Value> {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    Json(json!({ "m.homeserver": { "base_url": well_known.base_url(host) } }))
}
