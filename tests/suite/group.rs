//! Running a group through the real server: the speaking queue (one order on every screen),
//! go-around rounds on the server's clock, ground rules at the door, enforced against a raw
//! websocket client that never accepts them, and accountability partners that outlive the
//! session and are shown to nobody but their members and the therapists.

use crate::common;

use common::{expect_error, pid};

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::{ParticipantId, RoomId};
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, ErrorCode, MediaKind, QueuedHand, RoundInfo, RoundOrder, ServerMessage, PROTOCOL_VERSION};

const WAIT: Duration = Duration::from_secs(10);

fn join_msg(room: &str, token: String) -> ClientMessage {
    ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token }
}

/// Joins with a chosen participant id and waits for `joined`.
async fn join(server: &RunningServer, room: &str, role: Role, name: &str, id: &str) -> SignalClient {
    let mut c = SignalClient::connect(&common::ws_url(server)).await.unwrap();
    c.send(&join_msg(room, common::token_for(server, room, role, name, id))).await.unwrap();
    match recv!(c, ServerMessage::Joined { .. } | ServerMessage::Error { .. }) {
        ServerMessage::Joined { .. } => c,
        other => panic!("join refused: {other:?}"),
    }
}

/// Joins and waits until admitted (the server runs without a waiting room, or a therapist admits).
async fn join_admitted(server: &RunningServer, room: &str, role: Role, name: &str, id: &str) -> SignalClient {
    let mut c = join(server, room, role, name, id).await;
    recv!(c, ServerMessage::Admitted { .. });
    c
}

/// The next `speakingQueue` with `n` hands.
async fn queue_of(c: &mut SignalClient, n: usize) -> (Vec<QueuedHand>, Option<ParticipantId>) {
    match c.recv_until("speakingQueue", WAIT, |m| matches!(m, ServerMessage::SpeakingQueue { queue, .. } if queue.len() == n)).await {
        Ok(ServerMessage::SpeakingQueue { queue, floor }) => (queue, floor),
        other => panic!("no queue of {n}: {other:?}"),
    }
}

async fn round_where(c: &mut SignalClient, what: &str, f: impl Fn(&RoundInfo) -> bool) -> RoundInfo {
    match c.recv_until(what, WAIT, |m| matches!(m, ServerMessage::RoundUpdated { round: Some(r) } if f(r))).await {
        Ok(ServerMessage::RoundUpdated { round: Some(r) }) => r,
        other => panic!("{what}: {other:?}"),
    }
}

