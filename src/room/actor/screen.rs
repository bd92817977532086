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
//! [`ARRIVAL_DEADLINE`]: the client says "sharing" only on the server's word.

use std::sync::Arc;
use std::time::Duration;

use super::{Effect, Room, Timer};
use crate::room::ParticipantId;
use crate::sfu::{PeerCommand, PublishedTrack};
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

impl Room {
    pub(super) fn on_screen(&mut self, from: &ParticipantId, msg: ClientMessage) {
        match msg {
            ClientMessage::ScreenShare { client_track_id, client_stream_id, active: true } => {
                if client_track_id.is_empty() || client_track_id.len() > MAX_TRACK_ID {
                    return self.error(from, ErrorCode::InvalidField, format!("clientTrackId is 1 to {MAX_TRACK_ID} characters"));
                }
                if client_stream_id.as_ref().is_some_and(|s| s.len() > MAX_TRACK_ID) {
                    return self.error(from, ErrorCode::InvalidField, format!("clientStreamId is at most {MAX_TRACK_ID} characters"));
                }
                let Some(m) = self.members.get_mut(from) else { return };
                if !m.info.can_share_screen {
                    return self.error(from, ErrorCode::Forbidden, "the therapist has not allowed you to share your screen");
                }
                if m.info.screen_sharing {
                    return self.error(from, ErrorCode::InvalidField, "you are already sharing your screen; stop it first");
                }
                let seq = ANNOUNCEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let announced = Announced { track_id: client_track_id, stream_id: client_stream_id, seq };
                // The track may have arrived first (media and signaling race).
                let pending = m.extra_video.iter().find(|t| announced.matches(t)).cloned();
                m.screen = Some(announced);
                match pending {
                    Some(track) => {
                        m.extra_video.retain(|t| !Arc::ptr_eq(t, &track));
                        self.track_published(from, track);
                    }
                    None => self.schedule(ARRIVAL_DEADLINE, Timer::ScreenArrival(from.clone(), seq)),
                }
            }
            ClientMessage::ScreenShare { active: false, .. } => self.stop_screen(from),
            ClientMessage::AllowScreenShare { participant_id, allowed } => {
                let Some(m) = self.members.get_mut(&participant_id).filter(|m| m.admitted) else {
                    return self.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in the room");
                };
                if m.is_therapist() {
                    return self.error(from, ErrorCode::InvalidField, "therapists may always share their screen");
                }
                m.info.can_share_screen = allowed;
                self.remembered.entry(participant_id.clone()).or_default().can_share_screen = allowed;
                if !allowed {
                    self.stop_screen(&participant_id);
                }
                self.audit(from, if allowed { "allow_screen_share" } else { "revoke_screen_share" }, Some(&participant_id));
                self.publish_update(&participant_id);
            }
            _ => {}
        }
    }

    /// Whether a newly published track of `id` is forwarded, marking a screen share as such.
    /// `false` keeps it aside (an unannounced second video).
    pub(super) fn admit_track(&mut self, id: &ParticipantId, track: &Arc<PublishedTrack>) -> bool {
        let Some(m) = self.members.get_mut(id) else { return false };
        if track.kind != MediaKind::Video {
            return true;
        }
        if !m.info.screen_sharing && m.screen.as_ref().is_some_and(|a| a.matches(track)) {
            track.mark_screen();
            m.info.screen_sharing = true;
            return true;
        }
        let has_camera = m.tracks.iter().any(|t| t.source() == TrackSource::Camera);
        if has_camera {
            m.extra_video.push(track.clone());
            return false;
        }
        true
    }

    /// Ends `id`'s screen share: nobody receives it any more.
    pub(super) fn stop_screen(&mut self, id: &ParticipantId) {
        let Some(m) = self.members.get_mut(id) else { return };
        m.screen = None;
        let (screens, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut m.tracks).into_iter().partition(|t| t.source() == TrackSource::Screen);
        m.tracks = keep;
        let was_sharing = std::mem::replace(&mut m.info.screen_sharing, false);
        for t in &screens {
            for other in self.members.values().filter(|o| &o.info.id != id) {
                self.out.push(Effect::Peer { to: other.info.id.clone(), cmd: PeerCommand::Unsubscribe(t.id.clone()) });
            }
        }
        if was_sharing || !screens.is_empty() {
            self.publish_update(id);
        }
    }

    /// The sharer's announced track started being forwarded: say so to the sharer.
    pub(super) fn screen_forwarded(&mut self, id: &ParticipantId, track: &PublishedTrack) {
        self.send_to(id, ServerMessage::ScreenShareForwarded { track_id: track.id.clone() });
    }

    /// The arrival deadline of announcement `seq` passed: if that share never arrived, the
    /// sharer hears so plainly (their page must not keep saying "sharing").
    pub(super) fn screen_arrival_check(&mut self, id: &ParticipantId, seq: u64) {
        let Some(m) = self.members.get_mut(id) else { return };
        if m.info.screen_sharing || m.screen.as_ref().is_none_or(|a| a.seq != seq) {
            return;
        }
        m.screen = None;
        self.error(id, ErrorCode::ScreenShareNotReceived, "your screen share did not reach the server; stop sharing and try again");
    }
}
