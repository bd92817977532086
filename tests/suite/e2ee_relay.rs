//! The end-to-end encryption relay through the real server: the policy (`setE2ee`, a
//! `required` room keeps its waiting room), who may send what, each member getting only its
//! own wrap, and nothing of it in the room's saved state.

use crate::common;

use common::expect_error;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions, SignalClient, VideoCodec};
use hearth::room::RoomId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, E2eeWrap, ErrorCode, MediaKind, ServerMessage, PROTOCOL_VERSION};
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

/// A `required` room forwards only what browsers can encrypt frame by frame: an H.264 camera
/// gets `e2ee_codec` and reaches nobody, while the same publisher's Opus and another's VP8 do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_room_refuses_h264_and_forwards_vp8_and_opus() {
    let _machine = common::machine(common::Load::Media).await;
    let mut config = common::test_config();
    config.rooms.e2ee = E2eeMode::Required;
    let server = common::start_with(config).await;
    let room = "sealed-codecs";
    let mut t = join(&server, room, Role::Therapist, "t-1").await;
    let url = common::ws_url(&server);
    let member = |id: &str, codec: VideoCodec, publish: bool| {
        let mut opts = MediaOptions::light(&url, room, id).with_token(common::token_for(&server, room, Role::Participant, id, id));
        opts.video_codec = codec;
        opts.publish_audio = publish;
        opts.publish_video = publish;
        tokio::spawn(MediaClient::join(opts))
    };
    let joins = [member("p-h264", VideoCodec::H264, true), member("p-vp8", VideoCodec::Vp8, true), member("p-sub", VideoCodec::Vp8, false)];
    recv!(t, ServerMessage::WaitingList { waiting } if waiting.len() == 3);
    for id in ["p-h264", "p-vp8", "p-sub"] {
        send(&mut t, ClientMessage::Admit { participant_id: common::pid(id) }).await;
    }
    let mut clients = Vec::new();
    for j in joins {
        clients.push(j.await.expect("join task").expect("admitted and connected"));
    }
    let [mut h264, vp8, sub] = <[MediaClient; 3]>::try_from(clients).unwrap_or_else(|_| panic!("three clients"));

    let refused = h264
        .wait_for("e2ee_codec", Duration::from_secs(20), |m| matches!(m, ServerMessage::Error { code: ErrorCode::E2eeCodec, .. }))
        .await
        .expect("the H.264 publisher is told its camera is not forwarded");
    eprintln!("{refused:?}");
    // The positive controls: the refused publisher's own microphone, and another's VP8 camera.
    let flowing = common::eventually(Duration::from_secs(20), || {
        sub.packets_from(&h264.participant_id, MediaKind::Audio) >= 50
            && sub.packets_from(&vp8.participant_id, MediaKind::Video) >= 30
            && vp8.packets_from(&h264.participant_id, MediaKind::Audio) >= 50
    })
    .await;
    assert!(
        flowing,
        "Opus and VP8 flow in a required room: {:?}",
        sub.received().values().map(|r| (&r.participant, r.kind, r.packets)).collect::<Vec<_>>()
    );
    for (who, c) in [("p-sub", &sub), ("p-vp8", &vp8)] {
        assert_eq!(c.packets_from(&h264.participant_id, MediaKind::Video), 0, "{who} received H.264 video in a required room");
        assert!(
            !c.received().values().any(|r| r.participant == h264.participant_id.as_str() && r.kind == MediaKind::Video),
            "{who} was offered the H.264 track"
        );
    }
    for c in [h264, vp8, sub] {
        c.leave().await;
    }
    server.shutdown().await;
}
