//! `GET /_tidings/admin/v1/metrics`: Prometheus text format. No user IDs in labels.

use std::fmt::Write;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tidings_client_api::error::ApiResult;
use tidings_client_api::extract::access_token;
use tidings_core::metrics::Metrics;

use super::{Admin, AdminState};

/// The counters, for an admin's token or the configured `metrics_token`.
pub async fn get_metrics(State(state): State<AdminState>, request: Request) -> ApiResult<Response> {
    let (mut parts, _) = request.into_parts();
    let scraper = access_token(&parts)
        .zip(state.metrics_token.as_deref())
        .is_some_and(|(given, configured)| constant_time_eq(given.as_bytes(), configured.as_bytes()));
    if !scraper {
        Admin::from_request_parts(&mut parts, &state).await?;
    }
    let m = &state.core.metrics;
    let users = state.core.accounts.count().await?;
    let mut out = String::new();
    let mut gauge = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge("tidings_uptime_seconds", "gauge", "Seconds since the server started.", state.started.elapsed().as_secs());
    gauge("tidings_users", "gauge", "Registered local users.", users);
    gauge(
        "tidings_presence_tracked_users",
        "gauge",
        "Users whose presence is held in memory.",
        state.core.presence.tracked_users() as u64,
    );
    gauge(
        "tidings_presence_changes_total",
        "counter",
        "Presence changes published to watchers.",
        Metrics::get(&m.presence_changes),
    );
    gauge(
        "tidings_presence_writes_total",
        "counter",
        "Presence writes received from clients.",
        Metrics::get(&m.presence_writes),
    );
    gauge("tidings_sync_requests_total", "counter", "Sync requests answered.", Metrics::get(&m.syncs));
    gauge("tidings_sync_waiting", "gauge", "Sync requests waiting now.", Metrics::get(&m.syncs_waiting));
    gauge("tidings_logins_total", "counter", "Successful logins.", Metrics::get(&m.logins));
    gauge(
        "tidings_registrations_total",
        "counter",
        "Accounts registered over the API.",
        Metrics::get(&m.registrations),
    );
    gauge("tidings_rate_limited_total", "counter", "Requests refused by a rate limit.", Metrics::get(&m.rate_limited));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
