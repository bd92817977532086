//! What the HTTP edge and every connection task share: configuration, the room registry, the
//! media engine, tokens, the store, limits and metrics. A module of its own so the connection
//! task (below the edge) and the edge (which starts it) both name it without importing each
//! other.

use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenIssuer;
use crate::config::Config;
use crate::room::RoomRegistry;
use crate::sfu::SfuEngine;
use crate::store::Store;

/// What every request handler and connection task shares.
pub struct AppState {
    pub config: Arc<Config>,
    pub rooms: RoomRegistry,
    pub sfu: Arc<SfuEngine>,
    /// Cancelled once on shutdown; every connection watches it.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub connections: TaskTracker,
    pub tokens: TokenIssuer,
    pub store: Store,
    /// Failed join attempts (bad tokens) per client IP; a valid join never counts.
    pub join_limiter: DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Client addresses behind trusted proxies, origin checks, connection caps, headers.
    pub edge: Arc<crate::edge::Edge>,
    pub metrics: Arc<crate::metrics::Metrics>,
}
