//! In-call chat and the private room a therapist opens for someone who asked for support.
//!
//! Chat scopes to the sender's space (the main room, a breakout or a private room): a message
//! goes to everyone admitted there, or privately to one person and back to the sender.
//! Participants may always write privately to a therapist (in any space); to each other only when
//! a therapist allows it. Therapists can turn chat off (then only they may post), delete a
//! message for everyone who received it, and keep a transcript.
//!
//! Nothing here is ever written to disk. By default nothing is kept at all beyond what delete
//! needs (who received a recent message, never its text); with `keepTranscript` each space's last
//! [`TRANSCRIPT_PER_SPACE`] messages stay in memory for the session, so someone who enters the
//! space gets them as `chatHistory` (private ones only when they are a party). Turning the
//! setting off forgets the transcript at once.
//!
//! "I need support" itself is a request with a state (`records.rs`). A therapist answers with one action,
//! `openPrivateRoom`: a space of two (`private-N`, not a breakout) that both move into (the room
//! moves them, so media and chat follow); `closePrivateRoom` returns the participant to where
//! they belong and the therapist to the main room.
//!
//! [`Chat`] holds all of it; its methods get the room's context ([`Cx`]) and ask the room for
//! moves rather than making them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::{Cx, Member};
use crate::room::ParticipantId;
use crate::signal::protocol::{ChatEntry, ChatMessageId, ChatSettings, ClientMessage, ErrorCode, ServerMessage, Text};

/// Longest chat message, in characters (after trimming).
pub const MAX_CHAT_CHARS: usize = 1000;
/// Messages one person may post per [`RATE_WINDOW`].
pub const MESSAGES_PER_WINDOW: usize = 5;
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Messages kept per space while `keepTranscript` is on.
pub const TRANSCRIPT_PER_SPACE: usize = 500;
/// Recent messages a therapist may still delete (room-wide); only ids and recipients are kept.
const DELETABLE: usize = 2000;
/// Prefix of private room space ids; breakouts are `b1`, `b2`, ...
pub(super) const PRIVATE_PREFIX: &str = "private-";
const PRIVATE_ROOM_NAME: &str = "Private room";

/// Who received a recent message, so a delete reaches exactly them.
struct Delivered {
    space: Option<String>,
    recipients: HashSet<ParticipantId>,
}

struct PrivateRoom {
    therapist: ParticipantId,
    participant: ParticipantId,
}

#[derive(Default)]
pub(super) struct Chat {
    settings: ChatSettings,
    delivered: HashMap<ChatMessageId, Delivered>,
    delivered_order: VecDeque<ChatMessageId>,
    /// With `keepTranscript` only: each space's messages, oldest first.
    transcript: HashMap<Option<String>, VecDeque<ChatEntry>>,
    /// When each person's recent messages were posted.
    sent: HashMap<ParticipantId, VecDeque<Instant>>,
    private_rooms: HashMap<String, PrivateRoom>,
    next_private: u32,
}

impl Chat {
    /// Counts a message against `from`'s window; `false` when over the limit.
    fn allow(&mut self, from: &ParticipantId, now: Instant) -> bool {
        let sent = self.sent.entry(from.clone()).or_default();
        while sent.front().is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW) {
            sent.pop_front();
        }
        if sent.len() >= MESSAGES_PER_WINDOW {
            return false;
        }
        sent.push_back(now);
        true
    }

    fn remember(&mut self, entry: &ChatEntry, space: Option<String>, recipients: HashSet<ParticipantId>) {
        self.delivered.insert(entry.id.clone(), Delivered { space: space.clone(), recipients });
        self.delivered_order.push_back(entry.id.clone());
        while self.delivered_order.len() > DELETABLE {
            if let Some(old) = self.delivered_order.pop_front() {
                self.delivered.remove(&old);
            }
        }
        if self.settings.keep_transcript {
            let kept = self.transcript.entry(space).or_default();
            kept.push_back(entry.clone());
            while kept.len() > TRANSCRIPT_PER_SPACE {
                kept.pop_front();
            }
        }
    }

    /// The private rooms `id` is a party to (whether or not they are still inside).
    fn private_rooms_with(&self, id: &ParticipantId) -> Vec<String> {
        self.private_rooms.iter().filter(|(_, r)| &r.therapist == id || &r.participant == id).map(|(s, _)| s.clone()).collect()
    }

    /// Forgets what was said in breakout `space` (it closed): a reopened breakout with the same
    /// id starts with an empty transcript.
    pub(super) fn forget_space(&mut self, space: &str) {
        self.transcript.remove(&Some(space.to_string()));
    }

    /// The display name of a private room's space id.
    pub(super) fn private_room_name(&self, space: &str) -> Option<&'static str> {
        self.private_rooms.contains_key(space).then_some(PRIVATE_ROOM_NAME)
    }
}