#[tokio::test]
async fn the_queue_has_one_order_on_every_screen_under_concurrent_raises() {
    let mut config = common::test_config();
    config.rooms.waiting_room = false;
    // Long enough for a reconnect on a busy machine.
    config.rooms.reconnect_grace_ms = 10_000;
    let server = common::start_with(config).await;
    let room = "queue";
    let mut t = join_admitted(&server, room, Role::Therapist, "T", "t-1").await;
    let mut a = join_admitted(&server, room, Role::Participant, "A", "p-a").await;
    let mut b = join_admitted(&server, room, Role::Participant, "B", "p-b").await;
    let mut c = join_admitted(&server, room, Role::Participant, "C", "p-c").await;
    a.send(&ClientMessage::SetMute { kind: MediaKind::Audio, muted: true }).await.unwrap();

    // Three raises at once, each from its own socket.
    let raise = ClientMessage::RaiseHand;
    let (ra, rb, rc) = tokio::join!(a.send(&raise), b.send(&raise), c.send(&raise));
    ra.unwrap();
    rb.unwrap();
    rc.unwrap();
    let mut seen = Vec::new();
    for s in [&mut t, &mut a, &mut b, &mut c] {
        seen.push(queue_of(s, 3).await);
    }
    let (first, _) = &seen[0];
    for (q, floor) in &seen {
        assert_eq!(q, first, "every screen shows the same queue");
        assert_eq!(*floor, None);
    }
    assert!(first.windows(2).all(|w| w[0].seq < w[1].seq), "stamped in order: {first:?}");
    let mut ids: Vec<_> = first.iter().map(|h| h.participant_id.as_str().to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["p-a", "p-b", "p-c"]);

    // A participant may not give the floor; nothing changes.
    b.send(&ClientMessage::GiveFloor { participant_id: None, spotlight: false }).await.unwrap();
    expect_error(&mut b, ErrorCode::Forbidden).await;

    // The therapist gives the floor to the first hand, with the spotlight: their hand goes down,
    // the spotlight follows, and their microphone stays as they left it.
    let head = first[0].participant_id.clone();
    t.send(&ClientMessage::GiveFloor { participant_id: None, spotlight: true }).await.unwrap();
    let (q, floor) = queue_of(&mut t, 2).await;
    assert_eq!(floor.as_ref(), Some(&head));
    assert_eq!(q, first[1..].to_vec(), "the rest keep their places and stamps");
    let updated = t
        .recv_until(
            "hand down",
            WAIT,
            |m| matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == head && !participant.hand_raised),
        )
        .await
        .unwrap();
    let spot = t.recv_until("spotlight", WAIT, |m| matches!(m, ServerMessage::RoomStateChanged { room } if room.spotlight.is_some())).await;
    assert!(matches!(&spot, Ok(ServerMessage::RoomStateChanged { room }) if room.spotlight.as_ref() == Some(&head)), "{spot:?} {head:?}");
    if head == pid("p-a") {
        assert!(matches!(updated, ServerMessage::ParticipantUpdated { participant } if participant.audio_muted), "never unmuted");
    }

    // Reconnecting within the grace period keeps one's place.
    let last = first[2].participant_id.clone();
    let (who, name) = match last.as_str() {
        "p-a" => (a, "A"),
        "p-b" => (b, "B"),
        _ => (c, "C"),
    };
    // The socket drops (no `leave`): the place is held.
    drop(who);
    let mut back = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    back.send(&join_msg(room, common::token_for(&server, room, Role::Participant, name, last.as_str()))).await.unwrap();
    let (q, _) = queue_of(&mut back, 2).await;
    assert_eq!(q.last().map(|h| &h.participant_id), Some(&last), "{q:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_round_advances_on_the_servers_clock_and_only_therapists_steer_it() {
    let server = common::start_open_server().await;
    let room = "round";
    let mut t = join_admitted(&server, room, Role::Therapist, "T", "t-1").await;
    let mut a = join_admitted(&server, room, Role::Participant, "A", "p-a").await;
    let mut b = join_admitted(&server, room, Role::Participant, "B", "p-b").await;

    a.send(&ClientMessage::StartRound { order: RoundOrder::Roster, seconds_per_turn: Some(5), allow_pass: true }).await.unwrap();
    expect_error(&mut a, ErrorCode::Forbidden).await;
    t.send(&ClientMessage::StartRound { order: RoundOrder::Roster, seconds_per_turn: Some(3), allow_pass: true }).await.unwrap();
    expect_error(&mut t, ErrorCode::InvalidRound).await;

    t.send(&ClientMessage::StartRound { order: RoundOrder::Roster, seconds_per_turn: Some(5), allow_pass: true }).await.unwrap();
    let r = round_where(&mut b, "round started", |r| r.current.is_some()).await;
    assert_eq!(r.order, vec![pid("p-a"), pid("p-b")], "participants in join order; the therapist is not in it");
    assert_eq!(r.current, Some(pid("p-a")));
    assert!(r.seconds_left.is_some_and(|s| (1..=5).contains(&s)) && r.turn_ends_at_ms.is_some(), "{r:?}");

    b.send(&ClientMessage::PassTurn).await.unwrap();
    expect_error(&mut b, ErrorCode::NotYourTurn).await;
    a.send(&ClientMessage::NextTurn).await.unwrap();
    expect_error(&mut a, ErrorCode::Forbidden).await;

    // A late joiner goes to the end of the round.
    let mut c = join_admitted(&server, room, Role::Participant, "C", "p-c").await;
    let r = round_where(&mut c, "round with the late joiner", |r| r.order.len() == 3).await;
    assert_eq!(r.order.last(), Some(&pid("p-c")));

    // Nobody sends anything: the server's clock ends A's turn.
    let r = round_where(&mut a, "time up", |r| r.current == Some(pid("p-b"))).await;
    assert!(r.passed.is_empty());
    // B passes; C leaves before their turn and is skipped: the round is complete.
    c.send(&ClientMessage::Leave).await.unwrap();
    round_where(&mut t, "C skipped", |r| r.skipped.contains(&pid("p-c"))).await;
    b.send(&ClientMessage::PassTurn).await.unwrap();
    let r = round_where(&mut t, "complete", |r| r.current.is_none()).await;
    assert_eq!((r.passed, r.skipped), (vec![pid("p-b")], vec![pid("p-c")]));
    t.send(&ClientMessage::EndRound).await.unwrap();
    recv!(a, ServerMessage::RoundUpdated { round: None });
    t.send(&ClientMessage::NextTurn).await.unwrap();
    expect_error(&mut t, ErrorCode::NoRound).await;
    server.shutdown().await;
}

