//! Join tokens and roles. A token (HS256 JWT signed with `auth.token_secret`) is the only way
//! into a room: it names the room, the role, the display name and the participant id, and it
//! expires. A family guest's token also names its `sponsor` (the participant whose relative
//! they are) and lives at most [`GUEST_MAX_TTL`]. This module verifies and mints tokens; it
//! knows nothing of sockets or rooms' state.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use crate::vocab::Role;
use crate::vocab::{valid_participant_id, validate_display_name, InvalidName, ParticipantId, RoomId};

/// Clock skew tolerated between the minting backend and this server.
const LEEWAY_SECS: u64 = 5;
/// Longest lifetime a token may be minted with.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest lifetime of a family guest's token: a family session is part of one meeting, and a
/// link forwarded later must not open the group to someone outside it.
pub const GUEST_MAX_TTL: Duration = Duration::from_secs(4 * 3600);

/// The signed content of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Participant id.
    pub sub: String,
    pub room: String,
    pub role: Role,
    pub name: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    pub iat: u64,
    /// Family guests only: the participant id of the member who invited them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor: Option<String>,
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub participant: ParticipantId,
    pub room: RoomId,
    pub role: Role,
    pub name: String,
    pub expires_at: u64,
    /// Family guests: whose guest they are (always set for them, never for anyone else).
    pub sponsor: Option<ParticipantId>,
    /// When the token was minted (`iat`): a link minted before its room's last session ended
    /// was for that session.
    pub issued_at: u64,
}