/// Trims a message and checks its length; `None` when it is empty or too long. A sealed text
/// (its form checked by `sealed.rs`) passes as it is: only the recipients can read it.
fn clean_text(text: Text) -> Option<Text> {
    let Text::Plain(text) = text else { return Some(text) };
    let text = text.trim();
    let n = text.chars().count();
    (n > 0 && n <= MAX_CHAT_CHARS).then(|| Text::Plain(text.to_string()))
}

/// Where a private room sends someone: a space, or back to where the room's plan puts them
/// (their breakout while breakouts are open, else the main room).
pub(super) enum Dest {
    Space(Option<String>),
    Home,
}

/// The moves a private room opening or closing asks of the room, which owns membership and
/// media routing (private rooms are spaces like breakouts).
pub(super) type Moves = Vec<(ParticipantId, Dest)>;

impl Chat {
    /// Handles the chat messages (see the protocol). `Some(moves)` when a private room opened
    /// or closed: the room moves those people and updates the breakout plan.
    pub(super) fn on_message(&mut self, cx: &mut Cx, from: &ParticipantId, msg: ClientMessage) -> Option<Moves> {
        // Who may send what is the permission table's (checked before this); what is left here
        // is the chat's own state.
        cx.members.get(from)?;
        match msg {
            ClientMessage::Chat { text, to } => self.post(cx, from, text, to),
            ClientMessage::SetChatSettings { enabled, private_messages, keep_transcript } => {
                let s = &mut self.settings;
                s.enabled = enabled.unwrap_or(s.enabled);
                s.private_messages = private_messages.unwrap_or(s.private_messages);
                s.keep_transcript = keep_transcript.unwrap_or(s.keep_transcript);
                if !s.keep_transcript {
                    self.transcript.clear();
                }
                cx.audit(from, "chat_settings", None);
                let admitted: Vec<_> = cx.members.values().filter(|m| m.admitted).map(|m| m.info.id.clone()).collect();
                for p in admitted {
                    cx.send(&p, ServerMessage::ChatSettings(self.settings));
                }
            }
            ClientMessage::DeleteChatMessage { message_id } => {
                let Some(delivered) = self.delivered.remove(&message_id) else {
                    cx.error(from, ErrorCode::UnknownChatMessage, "no recent message with that id");
                    return None;
                };
                self.delivered_order.retain(|m| m != &message_id);
                if let Some(kept) = self.transcript.get_mut(&delivered.space) {
                    kept.retain(|e| e.id != message_id);
                }
                cx.audit(from, "chat_delete", None);
                let mut to: Vec<_> = delivered.recipients.into_iter().collect();
                if !to.contains(from) {
                    to.push(from.clone());
                }
                for p in to {
                    cx.send(&p, ServerMessage::ChatMessageDeleted { message_id: message_id.clone() });
                }
            }
            ClientMessage::OpenPrivateRoom { participant_id } => return self.open_private_room(cx, from, &participant_id),
            ClientMessage::ClosePrivateRoom { space_id } => {
                if !self.private_rooms.contains_key(&space_id) {
                    cx.error(from, ErrorCode::UnknownPrivateRoom, "no open private room with that id");
                    return None;
                }
                let moves = self.close_private_room(cx, &space_id);
                cx.audit(from, "private_room_close", None);
                return Some(moves);
            }
            _ => {}
        }
        None
    }

