//! The HTTP edge: router, shared state, start and graceful shutdown.
//!
//! `start` binds and returns a [`RunningServer`] whose `shutdown` tells every client, closes
//! every peer connection and waits (bounded by `server.shutdown_grace_ms`) for them to finish.
//! Tests start the real server this way on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::{Role, TokenIssuer};
use crate::config::Config;
use crate::room::{RoomId, RoomRegistry, RoomSettings};
use crate::sfu::SfuEngine;
use crate::signal::connection;
use crate::store::{Store, StoreError};

pub use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("web client folder {0} does not exist (set server.web_root)")]
    WebRoot(String),
    #[error("cannot load TLS certificate {cert} / key {key}: {source}")]
    Tls { cert: String, key: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    Media(#[from] crate::sfu::SfuError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub fn app(state: Arc<AppState>) -> Router {
    let root = &state.config.server.web_root;
    let static_files = ServeDir::new(root).fallback(ServeFile::new(root.join("index.html")));
    // Revalidate the client on every load, so an update reaches everyone at their next visit.
    let static_files = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .service(static_files);
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ws", get(ws_upgrade))
        .route("/api/info", get(info))
        .route("/api/badges/{kind}/{file}", get(crate::badge::serve))
        .route("/api/tokens", post(mint_token))
        .route("/dev/token", post(dev_token))
        .route("/api/rooms/{room}/invites", post(room_invite))
        .route("/api/invites/accept", post(accept_invite))
        .route("/api/rooms/{room}/polls", get(room_polls))
        .route("/api/rooms/{room}/sessions", get(room_sessions))
        .route("/api/rooms/{room}/sessions/{session}/attendance", get(session_attendance))
        .route("/api/rooms/{room}/sessions/{session}/checkins", get(session_check_ins))
        .route("/api/rooms/{room}/trends/{participant}", get(participant_trend))
        .route("/api/admin/drain", post(admin_drain))
        .route("/api/admin/cluster", get(admin_cluster))
        .fallback_service(static_files);
    let edge = state.edge.clone();
    edge.apply_headers(router.with_state(state))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    rooms: usize,
    participants: usize,
    peers: usize,
    /// Relay nodes: this node's id in the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// GET /metrics: open, or with `server.metrics_key` set, only with that bearer key.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let key = &state.config.server.metrics_key;
    if !key.is_empty() && !bearer_matches(&headers, key) {
        return ApiError(StatusCode::UNAUTHORIZED, "unauthorized", "a valid metrics key is required".into()).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render()).into_response()
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: if state.shutdown.is_cancelled() || state.rooms.cluster().is_some_and(|c| c.is_draining()) { "draining" } else { "ok" },
        rooms: state.rooms.room_count(),
        participants: state.rooms.participant_count(),
        peers: state.sfu.stats.peers.load(std::sync::atomic::Ordering::Relaxed),
        node: state.rooms.cluster().map(|c| c.node_id()),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    protocol_version: u32,
    /// Whether this server mints development tokens at /dev/token (never in production).
    dev_tokens: bool,
    /// `clinic.no_link_text`: for the page shown without a join link.
    no_link_text: String,
    /// `support.resources_text`: for the end screen, as for a support request.
    support_resources_text: String,
}

async fn info(State(state): State<Arc<AppState>>) -> Json<Info> {
    Json(Info {
        protocol_version: crate::signal::protocol::PROTOCOL_VERSION,
        dev_tokens: state.config.dev_tokens(),
        no_link_text: state.config.clinic.no_link_text.clone(),
        support_resources_text: state.config.support.resources_text.clone(),
    })
}

/// An HTTP error with a stable code, as JSON.
pub struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Messages may quote client input (serde's rejection text does): never echo it in full.
        let message = crate::signal::protocol::clip_message(&self.2);
        (self.0, Json(serde_json::json!({ "code": self.1, "message": message }))).into_response()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MintRequest {
    pub room: String,
    pub role: Role,
    pub name: String,
    #[serde(default)]
    pub participant_id: Option<String>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Family guests: the participant id of their sponsor (required for them only).
    #[serde(default)]
    pub sponsor: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MintResponse {
    pub token: String,
    pub participant_id: String,
    pub room: String,
    pub expires_at: u64,
    /// Path of the web client with the token in the fragment (never sent to servers or logs).
    pub join_path: String,
}

fn mint(state: &AppState, req: MintRequest, default_ttl: u64) -> Result<Json<MintResponse>, ApiError> {
    let room = parse_room(req.room)?;
    // A guest's link is short-lived unless asked otherwise, whatever the default for members.
    let default_ttl = if req.role == Role::FamilyGuest { default_ttl.min(crate::auth::GUEST_MAX_TTL.as_secs()) } else { default_ttl };
    let ttl = Duration::from_secs(req.ttl_seconds.unwrap_or(default_ttl));
    let minted = state.tokens.mint_with_sponsor(&room, req.role, &req.name, req.participant_id.as_deref(), ttl, req.sponsor.as_deref());
    let (token, claims) = minted.map_err(|e| match e {
        crate::auth::AuthError::InvalidName(_) => ApiError(StatusCode::BAD_REQUEST, "invalid_name", e.to_string()),
        e => ApiError(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    })?;
    Ok(Json(MintResponse {
        join_path: format!("/#token={token}"),
        token,
        participant_id: claims.sub,
        room: claims.room,
        expires_at: claims.exp,
    }))
}

/// POST /api/tokens: an operator's backend mints join tokens with the configured API key.
async fn mint_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<MintRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<MintResponse>, ApiError> {
    require_api_key(&state, &headers, "token minting")?;
    let Json(req) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    mint(&state, req, 2 * 3600)
}

/// The operator's API key in `Authorization: Bearer <key>`; 404 when no key is configured.
fn require_api_key(state: &AppState, headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
    let key = &state.config.auth.api_key;
    if key.is_empty() {
        return Err(ApiError(StatusCode::NOT_FOUND, "disabled", format!("{what} is off (set auth.api_key)")));
    }
    if !bearer_matches(headers, key) {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "unauthorized", "a valid API key is required".into()));
    }
    Ok(())
}

/// What `Authorization: Bearer <credential>` carries, if anything.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// `Authorization: Bearer <key>` with exactly `key`, compared in constant time.
fn bearer_matches(headers: &HeaderMap, key: &str) -> bool {
    bearer(headers).is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes()))
}

