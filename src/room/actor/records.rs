//! Sessions on record, in the room: the running session's attendance, its support requests
//! and its check-ins, held in one [`Records`] the room owns and snapshots. The bookkeeping is in
//! pure types of `room/` ([`Attendance`], [`SupportDesk`], [`CheckIns`]); this file is where the
//! room tells them what happened, and answers with effects: records for the store's ordered
//! queue (`Effect::Record`), support and check-in messages to the people allowed to see them,
//! and the summary for the webhook when the session ends (`Effect::SessionEnded`). It owns no
//! membership (it reads it through [`Cx`]) and never waits on the disk or the network.
//!
//! Who hears what: a person's check-in value goes to therapists only (and back to the person);
//! the group sees at most the counts, when a therapist shares them; family guests see no
//! check-in. A support request goes to the responders (therapists, co-facilitators, and
//! peer-support staff while a therapist routes requests to them), is re-sent to every
//! responder who is admitted or reconnects until one acknowledges it, and the
//! requester is told the truth each time that changes (nobody connected, alerted, seen,
//! resolved) with the crisis resources.

use serde::{Deserialize, Serialize};

use super::effect::Effect;
use super::{Cx, Member};
use crate::auth::Role;
use crate::room::attendance::{Attendance, Outcome};
use crate::room::checkin::CheckIns;
use crate::room::support::{Request, SupportDesk};
use crate::room::ParticipantId;
use crate::signal::protocol::{
    CheckInId, ClientMessage, EndReason, ErrorCode, ServerMessage, SessionId, SupportDelivery, SupportOutcome, SupportRequestId,
    SupportRequestInfo, SupportState,
};
use crate::store::{CheckInCountsRecord, CheckInValueRecord, Record};

/// What the room keeps of the running session (part of its snapshot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Records {
    pub attendance: Attendance,
    pub support: SupportDesk,
    pub checkins: CheckIns,
    /// Support requests also reach admitted peer-support staff (`routeSupport`).
    #[serde(default)]
    pub peer_routing: bool,
}

/// The space id as attendance records write it: `main`, `breakout:<id>`, `private:<n>`,
/// `family:<n>`.
fn space_label(space: &Option<String>) -> String {
    match space {
        None => "main".to_string(),
        Some(s) => match (s.strip_prefix(super::chat::PRIVATE_PREFIX), s.strip_prefix(super::family::FAMILY_PREFIX)) {
            (Some(n), _) => format!("private:{n}"),
            (_, Some(n)) => format!("family:{n}"),
            _ => format!("breakout:{s}"),
        },
    }
}

fn record(cx: &mut Cx, records: Vec<Record>) {
    cx.out.extend(records.into_iter().map(Effect::Record));
}

impl Records {
    /// Whether support requests reach `m`.
    fn responds(&self, m: &Member) -> bool {
        m.info.role.facilitates() || (self.peer_routing && m.info.role == Role::PeerSupport)
    }

    /// Admitted members support requests reach.
    fn responders(&self, cx: &Cx) -> Vec<ParticipantId> {
        cx.order.iter().filter_map(|p| cx.members.get(p)).filter(|m| m.admitted && self.responds(m)).map(|m| m.info.id.clone()).collect()
    }

    fn responders_connected(&self, cx: &Cx) -> usize {
        cx.members.values().filter(|m| m.admitted && m.connected && self.responds(m)).count()
    }

    /// Whether a snapshot's records are sound (see `snapshot.rs`).
    pub(super) fn valid(&self, max: usize) -> bool {
        self.attendance.valid(max) && self.support.valid(max) && self.checkins.valid(max)
    }

    pub(super) fn session_id(&self) -> Option<SessionId> {
        self.attendance.session_id().cloned()
    }

    // ---- what happened to members (called by the room) ----

    /// Someone entered the waiting room.
    pub(super) fn knocked(&mut self, cx: &mut Cx, id: &ParticipantId) {
        let Some(role) = cx.members.get(id).map(|m| m.info.role) else { return };
        let r = self.attendance.knocked(id, role, cx.now.unix_ms);
        record(cx, r);
    }

