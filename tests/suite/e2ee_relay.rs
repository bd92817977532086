//! The end-to-end encryption relay through the real server: the policy (`setE2ee`, a
//! `required` room keeps its waiting room), who may send what, each member getting only its
//! own wrap, and nothing of it in the room's saved state.

use crate::common;

use common::expect_error;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, E2eeWrap, ErrorCode, ServerMessage, PROTOCOL_VERSION};
use hearth::vocab::E2eeMode;

const WAIT: Duration = Duration::from_secs(5);

async fn join(server: &RunningServer, room: &str, role: Role, id: &str) -> SignalClient {
    let mut c = SignalClient::connect(&common::ws_url(server)).await.expect("connect");
    let token = common::token_for(server, room, role, id, id);
    c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).expect("room"), token })
        .await
        .expect("send");
    match c.recv_until("joined", WAIT, |m| matches!(m, ServerMessage::Joined { .. } | ServerMessage::Error { .. })).await {
        Ok(ServerMessage::Joined { .. }) => c,
        other => panic!("join refused: {other:?}"),
    }
}

async fn send(c: &mut SignalClient, msg: ClientMessage) {
    c.send(&msg).await.expect("send");
}

fn hello(key: &str) -> ClientMessage {
    ClientMessage::E2eeHello { ecdh_pub: key.into(), identity_key: None, identity_sig: None }
}

fn leader_hello(key: &str) -> ClientMessage {
    ClientMessage::E2eeHello { ecdh_pub: key.into(), identity_key: Some(format!("{key}ID")), identity_sig: Some(format!("{key}SIG")) }
}

#[tokio::test]
async fn the_policy_is_set_before_admitting_and_required_keeps_the_waiting_room() {
    let server = common::start_open_server().await;
    let mut t = join(&server, "pol", Role::Therapist, "t-1").await;
    send(&mut t, ClientMessage::SetE2ee { mode: E2eeMode::Required }).await;
    let room = match t.recv_until("roomStateChanged", WAIT, |m| matches!(m, ServerMessage::RoomStateChanged { .. })).await {
        Ok(ServerMessage::RoomStateChanged { room }) => room,
        other => panic!("{other:?}"),
    };
    assert_eq!(room.e2ee, E2eeMode::Required);
    assert!(room.waiting_room, "required turns the waiting room on (this server's default is off)");
    send(&mut t, ClientMessage::SetWaitingRoom { enabled: false }).await;
    expect_error(&mut t, ErrorCode::E2eeSettingLocked).await;
    // A participant now waits, and may not change the policy.
    let mut p = join(&server, "pol", Role::Participant, "p-1").await;
    send(&mut p, ClientMessage::SetE2ee { mode: E2eeMode::Off }).await;
    expect_error(&mut p, ErrorCode::Forbidden).await;
    send(&mut t, ClientMessage::Admit { participant_id: common::pid("p-1") }).await;
    p.recv_until("admitted", WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await.expect("admitted");
    // Once someone besides therapists is in, the policy stays.
    send(&mut t, ClientMessage::SetE2ee { mode: E2eeMode::Off }).await;
    expect_error(&mut t, ErrorCode::E2eeSettingLocked).await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_unencrypted_room_takes_no_keys() {
    let server = common::start_open_server().await;
    let mut p = join(&server, "off", Role::Participant, "p-1").await;
    send(&mut p, hello("PUB")).await;
    expect_error(&mut p, ErrorCode::Forbidden).await;
    server.shutdown().await;
}

#[tokio::test]
async fn keys_are_relayed_blind_and_each_member_gets_only_its_own_wrap() {
    let mut config = common::test_config();
    config.rooms.e2ee = E2eeMode::Required;
    let server = common::start_with(config).await;
    let mut t = join(&server, "keys", Role::Therapist, "t-1").await;
    send(&mut t, leader_hello("TPUB")).await;
    match t.recv_until("e2eeLeader", WAIT, |m| matches!(m, ServerMessage::E2eeLeader { participant_id: Some(_), .. })).await {
        Ok(ServerMessage::E2eeLeader { participant_id, ecdh_pub, .. }) => {
            assert_eq!(participant_id.as_ref().map(|p| p.as_str()), Some("t-1"));
            assert_eq!(ecdh_pub.as_deref(), Some("TPUB"));
        }
        other => panic!("{other:?}"),
    }
    let mut a = join(&server, "keys", Role::Participant, "p-a").await;
    // Everyone, waiting or not, is told who the leader is.
    a.recv_until("leader", WAIT, |m| matches!(m, ServerMessage::E2eeLeader { participant_id: Some(_), .. }))
        .await
        .expect("a hears the leader");
    let mut b = join(&server, "keys", Role::Participant, "p-b").await;
    // Announced from the waiting room: the therapist learns the keys before admitting.
    send(&mut a, hello("APUB")).await;
    send(&mut b, hello("BPUB")).await;
    for key in ["APUB", "BPUB"] {
        t.recv_until(key, WAIT, |m| matches!(m, ServerMessage::E2eePeerKey { ecdh_pub, .. } if ecdh_pub == key)).await.expect("peer key");
    }
    // A participant may not sign with an identity key, nor send bundles.
    send(&mut a, leader_hello("APUB2")).await;
    expect_error(&mut a, ErrorCode::Forbidden).await;
    for id in ["p-a", "p-b"] {
        send(&mut t, ClientMessage::Admit { participant_id: common::pid(id) }).await;
    }
    a.recv_until("admitted", WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await.expect("admitted");
    b.recv_until("admitted", WAIT, |m| matches!(m, ServerMessage::Admitted { .. })).await.expect("admitted");
    t.recv_until("spaces", WAIT, |m| matches!(m, ServerMessage::E2eeSpaces { spaces } if spaces[0].members.len() == 3))
        .await
        .expect("the leader hears who is in the main room");
    let bundle = |wraps: Vec<E2eeWrap>| ClientMessage::E2eeKeyBundle {
        space: "main".into(),
        epoch: 7,
        bundle: "eyJ2Ijox".into(),
        signature: "SIG".into(),
        wraps,
    };
    let wrap = |id: &str, w: &str| E2eeWrap { participant_id: common::pid(id), wrap: w.into() };
    send(&mut a, bundle(vec![wrap("p-b", "EVIL")])).await;
    expect_error(&mut a, ErrorCode::Forbidden).await;
    send(&mut t, bundle(vec![wrap("p-a", "not base64!")])).await;
    expect_error(&mut t, ErrorCode::InvalidE2ee).await;
    send(&mut t, bundle(vec![wrap("p-a", "WRAPA"), wrap("p-b", "WRAPB")])).await;
    for (c, mine) in [(&mut a, "WRAPA"), (&mut b, "WRAPB")] {
        match c.recv_until("e2eeKeys", WAIT, |m| matches!(m, ServerMessage::E2eeKeys { .. })).await {
            Ok(ServerMessage::E2eeKeys { wrap, bundle, from, space, epoch, .. }) => {
                assert_eq!((wrap.as_str(), bundle.as_str(), from.as_str(), space.as_str(), epoch), (mine, "eyJ2Ijox", "t-1", "main", 7));
            }
            other => panic!("{other:?}"),
        }
        // Only one: never the other member's wrap.
        let more = c.recv_until("another e2eeKeys", Duration::from_millis(300), |m| matches!(m, ServerMessage::E2eeKeys { .. })).await;
        assert!(more.is_err(), "a member got a second wrap: {more:?}");
    }
    server.shutdown().await;
}