/// A websocket client that speaks JSON text directly, with no Hearth client code in between.
struct Raw(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>);

impl Raw {
    async fn connect(server: &RunningServer) -> Self {
        Self(tokio_tungstenite::connect_async(common::ws_url(server)).await.expect("ws").0)
    }

    async fn send(&mut self, json: &str) {
        self.0.send(tokio_tungstenite::tungstenite::Message::text(json)).await.expect("send");
    }

    /// The next text frame whose `type` is `ty`, as JSON.
    async fn next_of(&mut self, ty: &str) -> serde_json::Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let Some(Ok(msg)) = self.0.next().await else { panic!("socket closed waiting for {ty}") };
                if let Ok(text) = msg.to_text() {
                    let v: serde_json::Value = serde_json::from_str(text).expect("json");
                    if v["type"] == ty {
                        return v;
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {ty}"))
    }
}

#[tokio::test]
async fn the_agreement_is_enforced_against_a_client_that_never_accepts() {
    let server = common::start_server().await;
    let room = "door";
    let mut t = join_admitted(&server, room, Role::Therapist, "T", "t-1").await;
    let text = "What is said here stays here. No recording.";
    t.send(&ClientMessage::SetAgreement { text: Some(text.into()), ask_location: true }).await.unwrap();
    let version = match recv!(t, ServerMessage::Agreement { text: Some(_), .. }) {
        ServerMessage::Agreement { version: Some(v), text: Some(shown), .. } if shown == text => v,
        other => panic!("{other:?}"),
    };

    // The raw client joins, reads the agreement, and never accepts.
    let mut raw = Raw::connect(&server).await;
    let tok = common::token_for(&server, room, Role::Participant, "Never", "p-raw");
    raw.send(&format!(r#"{{"type":"join","protocolVersion":1,"roomId":"{room}","token":"{tok}"}}"#)).await;
    let shown = raw.next_of("agreement").await;
    assert_eq!(
        (shown["version"].as_str(), shown["askLocation"].as_bool(), shown["accepted"].as_bool()),
        (Some(version.as_str()), Some(true), Some(false))
    );
    raw.send(r#"{"type":"setAgreement","text":"nothing","askLocation":false}"#).await;
    assert_eq!(raw.next_of("error").await["code"], "forbidden");
    raw.send(r#"{"type":"acceptAgreement","version":"0000000000000000","location":"here"}"#).await;
    assert_eq!(raw.next_of("error").await["code"], "agreement_changed");
    raw.send(&format!(r#"{{"type":"acceptAgreement","version":"{version}"}}"#)).await;
    assert_eq!(raw.next_of("error").await["code"], "invalid_agreement", "the location was asked");

    t.send(&ClientMessage::Admit { participant_id: pid("p-raw") }).await.unwrap();
    expect_error(&mut t, ErrorCode::AgreementPending).await;

    // Someone who accepts, with where they are: therapists see it; admitAll admits only them.
    let mut ok = join(&server, room, Role::Participant, "Yes", "p-ok").await;
    ok.send(&ClientMessage::AcceptAgreement { version: version.clone(), location: Some("at home, upstairs".into()) }).await.unwrap();
    recv!(ok, ServerMessage::Agreement { accepted: true, .. });
    let statuses =
        recv!(t, ServerMessage::AgreementStatuses { people } if people.iter().any(|p| p.agreed && p.participant_id == pid("p-ok")));
    let ServerMessage::AgreementStatuses { people } = statuses else { unreachable!() };
    let by = |id: &str| people.iter().find(|p| p.participant_id == pid(id)).cloned().expect("listed");
    assert_eq!(by("p-ok").location.as_deref(), Some("at home, upstairs"));
    assert!(!by("p-raw").agreed);
    t.send(&ClientMessage::AdmitAll).await.unwrap();
    recv!(ok, ServerMessage::Admitted { .. });
    // The raw client is still waiting: what it sends in the room is refused.
    raw.send(r#"{"type":"raiseHand"}"#).await;
    assert_eq!(raw.next_of("error").await["code"], "not_admitted");
    let h = common::health(&server).await;
    assert_eq!(h["participants"], 3);

    // A changed text asks again: the next person's old acceptance no longer admits them.
    t.send(&ClientMessage::SetAgreement { text: Some(format!("{text} Be somewhere private.")), ask_location: false }).await.unwrap();
    let changed = raw.next_of("agreement").await;
    assert_ne!(changed["version"].as_str(), Some(version.as_str()));

    // The acceptance is in the audit log: who, and which version.
    let store = server.state().store.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let rows = loop {
        let rows = store.audit_log(room).await.unwrap();
        if rows.iter().any(|r| r.action == "accept_agreement") {
            break rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "no acceptance in the audit log: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let row = rows.iter().find(|r| r.action == "accept_agreement").unwrap();
    assert_eq!((row.actor.as_str(), row.target.as_deref()), ("p-ok", Some(version.as_str())));
    server.shutdown().await;
}

#[tokio::test]
async fn the_agenda_is_the_same_for_late_joiners_and_templates_are_kept_per_therapist() {
    use hearth::signal::protocol::{AgendaInfo, AgendaItem};
    let server = common::start_open_server().await;
    let room = "agenda";
    let mut t = join_admitted(&server, room, Role::Therapist, "T", "t-1").await;
    let mut a = join_admitted(&server, room, Role::Participant, "A", "p-a").await;
    let items =
        vec![AgendaItem { title: "Check-in round".into(), minutes: 10 }, AgendaItem { title: "Coping with cravings".into(), minutes: 40 }];
    async fn agenda_where(c: &mut SignalClient, what: &str, f: impl Fn(&AgendaInfo) -> bool) -> AgendaInfo {
        match c.recv_until(what, WAIT, |m| matches!(m, ServerMessage::AgendaUpdated { agenda } if f(agenda))).await {
            Ok(ServerMessage::AgendaUpdated { agenda }) => agenda,
            other => panic!("{what}: {other:?}"),
        }
    }

    a.send(&ClientMessage::SetAgenda { items: items.clone() }).await.unwrap();
    expect_error(&mut a, ErrorCode::Forbidden).await;
    t.send(&ClientMessage::SetAgenda { items: vec![AgendaItem { title: "Forever".into(), minutes: 241 }] }).await.unwrap();
    expect_error(&mut t, ErrorCode::InvalidAgenda).await;
    t.send(&ClientMessage::SetAgenda { items: items.clone() }).await.unwrap();
    agenda_where(&mut a, "the agenda", |g| g.items == items && g.current.is_none()).await;
    t.send(&ClientMessage::StartSegment { index: 0 }).await.unwrap();
    let started = agenda_where(&mut a, "item 0 running", |g| g.current == Some(0)).await;
    assert!(started.seconds_left.is_some_and(|s| (590..=600).contains(&s)), "{started:?}");

    // A late joiner sees the same item and the same end.
    let mut late = join_admitted(&server, room, Role::Participant, "L", "p-late").await;
    let seen = agenda_where(&mut late, "the late joiner's agenda", |g| g.current == Some(0)).await;
    assert_eq!(seen.ends_at_ms.map(|e| e / 1000), started.ends_at_ms.map(|e| e / 1000));

    t.send(&ClientMessage::ExtendSegment { minutes: 5 }).await.unwrap();
    let extended = agenda_where(&mut a, "extended", |g| g.seconds_left.is_some_and(|s| s > 600)).await;
    assert_eq!(extended.ends_at_ms.unwrap() - started.ends_at_ms.unwrap(), 300_000, "{extended:?} {started:?}");
    t.send(&ClientMessage::StartSegment { index: 1 }).await.unwrap();
    let next = agenda_where(&mut late, "item 1", |g| g.current == Some(1)).await;
    assert_eq!(next.done, vec![0]);
    t.send(&ClientMessage::EndSegment).await.unwrap();
    agenda_where(&mut a, "ended", |g| g.current.is_none() && g.done == vec![0, 1]).await;
    t.send(&ClientMessage::EndSegment).await.unwrap();
    expect_error(&mut t, ErrorCode::InvalidAgenda).await;

    // Templates are the therapist's own, and outlive the session.
    t.send(&ClientMessage::SaveAgendaTemplate { name: "Tuesday IOP".into() }).await.unwrap();
    let saved = recv!(t, ServerMessage::AgendaTemplates { templates } if !templates.is_empty());
    assert!(
        matches!(&saved, ServerMessage::AgendaTemplates { templates } if templates[0].name == "Tuesday IOP" && templates[0].items == items)
    );
    a.send(&ClientMessage::GetAgendaTemplates).await.unwrap();
    expect_error(&mut a, ErrorCode::Forbidden).await;
    let mut other = join_admitted(&server, "elsewhere", Role::Therapist, "U", "t-2").await;
    other.send(&ClientMessage::GetAgendaTemplates).await.unwrap();
    let theirs = recv!(other, ServerMessage::AgendaTemplates { .. });
    assert!(
        matches!(theirs, ServerMessage::AgendaTemplates { templates } if templates.is_empty()),
        "another therapist's templates are not shown"
    );
    let mut again = join_admitted(&server, "later", Role::Therapist, "T", "t-1").await;
    again.send(&ClientMessage::GetAgendaTemplates).await.unwrap();
    let mine = recv!(again, ServerMessage::AgendaTemplates { .. });
    assert!(matches!(mine, ServerMessage::AgendaTemplates { templates } if templates.len() == 1));
    server.shutdown().await;
}

/// Waits (bounded) for a frame matching `pred`, keeping every frame received on the way.
async fn record_until(c: &mut SignalClient, seen: &mut Vec<ServerMessage>, what: &str, pred: impl Fn(&ServerMessage) -> bool) {
    c.recv_until(what, WAIT, |m| {
        seen.push(m.clone());
        pred(m)
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Everything the server queued for `c` so far (a ping's answer comes after it), kept.
async fn record_all(c: &mut SignalClient, seen: &mut Vec<ServerMessage>) {
    c.send(&ClientMessage::Ping { nonce: Some(77) }).await.unwrap();
    record_until(c, seen, "pong", |m| matches!(m, ServerMessage::Pong { nonce: Some(77) })).await;
}

fn ids(v: &[&str]) -> Vec<ParticipantId> {
    v.iter().map(|s| pid(s)).collect()
}

#[tokio::test]
async fn partner_groups_outlive_the_session_open_breakouts_in_one_action_and_stay_private() {
    use hearth::signal::protocol::AbsentPartners;
    let server = common::start_open_server().await;
    let room = "partners";
    let mut t = join_admitted(&server, room, Role::Therapist, "T", "t-1").await;
    let mut people = Vec::new();
    for id in ["p-a", "p-b", "p-c", "p-d", "p-e"] {
        people.push((id, join_admitted(&server, room, Role::Participant, id, id).await, Vec::new()));
    }
    let groups = vec![ids(&["p-a", "p-b"]), ids(&["p-c", "p-d"])];

    // Participants cannot; bad groups are refused; nothing changes either way.
    let (_, a, seen_a) = &mut people[0];
    a.send(&ClientMessage::SavePartners { groups: groups.clone() }).await.unwrap();
    assert!(expect_error(a, ErrorCode::Forbidden).await.contains("savePartners"));
    a.send(&ClientMessage::OpenPartnerBreakouts { absent: AbsentPartners::JoinAnother, duration_secs: None, allow_return: false })
        .await
        .unwrap();
    expect_error(a, ErrorCode::Forbidden).await;
    record_all(a, seen_a).await;
    t.send(&ClientMessage::OpenPartnerBreakouts { absent: AbsentPartners::JoinAnother, duration_secs: None, allow_return: false })
        .await
        .unwrap();
    assert!(expect_error(&mut t, ErrorCode::InvalidPartners).await.contains("save partner groups first"));
    for bad in [vec![ids(&["p-a"])], vec![ids(&["p-a", "t-1"])], vec![ids(&["p-a", "p-b"]), ids(&["p-b", "p-c"])]] {
        t.send(&ClientMessage::SavePartners { groups: bad }).await.unwrap();
        expect_error(&mut t, ErrorCode::InvalidPartners).await;
    }

    // Saved: the therapist gets the groups; each member learns their own partners only.
    t.send(&ClientMessage::SavePartners { groups: groups.clone() }).await.unwrap();
    recv!(t, ServerMessage::Partners { groups: g } if *g == groups);
    for (id, c, seen) in people.iter_mut().take(4) {
        let mine = groups.iter().find(|g| g.contains(&pid(id))).unwrap().iter().filter(|p| p.as_str() != *id).cloned().collect::<Vec<_>>();
        record_until(c, seen, "yourPartners", |m| matches!(m, ServerMessage::YourPartners { partner_ids } if *partner_ids == mine)).await;
    }
    t.send(&ClientMessage::EndSession { confirm: true, closing_message: None }).await.unwrap();
    for (_, c, seen) in people.iter_mut() {
        record_until(c, seen, "session ended", |m| matches!(m, ServerMessage::SessionEnded { .. })).await;
    }

    // Next session, p-b absent: the groups come back from the store; one action opens exactly
    // them, and p-a, whose partner is absent, joins the other group.
    let mut t = join(&server, room, Role::Therapist, "T", "t-1").await;
    recv!(t, ServerMessage::Partners { groups: g } if *g == groups);
    let mut now = Vec::new();
    for id in ["p-a", "p-c", "p-d", "p-e"] {
        let c = join_admitted(&server, room, Role::Participant, id, id).await;
        let seen = std::mem::take(&mut people.iter_mut().find(|p| p.0 == id).unwrap().2);
        now.push((id, c, seen));
    }
    let (_, a, seen_a) = &mut now[0];
    record_until(
        a,
        seen_a,
        "partners again",
        |m| matches!(m, ServerMessage::YourPartners { partner_ids } if *partner_ids == ids(&["p-b"])),
    )
    .await;
    t.send(&ClientMessage::OpenPartnerBreakouts { absent: AbsentPartners::JoinAnother, duration_secs: Some(600), allow_return: false })
        .await
        .unwrap();
    let plan = match recv!(t, ServerMessage::BreakoutsUpdated { breakouts } if breakouts.open) {
        ServerMessage::BreakoutsUpdated { breakouts } => breakouts,
        _ => unreachable!(),
    };
    assert_eq!(plan.rooms.len(), 1, "{plan:?}");
    let mut members = plan.rooms[0].members.clone();
    members.sort();
    assert_eq!(members, ids(&["p-a", "p-c", "p-d"]));
    for (id, c, seen) in now.iter_mut() {
        if *id == "p-e" {
            // Unpaired: stays in the main room, where the roster empties.
            record_until(c, seen, "main roster", |m| matches!(m, ServerMessage::SpaceRoster { participants } if participants.len() == 2))
                .await;
        } else {
            record_until(c, seen, "into the partner breakout", |m| {
                matches!(m, ServerMessage::SpaceChanged { breakout: Some(b), participants, .. } if b.name == "Partners 1" && participants.len() == 3)
            })
            .await;
        }
    }
    t.send(&ClientMessage::OpenPartnerBreakouts { absent: AbsentPartners::StayInMain, duration_secs: None, allow_return: false })
        .await
        .unwrap();
    assert!(expect_error(&mut t, ErrorCode::InvalidPartners).await.contains("close the open breakouts first"));

    // Over every frame each participant received in both sessions: no one saw the groups, and
    // each was told only their own partners.
    for (id, c, seen) in now.iter_mut() {
        record_all(c, seen).await;
        let mine =
            groups.iter().find(|g| g.contains(&pid(id))).map(|g| g.iter().filter(|p| p.as_str() != *id).cloned().collect::<Vec<_>>());
        let told: Vec<_> = seen
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Partners { .. } => panic!("{id} was sent the partner groups: {m:?}"),
                ServerMessage::YourPartners { partner_ids } => Some(partner_ids.clone()),
                _ => None,
            })
            .collect();
        match mine {
            Some(mine) => assert!(!told.is_empty() && told.iter().all(|t| *t == mine), "{id} was told {told:?}"),
            None => assert!(told.is_empty(), "{id} has no partners and was told {told:?}"),
        }
    }
    server.shutdown().await;
}