    /// Someone was admitted (their place in a breakout comes as a move after this); the room
    /// sends `admitted`, then [`Records::caught_up`].
    pub(super) fn admitted(&mut self, cx: &mut Cx, id: &ParticipantId) {
        let Some(m) = cx.members.get(id) else { return };
        let (role, space) = (m.info.role, space_label(&m.space));
        let late = cx.settings.late_after.as_millis() as i64;
        let r = self.attendance.admitted(cx.room, id, role, space, cx.now.unix_ms, late);
        record(cx, r);
        self.support.requester_back(id);
    }

    /// What a member who was admitted or came back needs of the session: the open check-in;
    /// for therapists, every request nobody has acknowledged (as an alert) and the list; for a
    /// requester, where their request stands.
    pub(super) fn caught_up(&mut self, cx: &mut Cx, id: &ParticipantId) {
        let Some(member) = cx.members.get(id) else { return };
        let (therapist, guest) = (self.responds(member), member.info.role == Role::FamilyGuest);
        if let Some(info) = self.checkins.open_info().filter(|_| !guest) {
            cx.send(id, ServerMessage::CheckInStarted { check_in: info.clone() });
        }
        if therapist {
            for r in self.support.unresolved().iter().filter(|r| r.acknowledged.is_none()) {
                cx.send(id, alert(cx, r));
            }
            cx.send(id, self.list(cx));
            // The first therapist connected: requesters who were told nobody was learn otherwise.
            if self.responders_connected(cx) == 1 {
                self.tell_requesters(cx);
            }
        } else if self.support.of(id).is_some() {
            self.tell_requester(cx, id);
        }
    }

    pub(super) fn moved(&mut self, cx: &mut Cx, id: &ParticipantId, space: &Option<String>) {
        let r = self.attendance.moved(id, space_label(space), cx.now.unix_ms);
        record(cx, r);
    }

    /// `id`'s connection dropped (already marked not connected).
    pub(super) fn dropped(&mut self, cx: &mut Cx, id: &ParticipantId) {
        let r = self.attendance.dropped(id, cx.now.unix_ms);
        record(cx, r);
        if cx.members.get(id).is_some_and(|m| self.responds(m)) && self.responders_connected(cx) == 0 {
            self.tell_requesters(cx);
        }
    }

    /// `id` is back within the grace (already marked connected).
    pub(super) fn resumed(&mut self, cx: &mut Cx, id: &ParticipantId) {
        let r = self.attendance.resumed(id);
        record(cx, r);
        if cx.members.get(id).is_some_and(|m| m.admitted) {
            self.caught_up(cx, id);
        }
    }

    /// `member` left for good (already out of the room); `reason` as the room removed them.
    /// `talk_seconds`: what they said this session, when the clinic keeps it.
    pub(super) fn left(&mut self, cx: &mut Cx, member: &Member, reason: Option<EndReason>, talk_seconds: Option<u32>) {
        let id = &member.info.id;
        if let Some(seconds) = talk_seconds {
            self.attendance.talked(id, seconds);
        }
        let outcome = match reason {
            Some(EndReason::Declined) => Outcome::Declined,
            Some(EndReason::Removed) => Outcome::Removed,
            Some(EndReason::Ended) => Outcome::Ended,
            Some(EndReason::Stalled) => Outcome::Dropped,
            // A new connection took the place over, or the room moved: nobody left.
            Some(EndReason::Replaced | EndReason::Moved) => return,
            // Their reconnect grace ran out.
            None if !member.connected => Outcome::Dropped,
            None => Outcome::Left,
        };
        let r = self.attendance.left(id, outcome, cx.now.unix_ms);
        record(cx, r);
        let session = self.session_id();
        for req in self.support.requester_left(id) {
            let msg = ServerMessage::SupportRequesterLeft { request_id: req.id.clone(), participant_id: id.clone() };
            for t in self.responders(cx) {
                cx.send(&t, msg.clone());
            }
            record(cx, vec![Record::Support(req.record(cx.room, session.as_ref()))]);
        }
        if !self.support.unresolved().is_empty() {
            self.publish_list(cx);
        }
        if self.responds(member) && self.responders_connected(cx) == 0 {
            self.tell_requesters(cx);
        }
        if !cx.members.values().any(|m| m.admitted) {
            self.end(cx);
        }
    }

