//! Hearth's vocabulary: the ids and domain types every layer speaks of (rooms, participants,
//! roles, media kinds, polls, celebrations, chat), and the rules for the text people choose
//! (display names). The ground floor: this module imports nothing of Hearth's, and everything
//! else may import it. It holds data and validation only, no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a string id newtype: `as_str`, `Display`, serde as a plain string, and
/// `random()` with the id's prefix (16 random hex digits after it, unguessable).
macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, prefix = $prefix:literal) => {
        string_id!($(#[$meta])* $name);
        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(format!(concat!($prefix, "-{:016x}"), rand::random::<u64>()))
            }
        }
    };
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id from a trusted source (a verified token, the store) or from a
            /// client, where it is then only looked up, never trusted.
            pub fn from_raw(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A participant id, unique per server run. Also the media stream id of everything the
    /// participant publishes, which is how clients attribute remote tracks.
    ParticipantId,
    prefix = "p"
);

impl ParticipantId {
    /// Wraps an id that came from a trusted source (a verified token, the store).
    pub fn from_trusted(id: impl Into<String>) -> Self {
        Self::from_raw(id)
    }
}

string_id!(
    /// A poll's id: `poll-` and 16 random hex digits, unique across rooms and restarts.
    PollId,
    prefix = "poll"
);
string_id!(
    /// An option's id within its poll: `o1` to `o10`, in the order the therapist wrote them.
    PollOptionId
);

impl PollOptionId {
    /// The id of the option at `index` (0-based).
    pub fn nth(index: usize) -> Self {
        Self(format!("o{}", index + 1))
    }
}

string_id!(
    /// A celebration's id: `c-` and 16 random hex digits.
    CelebrationId,
    prefix = "c"
);
string_id!(
    /// A shared milestone waiting for a therapist: `mp-` and 16 random hex digits.
    ProposalId,
    prefix = "mp"
);
string_id!(
    /// A chat message's id: `m-` and 16 random hex digits.
    ChatMessageId,
    prefix = "m"
);
string_id!(
    /// A support request's id: `sr-` and 16 random hex digits.
    SupportRequestId,
    prefix = "sr"
);

string_id!(
    /// A session's id: `s-` and 16 random hex digits. A session runs from the first admission
    /// into an empty room to its end; attendance and check-ins are filed under it.
    SessionId,
    prefix = "s"
);
string_id!(
    /// A check-in or check-out round's id: `ci-` and 16 random hex digits.
    CheckInId,
    prefix = "ci"
);

/// A room id: 1 to 64 characters of `A-Z a-z 0-9 - _ .`, so it is safe in URLs, logs and keys.
/// Unlike the other ids it comes from clients and is validated on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(String);

impl RoomId {
    pub const MAX_LEN: usize = 64;