    fn post(&mut self, cx: &mut Cx, from: &ParticipantId, text: Text, to: Option<ParticipantId>) {
        let Some(sender) = cx.members.get(from) else { return };
        let (is_therapist, from_name, space) = (sender.is_therapist(), sender.info.name.clone(), sender.space.clone());
        if !self.settings.enabled && !is_therapist {
            return cx.error(from, ErrorCode::ChatDisabled, "the therapist turned chat off");
        }
        let Some(text) = clean_text(text) else {
            return cx.error(from, ErrorCode::InvalidChat, format!("a message is 1 to {MAX_CHAT_CHARS} characters"));
        };
        let recipients: Vec<ParticipantId> = match &to {
            None => cx.space_of(from),
            Some(target) => {
                let Some(t) = cx.members.get(target).filter(|m| m.admitted && &m.info.id != from) else {
                    return cx.error(from, ErrorCode::UnknownParticipant, "nobody with that id is in the room");
                };
                // Anyone may write to a therapist, and a therapist to anyone, wherever they are;
                // between participants only in the same space and when the therapist allows it.
                if !is_therapist && !t.is_therapist() {
                    if !self.settings.private_messages {
                        return cx.error(
                            from,
                            ErrorCode::PrivateMessagesOff,
                            "private messages between participants are off; you can message the therapist",
                        );
                    }
                    if t.space != space {
                        return cx.error(from, ErrorCode::UnknownParticipant, "that person is in another room");
                    }
                }
                vec![from.clone(), target.clone()]
            }
        };
        if !self.allow(from, cx.now.at) {
            return cx.error(from, ErrorCode::RateLimited, "you are sending messages quickly; wait a few seconds");
        }
        let entry = ChatEntry {
            id: ChatMessageId::random(),
            from: from.clone(),
            from_name,
            text,
            private: to.is_some(),
            to,
            sent_at_ms: cx.now.unix_ms as u64,
        };
        self.remember(&entry, space, recipients.iter().cloned().collect());
        for p in recipients {
            cx.send(&p, ServerMessage::ChatMessage(entry.clone()));
        }
    }

    /// On admission: the settings, and the kept messages of the main room (a member placed
    /// straight into a breakout got that breakout's when they moved there).
    pub(super) fn admitted(&mut self, cx: &mut Cx, id: &ParticipantId) {
        cx.send(id, ServerMessage::ChatSettings(self.settings));
        if cx.members.get(id).is_some_and(|m| m.space.is_none()) {
            self.send_history(cx, id);
        }
    }

    /// A new connection took over `id`'s place (same space): the settings, and the kept
    /// messages of that space (the new connection has seen nothing yet).
    pub(super) fn resumed(&mut self, cx: &mut Cx, id: &ParticipantId) {
        cx.send(id, ServerMessage::ChatSettings(self.settings));
        self.send_history(cx, id);
    }

    /// With `keepTranscript`: what was said in `id`'s space (private messages only to their
    /// parties). Those who get a message this way also get its deletion.
    pub(super) fn send_history(&mut self, cx: &mut Cx, id: &ParticipantId) {
        if !self.settings.keep_transcript {
            return;
        }
        let Some(space) = cx.members.get(id).map(|m| m.space.clone()) else { return };
        let messages: Vec<ChatEntry> = self
            .transcript
            .get(&space)
            .map(|kept| kept.iter().filter(|e| !e.private || &e.from == id || e.to.as_ref() == Some(id)).cloned().collect())
            .unwrap_or_default();
        for e in &messages {
            if let Some(d) = self.delivered.get_mut(&e.id) {
                d.recipients.insert(id.clone());
            }
        }
        cx.send(id, ServerMessage::ChatHistory { messages });
    }

    fn open_private_room(&mut self, cx: &mut Cx, from: &ParticipantId, participant: &ParticipantId) -> Option<Moves> {
        match cx.members.get(participant) {
            // Not staff, and never a family guest: their place is their family space.
            Some(m) if m.admitted && !m.info.role.facilitates() && m.info.role != crate::auth::Role::FamilyGuest => {}
            _ => {
                cx.error(from, ErrorCode::UnknownParticipant, "no participant with that id is in the room");
                return None;
            }
        }
        self.forget_empty_private_rooms(cx.members);
        if self.in_private_room(cx, from) {
            cx.error(from, ErrorCode::PrivateRoomBusy, "you are already in a private room; close it first");
            return None;
        }
        if self.in_private_room(cx, participant) {
            cx.error(from, ErrorCode::PrivateRoomBusy, "they are already in a private room with a therapist");
            return None;
        }
        self.next_private += 1;
        let space = format!("{PRIVATE_PREFIX}{}", self.next_private);
        self.private_rooms.insert(space.clone(), PrivateRoom { therapist: from.clone(), participant: participant.clone() });
        cx.audit(from, "private_room_open", Some(participant));
        Some(vec![(from.clone(), Dest::Space(Some(space.clone()))), (participant.clone(), Dest::Space(Some(space)))])
    }

