//! Support requests as state: `open → acknowledged → resolved` with an outcome code, so a call
//! for help cannot get lost. The pure bookkeeping: the room asks it what to do and does the
//! sending. It never decides who is told; it only says where each request stands.
//!
//! A request stays open until a therapist acknowledges it, whoever is connected: the room
//! re-sends it to every therapist who joins or reconnects, and tells the requester the truth
//! about it ([`SupportDelivery`]). A participant has at most one request not yet resolved;
//! asking again re-alerts it. What is stored is ids, times and the outcome code
//! ([`SupportRecord`]), never anything anyone said. Part of the room's snapshot, so requests
//! survive a move between relay nodes.

use serde::{Deserialize, Serialize};

use crate::signal::protocol::{ErrorCode, SupportDelivery, SupportOutcome, SupportState};
use crate::store::SupportRecord;
use crate::vocab::{ParticipantId, RoomId, SessionId, SupportRequestId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub id: SupportRequestId,
    pub participant: ParticipantId,
    pub opened_ms: i64,
    pub acknowledged: Option<(ParticipantId, i64)>,
    pub resolved: Option<(ParticipantId, i64, SupportOutcome)>,
    /// The requester left the session for good while it was open.
    pub requester_left: bool,
}

impl Request {
    pub fn state(&self) -> SupportState {
        match (&self.acknowledged, &self.resolved) {
            (_, Some(_)) => SupportState::Resolved,
            (Some(_), None) => SupportState::Acknowledged,
            (None, None) => SupportState::Open,
        }
    }

    /// What the requester is told: the truth about who has seen it.
    pub fn delivery(&self, therapist_connected: bool) -> SupportDelivery {
        match self.state() {
            SupportState::Resolved => SupportDelivery::Resolved,
            SupportState::Acknowledged => SupportDelivery::Seen,
            SupportState::Open if therapist_connected => SupportDelivery::Alerted,
            SupportState::Open => SupportDelivery::NoTherapist,
        }
    }

    pub fn record(&self, room: &RoomId, session: Option<&SessionId>) -> SupportRecord {
        SupportRecord {
            id: self.id.to_string(),
            session_id: session.map(|s| s.to_string()),
            room: room.to_string(),
            participant_id: self.participant.to_string(),
            opened_ms: self.opened_ms,
            acknowledged_ms: self.acknowledged.as_ref().map(|a| a.1),
            acknowledged_by: self.acknowledged.as_ref().map(|a| a.0.to_string()),
            resolved_ms: self.resolved.as_ref().map(|r| r.1),
            resolved_by: self.resolved.as_ref().map(|r| r.0.to_string()),
            outcome: self.resolved.as_ref().map(|r| r.2.as_str().to_string()),
            requester_left_open: self.requester_left,
        }
    }
}

/// The room's support requests not yet resolved (resolved ones are written and forgotten).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportDesk {
    requests: Vec<Request>,
}

impl SupportDesk {
    /// `from` asks for support: their unresolved request, or a new one. `true` when new.
    pub fn open(&mut self, from: &ParticipantId, now: i64) -> (Request, bool) {
        if let Some(r) = self.requests.iter().find(|r| &r.participant == from) {
            return (r.clone(), false);
        }
        let r = Request {
            id: SupportRequestId::random(),
            participant: from.clone(),
            opened_ms: now,
            acknowledged: None,
            resolved: None,
            requester_left: false,
        };
        self.requests.push(r.clone());
        (r, true)
    }

    /// A therapist has seen it (acknowledging twice changes nothing).
    pub fn acknowledge(&mut self, id: &SupportRequestId, by: &ParticipantId, now: i64) -> Result<Request, ErrorCode> {
        let r = self.requests.iter_mut().find(|r| &r.id == id).ok_or(ErrorCode::UnknownSupportRequest)?;
        if r.acknowledged.is_none() {
            r.acknowledged = Some((by.clone(), now));
        }
        Ok(r.clone())
    }

    /// A therapist closes it; it leaves the desk (the caller writes its record).
    pub fn resolve(&mut self, id: &SupportRequestId, by: &ParticipantId, outcome: SupportOutcome, now: i64) -> Result<Request, ErrorCode> {
        let i = self.requests.iter().position(|r| &r.id == id).ok_or(ErrorCode::UnknownSupportRequest)?;
        let mut r = self.requests.remove(i);
        r.acknowledged.get_or_insert((by.clone(), now));
        r.resolved = Some((by.clone(), now, outcome));
        Ok(r)
    }

    /// `who` left the session for good: their requests still open (not acknowledged) are
    /// returned, and every one of theirs is marked.
    pub fn requester_left(&mut self, who: &ParticipantId) -> Vec<Request> {
        let mut alerts = Vec::new();
        for r in self.requests.iter_mut().filter(|r| &r.participant == who && !r.requester_left) {
            r.requester_left = true;
            alerts.push(r.clone());
        }
        alerts
    }

    /// `who` is back in the session (a rejoin after leaving).
    pub fn requester_back(&mut self, who: &ParticipantId) {
        for r in self.requests.iter_mut().filter(|r| &r.participant == who) {
            r.requester_left = false;
        }
    }

    /// Requests not yet resolved, oldest first.
    pub fn unresolved(&self) -> &[Request] {
        &self.requests
    }

    /// `who`'s request not yet resolved.
    pub fn of(&self, who: &ParticipantId) -> Option<&Request> {
        self.requests.iter().find(|r| &r.participant == who)
    }

    /// Requests no therapist has acknowledged yet.
    pub fn open_count(&self) -> usize {
        self.requests.iter().filter(|r| r.acknowledged.is_none()).count()
    }

    /// Whether state read back from a snapshot is sound: at most `max` requests, valid ids.
    pub fn valid(&self, max: usize) -> bool {
        self.requests.len() <= max
            && self
                .requests
                .iter()
                .all(|r| crate::room::valid_participant_id(r.participant.as_str()) && r.id.as_str().len() <= 40 && r.resolved.is_none())
    }

    /// The session ended: every request leaves the desk as it stands (unresolved ones are
    /// stored without an outcome, for the follow-up after the session).
    pub fn drain(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_moves_from_open_to_resolved_and_tells_the_truth() {
        let mut desk = SupportDesk::default();
        let (p, t) = (ParticipantId::from_trusted("p"), ParticipantId::from_trusted("t"));
        let (r, new) = desk.open(&p, 10);
        assert!(new);
        assert_eq!(r.delivery(false), SupportDelivery::NoTherapist);
        assert_eq!(r.delivery(true), SupportDelivery::Alerted);
        let (again, new) = desk.open(&p, 20);
        assert!(!new && again.id == r.id, "one request per person until resolved");
        assert_eq!(desk.open_count(), 1);
        let acked = desk.acknowledge(&r.id, &t, 30).unwrap();
        assert_eq!((acked.state(), acked.delivery(false)), (SupportState::Acknowledged, SupportDelivery::Seen));
        assert_eq!(desk.open_count(), 0);
        let done = desk.resolve(&r.id, &t, SupportOutcome::FollowUpNeeded, 40).unwrap();
        let rec = done.record(&RoomId::new("g").unwrap(), None);
        assert_eq!((rec.acknowledged_ms, rec.resolved_ms, rec.outcome.as_deref()), (Some(30), Some(40), Some("followUpNeeded")));
        assert!(desk.unresolved().is_empty());
        assert_eq!(desk.acknowledge(&r.id, &t, 50), Err(ErrorCode::UnknownSupportRequest));
        let (next, new) = desk.open(&p, 60);
        assert!(new && next.id != r.id);
    }
}
