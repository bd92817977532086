//! TURN credentials for clients behind networks that block UDP or everything but 443. Hearth
//! does not relay itself: an existing TURN server (coturn, `use-auth-secret`) shares a secret
//! with Hearth, and this module mints each admitted participant a short-lived username and
//! password in the TURN REST API scheme that coturn checks without asking Hearth:
//! username `<expiry unix seconds>:<participant id>`, password
//! `base64(HMAC-SHA1(secret, username))`. Once the expiry passes, coturn refuses the pair.
//!
//! It mints; it does not decide who gets credentials (the room hands them out on admission
//! only) and knows nothing of sockets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::hmac;

use crate::vocab::{IceServer, ParticipantId};

/// Mints TURN credentials for the configured TURN URLs.
#[derive(Clone)]
pub struct TurnIssuer {
    urls: Vec<String>,
    key: hmac::Key,
    ttl: Duration,
}

impl std::fmt::Debug for TurnIssuer {
    // The shared secret never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnIssuer").field("urls", &self.urls).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl TurnIssuer {
    /// `None` when no TURN URL is configured: clients then get no TURN server.
    pub fn new(urls: &[String], secret: &str, ttl: Duration) -> Option<Self> {
        if urls.is_empty() {
            return None;
        }
        // coturn's REST API scheme is HMAC-SHA1 by definition; SHA-1's weakness against
        // collisions does not reach an HMAC.
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        Some(Self { urls: urls.to_vec(), key, ttl })
    }

    /// Credentials for `participant` that expire `ttl` after `now`.
    pub fn mint(&self, participant: &ParticipantId, now: SystemTime) -> IceServer {
        let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default().saturating_add(self.ttl).as_secs();
        let username = format!("{expiry}:{participant}");
        IceServer { urls: self.urls.clone(), username: Some(username.clone()), credential: Some(self.password(&username)) }
    }

    /// The password coturn expects for `username`.
    pub fn password(&self, username: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(hmac::sign(&self.key, username.as_bytes()).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TurnIssuer {
        TurnIssuer::new(&["turn:turn.example.org:3478?transport=udp".into()], "north-wind-secret", Duration::from_secs(600))
            .expect("a URL is configured")
    }

    #[test]
    fn username_is_expiry_and_participant_and_password_is_the_hmac() {
        let id = ParticipantId::from_trusted("p-sam");
        let server = issuer().mint(&id, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(server.username.as_deref(), Some("1700000600:p-sam"));
        // printf '1700000600:p-sam' | openssl dgst -sha1 -hmac north-wind-secret -binary | base64
        assert_eq!(server.credential.as_deref(), Some("9YJ961FwHhRT2ZoMVpYlK3tOR0w="));
        assert_eq!(server.urls, vec!["turn:turn.example.org:3478?transport=udp".to_string()]);
    }

    #[test]
    fn no_urls_no_issuer_and_no_secret_in_debug() {
        assert!(TurnIssuer::new(&[], "secret", Duration::from_secs(60)).is_none());
        assert!(!format!("{:?}", issuer()).contains("north-wind"));
    }
}
