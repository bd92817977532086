//! Simulcast through the real server with webrtc client peers: a publisher sends three layers
//! (rids q/h/f); each subscriber receives the one layer that fits the tile height it asked for,
//! switches on a keyframe when it asks for another, and sees one continuous sequence of RTP
//! sequence numbers across the switch. `maxHeight: 0` pauses its video and keeps its audio.

use crate::common;

use common::pid;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::signal::protocol::{ClientMessage, ErrorCode, MediaKind, PauseReason, ServerMessage, SimulcastLayer};

const WAIT: Duration = Duration::from_secs(15);

/// Video packets received from `who` by layer.
fn layers(c: &MediaClient, who: &str) -> [u64; 3] {
    let mut out = [0; 3];
    for t in c.received().values().filter(|t| t.participant == who && t.kind == MediaKind::Video) {
        for (o, n) in out.iter_mut().zip(t.layers) {
            *o += n;
        }
    }
    out
}

fn video_track(c: &MediaClient, who: &str) -> hearth::client::ReceivedTrack {
    c.received().into_values().find(|t| t.participant == who && t.kind == MediaKind::Video).expect("a video track")
}

/// Waits until `c` receives fresh packets of `layer` only.
async fn settles_on(c: &MediaClient, who: &str, layer: usize) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = layers(c, who);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = layers(c, who);
        let grew: Vec<usize> = (0..3).filter(|&i| now[i] > last[i]).collect();
        if grew == [layer] {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{} still receives layers {grew:?} of {who}, not only {layer} ({now:?})", c.participant_id));
        }
        last = now;
    }
}

async fn video_track_id(c: &mut MediaClient, who: &str) -> String {
    let m = c
        .wait_for(
            "trackPublished video",
            WAIT,
            |m| matches!(m, ServerMessage::TrackPublished { participant_id, kind: MediaKind::Video, .. } if *participant_id == pid(who)),
        )
        .await
        .expect("the publisher's video is announced");
    let ServerMessage::TrackPublished { track_id, .. } = m else { unreachable!() };
    track_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_the_layer_that_fits_their_tile() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let opts = |id: &str, publish: bool| {
        let mut o =
            MediaOptions::light(&url, "simulcast", id).with_token(common::token_for(&server, "simulcast", Role::Participant, id, id));
        o.publish_video = publish;
        o.publish_audio = publish;
        o.simulcast = publish;
        o.video_payload = 800;
        o
    };
    let mut small = MediaClient::join(opts("small", false)).await.expect("joins");
    let mut large = MediaClient::join(opts("large", false)).await.expect("joins");
    let publisher = MediaClient::join(opts("pub", true)).await.expect("publisher joins");
    let (small_track, large_track) = (video_track_id(&mut small, "pub").await, video_track_id(&mut large, "pub").await);

    small.send(ClientMessage::SetVideoPreference { track_id: small_track.clone(), max_height: 90 });
    large.send(ClientMessage::SetVideoPreference { track_id: large_track.clone(), max_height: 720 });
    settles_on(&small, "pub", 0).await.unwrap();
    settles_on(&large, "pub", 2).await.unwrap();
    let m = small
        .wait_for("videoState", WAIT, |m| matches!(m, ServerMessage::VideoState { layer: Some(SimulcastLayer::Low), paused: false, .. }))
        .await;
    assert!(m.is_ok(), "the small tile is told it gets the low layer");

    // The small tile grows: switch up on a keyframe, sequence numbers continuous.
    small.send(ClientMessage::SetVideoPreference { track_id: small_track.clone(), max_height: 360 });
    settles_on(&small, "pub", 1).await.unwrap();
    small
        .wait_for("videoState medium", WAIT, |m| matches!(m, ServerMessage::VideoState { layer: Some(SimulcastLayer::Medium), .. }))
        .await
        .expect("told about the switch");
    let t = video_track(&small, "pub");
    assert_eq!(t.seq_regressions, 0, "no sequence number went backwards across the switch");
    assert!(t.max_seq_step <= 3, "the sequence continued across the switch (largest step {})", t.max_seq_step);

    // A hidden tile: video pauses, audio goes on.
    small.send(ClientMessage::SetVideoPreference { track_id: small_track.clone(), max_height: 0 });
    small
        .wait_for("paused", WAIT, |m| matches!(m, ServerMessage::VideoState { paused: true, reason: Some(PauseReason::Preference), .. }))
        .await
        .expect("told the video paused");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (video_before, audio_before) =
        (small.packets_from(&pid("pub"), MediaKind::Video), small.packets_from(&pid("pub"), MediaKind::Audio));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(small.packets_from(&pid("pub"), MediaKind::Video), video_before, "no video while paused");
    assert!(small.packets_from(&pid("pub"), MediaKind::Audio) > audio_before + 20, "audio keeps flowing");
    // And back.
    small.send(ClientMessage::SetVideoPreference { track_id: small_track.clone(), max_height: 90 });
    settles_on(&small, "pub", 0).await.unwrap();
    assert_eq!(video_track(&small, "pub").seq_regressions, 0);

    // A track this connection does not receive.
    small.send(ClientMessage::SetVideoPreference { track_id: "nobody/video/1".into(), max_height: 90 });
    let m = small.wait_for("error", WAIT, |m| matches!(m, ServerMessage::Error { .. })).await.unwrap();
    assert!(matches!(m, ServerMessage::Error { code: ErrorCode::UnknownTrack, .. }), "{m:?}");
    for c in [small, large, publisher] {
        c.close().await;
    }
    server.shutdown().await;
}