/// POST /api/admin/drain (API key): this relay node takes no new rooms and, after
/// `cluster.drain_grace_ms`, moves its rooms and their clients to other nodes.
async fn admin_drain(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_api_key(&state, &headers, "the admin API")?;
    let Some(cluster) = state.rooms.cluster().cloned() else {
        return Err(ApiError(StatusCode::CONFLICT, "not_clustered", "this node runs alone (cluster.redis_url is empty)".into()));
    };
    let grace = cluster.drain_grace();
    tokio::spawn(drain(state.clone()));
    let body = serde_json::json!({ "draining": true, "node": cluster.node_id(), "graceMs": grace.as_millis() as u64 });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// GET /api/admin/cluster (API key): the live relay nodes and their load.
async fn admin_cluster(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_api_key(&state, &headers, "the admin API")?;
    let Some(cluster) = state.rooms.cluster().cloned() else {
        return Err(ApiError(StatusCode::CONFLICT, "not_clustered", "this node runs alone (cluster.redis_url is empty)".into()));
    };
    let nodes = cluster.nodes().await.map_err(|e| {
        tracing::warn!(error = %e, "cluster listing failed");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable", "redis cannot be reached".into())
    })?;
    Ok(Json(serde_json::json!({ "node": cluster.node_id(), "nodes": nodes })).into_response())
}

/// Drains this relay node: no new rooms at once, then after the grace period every room moves
/// to another node (its clients are redirected there). Runs once; later calls return at once.
pub async fn drain(state: Arc<AppState>) {
    let Some(cluster) = state.rooms.cluster().cloned() else { return };
    if !cluster.start_drain().await {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(cluster.drain_grace()) => {}
        _ = state.shutdown.cancelled() => return,
    }
    let rooms = state.rooms.running();
    tracing::info!(rooms = rooms.len(), "drain: moving rooms to other nodes");
    for (_, handle) in rooms {
        handle.send(crate::room::RoomCommand::Evacuate(None)).await;
    }
    // Bounded: a room whose hand-over stalls is left to the shutdown that usually follows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.rooms.room_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(left = state.rooms.room_count(), "drain: done");
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InviteRequest {
    /// The invited person's name; absent, they type it on the link page.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteResponse {
    /// Path of the web client with the invite (or, with a name, the join token) in the fragment.
    pub invite_path: String,
    pub expires_at: u64,
}

/// How long an invite lasts unless the therapist says otherwise.
const INVITE_TTL_SECS: u64 = 24 * 3600;

/// POST /api/rooms/{room}/invites: a therapist of the room (their own join token, as for the
/// records exports) invites a participant. With a name, the link carries a join token; without,
/// an invite the link page trades for one once the person has typed their name.
async fn room_invite(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(room): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Result<Json<InviteRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<InviteResponse>, ApiError> {
    let room = parse_room(room)?;
    let grant = room_grant(&state, &headers, &room)?;
    if grant.role != Role::Therapist {
        return Err(ApiError(StatusCode::FORBIDDEN, "forbidden", "only a therapist of this room can invite people".into()));
    }
    let Json(req) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let ttl = req.ttl_seconds.unwrap_or(INVITE_TTL_SECS);
    let name = req.name.filter(|n| !n.trim().is_empty());
    let response = match name {
        Some(name) => {
            let minted = mint(
                &state,
                MintRequest {
                    room: room.to_string(),
                    role: Role::Participant,
                    name,
                    participant_id: None,
                    ttl_seconds: Some(ttl),
                    sponsor: None,
                },
                ttl,
            )?;
            InviteResponse { invite_path: minted.0.join_path.clone(), expires_at: minted.0.expires_at }
        }
        None => {
            let (invite, claims) = state
                .tokens
                .mint_invite(&room, Duration::from_secs(ttl))
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))?;
            InviteResponse { invite_path: format!("/#invite={invite}"), expires_at: claims.exp }
        }
    };
    tracing::info!(room = %room, therapist = %grant.participant, "invite minted");
    Ok(Json(response))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptInvite {
    pub invite: String,
    pub name: String,
}

/// POST /api/invites/accept: the link page trades an invite and the name its holder typed for
/// a participant's join token. Failures count against the caller's address like failed joins.
async fn accept_invite(
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<AcceptInvite>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<MintResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let (token, claims) = state.tokens.accept_invite(&req.invite, &req.name).map_err(|e| {
        let client = state.edge.client_ip(remote, &headers);
        if !matches!(e, crate::auth::AuthError::InvalidName(_)) && state.join_limiter.check_key(&client).is_err() {
            return ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many failed attempts from this address; wait a minute".into(),
            );
        }
        match e {
            crate::auth::AuthError::InvalidName(_) => ApiError(StatusCode::BAD_REQUEST, "invalid_name", e.to_string()),
            crate::auth::AuthError::Expired => {
                ApiError(StatusCode::UNAUTHORIZED, "token_expired", "this invitation has expired; ask your therapist for a new link".into())
            }
            crate::auth::AuthError::Missing => ApiError(StatusCode::UNAUTHORIZED, "token_missing", e.to_string()),
            _ => ApiError(
                StatusCode::UNAUTHORIZED,
                "token_invalid",
                "this invitation is not valid; ask your therapist for a new link".into(),
            ),
        }
    })?;
    Ok(Json(MintResponse {
        join_path: format!("/#token={token}"),
        token,
        participant_id: claims.sub,
        room: claims.room,
        expires_at: claims.exp,
    }))
}

/// POST /dev/token: development mode only, mints a token for anyone (the dev join page).
async fn dev_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<MintRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<MintResponse>, ApiError> {
    if !state.config.dev_tokens() {
        return Err(ApiError(StatusCode::NOT_FOUND, "disabled", "development tokens are off in production mode".into()));
    }
    // A proxy in front of a loopback development server would open it to everyone it serves.
    if headers.contains_key("x-forwarded-for") || headers.contains_key(header::FORWARDED) {
        return Err(ApiError(StatusCode::NOT_FOUND, "disabled", "development tokens are not minted through a proxy".into()));
    }
    let Json(req) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    mint(&state, req, 4 * 3600)
}

/// GET /api/rooms/{room}/polls: the session summary of polls (definitions, final counts and,
/// for named polls, choices by participant id), for a therapist of that room only: header
/// `Authorization: Bearer <therapist join token for the room>`.
async fn room_polls(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(room): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<crate::store::PollRecord>>, ApiError> {
    let room = parse_room(room)?;
    require_room_therapist(&state, &headers, &room, "only a therapist of this room can read its polls")?;
    let polls = state.store.polls(room.as_str()).await.map_err(|e| internal(e, "the poll summary could not be read"))?;
    Ok(Json(polls))
}

fn internal(e: StoreError, what: &str) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", what.into())
}

/// `Authorization: Bearer <token>` holds a therapist join token for `room`.
fn require_room_therapist(state: &AppState, headers: &HeaderMap, room: &RoomId, refusal: &str) -> Result<(), ApiError> {
    if room_grant(state, headers, room)?.role != Role::Therapist {
        return Err(ApiError(StatusCode::FORBIDDEN, "forbidden", refusal.into()));
    }
    Ok(())
}

/// The join token in `Authorization: Bearer <token>`, verified for `room`.
fn room_grant(state: &AppState, headers: &HeaderMap, room: &RoomId) -> Result<crate::auth::Grant, ApiError> {
    let grant = state.tokens.verify(bearer(headers).unwrap_or(""), room).map_err(|e| {
        let code = match e {
            crate::auth::AuthError::Missing => "token_missing",
            crate::auth::AuthError::Expired => "token_expired",
            crate::auth::AuthError::WrongRoom => "token_wrong_room",
            crate::auth::AuthError::Invalid | crate::auth::AuthError::Mint(_) => "token_invalid",
            crate::auth::AuthError::InvalidName(_) => "invalid_name",
        };
        let status = if code == "token_wrong_room" { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
        ApiError(status, code, e.to_string())
    })?;
    Ok(grant)
}

fn parse_room(room: String) -> Result<RoomId, ApiError> {
    RoomId::new(room).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_room", e.to_string()))
}

/// The room whose records are asked for, once the caller is one of its therapists (join token)
/// or the operator (`auth.api_key`): every records export starts here.
fn records_room(state: &AppState, headers: &HeaderMap, room: String) -> Result<RoomId, ApiError> {
    let room = parse_room(room)?;
    let key = &state.config.auth.api_key;
    if !key.is_empty() && bearer_matches(headers, key) {
        return Ok(room);
    }
    require_room_therapist(state, headers, &room, "only a therapist of this room (or the API key) can read its attendance")?;
    Ok(room)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `json` (the default) or `csv`; anything else is refused.
fn wants_csv(query: Result<axum::extract::Query<ExportQuery>, axum::extract::rejection::QueryRejection>) -> Result<bool, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    match q.format.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError(StatusCode::BAD_REQUEST, "invalid_request", format!("format `{other}` is not one of json, csv"))),
    }
}

