//! Texts sealed end to end: which fields of which client messages are texts people typed
//! (chat and private messages, a poll's question and options, also when re-sealed, the notes with a celebration, a
//! shared milestone or a congratulation), and the rule that keeps a room's policy: a
//! `required` room takes them only sealed by the sender's browser (`sealed_text_required`
//! otherwise, so a modified client cannot send them in the clear), and other rooms only plain.
//!
//! Owns the check, run before any feature sees the message; a refusal changes nothing, so a
//! plain text in a `required` room is never stored, relayed or logged. Must not open, keep or
//! inspect sealings beyond their form (the features relay them like any text): the server has
//! no key for them.

use super::chat::MAX_CHAT_CHARS;
use super::milestone::{CONGRATULATION_MAX, NOTE_MAX};
use super::poll::{MAX_OPTION_CHARS, MAX_QUESTION_CHARS};
use crate::signal::protocol::{max_sealed_ct_chars, ClientMessage, E2eeMode, ErrorCode, Text, MAX_SEALED_ENVELOPES};

/// The texts of `msg`, each with the longest it may be, in characters.
fn texts(msg: &ClientMessage) -> Vec<(&Text, usize)> {
    match msg {
        ClientMessage::Chat { text, .. } => vec![(text, MAX_CHAT_CHARS)],
        ClientMessage::CreatePoll { question, options, .. } | ClientMessage::ResealPoll { question, options, .. } => {
            std::iter::once((question, MAX_QUESTION_CHARS)).chain(options.iter().map(|o| (o, MAX_OPTION_CHARS))).collect()
        }
        ClientMessage::Celebrate { message, .. } | ClientMessage::ShareMilestone { message, .. } => {
            message.iter().map(|m| (m, NOTE_MAX)).collect()
        }
        ClientMessage::Congratulate { message, .. } => message.iter().map(|m| (m, CONGRATULATION_MAX)).collect(),
        _ => Vec::new(),
    }
}

/// Whether `msg`'s texts suit a room whose policy is `mode`; the refusal otherwise.
pub(super) fn check(msg: &ClientMessage, mode: E2eeMode) -> Result<(), (ErrorCode, String)> {
    for (text, max_chars) in texts(msg) {
        match (mode, text.is_sealed()) {
            (E2eeMode::Required, false) => {
                return Err((
                    ErrorCode::SealedTextRequired,
                    format!("this room is end-to-end encrypted: `{}` texts must be sealed by your browser", msg.kind()),
                ))
            }
            (E2eeMode::Required, true) if !text.is_well_sealed(max_chars) => {
                return Err((
                    ErrorCode::InvalidE2ee,
                    format!(
                        "a sealed text has 1 to {MAX_SEALED_ENVELOPES} sealings, each a space, an epoch, a 12-byte iv and at most {} \
                         characters of base64url ciphertext",
                        max_sealed_ct_chars(max_chars)
                    ),
                ))
            }
            (E2eeMode::Off | E2eeMode::Preferred, true) => {
                return Err((ErrorCode::InvalidE2ee, "texts are sealed only in rooms that require end-to-end encryption".into()))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::protocol::SealedText;

    fn sealed(ct_chars: usize) -> Text {
        Text::Sealed {
            sealed: vec![SealedText { space: "main".into(), epoch: 7, iv: "AAAAAAAAAAAAAAAA".into(), ct: "q".repeat(ct_chars) }],
        }
    }

    fn chat(text: Text) -> ClientMessage {
        ClientMessage::Chat { text, to: None }
    }

    #[test]
    fn a_required_room_takes_only_sealed_texts_and_others_only_plain() {
        let code = |msg: &ClientMessage, mode| check(msg, mode).err().map(|(c, _)| c);
        assert_eq!(code(&chat("hello".into()), E2eeMode::Required), Some(ErrorCode::SealedTextRequired));
        assert_eq!(code(&chat(sealed(40)), E2eeMode::Required), None);
        assert_eq!(code(&chat(sealed(40)), E2eeMode::Off), Some(ErrorCode::InvalidE2ee));
        assert_eq!(code(&chat(sealed(40)), E2eeMode::Preferred), Some(ErrorCode::InvalidE2ee));
        assert_eq!(code(&chat("hello".into()), E2eeMode::Preferred), None);
        let poll = |question: Text, second: Text| ClientMessage::CreatePoll {
            question,
            options: vec![sealed(30), second],
            multiple: false,
            anonymous: true,
            duration_secs: None,
            scope: None,
        };
        assert_eq!(code(&poll(sealed(30), "Hard".into()), E2eeMode::Required), Some(ErrorCode::SealedTextRequired), "every option");
        assert_eq!(code(&poll(sealed(30), sealed(30)), E2eeMode::Required), None);
        assert_eq!(code(&ClientMessage::RaiseHand, E2eeMode::Required), None, "messages without texts");
    }

    #[test]
    fn sealings_are_bounded_like_the_plain_field() {
        let most = max_sealed_ct_chars(MAX_CHAT_CHARS);
        assert_eq!(most, 5355, "4 bytes a character and the tag, in base64url");
        assert!(check(&chat(sealed(most)), E2eeMode::Required).is_ok());
        assert_eq!(check(&chat(sealed(most + 1)), E2eeMode::Required).err().map(|(c, _)| c), Some(ErrorCode::InvalidE2ee));
        assert_eq!(check(&chat(sealed(10)), E2eeMode::Required).err().map(|(c, _)| c), Some(ErrorCode::InvalidE2ee), "no room for a tag");
        let mut bad_iv = sealed(40);
        if let Text::Sealed { sealed } = &mut bad_iv {
            sealed[0].iv = "short".into();
        }
        assert!(check(&chat(bad_iv), E2eeMode::Required).is_err());
        let none = Text::Sealed { sealed: Vec::new() };
        assert!(check(&chat(none), E2eeMode::Required).is_err());
        let label = sealed(max_sealed_ct_chars(CONGRATULATION_MAX) + 1);
        let congratulate = ClientMessage::Congratulate {
            celebration_id: crate::signal::protocol::CelebrationId::from_raw("c-1"),
            reaction: crate::signal::protocol::Reaction::Clap,
            message: Some(label),
        };
        assert!(check(&congratulate, E2eeMode::Required).is_err());
    }
}
