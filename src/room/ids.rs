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
        let ok = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
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

/// Display names are shown to other people: trimmed, 1 to 64 characters, no control characters.
pub fn validate_display_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("display name must not be empty");
    }
    if name.chars().count() > 64 {
        return Err("display name must be at most 64 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("display name must not contain control characters");
    }
    Ok(name.to_string())
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
    fn participant_ids_are_unique() {
        assert_ne!(ParticipantId::random(), ParticipantId::random());
    }
}