fn csv_response(body: String, file: String) -> Response {
    let disposition = format!("attachment; filename=\"{file}\"");
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// GET /api/rooms/{room}/sessions[?format=csv]: the room's sessions, oldest first.
async fn room_sessions(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(room): axum::extract::Path<String>,
    query: Result<axum::extract::Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let csv = wants_csv(query)?;
    let room = records_room(&state, &headers, room)?;
    let sessions = state.store.sessions(room.as_str()).await.map_err(|e| internal(e, "the sessions could not be read"))?;
    if !csv {
        return Ok(Json(sessions).into_response());
    }
    let mut body = String::from("session_id,room,started_ms,ended_ms,end_reason\n");
    for s in &sessions {
        let ended = s.ended_ms.map(|v| v.to_string()).unwrap_or_default();
        body.push_str(&format!("{},{},{},{ended},{}\n", s.id, s.room, s.started_ms, s.end_reason.as_deref().unwrap_or("")));
    }
    Ok(csv_response(body, format!("{room}-sessions.csv")))
}

/// GET /api/rooms/{room}/sessions/{session}/attendance[?format=csv]: one session's attendance
/// (and, in JSON, its support requests: ids, times, outcome codes).
async fn session_attendance(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((room, session)): axum::extract::Path<(String, String)>,
    query: Result<axum::extract::Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let csv = wants_csv(query)?;
    let room = records_room(&state, &headers, room)?;
    let found = state.store.attendance(room.as_str(), &session).await.map_err(|e| internal(e, "the attendance could not be read"))?;
    let Some((record, people)) = found else {
        return Err(ApiError(StatusCode::NOT_FOUND, "unknown_session", "this room has no session with that id".into()));
    };
    if csv {
        return Ok(csv_response(crate::store::attendance_csv(&record, &people), format!("{}-attendance.csv", record.id)));
    }
    let support = state.store.support_requests(room.as_str()).await.map_err(|e| internal(e, "the support requests could not be read"))?;
    let support: Vec<_> = support.into_iter().filter(|s| s.session_id.as_deref() == Some(record.id.as_str())).collect();
    Ok(Json(serde_json::json!({ "session": record, "attendance": people, "supportRequests": support })).into_response())
}

/// GET /api/rooms/{room}/sessions/{session}/checkins: the session's named check-in and
/// check-out values (therapists of the room, or the API key); the per-session group chart.
async fn session_check_ins(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((room, session)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let room = records_room(&state, &headers, room)?;
    let values =
        state.store.session_check_ins(room.as_str(), &session).await.map_err(|e| internal(e, "the check-ins could not be read"))?;
    Ok(Json(serde_json::json!({ "sessionId": session, "values": values })).into_response())
}

/// GET /api/rooms/{room}/trends/{participant}: one person's named check-in and check-out values
/// in this room, oldest first. A participant may read only their own; therapists of the room
/// anyone's. Anonymous check-ins keep no values, so they are not in it.
async fn participant_trend(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((room, participant)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let room = parse_room(room)?;
    let grant = room_grant(&state, &headers, &room)?;
    if grant.role != Role::Therapist && grant.participant.as_str() != participant {
        return Err(ApiError(StatusCode::FORBIDDEN, "forbidden", "you can read your own trend only".into()));
    }
    let values = state.store.check_in_values(room.as_str(), &participant).await.map_err(|e| internal(e, "the trend could not be read"))?;
    Ok(Json(serde_json::json!({ "participantId": participant, "values": values })).into_response())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ws_upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    // A page on another site must not open sessions with a visitor's browser (cross-site
    // websocket hijacking); clients without `Origin` are not browsers and pass.
    if !state.edge.origin_allowed(remote, &headers) {
        return ApiError(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "this page's origin may not connect (see server.allowed_origins)".into(),
        )
        .into_response();
    }
    let client = state.edge.client_ip(remote, &headers);
    let limits = &state.config.limits;
    let guard = match state.edge.connections.try_acquire(client, limits.max_connections_per_ip, limits.max_connections) {
        Ok(g) => g,
        Err(e @ crate::edge::CapError::PerIp) => {
            return ApiError(StatusCode::TOO_MANY_REQUESTS, "too_many_connections", e.to_string()).into_response();
        }
        Err(e @ crate::edge::CapError::Total) => {
            return ApiError(StatusCode::SERVICE_UNAVAILABLE, "server_full", e.to_string()).into_response();
        }
    };
    // Frames between the configured limit and this hard cap get a protocol error and the
    // connection lives on; frames beyond it are refused by the websocket layer, which closes.
    let hard_cap = state.config.limits.max_message_bytes.saturating_mul(16).min(16 << 20);
    let tracker = state.connections.clone();
    ws.max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                connection::serve(socket, state, remote, client).await;
                drop(guard);
            })
        })
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
        if let Some(cluster) = self.state.rooms.cluster() {
            cluster.deregister().await;
        }
        self.state.shutdown.cancel();
        self.state.connections.close();
        let grace = Duration::from_millis(self.state.config.server.shutdown_grace_ms);
        let _ = tokio::time::timeout(grace, self.state.connections.wait()).await;
        let _ = tokio::time::timeout(grace, self.task).await;
    }

    /// Drains this relay node (see [`drain`]); returns when its rooms have moved.
    pub async fn drain(&self) {
        drain(self.state.clone()).await
    }

    /// Runs until `signal` completes, then shuts down gracefully; a relay node drains first,
    /// so its sessions move to other nodes instead of breaking.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        if self.state.rooms.cluster().is_some() {
            tracing::info!("draining before shutdown");
            self.drain().await;
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    if !config.server.web_root.is_dir() {
        return Err(ServerError::WebRoot(config.server.web_root.display().to_string()));
    }
    let tls = match config.server.tls() {
        Some((cert, key)) => {
            // Both ring and aws-lc may be compiled in through dependencies; pick one explicitly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let loaded = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.map_err(|source| ServerError::Tls {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                source,
            })?;
            Some(loaded)
        }
        None => None,
    };
    // Poll texts and milestone labels are sealed at rest (see `store.rs`).
    let store = Store::open(&config.store.path)?.with_text_key(crate::store::TextKey::derive(&config.auth.token_secret));
    let listener =
        TcpListener::bind(config.server.listen).await.map_err(|source| ServerError::Bind { addr: config.server.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.server.listen, source })?;
    let joins = std::num::NonZeroU32::new(config.limits.joins_per_minute_per_ip).unwrap_or(std::num::NonZeroU32::MIN);
    let settings = RoomSettings {
        max_room_size: config.limits.max_room_size,
        max_tracks_per_participant: config.limits.max_tracks_per_participant,
        waiting_room: config.rooms.waiting_room,
        e2ee: config.rooms.e2ee,
        reconnect_grace: Duration::from_millis(config.rooms.reconnect_grace_ms),
        ice_servers: config.ice.ice_servers.clone(),
        turn: crate::turn::TurnIssuer::new(&config.turn.urls, &config.turn.secret, Duration::from_secs(config.turn.credential_ttl_secs)),
        ballot_secret: ballot_secret(&config),
        ban_ttl: Duration::from_secs(config.cluster.state_ttl_secs.max(60)),
        late_after: Duration::from_secs(config.rooms.late_after_secs),
        talk_time_in_attendance: config.rooms.talk_time_in_attendance,
        support_resources: config.support.resources_text.clone(),
        co_facilitator_withheld: crate::room::permissions::co_facilitator_withheld(&config.rooms.co_facilitator_withhold)
            .map_err(ServerError::Config)?,
    };
    let w = &config.webhook;
    let webhook = (!w.url.is_empty()).then(|| {
        crate::webhook::Webhook::new(crate::webhook::WebhookSettings {
            url: w.url.clone(),
            secret: w.secret.clone(),
            max_attempts: w.max_attempts,
            first_retry: Duration::from_millis(w.first_retry_ms),
        })
    });
    let rooms = RoomRegistry::new(settings, Some(store.clone()), webhook);
    if let Err(e) = rooms.restore_doors().await {
        tracing::warn!(error = %e, "the waiting rooms' texts could not be read back; they start empty");
    }
    let sfu = SfuEngine::start(config.ice.clone())?;
    let metrics = crate::metrics::Metrics::new(sfu.stats.clone(), rooms.clone());
    let state = Arc::new(AppState {
        rooms,
        sfu,
        metrics,
        tokens: TokenIssuer::new(&config.auth.token_secret),
        store,
        join_limiter: RateLimiter::keyed(Quota::per_minute(joins)),
        edge: Arc::new(crate::edge::Edge::new(&config)),
        config: Arc::new(config),
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
    });
    if state.config.cluster.enabled() {
        join_cluster(&state, addr).await?;
    }
    if !state.config.cluster.enabled() {
        // A lone node's sessions in the store still open were cut off by its last stop.
        if let Err(e) = state.store.close_interrupted_sessions().await {
            tracing::warn!(error = %e, "interrupted sessions not closed");
        }
    }
    spawn_maintenance(state.clone());
    spawn_retention(state.clone());
    let header_timeout = match state.config.server.header_read_timeout_ms {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let token = state.shutdown.clone();
    let task = match tls {
        None => tokio::spawn(crate::edge::serve_http(listener, app(state.clone()), header_timeout, token)),
        Some(tls) => {
            let router = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
            let std_listener = listener.into_std().map_err(|source| ServerError::Bind { addr, source })?;
            let mut server = axum_server::from_tcp_rustls(std_listener, tls)
                .map_err(|source| ServerError::Bind { addr, source })?
                // Also bounds the time before the first request, which hyper's own
                // header timeout does not cover on this path.
                .first_request_timeout(header_timeout);
            server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            let handle = axum_server::Handle::new();
            let watcher = handle.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                watcher.graceful_shutdown(Some(Duration::from_secs(1)));
            });
            tokio::spawn(async move {
                if let Err(e) = server.handle(handle).serve(router).await {
                    tracing::error!(error = %e, "https server stopped");
                }
            })
        }
    };
    let scheme = if state.config.server.tls().is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "listening");
    Ok(RunningServer { addr, state, task })
}

