//! Screen sharing: a member announces a video track as a screen share (`screenShare`) before
//! publishing it; the room marks the track so subscribers see it as a share (its own stream id
//! and `source: screen`) and forwards it like any other track of the member's space.
//!
//! Therapists may always share; a participant only after a therapist allows it, and a revoked
//! permission stops the share for everyone at once. A video track nobody announced, from a
//! member who already publishes a camera, is not forwarded: a refused share cannot slip
//! through as a second camera.
//!
//! The sharer is told `screenShareForwarded` once the room forwards the share, and
//! `screen_share_not_received` when the announced track has not arrived after
//! [`ARRIVAL_DEADLINE`]: the client says "sharing" only on the server's word. A share that
//! arrives after its deadline is still forwarded (and `screenShareForwarded` then follows).
//!
//! [`Screens`] owns the announcements and the held-back tracks. Members' tracks, who receives
//! them and the `screenSharing`/`canShareScreen` flags members see are the room's: the type
//! answers with a [`Change`] or an [`Admission`] and the room applies it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Cx, Member, Timer};
use crate::room::ParticipantId;
use crate::sfu::{PublishedTrack, TrackId};
use crate::signal::protocol::{ClientMessage, ErrorCode, MediaKind, ServerMessage, TrackSource};

/// Longest `clientTrackId` / `clientStreamId` accepted (browsers use 36-character UUIDs).
const MAX_TRACK_ID: usize = 128;

/// How long an announced share may take to arrive before the sharer is told it did not.
pub(super) const ARRIVAL_DEADLINE: Duration = Duration::from_secs(10);

/// Numbers announcements process-wide, so a stale arrival check never matches a newer one.
static ANNOUNCEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A share a member announced: the ids its track may carry in the SDP's msid.
#[derive(Debug, Clone)]
pub(super) struct Announced {
    track_id: String,
    stream_id: Option<String>,
    /// Counts announcements, so a stale arrival check is ignored.
    seq: u64,
    /// The sharer was told it had not arrived by its deadline. The announcement stays: a
    /// share that arrives late (a reconnect that took long to negotiate on a busy machine)
    /// is still forwarded, and `screenShareForwarded` then corrects what the page said.
    reported_late: bool,
}

impl Announced {
    /// Whether `track` is the announced one. Chromium names a track in the msid by its own id
    /// only on a new transceiver; when `addTrack` reuses one the server created (a group of
    /// three or more), the msid carries the sender's id instead, and only the stream id given
    /// to `addTrack` still matches.
    fn matches(&self, track: &PublishedTrack) -> bool {
        track.client_track_id == self.track_id
            || self.stream_id.as_deref().is_some_and(|s| !s.is_empty() && s != "-" && track.client_stream_id == s)
    }
}

/// What each member's screen share is waiting for: the share they announced, and video tracks
/// held back until one turns out to be it. A member's entry goes when the share ends with its
/// peer connection (they reconnect or drop) or they leave.
#[derive(Default)]
pub(super) struct Screens {
    by_member: HashMap<ParticipantId, Pending>,
}

#[derive(Default)]
struct Pending {
    /// The screen share the client announced, until it ends.
    announced: Option<Announced>,
    /// Video tracks held back: unannounced beside a camera.
    held: Vec<Arc<PublishedTrack>>,
}

/// What a screen-share message asks of the room, which owns members' tracks and what others
/// see of them.
#[derive(Debug)]
pub(super) enum Change {
    /// The announced share had arrived before its announcement: forward it now.
    Forward(ParticipantId, Arc<PublishedTrack>),
    /// End this member's share: nobody receives it any more.
    Stop(ParticipantId),
    /// A therapist allowed (or revoked) a participant's sharing; a revoked share stops.
    Permission { by: ParticipantId, participant_id: ParticipantId, allowed: bool },
}

/// Whether a newly published video track is forwarded.
#[derive(Debug, PartialEq)]
pub(super) enum Admission {
    Forward,
    /// Forward it as the member's screen share (it is marked as one already).
    Screen,
    /// Keep it aside: an unannounced second video.
    HoldBack,
}