/// The signed content of an invite: a therapist's link for someone who types their own name
/// on the link page. It is not a join token (no role, no name: `verify` refuses it); the link
/// page trades it, with the name, for a participant's join token ([`TokenIssuer::accept_invite`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteClaims {
    /// The participant id the join token will carry: the same link gives the same seat.
    pub sub: String,
    pub room: String,
    pub exp: u64,
    pub iat: u64,
    /// Always `true`: what makes these claims an invite.
    pub invite: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a join token is required")]
    Missing,
    #[error("the join token has expired; ask for a new link")]
    Expired,
    #[error("the join token is not valid (tampered, malformed or signed with another key)")]
    Invalid,
    #[error("the join token is for another room")]
    WrongRoom,
    #[error("cannot mint token: {0}")]
    Mint(String),
    /// The display name (given to mint, or inside a token minted elsewhere) is empty, too long
    /// or holds control or text-direction characters.
    #[error("{0}")]
    InvalidName(InvalidName),
}

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuer(<secret>)")
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl TokenIssuer {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { encoding: EncodingKey::from_secret(secret.as_bytes()), decoding: DecodingKey::from_secret(secret.as_bytes()), validation }
    }

    /// Mints a token. `participant` defaults to a fresh random id.
    pub fn mint(
        &self,
        room: &RoomId,
        role: Role,
        name: &str,
        participant: Option<&str>,
        ttl: Duration,
    ) -> Result<(String, Claims), AuthError> {
        self.mint_with_sponsor(room, role, name, participant, ttl, None)
    }

    /// Mints a token; a family guest's names its `sponsor` (required for them, refused for
    /// anyone else) and lives at most [`GUEST_MAX_TTL`].
    pub fn mint_with_sponsor(
        &self,
        room: &RoomId,
        role: Role,
        name: &str,
        participant: Option<&str>,
        ttl: Duration,
        sponsor: Option<&str>,
    ) -> Result<(String, Claims), AuthError> {
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(AuthError::Mint(format!("ttl must be between 1 s and {} days", MAX_TTL.as_secs() / 86400)));
        }
        let sponsor = match (role, sponsor) {
            (Role::FamilyGuest, None) => {
                return Err(AuthError::Mint("a family guest's token needs a sponsor (their participant's id)".into()));
            }
            (Role::FamilyGuest, Some(_)) if ttl > GUEST_MAX_TTL => {
                return Err(AuthError::Mint(format!("a family guest's token lives at most {} hours", GUEST_MAX_TTL.as_secs() / 3600)));
            }
            (Role::FamilyGuest, Some(s)) if valid_participant_id(s) && Some(s) != participant => Some(s.to_string()),
            (Role::FamilyGuest, Some(_)) => return Err(AuthError::Mint("sponsor must be another participant's id".into())),
            (_, Some(_)) => return Err(AuthError::Mint("only a family guest's token names a sponsor".into())),
            (_, None) => None,
        };
        let name = validate_display_name(name).map_err(AuthError::InvalidName)?;
        let sub = match participant {
            Some(id) if valid_participant_id(id) => id.to_string(),
            Some(_) => return Err(AuthError::Mint("participant id must be 1-64 characters of letters, digits, '-', '_' or '.'".into())),
            None => ParticipantId::random().to_string(),
        };
        let iat = now_secs();
        let claims = Claims { sub, room: room.to_string(), role, name, exp: iat + ttl.as_secs(), iat, sponsor };
        Ok((self.sign(&claims)?, claims))
    }

    /// Mints an invite to `room` for a participant who will give their name on the link page.
    pub fn mint_invite(&self, room: &RoomId, ttl: Duration) -> Result<(String, InviteClaims), AuthError> {
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(AuthError::Mint(format!("ttl must be between 1 s and {} days", MAX_TTL.as_secs() / 86400)));
        }
        let iat = now_secs();
        let claims =
            InviteClaims { sub: ParticipantId::random().to_string(), room: room.to_string(), exp: iat + ttl.as_secs(), iat, invite: true };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| AuthError::Mint(e.to_string()))?;
        Ok((token, claims))
    }

    /// Trades a valid invite and the name its holder typed for a participant's join token that
    /// expires with the invite. The token keeps the invite's `iat`: it belongs to the session
    /// the invite was made for (see `Grant::issued_at`).
    pub fn accept_invite(&self, invite: &str, name: &str) -> Result<(String, Claims), AuthError> {
        if invite.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut validation = self.validation.clone();
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<InviteClaims>(invite, &self.decoding, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        let c = data.claims;
        if !c.invite || !valid_participant_id(&c.sub) {
            return Err(AuthError::Invalid);
        }
        let name = validate_display_name(name).map_err(AuthError::InvalidName)?;
        let claims = Claims { sub: c.sub, room: c.room, role: Role::Participant, name, exp: c.exp, iat: c.iat, sponsor: None };
        Ok((self.sign(&claims)?, claims))
    }

    /// Signs arbitrary claims (tests use it to make expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| AuthError::Mint(e.to_string()))
    }

    /// Verifies signature, expiry and room.
    pub fn verify(&self, token: &str, room: &RoomId) -> Result<Grant, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        let c = data.claims;
        if c.room != room.as_str() {
            return Err(AuthError::WrongRoom);
        }
        if !valid_participant_id(&c.sub) {
            return Err(AuthError::Invalid);
        }
        // Signed by a backend that let through a name we would not mint: refused with its own
        // code, so the operator can tell it from a forged token.
        let name = validate_display_name(&c.name).map_err(AuthError::InvalidName)?;
        // A guest's token from another backend is held to the bounds of one minted here: a
        // sponsor who is someone else, and an expiry within the guest's limit.
        let sponsor = match (c.role, c.sponsor) {
            (Role::FamilyGuest, Some(s)) if valid_participant_id(&s) && s != c.sub => Some(ParticipantId::from_trusted(s)),
            (Role::FamilyGuest, _) | (_, Some(_)) => return Err(AuthError::Invalid),
            (_, None) => None,
        };
        if c.role == Role::FamilyGuest && c.exp > now_secs() + GUEST_MAX_TTL.as_secs() + LEEWAY_SECS {
            return Err(AuthError::Invalid);
        }
        Ok(Grant {
            participant: ParticipantId::from_trusted(c.sub),
            room: room.clone(),
            role: c.role,
            name,
            expires_at: c.exp,
            issued_at: c.iat,
            sponsor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomId {
        RoomId::new(s).unwrap()
    }

    #[test]
    fn mint_then_verify() {
        let t = TokenIssuer::new("a-test-secret-that-is-long-enough-1234");
        let (token, claims) = t.mint(&room("g1"), Role::Therapist, "Dr. Lee", Some("t-1"), Duration::from_secs(60)).unwrap();
        let g = t.verify(&token, &room("g1")).unwrap();
        assert_eq!((g.role, g.name.as_str(), g.participant.as_str()), (Role::Therapist, "Dr. Lee", "t-1"));
        assert_eq!(g.expires_at, claims.exp);
    }

    #[test]
    fn refusals_are_distinct() {
        let t = TokenIssuer::new("a-test-secret-that-is-long-enough-1234");
        let (token, mut claims) = t.mint(&room("g1"), Role::Participant, "Sam", None, Duration::from_secs(60)).unwrap();
        assert_eq!(t.verify("", &room("g1")), Err(AuthError::Missing));
        assert_eq!(t.verify(&token, &room("g2")), Err(AuthError::WrongRoom));
        let other = TokenIssuer::new("another-secret-entirely-different-5678");
        assert_eq!(other.verify(&token, &room("g1")), Err(AuthError::Invalid));
        // Flip the role in the payload without re-signing.
        claims.role = Role::Therapist;
        let forged_payload = t.sign(&claims).unwrap().split('.').nth(1).unwrap().to_string();
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(t.verify(&parts.join("."), &room("g1")), Err(AuthError::Invalid));
        claims.exp = now_secs() - 3600;
        claims.iat = claims.exp - 60;
        assert_eq!(t.verify(&t.sign(&claims).unwrap(), &room("g1")), Err(AuthError::Expired));
        assert_eq!(t.verify("garbage", &room("g1")), Err(AuthError::Invalid));
    }

    #[test]
    fn an_invite_is_no_join_token_and_a_join_token_no_invite() {
        let t = TokenIssuer::new("a-test-secret-that-is-long-enough-1234");
        let (invite, ic) = t.mint_invite(&room("g1"), Duration::from_secs(60)).unwrap();
        assert_eq!(t.verify(&invite, &room("g1")), Err(AuthError::Invalid));
        let (token, claims) = t.accept_invite(&invite, " Sam ").unwrap();
        let g = t.verify(&token, &room("g1")).unwrap();
        assert_eq!((g.role, g.name.as_str(), g.participant.as_str(), g.issued_at), (Role::Participant, "Sam", ic.sub.as_str(), ic.iat));
        assert_eq!(claims.exp, ic.exp);
        assert_eq!(t.accept_invite(&token, "Sam").unwrap_err(), AuthError::Invalid);
        assert_eq!(t.accept_invite(&invite, "").unwrap_err(), AuthError::InvalidName(InvalidName::Empty));
        let other = TokenIssuer::new("another-secret-entirely-different-5678");
        assert_eq!(other.accept_invite(&invite, "Sam").unwrap_err(), AuthError::Invalid);
        let old = InviteClaims { exp: now_secs() - 3600, iat: now_secs() - 7200, ..ic };
        let stale = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &old, &t.encoding).unwrap();
        assert_eq!(t.accept_invite(&stale, "Sam").unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn mint_checks_its_input() {
        let t = TokenIssuer::new("a-test-secret-that-is-long-enough-1234");
        assert!(t.mint(&room("g"), Role::Participant, "", None, Duration::from_secs(60)).is_err());
        let bidi = t.mint(&room("g"), Role::Participant, "Ana\u{202E}", None, Duration::from_secs(60));
        assert_eq!(bidi.unwrap_err(), AuthError::InvalidName(InvalidName::Forbidden));
        assert!(t.mint(&room("g"), Role::Participant, "a", Some("bad id!"), Duration::from_secs(60)).is_err());
        assert!(t.mint(&room("g"), Role::Participant, "a", None, Duration::ZERO).is_err());
    }

    #[test]
    fn a_family_guest_names_a_sponsor_and_expires_soon() {
        let t = TokenIssuer::new("a-test-secret-that-is-long-enough-1234");
        let hour = Duration::from_secs(3600);
        assert!(t.mint(&room("g"), Role::FamilyGuest, "Kim", None, hour).is_err(), "no sponsor");
        assert!(t.mint_with_sponsor(&room("g"), Role::FamilyGuest, "Kim", None, GUEST_MAX_TTL + hour, Some("p-1")).is_err(), "too long");
        assert!(t.mint_with_sponsor(&room("g"), Role::Participant, "Kim", None, hour, Some("p-1")).is_err(), "sponsor on a member");
        assert!(t.mint_with_sponsor(&room("g"), Role::FamilyGuest, "Kim", Some("p-1"), hour, Some("p-1")).is_err(), "their own sponsor");
        let (token, mut claims) = t.mint_with_sponsor(&room("g"), Role::FamilyGuest, "Kim", None, hour, Some("p-1")).unwrap();
        let g = t.verify(&token, &room("g")).unwrap();
        assert_eq!((g.role, g.sponsor.as_ref().map(|s| s.as_str())), (Role::FamilyGuest, Some("p-1")));
        // Signed elsewhere with a week's lifetime, or without a sponsor: refused.
        claims.exp = now_secs() + 7 * 24 * 3600;
        assert_eq!(t.verify(&t.sign(&claims).unwrap(), &room("g")), Err(AuthError::Invalid));
        claims.exp = now_secs() + 60;
        claims.sponsor = None;
        assert_eq!(t.verify(&t.sign(&claims).unwrap(), &room("g")), Err(AuthError::Invalid));
        // A sponsor on anyone else's token: refused.
        claims.role = Role::CoFacilitator;
        claims.sponsor = Some("p-1".into());
        assert_eq!(t.verify(&t.sign(&claims).unwrap(), &room("g")), Err(AuthError::Invalid));
    }
}
