//! Typed configuration: embedded defaults, an optional file, then `HEARTH_*` environment
//! variables, merged by `figment` and validated once at start-up. Nothing else reads the
//! environment or config files.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::vocab::IceServer;

/// The embedded defaults: `config/default.toml`, documented there key by key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Longest `clinic.*` text; longer would not fit calmly on a phone.
pub const CLINIC_TEXT_MAX_CHARS: usize = 1000;

/// The token secret shipped in the defaults; production mode refuses it.
pub const DEV_TOKEN_SECRET: &str = "DEVELOPMENT-ONLY-hearth-secret-do-not-use-in-production";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub ice: IceConfig,
    pub auth: AuthConfig,
    pub rooms: RoomsConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    pub cluster: ClusterConfig,
    pub clinic: ClinicConfig,
    pub turn: TurnConfig,
    pub support: SupportConfig,
    pub webhook: WebhookConfig,
}

/// "I need support": what the requester is shown at once, whoever is connected; the same words
/// close every participant's end screen.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportConfig {
    pub resources_text: String,
}

/// The signed `POST` sent when a session ends (`src/webhook.rs`). Off while `url` is empty.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
    pub max_attempts: u32,
    pub first_retry_ms: u64,
}

impl std::fmt::Debug for WebhookConfig {
    // The signing secret never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("max_attempts", &self.max_attempts)
            .field("first_retry_ms", &self.first_retry_ms)
            .finish()
    }
}

/// An existing TURN server (coturn with `use-auth-secret`) whose short-lived credentials
/// admitted participants get (`src/turn.rs`). Off while `urls` is empty.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    pub urls: Vec<String>,
    pub secret: String,
    pub credential_ttl_secs: u64,
}

impl std::fmt::Debug for TurnConfig {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &"<redacted>")
            .field("credential_ttl_secs", &self.credential_ttl_secs)
            .finish()
    }
}

/// Words the web client shows that belong to the clinic running Hearth, not to Hearth: what
/// to do without a join link. Served by `/api/info` (with `support.resources_text`, which the
/// end screen shows).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicConfig {
    /// On the page someone without a join link sees: how to reach the clinic.
    pub no_link_text: String,
}

/// Relay nodes sharing rooms through Redis (`src/cluster`). Off while `redis_url` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub redis_url: String,
    pub node_id: String,
    pub public_url: String,
    pub heartbeat_ms: u64,
    pub node_ttl_ms: u64,
    pub drain_grace_ms: u64,
    pub state_ttl_secs: u64,
    /// Base URLs (prefixes) clients may be redirected to; empty: any registered node's.
    #[serde(default)]
    pub node_urls: Vec<String>,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.redis_url.trim().is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    pub waiting_room: bool,
    pub reconnect_grace_ms: u64,
    /// Arrived this long after the session started: flagged late in the attendance.
    pub late_after_secs: u64,
    /// Each participant's seconds of speech in the session go into their attendance record
    /// (off: talk time is never stored).
    #[serde(default)]
    pub talk_time_in_attendance: bool,
    /// New rooms' end-to-end encryption policy (a therapist may change it before admitting anyone).
    #[serde(default)]
    pub e2ee: crate::vocab::E2eeMode,
    /// Rows of the permission table this deployment takes from co-facilitators (checked at
    /// start-up against the table: it narrows their rights, never widens them).
    #[serde(default)]
    pub co_facilitator_withhold: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Records older than this many days are purged (daily, and at start); 0 keeps them.
    pub retention_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub web_root: PathBuf,
    pub production: bool,
    pub shutdown_grace_ms: u64,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// How long a client may take to send a request's headers (slowloris); 0 = no limit.
    pub header_read_timeout_ms: u64,
    /// Reverse proxies (IPs or CIDRs) whose `X-Forwarded-For`/`Forwarded`/`X-Forwarded-Proto`/
    /// `X-Forwarded-Host` headers are believed. Empty: every peer is the client itself.
    pub trusted_proxies: Vec<String>,
    /// Page origins (`https://host[:port]`) besides the server's own that may open `/ws`.
    pub allowed_origins: Vec<String>,
    /// Bearer key for `GET /metrics`; empty leaves the endpoint open.
    pub metrics_key: String,
}