impl Screens {
    pub(super) fn on_message(&mut self, cx: &mut Cx, from: &ParticipantId, msg: ClientMessage) -> Option<Change> {
        match msg {
            ClientMessage::ScreenShare { client_track_id, client_stream_id, active: true } => {
                if client_track_id.is_empty() || client_track_id.len() > MAX_TRACK_ID {
                    cx.error(from, ErrorCode::InvalidField, format!("clientTrackId is 1 to {MAX_TRACK_ID} characters"));
                    return None;
                }
                if client_stream_id.as_ref().is_some_and(|s| s.len() > MAX_TRACK_ID) {
                    cx.error(from, ErrorCode::InvalidField, format!("clientStreamId is at most {MAX_TRACK_ID} characters"));
                    return None;
                }
                let m = cx.members.get(from)?;
                if !m.info.can_share_screen {
                    cx.error(from, ErrorCode::Forbidden, "the therapist has not allowed you to share your screen");
                    return None;
                }
                if m.info.screen_sharing {
                    cx.error(from, ErrorCode::InvalidField, "you are already sharing your screen; stop it first");
                    return None;
                }
                let seq = ANNOUNCEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let announced = Announced { track_id: client_track_id, stream_id: client_stream_id, seq, reported_late: false };
                let p = self.by_member.entry(from.clone()).or_default();
                // The track may have arrived first (media and signaling race).
                let pending = p.held.iter().find(|t| announced.matches(t)).cloned();
                p.announced = Some(announced);
                match pending {
                    Some(track) => {
                        p.held.retain(|t| !Arc::ptr_eq(t, &track));
                        return Some(Change::Forward(from.clone(), track));
                    }
                    None => cx.schedule(ARRIVAL_DEADLINE, Timer::ScreenArrival(from.clone(), seq)),
                }
                None
            }
            ClientMessage::ScreenShare { active: false, .. } => Some(Change::Stop(from.clone())),
            ClientMessage::AllowScreenShare { participant_id, allowed } => {
                let Some(m) = cx.members.get(&participant_id).filter(|m| m.admitted) else {
                    cx.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in the room");
                    return None;
                };
                if m.info.role.facilitates() {
                    cx.error(from, ErrorCode::InvalidField, "therapists and co-facilitators may always share their screen");
                    return None;
                }
                Some(Change::Permission { by: from.clone(), participant_id, allowed })
            }
            _ => None,
        }
    }

    /// Whether a newly published track of `member` is forwarded, marking a screen share as such.
    pub(super) fn admit_track(&mut self, member: &Member, track: &Arc<PublishedTrack>) -> Admission {
        if track.kind != MediaKind::Video {
            return Admission::Forward;
        }
        let p = self.by_member.entry(member.info.id.clone()).or_default();
        if !member.info.screen_sharing && p.announced.as_ref().is_some_and(|a| a.matches(track)) {
            track.mark_screen();
            return Admission::Screen;
        }
        let has_camera = member.tracks.iter().any(|t| t.source() == TrackSource::Camera);
        if has_camera {
            p.held.push(track.clone());
            return Admission::HoldBack;
        }
        Admission::Forward
    }

    /// `id`'s track ended; if it was the share, the announcement ends with it.
    pub(super) fn track_ended(&mut self, id: &ParticipantId, track_id: &TrackId, was_screen: bool) {
        let Some(p) = self.by_member.get_mut(id) else { return };
        p.held.retain(|t| &t.id != track_id);
        if was_screen {
            p.announced = None;
        }
    }

    /// `id`'s share ended (stopped, revoked): a new one must be announced again.
    pub(super) fn stopped(&mut self, id: &ParticipantId) {
        if let Some(p) = self.by_member.get_mut(id) {
            p.announced = None;
        }
    }

    /// `id`'s peer connection is gone (a reconnect, a dropped socket, leaving): a share does
    /// not survive it, and nothing held back does either.
    pub(super) fn forget(&mut self, id: &ParticipantId) {
        self.by_member.remove(id);
    }

    /// The sharer's announced track started being forwarded: say so to the sharer.
    pub(super) fn forwarded(cx: &mut Cx, id: &ParticipantId, track: &PublishedTrack) {
        cx.send(id, ServerMessage::ScreenShareForwarded { track_id: track.id.clone() });
    }

    /// The arrival deadline of announcement `seq` passed: if that share never arrived, the
    /// sharer hears so plainly (their page must not keep saying "sharing").
    pub(super) fn arrival_check(&mut self, cx: &mut Cx, id: &ParticipantId, seq: u64) {
        let Some(m) = cx.members.get(id) else { return };
        let Some(p) = self.by_member.get_mut(id) else { return };
        let Some(announced) = p.announced.as_mut().filter(|a| a.seq == seq && !a.reported_late) else { return };
        if m.info.screen_sharing {
            return;
        }
        announced.reported_late = true;
        cx.error(id, ErrorCode::ScreenShareNotReceived, "your screen share did not reach the server; stop sharing and try again");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Effect, World};
    use super::*;
    use crate::auth::Role;

