//! Real media through the real server: webrtc-crate peers over loopback.

mod common;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::signal::protocol::{MediaKind, ServerMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_receive_each_other_and_leave_cleanly() {
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let mut clients = Vec::new();
    for name in ["ana", "ben", "cleo"] {
        let token = common::token(&server, "circle", Role::Participant, name);
        clients.push(MediaClient::join(MediaOptions::light(&url, "circle", name).with_token(token)).await.expect("join"));
    }
    let ids: Vec<_> = clients.iter().map(|c| c.participant_id.clone()).collect();
    assert_eq!(clients[2].roster.len(), 3, "the third sees the first two and itself in the roster");

    // Everyone receives audio and video from both others, attributed to the right participant.
    let ok = common::eventually(Duration::from_secs(20), || {
        clients.iter().enumerate().all(|(i, c)| {
            ids.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(_, other)| c.packets_from(other, MediaKind::Audio) >= 20 && c.packets_from(other, MediaKind::Video) >= 10)
        })
    })
    .await;
    for (i, c) in clients.iter().enumerate() {
        eprintln!("client {i} received: {:?}", c.received().values().map(|t| (&t.participant, t.kind, t.packets)).collect::<Vec<_>>());
    }
    assert!(ok, "every peer receives audio and video from both others");
    for c in &clients {
        for t in c.received().values() {
            assert_ne!(t.participant, c.participant_id.as_str(), "nobody receives their own media back");
            assert!(ids.iter().any(|id| id.as_str() == t.participant), "track attributed to a participant in the room");
            assert_eq!(t.seq_regressions, 0, "sequence numbers increase on {:?}", t.kind);
        }
    }
    let health = common::health(&server).await;
    assert_eq!(health["participants"], 3);

    // One leaves: the others are told and its tracks stop arriving.
    let leaver = clients.remove(0);
    let leaver_id = leaver.participant_id.clone();
    leaver.leave().await;
    for c in clients.iter_mut() {
        let msg = c
            .wait_for("participantLeft", Duration::from_secs(5), |m| matches!(m, ServerMessage::ParticipantLeft { .. }))
            .await
            .expect("left event");
        assert_eq!(msg, ServerMessage::ParticipantLeft { participant_id: leaver_id.clone() });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<u64> = clients.iter().map(|c| c.packets_from(&leaver_id, MediaKind::Audio)).collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after: Vec<u64> = clients.iter().map(|c| c.packets_from(&leaver_id, MediaKind::Audio)).collect();
    assert_eq!(before, after, "no more RTP from a participant who left");
    // The two who stay still hear each other.
    let (a, b) = (clients[0].packets_from(&ids[2], MediaKind::Audio), clients[1].packets_from(&ids[1], MediaKind::Audio));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(clients[0].packets_from(&ids[2], MediaKind::Audio) > a);
    assert!(clients[1].packets_from(&ids[1], MediaKind::Audio) > b);

    for c in clients {
        c.leave().await;
    }
    let empty = async {
        loop {
            let h = common::health(&server).await;
            if h["participants"] == 0 && h["rooms"] == 0 && h["peers"] == 0 {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), empty).await.expect("server returns to 0 participants, rooms and peers");
    server.shutdown().await;
}
