//! Bad input gets a stable error code, changes nothing, and the connection lives on.

use crate::common;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::signal::protocol::{ClientMessage, ErrorCode, ServerMessage, PROTOCOL_VERSION};

async fn expect_error(c: &mut SignalClient) -> ErrorCode {
    match recv!(c, ServerMessage::Error { .. }) {
        ServerMessage::Error { code, message } => {
            assert!(!message.is_empty(), "errors carry a human message");
            code
        }
        _ => unreachable!(),
    }
}

fn join(server: &hearth::server::RunningServer, room: &str, name: &str) -> ClientMessage {
    let token = common::token(server, room, Role::Participant, name);
    ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token }
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_still_joins() {
    let server = common::start_open_server().await;
    let mut c = SignalClient::connect(&common::ws_url(&server)).await.unwrap();

    c.send_raw("{not json".into()).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::MalformedJson);
    c.send_raw(r#"{"hello":1}"#.into()).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::MissingType);
    c.send_raw(r#"{"type":"teleport"}"#.into()).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::UnknownType);
    c.send_raw(r#"{"type":"join","protocolVersion":1,"token":"no room"}"#.into()).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::InvalidMessage);
    let oversized = format!(r#"{{"type":"join","protocolVersion":1,"roomId":"r","token":"{}"}}"#, "x".repeat(70_000));
    c.send_raw(oversized).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::MessageTooLarge);
    c.send(&ClientMessage::Join { protocol_version: 99, room_id: RoomId::new("r").unwrap(), token: "a".into() }).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::UnsupportedVersion);
    c.send(&ClientMessage::SetMute { kind: hearth::signal::protocol::MediaKind::Audio, muted: true }).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::NotJoined);

    // None of that changed any state.
    let h = common::health(&server).await;
    assert_eq!((h["rooms"].as_u64(), h["participants"].as_u64()), (Some(0), Some(0)));

    // The same connection joins and works.
    c.send(&join(&server, "r", "Dana")).await.unwrap();
    let (protocol_version, admitted) = recv!(c, ServerMessage::Joined { protocol_version, admitted, .. } => (protocol_version, admitted));
    assert_eq!(protocol_version, PROTOCOL_VERSION);
    assert!(admitted, "no waiting room on this server");
    c.send(&ClientMessage::Ping { nonce: Some(7) }).await.unwrap();
    let pong = recv!(c, ServerMessage::Pong { .. });
    assert_eq!(pong, ServerMessage::Pong { nonce: Some(7) });

    // A second join on a joined connection is refused; the first stays.
    c.send(&join(&server, "other", "Dana")).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::AlreadyJoined);
    let h = common::health(&server).await;
    assert_eq!((h["rooms"].as_u64(), h["participants"].as_u64()), (Some(1), Some(1)));
    server.shutdown().await;
}

#[tokio::test]
async fn roster_events_and_room_limit() {
    let mut config = common::test_config();
    config.limits.max_room_size = 2;
    config.rooms.waiting_room = false;
    let server = common::start_with(config).await;
    let url = common::ws_url(&server);
    let mut a = SignalClient::connect(&url).await.unwrap();
    a.send(&join(&server, "small", "Ana")).await.unwrap();
    recv!(a, ServerMessage::Joined { .. });
    let mut b = SignalClient::connect(&url).await.unwrap();
    b.send(&join(&server, "small", "Ben")).await.unwrap();
    let ServerMessage::Joined { participant_id: b_id, .. } = recv!(b, ServerMessage::Joined { .. }) else { unreachable!() };
    let ServerMessage::Admitted { participants, .. } = recv!(b, ServerMessage::Admitted { .. }) else { unreachable!() };
    assert_eq!(participants.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["Ana", "Ben"]);
    let ev = recv!(a, ServerMessage::ParticipantJoined { .. });
    let ServerMessage::ParticipantJoined { participant } = ev else { unreachable!() };
    assert_eq!((participant.id.clone(), participant.name.as_str()), (b_id.clone(), "Ben"));

    let mut c = SignalClient::connect(&url).await.unwrap();
    c.send(&join(&server, "small", "Cleo")).await.unwrap();
    assert_eq!(expect_error(&mut c).await, ErrorCode::RoomFull);

    // A dropped socket (no `leave`) still leaves the room and tells the others.
    drop(b);
    let ev = recv!(a, ServerMessage::ParticipantLeft { .. });
    assert_eq!(ev, ServerMessage::ParticipantLeft { participant_id: b_id });
    // Now there is room for Cleo on the same connection that was refused.
    c.send(&join(&server, "small", "Cleo")).await.unwrap();
    recv!(c, ServerMessage::Joined { .. });
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_says_goodbye() {
    let server = common::start_open_server().await;
    let mut c = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    c.send(&join(&server, "bye", "Eve")).await.unwrap();
    recv!(c, ServerMessage::Joined { .. });
    let shutdown = tokio::spawn(server.shutdown());
    let msg = recv!(c, ServerMessage::Goodbye { .. });
    assert!(matches!(msg, ServerMessage::Goodbye { .. }));
    assert!(matches!(c.recv().await, Ok(None) | Err(_)), "socket closes after goodbye");
    shutdown.await.unwrap();
}
