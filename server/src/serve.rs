//! `tidings serve`: open the data directory, start the background tasks, serve HTTP
//! until SIGINT or SIGTERM, then let requests finish and write everything down.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tidings_client_api::{ClientState, RegistrationPolicy};
use tidings_core::Core;
use tidings_core::clock::TokioClock;
use tidings_core::config::PeersConfig;
use tidings_federation::Federation;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::cors::{Any, CorsLayer};

use crate::admin::{self, AdminState};
use crate::config::Config;

/// Run the homeserver with `config` until a shutdown signal.
pub async fn serve(config: Config) -> Result<(), String> {
    let listener = crate::listener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {} (listen): {e}", config.listen))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    run(config, listener, stop_rx).await
}

/// Serve on `listener` until `stop` turns true: the seam tests and `serve` share.
pub async fn run(config: Config, listener: TcpListener, stop: watch::Receiver<bool>) -> Result<(), String> {
    crate::config::create_data_dir(&config.data_dir)?;
    let core = Core::open(
        &config.data_dir,
        &config.server_name,
        &config.presence,
        &config.rate_limits,
        Arc::new(TokioClock::new()),
        &PeersConfig {
            names: config.federation.peers.iter().map(|p| p.server_name.clone()).collect(),
            short_watchdog_ms: config.federation.short_watchdog_ms,
            long_watchdog_ms: config.federation.long_watchdog_ms,
            urls: config.federation.peers.iter().map(|p| (p.server_name.clone(), p.url.to_string())).collect(),
            calls: if config.link.mode == tidings_federation::link::LinkMode::Sessions {
                config.federation.peers.iter().filter(|p| p.link.is_some()).map(|p| p.server_name.clone()).collect()
            } else {
                Default::default()
            },
            calls_grace_ms: config.link.short_max_wait_ms,
        },
        &config.feeds,
        &config.client_areas(),
    )
    .map_err(|e| format!("cannot open the database in {}: {e}", config.data_dir.display()))?;

    // Presence is flushed after the last request finished, not when the signal came.
    let (served_tx, served_rx) = tokio::sync::oneshot::channel::<()>();
    let background = core.clone();
    let core_task = tokio::spawn(async move {
        background
            .run(async {
                let _ = served_rx.await;
            })
            .await;
    });

    let housekeeping =
        tidings_core::housekeeping::start(core.db.clone(), Arc::clone(&core.clock), config.feeds.item_retention_ms)
            .await?;

    let key = tidings_federation::keys::ServerKey::load_or_create(&config.data_dir)?;
    tracing::info!(key_id = key.key_id(), "signing key loaded");
    let links_wanted = config.link.listen.is_some() || config.federation.peers.iter().any(|p| p.link.is_some());
    let federation = if links_wanted {
        let link_key = tidings_federation::link::LinkKey::load_or_create(&config.data_dir)?;
        Federation::with_links(core.clone(), key, &config.federation, &config.link, link_key, config.max_request_bytes)?
    } else {
        Federation::new(core.clone(), key, &config.federation, config.max_request_bytes)?
    };
    let federation_task = tokio::spawn(Arc::clone(&federation).run());

    let app = app(&config, core.clone(), federation);
    let tls = config.tls.as_ref().map(crate::tls::Tls::start).transpose()?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, server_name = %config.server_name, registration_open = config.registration_open(), tls = tls.is_some(), "tidings is listening");

    let notifier = Arc::clone(&core.notifier);
    let graceful = async move {
        wait_for(stop).await;
        tracing::info!("shutting down: finishing requests in flight");
        notifier.close();
    };
    crate::listener::serve(listener, app, tls.as_ref().map(|t| t.acceptor.clone()), limits(&config), graceful)
        .await
        .map_err(|e| format!("server error: {e}"))?;
    drop(tls);
    federation_task.abort();
    let mut housekeeping = housekeeping;
    if let Err(e) = housekeeping.shutdown().await {
        tracing::warn!(error = %e, "the housekeeping scheduler did not stop cleanly");
    }
    let _ = served_tx.send(());
    core_task.await.map_err(|e| format!("background task failed: {e}"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The listener's bounds from the configuration.
fn limits(config: &Config) -> crate::listener::Limits {
    crate::listener::Limits {
        request_header_timeout: std::time::Duration::from_millis(config.request_header_timeout_ms),
        keepalive_timeout: std::time::Duration::from_millis(config.keepalive_timeout_ms),
        max_connections: config.max_connections,
    }
}

/// The whole HTTP application.
fn app(config: &Config, core: Core, federation: Arc<Federation>) -> Router {
    let client = ClientState {
        core: core.clone(),
        registration: RegistrationPolicy { open: config.registration_open() },
        well_known: tidings_client_api::WellKnown {
            base_url: config.client.base_url.as_deref().map(Arc::from),
            scheme: if config.tls.is_some() { "https" } else { "http" },
            listen: config.listen,
        },
    };
    let admin = AdminState {
        core,
        started: Instant::now(),
        metrics_token: config.metrics_token.as_deref().map(Arc::from),
        federation: Arc::clone(&federation),
    };
    // CORS is for browsers, which use the client and admin APIs only; federation
    // answers stay lean (CORS headers cost 109 bytes per transaction). Federation routes
    // match first; everything else, unknown paths included, goes to the client side.
    let client_side = tidings_client_api::router(client)
        .merge(admin::router(admin))
        .fallback(tidings_client_api::error::unknown_endpoint)
        .method_not_allowed_fallback(tidings_client_api::error::wrong_method)
        .layer(cors());
    tidings_federation::routes::router(federation)
        .method_not_allowed_fallback(tidings_client_api::error::wrong_method)
        .fallback_service(client_side)
        // Bodies are limited where they are read (after authentication); what a
        // handler leaves unread is drained, bounded, so the client reads the answer.
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(axum::middleware::from_fn(crate::bodies::drain_unread_body))
}

/// CORS as the Matrix spec asks of every endpoint, so browser clients (Element Web)
/// can call it: any origin, preflight `OPTIONS` answered before routing.
fn cors() -> CorsLayer {
    use axum::http::{HeaderName, Method, header};
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([HeaderName::from_static("x-requested-with"), header::CONTENT_TYPE, header::AUTHORIZATION])
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