impl ServerConfig {
    /// Both TLS files, when TLS is configured.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        (set(&self.tls_cert) && set(&self.tls_key)).then_some((self.tls_cert.as_path(), self.tls_key.as_path()))
    }
}

/// The largest media socket buffer a deployment may ask for.
pub const MAX_SOCKET_BUFFER_BYTES: usize = 256 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceConfig {
    pub bind_ip: IpAddr,
    pub announce_ips: Vec<IpAddr>,
    /// Every peer connection shares this one UDP port (0: an ephemeral one, for tests).
    pub udp_port: u16,
    /// `false`: each peer connection takes a port of its own from `udp_port_min..=max`
    /// instead of sharing `udp_port`.
    pub single_port: bool,
    pub udp_port_min: u16,
    pub udp_port_max: u16,
    /// Receive and send buffer of the shared media socket, bytes (0: the kernel's default).
    /// A busy moment of a few tens of milliseconds must not overflow it.
    pub socket_buffer_bytes: usize,
    /// Passive TCP candidates (RFC 6544) beside the UDP ones: one TCP listener per peer
    /// connection, on the same port number as its UDP socket.
    pub tcp: bool,
    pub ice_servers: Vec<IceServer>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub token_secret: String,
    pub api_key: String,
}

impl std::fmt::Debug for AuthConfig {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig").field("token_secret", &"<redacted>").field("api_key", &"<redacted>").finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_room_size: usize,
    /// Tracks one participant may publish at once; more are not forwarded.
    pub max_tracks_per_participant: usize,
    pub max_message_bytes: usize,
    pub messages_per_second: u32,
    pub message_burst: u32,
    pub joins_per_minute_per_ip: u32,
    /// Open websockets one client IP may hold, and the whole server.
    pub max_connections_per_ip: usize,
    pub max_connections: usize,
    /// How long a websocket may stay open without a joined session.
    pub join_timeout_ms: u64,
}

/// Whether this server mints development tokens, decided once from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST /dev/token` mints tokens for anyone: loopback listen and the development secret.
    Development,
    /// Tokens come only from `hearth token` or `POST /api/tokens`.
    Production,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Development => "development",
            Mode::Production => "production",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} cannot be read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: key `{key}` has value `{value}`: {reason}")]
    Invalid { key: &'static str, value: String, reason: &'static str },
}

