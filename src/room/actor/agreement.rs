//! Ground rules at the door: a room may carry an agreement (confidentiality, no recording, a
//! private place) that everyone who waits must accept before a therapist can admit them, and
//! may ask where the person is right now, for the therapist's safety planning.
//!
//! The agreement's version is a hash of its text, so a changed text is a new version and asks
//! everyone again; an acceptance names the version it accepted. Who accepted which version is
//! in the room snapshot and the audit log (ids and the hash, never the text).
//!
//! The location is the most sensitive thing Hearth holds: it lives in this type's memory only,
//! goes to therapists only, and is never serialised, stored, logged or put in the snapshot (it
//! is gone when the room task ends, or when the person leaves). Owns the text, the acceptances
//! and the locations; who is waiting and who is admitted is the room's.

use std::collections::{BTreeMap, HashMap};

use crate::room::ParticipantId;
use crate::signal::protocol::{AgreementStatus, ServerMessage};

/// Longest agreement text, in characters.
pub(super) const MAX_TEXT_CHARS: usize = 4000;
/// Longest answer to "where are you right now?", in characters.
pub(super) const MAX_LOCATION_CHARS: usize = 200;

#[derive(Debug, Default)]
pub(super) struct Agreement {
    text: Option<String>,
    version: Option<String>,
    ask_location: bool,
    /// participant -> the version they accepted.
    accepted: BTreeMap<ParticipantId, String>,
    /// Memory only (see the module doc).
    locations: HashMap<ParticipantId, String>,
}

/// What the room snapshot keeps: the text and who accepted which version (no location).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AgreementSnap {
    pub text: Option<String>,
    pub ask_location: bool,
    pub accepted: BTreeMap<ParticipantId, String>,
}

/// The version of a text: the first 16 hex digits of its SHA-256.
pub(super) fn version_of(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_text(text: &str, max: usize) -> bool {
    let n = text.chars().count();
    n > 0 && n <= max && !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
}

impl Agreement {
    /// Sets (or with `None` removes) the agreement. `Err` with a message for people when the
    /// text is empty or too long; nothing changes then.
    pub(super) fn set(&mut self, text: Option<String>, ask_location: bool) -> Result<(), String> {
        let text = text.map(|t| t.trim().to_string());
        if let Some(t) = &text {
            if !valid_text(t, MAX_TEXT_CHARS) {
                return Err(format!("the agreement must be 1 to {MAX_TEXT_CHARS} characters of text"));
            }
        }
        self.version = text.as_deref().map(version_of);
        self.text = text;
        self.ask_location = ask_location;
        Ok(())
    }

    pub(super) fn is_set(&self) -> bool {
        self.text.is_some()
    }

    /// Whether `id` still has to accept before being admitted.
    pub(super) fn pending(&self, id: &ParticipantId) -> bool {
        match &self.version {
            Some(v) => self.accepted.get(id) != Some(v),
            None => false,
        }
    }

    /// `id` accepts `version`. `Err((changed, message))`: `changed` when the version is not the
    /// current one (the text changed), otherwise the location was refused.
    pub(super) fn accept(&mut self, id: &ParticipantId, version: &str, location: Option<String>) -> Result<(), (bool, String)> {
        if self.version.as_deref() != Some(version) {
            return Err((true, "the agreement changed; read the new one and accept it again".into()));
        }
        let location = location.map(|l| l.trim().to_string()).filter(|l| !l.is_empty());
        if let Some(l) = &location {
            if !valid_text(l, MAX_LOCATION_CHARS) || l.contains('\n') {
                return Err((false, format!("say where you are in at most {MAX_LOCATION_CHARS} characters, on one line")));
            }
        }
        if self.ask_location && location.is_none() {
            return Err((false, "say where you are right now (for example \"at home, in my room\")".into()));
        }
        self.accepted.insert(id.clone(), version.to_string());
        if let Some(l) = location {
            self.locations.insert(id.clone(), l);
        }
        Ok(())
    }

    /// `id` left the session: their location goes (their acceptance stays for a reconnect).
    pub(super) fn left(&mut self, id: &ParticipantId) {
        self.locations.remove(id);
    }

    /// The message `id` is shown.
    pub(super) fn message_for(&self, id: &ParticipantId) -> ServerMessage {
        ServerMessage::Agreement {
            text: self.text.clone(),
            version: self.version.clone(),
            ask_location: self.ask_location,
            accepted: self.is_set() && !self.pending(id),
        }
    }

    /// For therapists: where each of `people` stands.
    pub(super) fn statuses(&self, people: &[ParticipantId]) -> Vec<AgreementStatus> {
        people
            .iter()
            .map(|p| AgreementStatus { participant_id: p.clone(), agreed: !self.pending(p), location: self.locations.get(p).cloned() })
            .collect()
    }

    pub(super) fn snapshot(&self) -> AgreementSnap {
        AgreementSnap { text: self.text.clone(), ask_location: self.ask_location, accepted: self.accepted.clone() }
    }

    /// A saved agreement is read like client input (see `snapshot.rs`).
    pub(super) fn valid_snapshot(snap: &AgreementSnap, max_entries: usize) -> bool {
        snap.text.as_deref().is_none_or(|t| valid_text(t, MAX_TEXT_CHARS) && t.trim() == t)
            && snap.accepted.len() <= max_entries
            && snap
                .accepted
                .iter()
                .all(|(id, v)| crate::room::valid_participant_id(id.as_str()) && v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    pub(super) fn restore(snap: AgreementSnap) -> Self {
        let version = snap.text.as_deref().map(version_of);
        Self { text: snap.text, version, ask_location: snap.ask_location, accepted: snap.accepted, locations: HashMap::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ParticipantId {
        ParticipantId::from_trusted(s)
    }

    #[test]
    fn a_changed_text_asks_again_and_the_location_stays_out_of_the_snapshot() {
        let mut a = Agreement::default();
        assert!(!a.pending(&p("x")), "no agreement, nothing pending");
        a.set(Some("Keep what you hear here.".into()), true).expect("valid");
        let v1 = version_of("Keep what you hear here.");
        assert!(a.pending(&p("x")));
        assert!(a.accept(&p("x"), &v1, None).is_err(), "the location is asked");
        a.accept(&p("x"), &v1, Some("at home".into())).expect("accepted");
        assert!(!a.pending(&p("x")));
        let snap = serde_json::to_string(&a.snapshot()).expect("serialises");
        assert!(!snap.contains("at home"), "{snap}");
        a.set(Some("Keep what you hear here. No recording.".into()), true).expect("valid");
        assert!(a.pending(&p("x")), "a changed text asks again");
        assert_eq!(
            a.accept(&p("x"), &v1, Some("home".into())),
            Err((true, "the agreement changed; read the new one and accept it again".into()))
        );
        assert!(a.set(Some(" ".into()), false).is_err());
        assert_eq!(a.statuses(&[p("x")])[0].location.as_deref(), Some("at home"));
        a.left(&p("x"));
        assert_eq!(a.statuses(&[p("x")])[0].location, None);
    }
}