/// Background upkeep tied to shutdown: the join limiter forgets addresses whose quota has
/// refilled (it would otherwise keep one entry per address ever seen), and relay nodes learn
/// each other's origins for the origin check and `connect-src`.
fn spawn_maintenance(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut prune = tokio::time::interval(Duration::from_secs(30));
        let every = Duration::from_millis(state.config.cluster.heartbeat_ms.max(250));
        let mut nodes = tokio::time::interval(every);
        nodes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = prune.tick() => {
                    state.join_limiter.retain_recent();
                    state.join_limiter.shrink_to_fit();
                }
                _ = nodes.tick(), if state.rooms.cluster().is_some() => {
                    let Some(cluster) = state.rooms.cluster().cloned() else { continue };
                    match cluster.nodes().await {
                        Ok(list) => state.edge.set_node_origins(list.into_iter().map(|n| n.url)),
                        Err(e) => tracing::debug!(error = %e, "node list for the origin check failed"),
                    }
                }
            }
        }
    });
}

/// `store.retention_days`: purges old records at start, then once a day.
fn spawn_retention(state: Arc<AppState>) {
    let days = state.config.store.retention_days;
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut daily = tokio::time::interval(Duration::from_secs(24 * 3600));
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = daily.tick() => match state.store.purge_older_than(days).await {
                    Ok(purged) => tracing::info!(days, deleted = purged.total(), "retention purge"),
                    Err(e) => tracing::warn!(error = %e, "retention purge failed"),
                },
            }
        }
    });
}

