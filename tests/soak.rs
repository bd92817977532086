//! Soak: many join/leave cycles with abrupt disconnects leave nothing behind.

mod common;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions, SignalClient};
use hearth::room::RoomId;
use hearth::signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

async fn settle(server: &hearth::server::RunningServer) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let h = common::health(server).await;
        if (h["participants"] == 0 && h["peers"] == 0 && h["rooms"] == 0) || tokio::time::Instant::now() > deadline {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_abrupt_cycles_leave_nothing_behind() {
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    config.rooms.reconnect_grace_ms = 100;
    config.limits.joins_per_minute_per_ip = 100_000;
    let server = common::start_with(config).await;
    let url = common::ws_url(&server);
    let metrics = tokio::runtime::Handle::current().metrics();
    // A participant who stays the whole time, so rooms and subscriptions churn around someone.
    let anchor = MediaClient::join(MediaOptions::light(&url, "soak", "anchor").with_token(common::token(
        &server,
        "soak",
        Role::Therapist,
        "Anchor",
    )))
    .await
    .unwrap();

    let mut baseline = None;
    for cycle in 0..500u32 {
        if cycle % 10 == 0 {
            // Every tenth cycle is a full media client: ICE, DTLS, tracks, then dropped cold.
            let token = common::token(&server, "soak", Role::Participant, "M");
            let c = MediaClient::join(MediaOptions::light(&url, "soak", "m").with_token(token)).await.expect("media join");
            tokio::time::sleep(Duration::from_millis(150)).await;
            c.close().await; // socket and peer dropped without a word
        } else {
            let mut c = SignalClient::connect(&url).await.unwrap();
            let token = common::token(&server, "soak", Role::Participant, "S");
            c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new("soak").unwrap(), token })
                .await
                .unwrap();
            c.recv_until("joined", Duration::from_secs(5), |m| matches!(m, ServerMessage::Joined { .. })).await.unwrap();
            drop(c); // abrupt: no leave, no close frame
        }
        if cycle == 99 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            baseline = Some((metrics.num_alive_tasks(), rss_kib()));
        }
    }
    anchor.leave().await;
    let h = settle(&server).await;
    assert_eq!((h["participants"].as_u64(), h["peers"].as_u64(), h["rooms"].as_u64()), (Some(0), Some(0), Some(0)), "{h}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (tasks0, rss0) = baseline.unwrap();
    let (tasks1, rss1) = (metrics.num_alive_tasks(), rss_kib());
    eprintln!("soak: tasks {tasks0} -> {tasks1}, rss {rss0} KiB -> {rss1} KiB");
    assert!(tasks1 <= tasks0 + 10, "task count is flat: {tasks0} after warm-up, {tasks1} at the end");
    assert!(rss1 < rss0 + 64 * 1024, "RSS is flat: {rss0} KiB after warm-up, {rss1} KiB at the end");
    server.shutdown().await;
}