    /// Nobody admitted is left: the session's records are final and the webhook gets them.
    fn end(&mut self, cx: &mut Cx) {
        if let Some(id) = self.checkins.open_id() {
            let _ = self.close_check_in(cx, &id, false);
        }
        let session = self.session_id();
        let (records, finished) = self.attendance.end(cx.room, cx.now.unix_ms);
        record(cx, records);
        let support: Vec<_> = self.support.drain().iter().map(|r| r.record(cx.room, session.as_ref())).collect();
        record(cx, support.iter().cloned().map(Record::Support).collect());
        self.checkins = CheckIns::default();
        if let Some((session, attendance)) = finished {
            let summary = crate::webhook::SessionSummary { event: "sessionEnded".into(), session, attendance, support_requests: support };
            cx.out.push(Effect::SessionEnded(Box::new(summary)));
        }
    }

    /// `endSession`: refused (with `support_open`) while requests are not resolved, unless
    /// confirmed. `true` when the session may end.
    pub(super) fn may_end(&mut self, cx: &mut Cx, from: &ParticipantId, confirm: bool) -> bool {
        let open = self.support.unresolved().len();
        if open > 0 && !confirm {
            cx.error(
                from,
                ErrorCode::SupportOpen,
                format!("{open} support request(s) not resolved; send endSession with confirm to end anyway (they are kept for follow-up)"),
            );
            return false;
        }
        self.attendance.ending();
        true
    }

    // ---- support requests ----

    fn list(&self, cx: &Cx) -> ServerMessage {
        ServerMessage::SupportRequests {
            requests: self.support.unresolved().iter().map(|r| info(cx, r)).collect(),
            peer_support: self.peer_routing,
        }
    }

    fn publish_list(&self, cx: &mut Cx) {
        let list = self.list(cx);
        for t in self.responders(cx) {
            cx.send(&t, list.clone());
        }
    }

    fn tell_requester(&self, cx: &mut Cx, id: &ParticipantId) {
        let connected = self.responders_connected(cx) > 0;
        let Some(r) = self.support.of(id) else { return };
        let msg = ServerMessage::SupportStatus {
            request_id: r.id.clone(),
            delivery: r.delivery(connected),
            resources_text: cx.settings.support_resources.clone(),
        };
        cx.send(id, msg);
    }

    /// Whether any therapist is connected changed: requesters nobody has seen yet are told the
    /// truth again.
    fn tell_requesters(&self, cx: &mut Cx) {
        for r in self.support.unresolved().iter().filter(|r| r.state() == SupportState::Open && !r.requester_left) {
            self.tell_requester(cx, &r.participant);
        }
    }

    fn request(&mut self, cx: &mut Cx, alerts: &mut super::alerts::Alerts, from: &ParticipantId) {
        use super::alerts::Alert;
        if !alerts.permit(cx, from, Alert::RequestSupport) {
            return;
        }
        let (request, new) = self.support.open(from, cx.now.unix_ms);
        // Every press that alerts the therapists is audited, a repeat of an open request too.
        cx.audit(from, "support_request", None);
        if new {
            let session = self.session_id();
            record(cx, vec![Record::Support(request.record(cx.room, session.as_ref()))]);
        }
        let msg = alert(cx, &request);
        for t in self.responders(cx).into_iter().filter(|t| t != from) {
            cx.send(&t, msg.clone());
        }
        self.publish_list(cx);
        self.tell_requester(cx, from);
    }

