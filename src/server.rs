//! The HTTP edge: router, shared state, start and graceful shutdown.
//!
//! `start` binds and returns a [`RunningServer`] whose `shutdown` tells every client, closes
//! every peer connection and waits (bounded by `server.shutdown_grace_ms`) for them to finish.
//! Tests start the real server this way on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::services::{ServeDir, ServeFile};

use crate::config::Config;
use crate::room::RoomRegistry;
use crate::sfu::SfuEngine;
use crate::signal::connection;

/// What every request handler and connection task shares.
pub struct AppState {
    pub config: Arc<Config>,
    pub rooms: RoomRegistry,
    pub sfu: Arc<SfuEngine>,
    /// Cancelled once on shutdown; every connection watches it.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub connections: TaskTracker,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("web client folder {0} does not exist (set server.web_root)")]
    WebRoot(String),
}

pub fn app(state: Arc<AppState>) -> Router {
    let root = &state.config.server.web_root;
    let static_files = ServeDir::new(root).fallback(ServeFile::new(root.join("index.html")));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/ws", get(ws_upgrade))
        .fallback_service(static_files)
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    rooms: usize,
    participants: usize,
    peers: usize,
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: if state.shutdown.is_cancelled() { "draining" } else { "ok" },
        rooms: state.rooms.room_count(),
        participants: state.rooms.participant_count(),
        peers: state.sfu.stats.peers.load(std::sync::atomic::Ordering::Relaxed),
    })
}

async fn ws_upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
) -> Response {
    // Frames between the configured limit and this hard cap get a protocol error and the
    // connection lives on; frames beyond it are refused by the websocket layer, which closes.
    let hard_cap = state.config.limits.max_message_bytes.saturating_mul(16).min(16 << 20);
    let tracker = state.connections.clone();
    ws.max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .on_upgrade(move |socket| tracker.track_future(connection::serve(socket, state, remote)))
        .into_response()
}

/// A server bound and running in the background.
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Tells clients, closes peers and waits for connections, at most the grace period.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        self.state.connections.close();
        let grace = Duration::from_millis(self.state.config.server.shutdown_grace_ms);
        let _ = tokio::time::timeout(grace, self.state.connections.wait()).await;
        let _ = tokio::time::timeout(grace, self.task).await;
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    if !config.server.web_root.is_dir() {
        return Err(ServerError::WebRoot(config.server.web_root.display().to_string()));
    }
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| ServerError::Bind { addr: config.server.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.server.listen, source })?;
    let state = Arc::new(AppState {
        rooms: RoomRegistry::new(config.limits.max_room_size),
        sfu: SfuEngine::new(config.ice.clone()),
        config: Arc::new(config),
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
    });
    let router = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let token = state.shutdown.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move { token.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    tracing::info!(%addr, "listening");
    Ok(RunningServer { addr, state, task })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
