//! Property test of the room state machine through the real server: random message sequences
//! from random roles. Invariants: no panic (the server keeps answering), the participant count
//! matches who is joined, everyone is in exactly one space, no participant ever gets a
//! moderator action through, and everything returns to zero at the end.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::{ParticipantId, RoomId};
use hearth::signal::protocol::{ClientMessage, ErrorCode, MediaKind, ServerMessage, PROTOCOL_VERSION};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Client {
    id: ParticipantId,
    role: Role,
    conn: SignalClient,
}

fn random_action(rng: &mut StdRng, ids: &[ParticipantId]) -> ClientMessage {
    let target = if ids.is_empty() || rng.random_bool(0.1) {
        ParticipantId::from_trusted("p-nobody")
    } else {
        ids[rng.random_range(0..ids.len())].clone()
    };
    let kind = if rng.random_bool(0.5) { MediaKind::Audio } else { MediaKind::Video };
    match rng.random_range(0..19) {
        0 => ClientMessage::Admit { participant_id: target },
        1 => ClientMessage::AdmitAll,
        2 => ClientMessage::Decline { participant_id: target, r#final: false },
        3 => ClientMessage::Mute { participant_id: target, kind, hard: rng.random_bool(0.5) },
        4 => ClientMessage::Unmute { participant_id: target, kind },
        5 => ClientMessage::MuteAll { kind, hard: rng.random_bool(0.5) },
        6 => ClientMessage::Remove { participant_id: target },
        7 => ClientMessage::LockRoom { locked: rng.random_bool(0.3) },
        8 => ClientMessage::SetWaitingRoom { enabled: rng.random_bool(0.5) },
        9 => ClientMessage::Spotlight { participant_id: Some(target) },
        10 => ClientMessage::RaiseHand,
        11 => ClientMessage::LowerHand { participant_id: Some(target) },
        12 => ClientMessage::SetMute { kind, muted: rng.random_bool(0.5) },
        13 => ClientMessage::CreateBreakout { name: format!("b{}", rng.random_range(0..3)) },
        14 => ClientMessage::AssignBreakout { participant_id: target, breakout_id: Some(format!("b{}", rng.random_range(1..4))) },
        15 => ClientMessage::OpenBreakouts { duration_secs: None, warning_secs: None, allow_return: rng.random_bool(0.5) },
        16 => ClientMessage::CloseBreakouts { countdown_secs: Some(0) },
        17 => ClientMessage::GoToBreakout { breakout_id: if rng.random_bool(0.5) { None } else { Some("b1".into()) } },
        _ => ClientMessage::AutoAssignBreakouts,
    }
}

fn moderator_only(m: &ClientMessage) -> bool {
    !matches!(
        m,
        ClientMessage::RaiseHand | ClientMessage::SetMute { .. } | ClientMessage::GoToBreakout { .. } | ClientMessage::LowerHand { .. }
    )
}

async fn run_seed(seed: u64) {
    let mut config = common::test_config();
    config.rooms.reconnect_grace_ms = 0;
    config.limits.joins_per_minute_per_ip = 100_000;
    let server = common::start_with(config).await;
    let url = common::ws_url(&server);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clients: Vec<Client> = Vec::new();
    let mut next = 0u32;
    for step in 0..250 {
        let roll = rng.random_range(0..100);
        if roll < 12 || clients.is_empty() {
            // Someone joins with a random role.
            let role = match rng.random_range(0..5) {
                0 => Role::Therapist,
                1 => Role::Observer,
                _ => Role::Participant,
            };
            next += 1;
            let id = format!("f{next}");
            let mut conn = SignalClient::connect(&url).await.unwrap();
            let token = common::token_for(&server, "fuzz", role, &id, &id);
            conn.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new("fuzz").unwrap(), token })
                .await
                .unwrap();
            let reply = conn
                .recv_until("join reply", Duration::from_secs(5), |m| {
                    matches!(m, ServerMessage::Joined { .. } | ServerMessage::Error { .. })
                })
                .await
                .unwrap();
            if matches!(reply, ServerMessage::Joined { .. }) {
                clients.push(Client { id: ParticipantId::from_trusted(id), role, conn });
            }
        } else if roll < 20 {
            // Someone leaves: politely or by dropping the socket.
            let c = clients.swap_remove(rng.random_range(0..clients.len()));
            let mut conn = c.conn;
            if rng.random_bool(0.5) {
                let _ = conn.send(&ClientMessage::Leave).await;
            }
            drop(conn);
        } else if roll < 23 {
            let i = rng.random_range(0..clients.len());
            let junk = ["{", "[]", r#"{"type":7}"#, r#"{"type":"mute","participantId":3}"#, "null"];
            clients[i].conn.send_raw(junk[rng.random_range(0..junk.len())].into()).await.unwrap();
        } else {
            let ids: Vec<_> = clients.iter().map(|c| c.id.clone()).collect();
            let i = rng.random_range(0..clients.len());
            let action = random_action(&mut rng, &ids);
            let escalation = clients[i].role != Role::Therapist && moderator_only(&action);
            let _ = clients[i].conn.send(&action).await;
            if escalation {
                // The refusal arrives, unless the room ended this session first. (An earlier
                // `raiseHand` over the alert limit may have left a `rate_limited` before it.)
                let reply = clients[i]
                    .conn
                    .recv_until("refusal", Duration::from_secs(5), |m| {
                        matches!(m, ServerMessage::Error { code, .. } if *code != ErrorCode::RateLimited)
                            || matches!(m, ServerMessage::SessionEnded { .. })
                    })
                    .await;
                if let Ok(ServerMessage::Error { code, .. }) = reply {
                    assert!(matches!(code, ErrorCode::Forbidden | ErrorCode::NotAdmitted), "seed {seed} step {step}: {code:?}");
                }
            }
        }
        // Drop clients whose session the room ended (removed, declined, ended).
        let mut gone = HashSet::new();
        for c in clients.iter_mut() {
            while let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_millis(1), c.conn.recv()).await {
                if matches!(m, ServerMessage::SessionEnded { .. }) {
                    gone.insert(c.id.clone());
                }
            }
        }
        clients.retain(|c| !gone.contains(&c.id));

        if step % 25 == 24 {
            // Counts match who is still joined, and a therapist sees everyone in exactly one place.
            let expected = clients.len() as u64;
            let mut last;
            let matched = {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                loop {
                    last = common::health(&server).await;
                    if last["participants"].as_u64() == Some(expected) || tokio::time::Instant::now() > deadline {
                        break last["participants"].as_u64() == Some(expected);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            assert!(matched, "seed {seed} step {step}: server counts {last}, test has {expected} joined");
        }
    }
    for c in clients {
        drop(c.conn);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = common::health(&server).await;
        if h["participants"] == 0 && h["rooms"] == 0 && h["peers"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "seed {seed}: not back to zero: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sequences_keep_the_invariants() {
    for seed in [1, 2, 3, 0x5eed] {
        run_seed(seed).await;
    }
}