impl Config {
    /// Defaults, then the file at `path` (if any), then `HEARTH_*` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = path {
            // figment silently ignores a missing file; an operator who named one wants it.
            std::fs::metadata(path).map_err(|e| ConfigError::Unreadable { path: path.to_path_buf(), reason: e.to_string() })?;
            fig = fig.merge(Toml::file_exact(path));
        }
        // HEARTH_LOG (a tracing filter) and HEARTH_CONFIG (a path) are not settings keys.
        fig = fig.merge(Env::prefixed("HEARTH_").ignore(&["LOG", "CONFIG"]).split("__"));
        Self::from_figment(fig)
    }

    /// Defaults merged with a TOML string; used by tests and embedders.
    pub fn from_toml_overrides(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml)))
    }

    fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let config: Config = fig.extract().map_err(|e| ConfigError::Parse(describe_figment_error(&fig, e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The mode this configuration runs in, and why (for `hearth check-config` and the log).
    /// The rule: `server.production = true` is production; otherwise a real
    /// `auth.token_secret` is production too (a real secret means a deployment); the
    /// development secret is development only on a loopback listen address without trusted
    /// proxies, and [`Config::validate`] refuses every other combination.
    pub fn mode(&self) -> (Mode, &'static str) {
        if self.server.production {
            return (Mode::Production, "server.production = true");
        }
        if self.auth.token_secret != DEV_TOKEN_SECRET {
            return (Mode::Production, "auth.token_secret is set (not the development secret), so development tokens are off");
        }
        (Mode::Development, "development secret on a loopback address: POST /dev/token mints tokens for anyone on this machine")
    }

    /// Whether `POST /dev/token` mints tokens.
    pub fn dev_tokens(&self) -> bool {
        self.mode().0 == Mode::Development
    }

    /// The trusted proxies, parsed (validated at load, so bad entries never reach here).
    pub fn trusted_proxies(&self) -> Vec<crate::vocab::IpNet> {
        self.server.trusted_proxies.iter().filter_map(|p| crate::vocab::IpNet::parse(p)).collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, text) in [("clinic.no_link_text", &self.clinic.no_link_text)] {
            if text.chars().count() > CLINIC_TEXT_MAX_CHARS {
                return Err(ConfigError::Invalid {
                    key,
                    value: text.chars().take(40).collect::<String>() + "…",
                    reason: "at most 1000 characters: it is shown on a small screen",
                });
            }
        }
        let s = &self.server;
        for p in &s.trusted_proxies {
            if crate::vocab::IpNet::parse(p).is_none() {
                return Err(ConfigError::Invalid {
                    key: "server.trusted_proxies",
                    value: p.clone(),
                    reason: "each entry must be an IP address or a CIDR such as 10.0.0.0/8",
                });
            }
        }
        for o in &s.allowed_origins {
            if crate::vocab::normalize_origin(o).is_none() {
                return Err(ConfigError::Invalid {
                    key: "server.allowed_origins",
                    value: o.clone(),
                    reason: "each entry must be an origin such as https://video.example.org (scheme and host, optional port, no path)",
                });
            }
        }
        if !s.metrics_key.is_empty() && s.metrics_key.len() < 24 {
            return Err(ConfigError::Invalid {
                key: "server.metrics_key",
                value: "<redacted>".into(),
                reason: "must be empty (metrics open) or at least 24 characters",
            });
        }
        let l = &self.limits;
        if l.max_connections_per_ip == 0 || l.max_connections == 0 || l.join_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_connections_per_ip/limits.max_connections/limits.join_timeout_ms",
                value: format!("{}/{}/{}", l.max_connections_per_ip, l.max_connections, l.join_timeout_ms),
                reason: "must each be at least 1",
            });
        }
        if !s.production && self.auth.token_secret == DEV_TOKEN_SECRET && (!s.listen.ip().is_loopback() || !s.trusted_proxies.is_empty()) {
            return Err(ConfigError::Invalid {
                key: "server.production/auth.token_secret/server.listen",
                value: format!("false/<the development default>/{}", s.listen),
                reason: "development mode (anyone may mint tokens) only runs on a loopback address without trusted proxies: \
                         set server.production = true and auth.token_secret, or listen on 127.0.0.1 for development",
            });
        }
        if s.tls_cert.as_os_str().is_empty() != s.tls_key.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "server.tls_cert/server.tls_key",
                value: format!("{}/{}", s.tls_cert.display(), s.tls_key.display()),
                reason: "set both (to serve TLS) or neither",
            });
        }
        let l = &self.limits;
        for (key, v) in [
            ("limits.messages_per_second", l.messages_per_second),
            ("limits.message_burst", l.message_burst),
            ("limits.joins_per_minute_per_ip", l.joins_per_minute_per_ip),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid { key, value: v.to_string(), reason: "must be at least 1" });
            }
        }
        let w = &self.webhook;
        if !w.url.is_empty() {
            let parsed = url::Url::parse(&w.url).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if parsed.is_none() {
                return Err(ConfigError::Invalid {
                    key: "webhook.url",
                    value: w.url.clone(),
                    reason: "must be empty (off) or an http(s) URL such as https://records.example.org/hearth",
                });
            }
            if w.secret.len() < 24 {
                return Err(ConfigError::Invalid {
                    key: "webhook.secret",
                    value: "<redacted>".into(),
                    reason: "a webhook URL needs a signing secret of at least 24 characters",
                });
            }
            if !(1..=20).contains(&w.max_attempts) || w.first_retry_ms == 0 {
                return Err(ConfigError::Invalid {
                    key: "webhook.max_attempts/webhook.first_retry_ms",
                    value: format!("{}/{}", w.max_attempts, w.first_retry_ms),
                    reason: "attempts must be between 1 and 20 and the first retry delay at least 1 ms",
                });
            }
        }
        if self.support.resources_text.chars().count() > 1000 {
            return Err(ConfigError::Invalid {
                key: "support.resources_text",
                value: "<too long>".into(),
                reason: "at most 1000 characters (people in distress read it at a glance)",
            });
        }
        if !self.auth.api_key.is_empty() && self.auth.api_key.len() < 24 {
            return Err(ConfigError::Invalid {
                key: "auth.api_key",
                value: "<redacted>".into(),
                reason: "must be empty (endpoint off) or at least 24 characters",
            });
        }
        let ice = &self.ice;
        if (ice.udp_port_min == 0) != (ice.udp_port_max == 0) || ice.udp_port_min > ice.udp_port_max {
            return Err(ConfigError::Invalid {
                key: "ice.udp_port_min/ice.udp_port_max",
                value: format!("{}-{}", ice.udp_port_min, ice.udp_port_max),
                reason: "set both to 0 (any port) or to a range with min <= max",
            });
        }
        if ice.socket_buffer_bytes > MAX_SOCKET_BUFFER_BYTES {
            return Err(ConfigError::Invalid {
                key: "ice.socket_buffer_bytes",
                value: ice.socket_buffer_bytes.to_string(),
                reason: "at most 268435456 (256 MiB); 0 keeps the kernel's default",
            });
        }
        if self.limits.max_room_size < 2 {
            return Err(ConfigError::Invalid {
                key: "limits.max_room_size",
                value: self.limits.max_room_size.to_string(),
                reason: "a room needs room for at least 2 people",
            });
        }
        if !(1..=16).contains(&self.limits.max_tracks_per_participant) {
            return Err(ConfigError::Invalid {
                key: "limits.max_tracks_per_participant",
                value: self.limits.max_tracks_per_participant.to_string(),
                reason: "must be between 1 and 16 (a microphone, a camera and a screen are 3)",
            });
        }
        if !(1024..=1 << 20).contains(&self.limits.max_message_bytes) {
            return Err(ConfigError::Invalid {
                key: "limits.max_message_bytes",
                value: self.limits.max_message_bytes.to_string(),
                reason: "must be between 1024 and 1048576",
            });
        }
        let cl = &self.cluster;
        if cl.enabled() {
            if !(cl.redis_url.starts_with("redis://") || cl.redis_url.starts_with("rediss://") || cl.redis_url.starts_with("redis+unix://"))
            {
                return Err(ConfigError::Invalid {
                    key: "cluster.redis_url",
                    value: cl.redis_url.clone(),
                    reason: "must start with redis://, rediss:// or redis+unix://",
                });
            }
            if cl.heartbeat_ms == 0 || cl.node_ttl_ms < 2 * cl.heartbeat_ms {
                return Err(ConfigError::Invalid {
                    key: "cluster.heartbeat_ms/cluster.node_ttl_ms",
                    value: format!("{}/{}", cl.heartbeat_ms, cl.node_ttl_ms),
                    reason: "the heartbeat must be at least 1 ms and the TTL at least two heartbeats",
                });
            }
            if !cl.public_url.is_empty() && !cl.public_url.starts_with("http://") && !cl.public_url.starts_with("https://") {
                return Err(ConfigError::Invalid {
                    key: "cluster.public_url",
                    value: cl.public_url.clone(),
                    reason: "must be this node's own http:// or https:// base URL (clients are redirected to <public_url>/ws)",
                });
            }
            for u in &cl.node_urls {
                if crate::vocab::redirect_url(u, &[]).is_none() {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node_urls",
                        value: u.clone(),
                        reason: "each must be an http:// or https:// base URL without user, password, query or fragment",
                    });
                }
            }
        }
        let turn = &self.turn;
        for u in &turn.urls {
            let scheme_ok = ["turn:", "turns:"].iter().any(|p| u.starts_with(p) && u.len() > p.len());
            if !scheme_ok || u.chars().any(char::is_whitespace) {
                return Err(ConfigError::Invalid {
                    key: "turn.urls",
                    value: u.clone(),
                    reason: "each must be a turn: or turns: URL such as turn:turn.example.org:3478?transport=udp or turns:turn.example.org:443?transport=tcp",
                });
            }
        }
        if !turn.urls.is_empty() && turn.secret.len() < 24 {
            return Err(ConfigError::Invalid {
                key: "turn.secret",
                value: "<redacted>".into(),
                reason: "with turn.urls set, must be coturn's static-auth-secret, at least 24 characters",
            });
        }
        if !(60..=86_400).contains(&turn.credential_ttl_secs) {
            return Err(ConfigError::Invalid {
                key: "turn.credential_ttl_secs",
                value: turn.credential_ttl_secs.to_string(),
                reason: "must be between 60 and 86400 (a session, not a day more)",
            });
        }
        if self.auth.token_secret.len() < 32 {
            return Err(ConfigError::Invalid {
                key: "auth.token_secret",
                value: "<redacted>".into(),
                reason: "must be at least 32 characters",
            });
        }
        if self.server.production && self.auth.token_secret == DEV_TOKEN_SECRET {
            return Err(ConfigError::Invalid {
                key: "auth.token_secret",
                value: "<the development default>".into(),
                reason: "production mode refuses the development secret; set HEARTH_AUTH__TOKEN_SECRET",
            });
        }
        Ok(())
    }
}

