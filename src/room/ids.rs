//! Typed identities. Room ids come from clients and are validated on the way in; participant
//! ids are minted by the server and never chosen by a client.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A room id: 1 to 64 characters of `A-Z a-z 0-9 - _ .`, so it is safe in URLs, logs and keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(String);

impl RoomId {
    pub const MAX_LEN: usize = 64;

    pub fn new(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        let ok =
            !id.is_empty() && id.len() <= Self::MAX_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
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

/// A participant id, unique per server run. Also the media stream id of everything the
/// participant publishes, which is how clients attribute remote tracks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(String);

impl ParticipantId {
    /// A fresh random id (`p-` and 16 hex digits): unguessable, so knowing one grants nothing.
    pub fn random() -> Self {
        Self(format!("p-{:016x}", rand::random::<u64>()))
    }

    /// Wraps an id that came from a trusted source (a verified token, the store).
    pub fn from_trusted(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(&'static str);

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

/// The form of a participant id in a token (and anywhere else one comes from outside):
/// 1 to 64 characters of `A-Z a-z 0-9 - _ .`.
pub fn valid_participant_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
    fn participant_ids_are_unique() {
        assert_ne!(ParticipantId::random(), ParticipantId::random());
    }
}