    fn acknowledge(&mut self, cx: &mut Cx, from: &ParticipantId, id: &SupportRequestId) {
        match self.support.acknowledge(id, from, cx.now.unix_ms) {
            Ok(r) => {
                let session = self.session_id();
                record(cx, vec![Record::Support(r.record(cx.room, session.as_ref()))]);
                cx.audit(from, "support_acknowledge", Some(&r.participant));
                self.publish_list(cx);
                self.tell_requester(cx, &r.participant);
            }
            Err(code) => cx.error(from, code, "no support request with that id is open in this session"),
        }
    }

    fn resolve(&mut self, cx: &mut Cx, from: &ParticipantId, id: &SupportRequestId, outcome: SupportOutcome) {
        match self.support.resolve(id, from, outcome, cx.now.unix_ms) {
            Ok(r) => {
                let session = self.session_id();
                record(cx, vec![Record::Support(r.record(cx.room, session.as_ref()))]);
                cx.audit(from, "support_resolve", Some(&r.participant));
                self.publish_list(cx);
                let msg = ServerMessage::SupportStatus {
                    request_id: r.id.clone(),
                    delivery: SupportDelivery::Resolved,
                    resources_text: cx.settings.support_resources.clone(),
                };
                cx.send(&r.participant, msg);
            }
            Err(code) => cx.error(from, code, "no support request with that id is open in this session"),
        }
    }

    // ---- check-in and check-out ----

    fn close_check_in(&mut self, cx: &mut Cx, id: &CheckInId, share: bool) -> Result<(), (ErrorCode, String)> {
        let (info, histogram) = self.checkins.close(id)?;
        if let (true, Some(session)) = (info.anonymous, self.session_id()) {
            let counts = CheckInCountsRecord {
                round_id: info.check_in_id.to_string(),
                session_id: session.to_string(),
                room: cx.room.to_string(),
                phase: info.phase.as_str().into(),
                min: info.min,
                counts: histogram.counts.clone(),
                passed: histogram.passed,
                at_ms: cx.now.unix_ms,
            };
            record(cx, vec![Record::CheckInCounts(counts)]);
        }
        let admitted: Vec<_> = cx
            .members
            .values()
            .filter(|m| m.admitted && m.info.role != Role::FamilyGuest)
            .map(|m| (m.info.id.clone(), m.is_therapist()))
            .collect();
        for (p, therapist) in admitted {
            let histogram = (therapist || share).then(|| histogram.clone());
            cx.send(&p, ServerMessage::CheckInClosed { check_in_id: info.check_in_id.clone(), histogram });
        }
        Ok(())
    }

    fn answer(&mut self, cx: &mut Cx, from: &ParticipantId, id: CheckInId, value: Option<u8>) {
        let answered = match self.checkins.answer(from, &id, value) {
            Ok(a) => a,
            Err((code, message)) => return cx.error(from, code, message),
        };
        cx.send(from, ServerMessage::CheckInAnswered { check_in_id: id.clone(), value });
        let therapists = cx.therapists();
        if !answered.info.anonymous {
            if let Some(session) = self.session_id() {
                let v = CheckInValueRecord {
                    session_id: session.to_string(),
                    room: cx.room.to_string(),
                    participant_id: from.to_string(),
                    phase: answered.info.phase.as_str().into(),
                    value,
                    at_ms: cx.now.unix_ms,
                };
                record(cx, vec![Record::CheckIn(v)]);
            }
            let msg = ServerMessage::CheckInValue {
                check_in_id: id.clone(),
                participant_id: from.clone(),
                value,
                change: answered.change,
                previous: answered.previous,
            };
            for t in &therapists {
                cx.send(t, msg.clone());
            }
        }
        for t in &therapists {
            cx.send(t, ServerMessage::CheckInCounts(answered.histogram.clone()));
        }
    }