    pub fn new(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        if valid_id_text(&id) {
            Ok(Self(id))
        } else {
            Err(InvalidId("room id must be 1-64 characters of letters, digits, '-', '_' or '.'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<RoomId> for String {
    fn from(id: RoomId) -> String {
        id.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(&'static str);

/// 1 to 64 characters of `A-Z a-z 0-9 - _ .`: the form of room ids, and of participant ids
/// that come from outside (a token).
fn valid_id_text(id: &str) -> bool {
    !id.is_empty() && id.len() <= RoomId::MAX_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The form of a participant id in a token (and anywhere else one comes from outside).
pub fn valid_participant_id(id: &str) -> bool {
    valid_id_text(id)
}

/// Longest display name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 64;

/// Characters no name or label shown to other people may hold: C0 and C1 controls, and the
/// bidirectional marks, embeddings, overrides and isolates (U+200E/F, U+202A–U+202E,
/// U+2066–U+2069), which can make a name read as something else on everyone's screen
/// ("Trojan Source") or reorder the text around it.
pub fn is_forbidden_in_names(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Why a display name was refused (the message is for the person who chose it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("display name must not be empty")]
    Empty,
    #[error("display name must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("display name must not contain control or text-direction characters")]
    Forbidden,
}

/// Display names are shown to other people: trimmed, 1 to 64 characters, no control or
/// text-direction characters.
pub fn validate_display_name(name: &str) -> Result<String, InvalidName> {
    let name = name.trim();
    if name.is_empty() {
        return Err(InvalidName::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(InvalidName::TooLong);
    }
    if name.chars().any(is_forbidden_in_names) {
        return Err(InvalidName::Forbidden);
    }
    Ok(name.to_string())
}

/// Who someone is in a room. What each role may send is one table,
/// `room::permissions`; these methods say what the roles are, not what they may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Runs the session: admits, mutes, removes, locks, ends, breakouts, polls, celebrations,
    /// family spaces.
    Therapist,
    /// Runs the group beside a therapist (admits, asks to mute, the floor and rounds, breakouts,
    /// support requests and private rooms) but does not remove, ban, lock, hard-mute, end the
    /// session or see what only a clinician sees.
    CoFacilitator,
    /// A participant employed as a peer-support specialist: takes part like anyone, moderates
    /// nothing, and receives support requests when a therapist routes them there.
    PeerSupport,
    /// Joins through the waiting room, publishes and receives media.
    Participant,
    /// Receives media only; publishes nothing and moderates nothing.
    Observer,
    /// A relative of a participant (the token's `sponsor`), for a family space only: never in
    /// the main room or a breakout, never meets the rest of the group.
    FamilyGuest,
}

impl Role {
    /// Every role, in the order tables print them.
    pub const ALL: [Role; 6] =
        [Role::Therapist, Role::CoFacilitator, Role::PeerSupport, Role::Participant, Role::Observer, Role::FamilyGuest];

    /// The role's place in [`Role::ALL`] (per-role counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The licensed clinician: the room's irreversible decisions and what only they may see.
    pub fn is_moderator(self) -> bool {
        self == Role::Therapist
    }

    /// Staff who run the group (a therapist or a co-facilitator): they enter without waiting,
    /// see the waiting list and the breakout plan, and receive help and support requests.
    pub fn facilitates(self) -> bool {
        matches!(self, Role::Therapist | Role::CoFacilitator)
    }

    /// A member of the group who takes part: votes, takes turns, shares and is celebrated.
    pub fn takes_part(self) -> bool {
        matches!(self, Role::Participant | Role::PeerSupport)
    }

    pub fn publishes(self) -> bool {
        self != Role::Observer
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Therapist => "therapist",
            Role::CoFacilitator => "coFacilitator",
            Role::PeerSupport => "peerSupport",
            Role::Participant => "participant",
            Role::Observer => "observer",
            Role::FamilyGuest => "familyGuest",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}` (therapist, coFacilitator, peerSupport, participant, observer or familyGuest)"))
    }
}

/// Which kind of media a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MediaKind {
    Audio,
    Video,
}

/// A room's end-to-end encryption policy (see docs/threat-model.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum E2eeMode {
    /// Media is encrypted hop by hop only (DTLS-SRTP): the server could see and hear it.
    #[default]
    Off,
    /// Clients encrypt frames when they can; one that cannot is shown as not encrypted.
    Preferred,
    /// Every client encrypts or does not take part: the waiting room stays on, only VP8 and Opus
    /// are forwarded, and clients never play frames they could not decrypt.
    Required,
}

/// What a published track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum TrackSource {
    #[default]
    Camera,
    Microphone,
    Screen,
}

/// A simulcast layer: quarter, half and full resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SimulcastLayer {
    Low,
    Medium,
    High,
}

/// Why a subscriber's video is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PauseReason {
    /// The subscriber asked for none (`maxHeight: 0`, a hidden tile).
    Preference,
    /// The subscriber's connection cannot carry video now; audio goes on.
    Bandwidth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MilestoneKind {
    /// `value` days sober (required).
    DaysSober,
    /// `value` sessions attended (required).
    SessionsAttended,
    /// Completed the programme (`value` optional, e.g. a phase).
    ProgramCompletion,
    /// Anything else; `label` (required) says what.
    Custom,
}

/// ICE server handed to clients so they can reach the relay through NATs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

// ---- network values (configuration names them; the edge applies them) ----

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `::1/128`, or a bare IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `None` for anything that is not an IP or a CIDR with a prefix the family allows.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip.parse::<std::net::IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<std::net::IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr: ip, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `scheme://host[:port]` in lower case, default ports dropped, as browsers send `Origin`;
/// `None` for anything else (paths, other schemes, `null`).
pub fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = text.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let host = rest.strip_suffix(default_port).unwrap_or(rest);
    Some(format!("{scheme}://{host}"))
}

/// The websocket URL clients are sent to for a node's registered base URL, or `None` when the
/// base URL is not one to send anyone to. Anyone who can write to Redis can register a node, so
/// the URL is checked like input: `http`/`https` only (to `ws`/`wss`), a host, no user or
/// password, no query or fragment, and, when `allowed` is not empty, under one of those base
/// URLs (same scheme, host and port; path below theirs).
pub fn redirect_url(base: &str, allowed: &[String]) -> Option<String> {
    let parsed = url::Url::parse(base.trim()).ok()?;
    let ws = match parsed.scheme() {
        "https" => "wss",
        "http" => "ws",
        _ => return None,
    };
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() || parsed.fragment().is_some() {
        return None;
    }
    parsed.host_str().filter(|h| !h.is_empty())?;
    if !allowed.is_empty() && !allowed.iter().any(|a| under(&parsed, a)) {
        return None;
    }
    let mut out = parsed.clone();
    out.set_scheme(ws).ok()?;
    let path = format!("{}/ws", parsed.path().trim_end_matches('/'));
    out.set_path(&path);
    Some(out.to_string())
}

/// Whether `url` is `prefix` or below it: the same origin and a path under the prefix's.
fn under(url: &url::Url, prefix: &str) -> bool {
    let Ok(p) = url::Url::parse(prefix.trim()) else { return false };
    if p.scheme() != url.scheme() || p.host_str() != url.host_str() || p.port_or_known_default() != url.port_or_known_default() {
        return false;
    }
    let base = p.path().trim_end_matches('/');
    let path = url.path();
    path == base || path.trim_end_matches('/') == base || path.starts_with(&format!("{base}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_validated() {
        assert!(RoomId::new("group-7_a.b").is_ok());
        assert!(RoomId::new("").is_err());
        assert!(RoomId::new("a b").is_err());
        assert!(RoomId::new("x".repeat(65)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_display_name("  Ana ").as_deref(), Ok("Ana"));
        assert!(validate_display_name("   ").is_err());
        assert!(validate_display_name("a\u{7}b").is_err());
        assert!(validate_display_name(&"é".repeat(65)).is_err());
    }

    #[test]
    fn names_refuse_direction_overrides_and_controls() {
        for bad in ["Ana\u{202E}gnp.exe", "\u{2066}Ana", "A\u{200F}", "A\u{85}B", "A\u{1b}[31mB", "A\nB", "A\u{9B}B"] {
            assert_eq!(validate_display_name(bad), Err(InvalidName::Forbidden), "{bad:?}");
        }
        assert_eq!(validate_display_name("Zoë Ørsted-Nakamura 李").as_deref(), Ok("Zoë Ørsted-Nakamura 李"));
    }

    #[test]
    fn random_ids_are_unique_and_prefixed() {
        assert_ne!(ParticipantId::random(), ParticipantId::random());
        assert!(PollId::random().as_str().starts_with("poll-"));
        assert!(SupportRequestId::random().as_str().starts_with("sr-"));
        assert_eq!(PollOptionId::nth(0).as_str(), "o1");
    }
}