/// A subscriber on a weakening network: its own feedback (real loss from a throttle in front
/// of its receiver reports) makes the server switch it down a layer, then pause its video while
/// its audio goes on, then bring video back and up again when the network recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_subscriber_is_switched_down_paused_and_restored() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let opts = |id: &str, publish: bool| {
        let mut o = MediaOptions::light(&url, "weak", id).with_token(common::token_for(&server, "weak", Role::Participant, id, id));
        o.publish_video = publish;
        o.publish_audio = publish;
        o.simulcast = publish;
        o.video_payload = 800; // layers of about 50, 100 and 200 kbit/s
        o
    };
    let mut sub = MediaClient::join(opts("sub", false)).await.expect("joins");
    // A second subscriber on a good network: one weak link must not drag anyone else down.
    let mut healthy = MediaClient::join(opts("healthy", false)).await.expect("joins");
    let publisher = MediaClient::join(opts("pub", true)).await.expect("publisher joins");
    let track = video_track_id(&mut sub, "pub").await;
    sub.send(ClientMessage::SetVideoPreference { track_id: track, max_height: 720 });
    let track = video_track_id(&mut healthy, "pub").await;
    healthy.send(ClientMessage::SetVideoPreference { track_id: track, max_height: 720 });
    settles_on(&sub, "pub", 2).await.unwrap();

    // Room for the middle layer only.
    sub.set_throttle(Some(140));
    sub.wait_for("switched down", Duration::from_secs(20), |m| {
        matches!(m, ServerMessage::VideoState { layer: Some(SimulcastLayer::Medium | SimulcastLayer::Low), .. })
    })
    .await
    .expect("the server switched the weak subscriber down");

    // Not even room for the lowest: video pauses, audio goes on.
    sub.set_throttle(Some(25));
    sub.wait_for("paused", Duration::from_secs(20), |m| {
        matches!(m, ServerMessage::VideoState { paused: true, reason: Some(PauseReason::Bandwidth), .. })
    })
    .await
    .expect("video paused to keep the audio");
    let metrics = common::http(server.addr(), "GET", "/metrics", &[], "").await.1;
    assert!(metrics.contains("hearth_video_paused_for_bandwidth 1"), "the pause is visible to operators: {metrics}");
    let audio = sub.packets_from(&pid("pub"), MediaKind::Audio);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(sub.packets_from(&pid("pub"), MediaKind::Audio) > audio + 30, "audio keeps flowing while video is paused");
    settles_on(&healthy, "pub", 2).await.expect("the healthy subscriber keeps the high layer while the weak one is paused");

    // The network recovers: video resumes and climbs back to the layer the tile wants.
    sub.set_throttle(None);
    sub.wait_for("resumed", Duration::from_secs(20), |m| matches!(m, ServerMessage::VideoState { paused: false, .. }))
        .await
        .expect("video resumes");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if settles_on(&sub, "pub", 2).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never climbed back to the high layer");
    }
    // Once the network is clean again the stream is in order (the throttle's losses brought
    // retransmissions that arrive late; those are the network's, not the rewriter's).
    let before = video_track(&sub, "pub").seq_regressions;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = video_track(&sub, "pub");
    assert_eq!(after.seq_regressions, before, "the sequence goes forward on a clean network");
    let metrics = common::http(server.addr(), "GET", "/metrics", &[], "").await.1;
    assert!(metrics.contains("hearth_video_paused_for_bandwidth 0"), "{metrics}");
    let switches: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hearth_simulcast_layer_switches_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // At least the switch down under the 140 kbit/s throttle; how video climbs back after the
    // pause (one layer at a time, or at once when the estimate allows) varies.
    assert!(switches >= 1, "layer switches are counted ({switches})");
    // The throttle's drops came back as NACKs from the subscriber, which operators see.
    let nacked: u64 =
        metrics.lines().find_map(|l| l.strip_prefix("hearth_nack_received_total ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    assert!(nacked > 0, "NACKed packets are counted: {metrics}");
    sub.close().await;
    healthy.close().await;
    publisher.close().await;
    server.shutdown().await;
}