    fn in_private_room(&self, cx: &Cx, id: &ParticipantId) -> bool {
        cx.members.get(id).and_then(|m| m.space.as_ref()).is_some_and(|s| self.private_rooms.contains_key(s))
    }

    /// Forgets private rooms nobody is in any more: opening or closing breakouts moves everyone,
    /// private rooms included, and a therapist may step out to visit a breakout.
    pub(super) fn forget_empty_private_rooms(&mut self, members: &HashMap<ParticipantId, Member>) {
        let empty: Vec<String> =
            self.private_rooms.keys().filter(|s| !members.values().any(|m| m.space.as_deref() == Some(s.as_str()))).cloned().collect();
        for s in empty {
            self.private_rooms.remove(&s);
            self.transcript.remove(&Some(s));
        }
    }

    /// Ends a private room: its participant returns to where they belong, its therapist to the
    /// main room. Whoever already left it stays where they went. Its transcript is forgotten.
    fn close_private_room(&mut self, cx: &Cx, space: &str) -> Moves {
        let Some(room) = self.private_rooms.remove(space) else { return Vec::new() };
        self.transcript.remove(&Some(space.to_string()));
        let inside = |id: &ParticipantId| cx.members.get(id).is_some_and(|m| m.space.as_deref() == Some(space));
        let mut moves = Vec::new();
        if inside(&room.participant) {
            moves.push((room.participant.clone(), Dest::Home));
        }
        if inside(&room.therapist) {
            moves.push((room.therapist.clone(), Dest::Space(None)));
        }
        moves
    }

    /// A member left the room for good (a dropped connection that resumes within the grace
    /// period never gets here): a private room they were in closes, so the other party is not
    /// left alone in it. The moves of each room that closed.
    pub(super) fn member_left(&mut self, cx: &Cx, id: &ParticipantId) -> Vec<Moves> {
        self.private_rooms_with(id).into_iter().map(|space| self.close_private_room(cx, &space)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(clean_text("  hi  ".into()), Some("hi".into()));
        assert_eq!(clean_text("   ".into()), None);
        assert!(clean_text("é".repeat(MAX_CHAT_CHARS).into()).is_some(), "characters, not bytes");
        assert_eq!(clean_text("a".repeat(MAX_CHAT_CHARS + 1).into()), None);
    }

    #[test]
    fn rate_limit_is_a_sliding_window() {
        let mut chat = Chat::default();
        let p = ParticipantId::from_trusted("p");
        let t0 = Instant::now();
        for i in 0..MESSAGES_PER_WINDOW {
            assert!(chat.allow(&p, t0 + Duration::from_millis(i as u64)));
        }
        assert!(!chat.allow(&p, t0 + Duration::from_millis(100)));
        assert!(chat.allow(&ParticipantId::from_trusted("q"), t0), "per sender");
        assert!(!chat.allow(&p, t0 + RATE_WINDOW - Duration::from_millis(1)), "refusals do not count, the window slides");
        assert!(chat.allow(&p, t0 + RATE_WINDOW));
    }

    #[test]
    fn transcript_is_kept_only_when_asked_and_bounded() {
        let mut chat = Chat::default();
        let entry = |i: usize| ChatEntry {
            id: ChatMessageId::from_raw(format!("m-{i}")),
            from: ParticipantId::from_trusted("p"),
            from_name: "P".into(),
            text: "x".into(),
            to: None,
            private: false,
            sent_at_ms: 0,
        };
        chat.remember(&entry(0), None, HashSet::new());
        assert!(chat.transcript.is_empty(), "ephemeral by default");
        chat.settings.keep_transcript = true;
        for i in 1..=TRANSCRIPT_PER_SPACE + 3 {
            chat.remember(&entry(i), None, HashSet::new());
        }
        let kept = &chat.transcript[&None];
        assert_eq!(kept.len(), TRANSCRIPT_PER_SPACE);
        assert_eq!(kept.front().map(|e| e.id.as_str()), Some("m-4"), "oldest dropped first");
    }
}
