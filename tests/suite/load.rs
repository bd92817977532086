//! A short load run through `hearth::load` against the real server in-process: the same code
//! path as `hearth-load`, with small counts so it stays fast.

use crate::common;

use std::time::Duration;

use hearth::client::media::VideoProfile;
use hearth::load::{self, LoadConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_load_run_forwards_media_and_reports() {
    let _machine = common::machine(common::Load::Media).await;
    // Nobody admits from a waiting room in a load run.
    let server = common::start_open_server().await;
    let mut cfg = LoadConfig::new(common::ws_url(&server));
    cfg.token_secret = server.state().config.auth.token_secret.clone();
    cfg.rooms = 1;
    cfg.publishers = 2;
    cfg.subscribers = 2;
    cfg.duration = Duration::from_secs(3);
    cfg.warmup = Duration::from_millis(500);
    // Lighter than a real camera: the test proves the pipeline, hearth-load measures it.
    cfg.video = VideoProfile::camera(300);
    cfg.server_pid = Some(std::process::id());
    cfg.server_in_process = true;

    let report = tokio::time::timeout(Duration::from_secs(40), load::run(&cfg)).await.expect("bounded run").expect("run succeeds");
    eprintln!("{}", report.summary());

    let f = &report.forwarded;
    // 2 publishers x 2 tracks to 1 other publisher and 2 subscribers.
    assert_eq!(f.expected_streams, 2 * 2 * 3);
    assert_eq!(f.streams, f.expected_streams, "every remote track delivered");
    assert!(f.packets > 500, "packets were forwarded: {}", f.packets);
    assert!(f.bytes > f.packets * 50);
    assert!(report.loss.expected > 0);
    assert!(report.loss.fraction < 0.05, "loss {:.3}", report.loss.fraction);
    assert_eq!(f.seq_regressions, 0);
    assert!(report.latency_ms.samples > 100 && report.latency_ms.p50.is_some());
    assert_eq!(report.join_ms.samples, 3, "everyone but the first publisher joined into live media");

    let json: serde_json::Value = serde_json::to_value(&report).expect("serialises");
    for path in [
        "/window_s",
        "/forwarded/packets_per_s",
        "/forwarded/bytes_per_s",
        "/loss/fraction",
        "/latency_ms/p50",
        "/latency_ms/p99",
        "/latency_ms/max",
        "/join_ms/p50",
        "/server/cpu_s_per_million_packets",
        "/server/rss_per_participant_kib",
        "/config/participants",
    ] {
        assert!(json.pointer(path).is_some_and(|v| !v.is_null()), "report has {path}: {json}");
    }

    // Everyone left: the server is empty again.
    let emptied = common::eventually(Duration::from_secs(5), || server.state().rooms.participant_count() == 0).await;
    assert!(emptied, "load participants left the server");
    server.shutdown().await;
}

#[tokio::test]
async fn refuses_targets_off_this_machine() {
    for url in ["ws://10.1.2.3:8080/ws", "ws://example.org/ws", "wss://127.0.0.1/ws"] {
        let err = load::run(&LoadConfig::new(url)).await.expect_err("refused");
        assert!(matches!(err, load::LoadError::Target(_)), "{url}: {err}");
    }
}

/// Simulcast and a weak subscriber through the load generator: layers are counted, the
/// throttled subscriber is reported, and the others still get the high layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_load_run_counts_layers() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let mut cfg = LoadConfig::new(common::ws_url(&server));
    cfg.publishers = 1;
    cfg.subscribers = 2;
    cfg.duration = Duration::from_secs(4);
    cfg.warmup = Duration::from_millis(500);
    cfg.video = VideoProfile::camera(600);
    cfg.simulcast = true;
    cfg.throttle_kbps = Some(40);
    cfg.throttled_subscribers = 1;
    let report = tokio::time::timeout(Duration::from_secs(60), load::run(&cfg)).await.expect("bounded run").expect("run succeeds");
    eprintln!("{}", report.summary());
    let layers = report.forwarded.video_layer_packets;
    assert!(layers[2] > 50, "the unthrottled subscriber gets the high layer: {layers:?}");
    assert_eq!(report.throttled_subscribers, 1);
    let json = serde_json::to_value(&report).expect("serialises");
    assert!(json.pointer("/forwarded/video_layer_packets").is_some() && json.pointer("/video_paused_subscribers").is_some());
}