    /// The earlier check-ins read for the open round: answers already given go to therapists
    /// again with them.
    pub(super) fn previous_check_ins(&mut self, cx: &mut Cx, check_in: &CheckInId, values: Vec<(ParticipantId, u8)>) {
        let resend = self.checkins.set_previous(check_in, values.into_iter().collect());
        let therapists = cx.therapists();
        for r in resend {
            let msg = ServerMessage::CheckInValue {
                check_in_id: check_in.clone(),
                participant_id: r.participant,
                value: r.value,
                change: r.change,
                previous: r.previous,
            };
            for t in &therapists {
                cx.send(t, msg.clone());
            }
        }
    }

    /// Support and check-in messages (roles checked by the room: acknowledging, resolving,
    /// starting and closing are therapists' only).
    pub(super) fn on_message(&mut self, cx: &mut Cx, alerts: &mut super::alerts::Alerts, from: &ParticipantId, msg: ClientMessage) {
        match msg {
            ClientMessage::RequestSupport => self.request(cx, alerts, from),
            ClientMessage::AcknowledgeSupport { request_id } => self.acknowledge(cx, from, &request_id),
            ClientMessage::ResolveSupport { request_id, outcome } => self.resolve(cx, from, &request_id, outcome),
            ClientMessage::RouteSupport { peer_support } => {
                self.peer_routing = peer_support;
                cx.audit(from, if peer_support { "support_route_peers" } else { "support_route_staff" }, None);
                // Every responder (peer-support staff now among them, or not) gets the list with
                // the routing, so a second therapist's switch shows it too; peer-support staff
                // taken off it get an empty one and stop being shown the requests.
                self.publish_list(cx);
                if !peer_support {
                    let peers: Vec<_> =
                        cx.members.values().filter(|m| m.admitted && m.info.role == Role::PeerSupport).map(|m| m.info.id.clone()).collect();
                    for p in peers {
                        cx.send(&p, ServerMessage::SupportRequests { requests: Vec::new(), peer_support: false });
                    }
                }
            }
            ClientMessage::StartCheckIn { phase, question, min, max, min_label, max_label, anonymous } => {
                match self.checkins.start(phase, &question, min, max, min_label, max_label, anonymous) {
                    Ok(info) => {
                        cx.audit(from, "check_in_start", None);
                        if let (false, Some(session)) = (info.anonymous, self.session_id()) {
                            cx.out.push(Effect::Read(super::effect::Read::PreviousCheckIns(info.check_in_id.clone(), session)));
                        }
                        let admitted: Vec<_> = cx
                            .members
                            .values()
                            .filter(|m| m.admitted && m.info.role != Role::FamilyGuest)
                            .map(|m| m.info.id.clone())
                            .collect();
                        for p in admitted {
                            cx.send(&p, ServerMessage::CheckInStarted { check_in: info.clone() });
                        }
                    }
                    Err((code, message)) => cx.error(from, code, message),
                }
            }
            ClientMessage::AnswerCheckIn { check_in_id, value } => self.answer(cx, from, check_in_id, value),
            ClientMessage::CloseCheckIn { check_in_id, share } => {
                if let Err((code, message)) = self.close_check_in(cx, &check_in_id, share) {
                    cx.error(from, code, message);
                }
            }
            _ => {}
        }
    }
}

fn info(cx: &Cx, r: &Request) -> SupportRequestInfo {
    let m = cx.members.get(&r.participant);
    SupportRequestInfo {
        request_id: r.id.clone(),
        participant_id: r.participant.clone(),
        // Names live with the people, never in the records: one who left is "a participant".
        name: m.map(|m| m.info.name.clone()).unwrap_or_else(|| "A participant who left".into()),
        breakout_id: m.and_then(|m| m.space.clone()),
        at_ms: r.opened_ms.max(0) as u64,
        state: r.state(),
        acknowledged_by: r.acknowledged.as_ref().map(|a| a.0.clone()),
        requester_present: !r.requester_left && m.is_some(),
    }
}

fn alert(cx: &Cx, r: &Request) -> ServerMessage {
    let i = info(cx, r);
    ServerMessage::SupportRequested {
        request_id: i.request_id,
        participant_id: i.participant_id,
        name: i.name,
        breakout_id: i.breakout_id,
        at_ms: i.at_ms,
    }
}