    fn announce(track: &str) -> ClientMessage {
        ClientMessage::ScreenShare { client_track_id: track.into(), client_stream_id: None, active: true }
    }

    #[test]
    fn only_an_allowed_member_may_announce_and_only_once() {
        let mut w = World::new();
        let t = w.admit("t", Role::Therapist, None);
        let p = w.admit("p", Role::Participant, None);
        let mut s = Screens::default();
        assert!(s.on_message(&mut w.cx(), &p, announce("x")).is_none());
        assert_eq!(w.errors_to(&p), vec![ErrorCode::Forbidden]);
        w.take();
        assert!(s.on_message(&mut w.cx(), &t, announce(&"x".repeat(MAX_TRACK_ID + 1))).is_none());
        assert_eq!(w.errors_to(&t), vec![ErrorCode::InvalidField]);
        w.take();
        w.member(&t).info.screen_sharing = true;
        assert!(s.on_message(&mut w.cx(), &t, announce("x")).is_none());
        assert_eq!(w.errors_to(&t), vec![ErrorCode::InvalidField], "already sharing");
        w.take();

        // Permission is asked of the room; a therapist's own is not the therapist's to change.
        let allow = |id: &ParticipantId, allowed| ClientMessage::AllowScreenShare { participant_id: id.clone(), allowed };
        assert!(s.on_message(&mut w.cx(), &t, allow(&t, true)).is_none());
        assert_eq!(w.errors_to(&t), vec![ErrorCode::InvalidField]);
        w.take();
        let change = s.on_message(&mut w.cx(), &t, allow(&p, false));
        assert!(
            matches!(change, Some(Change::Permission { allowed: false, ref participant_id, .. }) if *participant_id == p),
            "{change:?}"
        );
        assert!(w.take().is_empty(), "the room audits and tells, after revoking");
    }

    /// A second video beside a camera is held back; announced afterwards it is forwarded as the
    /// share. An announced share that never arrives is reported once, at its deadline.
    #[test]
    fn held_back_video_becomes_the_share_once_announced() {
        let mut w = World::new();
        let t = w.admit("t", Role::Therapist, None);
        let mut s = Screens::default();
        let camera = PublishedTrack::for_test("cam", t.clone(), MediaKind::Video);
        assert_eq!(s.admit_track(w.member(&t), &camera), Admission::Forward);
        w.member(&t).tracks.push(camera);
        let second = PublishedTrack::for_test("scr", t.clone(), MediaKind::Video);
        assert_eq!(s.admit_track(w.member(&t), &second), Admission::HoldBack);
        let audio = PublishedTrack::for_test("mic", t.clone(), MediaKind::Audio);
        assert_eq!(s.admit_track(w.member(&t), &audio), Admission::Forward);

        let change = s.on_message(&mut w.cx(), &t, announce("scr"));
        let Some(Change::Forward(who, track)) = change else { panic!("the held track goes out: {change:?}") };
        assert_eq!((who, track.id.as_str()), (t.clone(), "scr"));
        assert_eq!(s.admit_track(w.member(&t), &track), Admission::Screen);
        assert_eq!(track.source(), TrackSource::Screen);
        assert!(w.take().is_empty(), "no arrival check for a share that is here");

        // Stopped; announced again, the track does not come.
        s.stopped(&t);
        w.member(&t).info.screen_sharing = false;
        assert!(s.on_message(&mut w.cx(), &t, announce("late")).is_none());
        let seq = match &w.take()[..] {
            [Effect::Timer { timer: Timer::ScreenArrival(id, seq), at }] if *id == t => {
                assert_eq!(*at, w.now.at + ARRIVAL_DEADLINE);
                *seq
            }
            other => panic!("one arrival check: {other:?}"),
        };
        s.arrival_check(&mut w.cx(), &t, seq.wrapping_add(1));
        assert!(w.take().is_empty(), "another announcement's check changes nothing");
        s.arrival_check(&mut w.cx(), &t, seq);
        assert_eq!(w.errors_to(&t), vec![ErrorCode::ScreenShareNotReceived]);
        w.take();
        s.arrival_check(&mut w.cx(), &t, seq);
        assert!(w.take().is_empty(), "told once");
        // It arrives after all (a slow renegotiation): it is still the share.
        let late = PublishedTrack::for_test("late", t.clone(), MediaKind::Video);
        assert_eq!(s.admit_track(w.member(&t), &late), Admission::Screen);
        assert_eq!(late.source(), TrackSource::Screen);
    }
}
