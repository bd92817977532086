//! Screen sharing: a member announces a video track as a screen share (`screenShare`) before
//! publishing it; the room marks the track so subscribers see it as a share (its own stream id
//! and `source: screen`) and forwards it like any other track of the member's space.
//!
//! Therapists may always share; a participant only after a therapist allows it, and a revoked
//! permission stops the share for everyone at once. A video track nobody announced, from a
//! member who already publishes a camera, is not forwarded: a refused share cannot slip
//! through as a second camera.

use std::sync::Arc;

use super::Room;
use crate::room::ParticipantId;
use crate::sfu::{PeerCommand, PublishedTrack};
use crate::signal::protocol::{ClientMessage, ErrorCode, MediaKind, TrackSource};

/// Longest `clientTrackId` accepted (browsers use 36-character UUIDs).
const MAX_TRACK_ID: usize = 128;

impl Room {
    pub(super) fn on_screen(&mut self, from: &ParticipantId, msg: ClientMessage) {
        match msg {
            ClientMessage::ScreenShare { client_track_id, active: true } => {
                if client_track_id.is_empty() || client_track_id.len() > MAX_TRACK_ID {
                    return self.error(from, ErrorCode::InvalidField, format!("clientTrackId is 1 to {MAX_TRACK_ID} characters"));
                }
                let Some(m) = self.members.get_mut(from) else { return };
                if !m.info.can_share_screen {
                    return self.error(from, ErrorCode::Forbidden, "the therapist has not allowed you to share your screen");
                }
                m.screen_client_track = Some(client_track_id.clone());
                // The track may have arrived first (media and signaling race).
                let pending = m.extra_video.iter().find(|t| t.client_track_id == client_track_id).cloned();
                if let Some(track) = pending {
                    m.extra_video.retain(|t| !Arc::ptr_eq(t, &track));
                    self.track_published(from, track);
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
        if m.screen_client_track.as_deref() == Some(track.client_track_id.as_str()) {
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
        m.screen_client_track = None;
        let (screens, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut m.tracks).into_iter().partition(|t| t.source() == TrackSource::Screen);
        m.tracks = keep;
        let was_sharing = std::mem::replace(&mut m.info.screen_sharing, false);
        for t in &screens {
            for other in self.members.values().filter(|o| &o.info.id != id) {
                other.peer.send(PeerCommand::Unsubscribe(t.id.clone()));
            }
        }
        if was_sharing || !screens.is_empty() {
            self.publish_update(id);
        }
    }
}