/// Flattens figment's errors into one line, each naming the key and the value given for it.
fn describe_figment_error(fig: &Figment, err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            if key.is_empty() {
                return e.kind.to_string();
            }
            match fig.find_value(&key) {
                Ok(v) => {
                    let shown = v.as_str().map(str::to_string).unwrap_or_else(|| format!("{v:?}"));
                    format!("key `{key}` has value `{shown}`: {}", e.kind)
                }
                Err(_) => format!("key `{key}`: {}", e.kind),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::from_toml_overrides("").expect("defaults load");
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert!(!c.server.production);
    }

    #[test]
    fn bad_value_names_key_and_value() {
        let err = Config::from_toml_overrides("[server]\nlisten = \"nowhere\"").unwrap_err().to_string();
        assert!(err.contains("server.listen"), "{err}");
        assert!(err.contains("nowhere"), "{err}");
        let err = Config::from_toml_overrides("[limits]\nmax_room_size = 1").unwrap_err().to_string();
        assert!(err.contains("limits.max_room_size") && err.contains("`1`"), "{err}");
    }

    #[test]
    fn production_refuses_dev_secret() {
        let err = Config::from_toml_overrides("[server]\nproduction = true").unwrap_err().to_string();
        assert!(err.contains("auth.token_secret"), "{err}");
    }

    #[test]
    fn cluster_settings_are_checked() {
        assert!(!Config::from_toml_overrides("").unwrap().cluster.enabled(), "a node runs alone by default");
        let err = Config::from_toml_overrides("[cluster]\nredis_url = \"10.0.0.5:6379\"").unwrap_err().to_string();
        assert!(err.contains("cluster.redis_url"), "{err}");
        let err = Config::from_toml_overrides("[cluster]\nredis_url = \"redis://r\"\nheartbeat_ms = 1000\nnode_ttl_ms = 1500")
            .unwrap_err()
            .to_string();
        assert!(err.contains("node_ttl_ms"), "{err}");
        let err =
            Config::from_toml_overrides("[cluster]\nredis_url = \"redis://r\"\npublic_url = \"relay-1:443\"").unwrap_err().to_string();
        assert!(err.contains("cluster.public_url"), "{err}");
        assert!(Config::from_toml_overrides("[cluster]\nredis_url = \"redis://r\"").unwrap().cluster.enabled());
    }

    #[test]
    fn development_mode_only_on_loopback_with_the_development_secret() {
        let c = Config::from_toml_overrides("").unwrap();
        assert_eq!(c.mode().0, Mode::Development);
        assert!(c.dev_tokens());
        for listen in ["0.0.0.0:8080", "192.0.2.7:8080", "[::]:8080"] {
            let err = Config::from_toml_overrides(&format!("[server]\nlisten = \"{listen}\"")).unwrap_err().to_string();
            assert!(err.contains("server.production") && err.contains("auth.token_secret") && err.contains("127.0.0.1"), "{err}");
        }
        let err = Config::from_toml_overrides("[server]\ntrusted_proxies = [\"10.0.0.1\"]").unwrap_err().to_string();
        assert!(err.contains("server.production"), "{err}");
        // A real secret is a deployment: production, wherever it listens.
        let c = Config::from_toml_overrides(
            "[server]\nlisten = \"0.0.0.0:8080\"\n[auth]\ntoken_secret = \"a-real-secret-that-is-long-enough-0123\"",
        )
        .unwrap();
        assert_eq!(c.mode().0, Mode::Production);
        assert!(!c.dev_tokens());
        assert!(Config::from_toml_overrides("[server]\nlisten = \"[::1]:8080\"").unwrap().dev_tokens());
    }

    #[test]
    fn edge_settings_are_checked() {
        let err = Config::from_toml_overrides("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\nproduction = true\n[auth]\ntoken_secret = \"a-real-secret-that-is-long-enough-0123\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.trusted_proxies") && err.contains("10.0.0.0/33"), "{err}");
        let err = Config::from_toml_overrides("[server]\nallowed_origins = [\"https://a.example/path\"]").unwrap_err().to_string();
        assert!(err.contains("server.allowed_origins"), "{err}");
        let err = Config::from_toml_overrides("[server]\nmetrics_key = \"short\"").unwrap_err().to_string();
        assert!(err.contains("server.metrics_key"), "{err}");
        let err = Config::from_toml_overrides("[limits]\njoin_timeout_ms = 0").unwrap_err().to_string();
        assert!(err.contains("limits.join_timeout_ms"), "{err}");
        let c = Config::from_toml_overrides("").unwrap();
        assert_eq!((c.limits.max_connections_per_ip, c.limits.max_connections, c.limits.join_timeout_ms), (20, 2000, 10000));
        assert_eq!(c.server.header_read_timeout_ms, 10000);
    }

    #[test]
    fn turn_settings_are_checked() {
        let c = Config::from_toml_overrides("").unwrap();
        assert!(c.turn.urls.is_empty(), "no TURN server by default");
        let err = Config::from_toml_overrides("[turn]\nurls = [\"stun:turn.example.org\"]\nsecret = \"a-coturn-secret-long-enough-123\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("turn.urls") && err.contains("stun:turn.example.org"), "{err}");
        let err = Config::from_toml_overrides("[turn]\nurls = [\"turn:turn.example.org\"]\nsecret = \"short\"").unwrap_err().to_string();
        assert!(err.contains("turn.secret") && !err.contains("short"), "{err}");
        let err = Config::from_toml_overrides("[turn]\ncredential_ttl_secs = 5").unwrap_err().to_string();
        assert!(err.contains("turn.credential_ttl_secs"), "{err}");
        let c = Config::from_toml_overrides(
            "[turn]\nurls = [\"turn:turn.example.org:3478\", \"turns:turn.example.org:443?transport=tcp\"]\nsecret = \"a-coturn-secret-long-enough-123\"",
        )
        .unwrap();
        assert_eq!(c.turn.urls.len(), 2);
        assert!(!format!("{c:?}").contains("a-coturn-secret"), "the secret stays out of Debug");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml_overrides("[limits]\nmax_rooom_size = 3").unwrap_err().to_string();
        assert!(err.contains("max_rooom_size"), "{err}");
    }
}
