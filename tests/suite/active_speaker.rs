//! Active speaker through the real server: three webrtc client peers send the audio-level
//! header extension as browsers do; the server follows the loudest voice with hysteresis and
//! tells the room only when the speaker changes. A hard-muted voice never counts.

use crate::common;

use common::pid;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::signal::protocol::{ClientMessage, MediaKind, ServerMessage};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: u8 = 127;
const LOUD: u8 = 20;
const MURMUR: u8 = 70;

async fn speaker_becomes(c: &mut MediaClient, who: Option<&str>) -> Result<(), String> {
    let want = who.map(pid);
    c.wait_for("activeSpeaker", WAIT, |m| matches!(m, ServerMessage::ActiveSpeaker { participant_id } if *participant_id == want))
        .await
        .map(|_| ())
        .map_err(|e| format!("{} never heard that the speaker is {who:?}: {e}", c.participant_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loudest_voice_is_the_active_speaker() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let mut clients = Vec::new();
    for (id, role) in [("t", Role::Therapist), ("a", Role::Participant), ("b", Role::Participant)] {
        let mut o = MediaOptions::light(&url, "speakers", id).with_token(common::token_for(&server, "speakers", role, id, id));
        o.publish_video = false;
        o.audio_level = Some(QUIET);
        clients.push(MediaClient::join(o).await.expect("joins"));
    }
    // Everyone hears everyone before levels change.
    for c in &clients {
        for other in ["t", "a", "b"].iter().filter(|o| **o != c.participant_id.as_str()) {
            let heard = common::eventually(WAIT, || c.packets_from(&pid(other), MediaKind::Audio) > 10).await;
            let got: Vec<_> = c.received().values().map(|t| (t.participant.clone(), t.kind, t.packets)).collect();
            assert!(heard, "{} did not hear {other}; it received {got:?}", c.participant_id);
        }
    }

    // A speaks over B's murmur: everyone is told A.
    clients[1].set_audio_level(Some(LOUD));
    clients[2].set_audio_level(Some(MURMUR));
    for c in clients.iter_mut() {
        speaker_becomes(c, Some("a")).await.unwrap();
    }
    // B takes over while A falls silent.
    clients[1].set_audio_level(Some(QUIET));
    clients[2].set_audio_level(Some(LOUD));
    for c in clients.iter_mut() {
        speaker_becomes(c, Some("b")).await.unwrap();
    }
    // Silence: after a short hold, nobody is highlighted.
    clients[2].set_audio_level(Some(QUIET));
    for c in clients.iter_mut() {
        speaker_becomes(c, None).await.unwrap();
    }

    // A hard-muted participant is not forwarded, so however loud, never the speaker; B, quieter
    // but heard, is.
    clients[0].send(ClientMessage::Mute { participant_id: pid("a"), kind: MediaKind::Audio, hard: true });
    clients[0]
        .wait_for("a hard-muted", WAIT, |m| {
            matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == pid("a") && participant.audio_hard_muted)
        })
        .await
        .unwrap();
    clients[1].set_audio_level(Some(0));
    clients[2].set_audio_level(Some(40));
    for c in clients.iter_mut() {
        let first = c.wait_for("activeSpeaker", WAIT, |m| matches!(m, ServerMessage::ActiveSpeaker { .. })).await.unwrap();
        assert_eq!(first, ServerMessage::ActiveSpeaker { participant_id: Some(pid("b")) }, "a hard-muted voice never counts");
    }
    for c in clients {
        c.close().await;
    }
    server.shutdown().await;
}