/// The secret anonymous poll ballots are keyed with: random per process on a single node;
/// with relay nodes, derived from the token secret all nodes share, so an open anonymous poll
/// can move between nodes (docs/polls.md).
fn ballot_secret(config: &Config) -> [u8; 32] {
    if !config.cluster.enabled() {
        return rand::random();
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, config.auth.token_secret.as_bytes());
    let tag = ring::hmac::sign(&key, b"hearth anonymous poll ballots v1");
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Registers this node with Redis and starts its heartbeat.
async fn join_cluster(state: &Arc<AppState>, addr: SocketAddr) -> Result<(), ServerError> {
    let cfg = state.config.cluster.clone();
    let scheme = if state.config.server.tls().is_some() { "https" } else { "http" };
    let base = if cfg.public_url.is_empty() { format!("{scheme}://{addr}") } else { cfg.public_url.clone() };
    let ice = &state.config.ice;
    let media = if ice.announce_ips.is_empty() {
        vec![ice.bind_ip.to_string()]
    } else {
        ice.announce_ips.iter().map(|ip| ip.to_string()).collect()
    };
    let cluster = crate::cluster::Cluster::connect(cfg, base, media, Box::new(state.rooms.clone())).await?;
    state.rooms.attach_cluster(cluster.clone());
    let rooms = state.rooms.clone();
    let registry = state.rooms.clone();
    cluster.spawn_heartbeat(
        state.shutdown.clone(),
        move || rooms.running().into_iter().map(|(id, _)| id).collect(),
        move |room, url| {
            let registry = registry.clone();
            tokio::spawn(async move {
                if let Some((_, handle)) = registry.running().into_iter().find(|(id, _)| *id == room) {
                    handle.send(crate::room::RoomCommand::Evacuate(Some(url.unwrap_or_default()))).await;
                }
            });
        },
    );
    tracing::info!(node = %cluster.node_id(), "relay node in the cluster");
    Ok(())
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
