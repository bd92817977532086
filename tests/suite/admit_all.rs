//! A therapy group starting with "Admit all": ten people admitted together each receive a
//! first keyframe from every publisher, through the real server and the load generator's
//! `admit_all` mode (the same code path as `hearth-load --admit-all`), with one renegotiation
//! each and shared keyframes.

use crate::common;

use std::time::Duration;

use hearth::client::media::VideoProfile;
use hearth::load::{self, LoadConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_admitted_together_each_see_every_publisher() {
    let _machine = common::machine(common::Load::Heavy).await;
    // The embedded defaults: the waiting room is on.
    let server = common::start_server().await;
    let mut cfg = LoadConfig::new(common::ws_url(&server));
    cfg.token_secret = server.state().config.auth.token_secret.clone();
    cfg.admit_all = true;
    cfg.publishers = 3;
    cfg.subscribers = 10;
    cfg.duration = Duration::from_secs(1);
    cfg.warmup = Duration::ZERO;
    cfg.video = VideoProfile::camera(300);

    let report = tokio::time::timeout(Duration::from_secs(90), load::run(&cfg)).await.expect("bounded run").expect("run succeeds");
    eprintln!("{}", report.summary());
    let admitted = report.admit_all.expect("an admit-all report");
    assert_eq!(admitted.subscribers, 10);
    // A condition with a deadline (the run waits up to 20 s), not a timing assertion: the
    // figures are hearth-load's to measure (docs/performance.md).
    assert_eq!(admitted.complete, 10, "every admitted subscriber decoded a first keyframe of every publisher");
    assert_eq!(admitted.pairs_ms.samples, 30, "10 subscribers x 3 publishers");
    assert!(admitted.last_publisher_ms.max.is_some());
    // How the group got there, in counts rather than milliseconds (a busy machine stretches
    // the time, not these). Each newcomer is subscribed to all six tracks in one
    // renegotiation, not one per track (an OS preemption between the room's commands may
    // split a rare one in two, hence the median).
    assert_eq!(admitted.server_offers.p50, Some(1.0), "one server offer carries every track");
    // One keyframe serves every joiner waiting on it: ten joiners cost each publisher a few
    // keyframes (2-4 measured; more the further apart their transports connect on a loaded
    // machine), never more than one each. Without coalescing each joiner's connection and
    // each of its legs would ask: about 20.
    let requests = admitted.keyframe_requests.max.expect("publishers counted");
    assert!(requests <= 10.0, "{requests} keyframe requests to one publisher for 10 joiners");
    // The therapist, the publishers and the subscribers all receive everything.
    assert_eq!(report.forwarded.streams, report.forwarded.expected_streams);

    let emptied = common::eventually(Duration::from_secs(5), || server.state().rooms.participant_count() == 0).await;
    assert!(emptied, "everyone left");
    server.shutdown().await;
}
