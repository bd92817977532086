//! /metrics after a real session with media.

use crate::common;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::signal::protocol::MediaKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(server: &hearth::server::RunningServer) -> String {
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

/// The value of the first sample line that starts with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_a_session() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let url = common::ws_url(&server);
    let a =
        MediaClient::join(MediaOptions::light(&url, "m", "a").with_token(common::token(&server, "m", Role::Therapist, "A"))).await.unwrap();
    let b = MediaClient::join(MediaOptions::light(&url, "m", "b").with_token(common::token(&server, "m", Role::Participant, "B")))
        .await
        .unwrap();
    let flowing = common::eventually(Duration::from_secs(10), || {
        a.packets_from(&b.participant_id, MediaKind::Video) > 10 && b.packets_from(&a.participant_id, MediaKind::Audio) > 10
    })
    .await;
    assert!(flowing);
    let mut raw = hearth::client::SignalClient::connect(&url).await.unwrap();
    raw.send_raw(r#"{"type":"fly"}"#.into()).await.unwrap();
    raw.recv().await.unwrap();

    let text = scrape(&server).await;
    assert_eq!(value(&text, "hearth_rooms "), 1.0);
    assert_eq!(value(&text, r#"hearth_participants{role="therapist"}"#), 1.0);
    assert_eq!(value(&text, r#"hearth_participants{role="participant"}"#), 1.0);
    assert_eq!(value(&text, "hearth_peer_connections "), 2.0);
    assert_eq!(value(&text, "hearth_published_tracks "), 4.0);
    assert_eq!(value(&text, "hearth_forwarded_tracks "), 4.0);
    let in_packets = value(&text, "hearth_rtp_packets_in_total ");
    let out_packets = value(&text, "hearth_rtp_packets_out_total ");
    assert!(in_packets > 40.0 && out_packets > 40.0, "in {in_packets} out {out_packets}");
    assert!(value(&text, "hearth_rtp_bytes_out_total ") > out_packets * 10.0);
    assert!(value(&text, "hearth_pli_sent_total ") >= 1.0, "new subscribers ask for keyframes");
    assert_eq!(value(&text, r#"hearth_ws_messages_total{type="join"}"#), 2.0);
    assert!(value(&text, r#"hearth_ws_messages_total{type="offer"}"#) >= 2.0);
    assert_eq!(value(&text, r#"hearth_errors_total{code="unknown_type"}"#), 1.0);
    assert_eq!(value(&text, "hearth_join_seconds_count "), 2.0);
    // Ids and names never appear.
    assert!(!text.contains(a.participant_id.as_str()) && !text.contains("\"A\""));
    a.leave().await;
    b.leave().await;
    server.shutdown().await;
}
