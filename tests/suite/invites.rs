//! Getting in without an operator, through the real server: a therapist's own join token mints
//! invites for their room only (refusals mint nothing), an invite without a name is traded for
//! a join token on the link page, and the door tells people in the waiting room what they wait
//! for (group, therapist, welcome, a session that is over) while a late arrival turned away by
//! a locked room reaches therapists alone. The closing message reaches the end screen.

use crate::common;

use common::WAIT;

use hearth::auth::{Claims, Role};
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::server::RunningServer;
use hearth::signal::protocol::{ClientMessage, EndReason, ErrorCode, ServerMessage, PROTOCOL_VERSION};
use serde_json::Value;

async fn post(server: &RunningServer, path: &str, bearer: Option<&str>, body: &str) -> (u16, Value) {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, text) = common::http(server.addr(), "POST", path, &headers, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Signed claims with a chosen issue and expiry time (seconds from now).
fn signed(server: &RunningServer, room: &str, role: Role, name: &str, id: &str, iat: i64, exp: i64) -> String {
    let now = hearth::auth::now_secs() as i64;
    let claims = Claims {
        sub: id.into(),
        room: room.into(),
        role,
        name: name.into(),
        exp: (now + exp) as u64,
        iat: (now + iat) as u64,
        sponsor: None,
    };
    server.state().tokens.sign(&claims).expect("sign")
}

async fn join_with(server: &RunningServer, room: &str, token: String) -> SignalClient {
    let mut c = SignalClient::connect(&common::ws_url(server)).await.expect("connect");
    c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).expect("room"), token })
        .await
        .expect("join");
    c
}

async fn door(c: &mut SignalClient, what: &str, f: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
    c.recv_until(what, WAIT, |m| matches!(m, ServerMessage::WaitingRoom { .. }) && f(m)).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test]
async fn a_therapist_invites_for_their_own_room_only_and_refusals_mint_nothing() {
    let server = common::start_server().await;
    let therapist = common::token_for(&server, "g1", Role::Therapist, "Dr Lee", "t-lee");

    // With a name: a participant's join token for this room.
    let (status, body) = post(&server, "/api/rooms/g1/invites", Some(&therapist), r#"{"name":"Sam","ttlSeconds":3600}"#).await;
    assert_eq!(status, 200, "{body}");
    let path = body["invitePath"].as_str().expect("invitePath");
    let token = path.strip_prefix("/#token=").expect("a join token in the path");
    let grant = server.state().tokens.verify(token, &RoomId::new("g1").unwrap()).expect("a valid join token");
    assert_eq!((grant.role, grant.name.as_str()), (Role::Participant, "Sam"));
    assert!(body["expiresAt"].as_u64().expect("expiresAt") <= hearth::auth::now_secs() + 3600);

    // Without: an invite, which is no join token, traded with a typed name for one.
    let (status, body) = post(&server, "/api/rooms/g1/invites", Some(&therapist), "{}").await;
    assert_eq!(status, 200, "{body}");
    let invite = body["invitePath"].as_str().and_then(|p| p.strip_prefix("/#invite=")).expect("an invite").to_string();
    assert!(server.state().tokens.verify(&invite, &RoomId::new("g1").unwrap()).is_err(), "an invite must not open the room itself");
    let (status, bad) = post(&server, "/api/invites/accept", None, &format!(r#"{{"invite":"{invite}","name":"  "}}"#)).await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid_name")), "{bad}");
    let (status, accepted) = post(&server, "/api/invites/accept", None, &format!(r#"{{"invite":"{invite}","name":"Robin"}}"#)).await;
    assert_eq!(status, 200, "{accepted}");
    let grant = server.state().tokens.verify(accepted["token"].as_str().unwrap(), &RoomId::new("g1").unwrap()).expect("join token");
    assert_eq!((grant.role, grant.name.as_str()), (Role::Participant, "Robin"));
    // The same link is the same seat.
    let (_, again) = post(&server, "/api/invites/accept", None, &format!(r#"{{"invite":"{invite}","name":"Robin"}}"#)).await;
    assert_eq!(again["participantId"], accepted["participantId"]);
    // A join token is not an invite.
    let (status, body) = post(&server, "/api/invites/accept", None, &format!(r#"{{"invite":"{therapist}","name":"X"}}"#)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_invalid")), "{body}");

    // Refusals: a clear code, and no link in the answer.
    let participant = common::token_for(&server, "g1", Role::Participant, "Ana", "p-ana");
    let expired = signed(&server, "g1", Role::Therapist, "Dr Lee", "t-lee", -900, -600);
    let other_room = common::token_for(&server, "g2", Role::Therapist, "Dr Lee", "t-lee");
    for (bearer, body, want) in [
        (None, "{}", (401, "token_missing")),
        (Some(participant.as_str()), "{}", (403, "forbidden")),
        (Some(expired.as_str()), "{}", (401, "token_expired")),
        (Some(other_room.as_str()), "{}", (403, "token_wrong_room")),
        (Some("not-a-token"), "{}", (401, "token_invalid")),
        (Some(therapist.as_str()), r#"{"name":"Ana\u202e"}"#, (400, "invalid_name")),
        (Some(therapist.as_str()), r#"{"ttlSeconds":0}"#, (400, "invalid_request")),
        (Some(therapist.as_str()), r#"{"room":"g2"}"#, (400, "invalid_request")),
    ] {
        let (status, answer) = post(&server, "/api/rooms/g1/invites", bearer, body).await;
        assert_eq!((status, answer["code"].as_str().unwrap_or_default()), want, "{answer}");
        assert!(answer.get("invitePath").is_none() && !answer.to_string().contains("eyJ"), "a refusal minted something: {answer}");
    }
    // An expired invite.
    let now = hearth::auth::now_secs();
    let stale_claims = serde_json::json!({"sub":"p-old","room":"g1","exp":now - 600,"iat":now - 900,"invite":true});
    let stale = jsonwebtoken_sign(&server, &stale_claims);
    let (status, body) = post(&server, "/api/invites/accept", None, &format!(r#"{{"invite":"{stale}","name":"Old"}}"#)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("token_expired")), "{body}");
    server.shutdown().await;
}

/// Signs arbitrary invite claims with the server's secret (the test config's).
fn jsonwebtoken_sign(server: &RunningServer, claims: &Value) -> String {
    let secret = server.state().config.auth.token_secret.clone();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()))
        .expect("sign")
}

#[tokio::test]
async fn the_waiting_room_says_what_people_wait_for_and_the_lock_tells_therapists_alone() {
    let server = common::start_server().await;
    let room = "door";
    // Before any therapist: no name, nobody here.
    let mut early = common::join_upto(&server, room, Role::Participant, "Early", "p-early", "joined").await;
    let m = door(&mut early, "the empty door", |_| true).await;
    assert_eq!(
        m,
        ServerMessage::WaitingRoom { group_name: None, therapist_name: None, therapist_here: false, welcome: None, session_ended: false }
    );
    let mut t = common::join(&server, room, Role::Therapist, "Dr Lee", "t-lee").await;
    door(
        &mut early,
        "the therapist arrived",
        |m| matches!(m, ServerMessage::WaitingRoom { therapist_here: true, therapist_name: Some(n), .. } if n == "Dr Lee"),
    )
    .await;
    // A welcome outside the rules changes nothing.
    t.send(&ClientMessage::SetWelcome { group_name: "Two\nlines".into(), message: String::new() }).await.unwrap();
    common::expect_error(&mut t, ErrorCode::InvalidField).await;
    t.send(&ClientMessage::SetWelcome { group_name: "Tuesday group".into(), message: "Welcome. We start at six.".into() }).await.unwrap();
    door(&mut early, "the welcome", |m| {
        matches!(m, ServerMessage::WaitingRoom { group_name: Some(g), welcome: Some(w), .. } if g == "Tuesday group" && w == "Welcome. We start at six.")
    })
    .await;
    // A participant may not set it.
    t.send(&ClientMessage::Admit { participant_id: common::pid("p-early") }).await.unwrap();
    recv!(early, ServerMessage::Admitted { .. });
    early.send(&ClientMessage::SetWelcome { group_name: "Mine".into(), message: String::new() }).await.unwrap();
    common::expect_error(&mut early, ErrorCode::Forbidden).await;

    // Locked: a late arrival is refused, and only the therapist hears of it.
    t.send(&ClientMessage::LockRoom { locked: true }).await.unwrap();
    let mut late = join_with(&server, room, common::token_for(&server, room, Role::Participant, "Late", "p-late")).await;
    common::expect_error(&mut late, ErrorCode::RoomLocked).await;
    let told = recv!(t, ServerMessage::TurnedAway { .. });
    assert_eq!(told, ServerMessage::TurnedAway { participant_id: common::pid("p-late"), name: "Late".into(), role: Role::Participant });
    let leaked =
        early.recv_until("anything about Late", std::time::Duration::from_millis(500), |m| format!("{m:?}").contains("Late")).await;
    assert!(leaked.is_err(), "another participant heard of the late arrival: {leaked:?}");
    t.send(&ClientMessage::LockRoom { locked: false }).await.unwrap();

    // Ending with a closing message: it reaches the end screen.
    let too_long = "x".repeat(601);
    t.send(&ClientMessage::EndSession { confirm: true, closing_message: Some(too_long) }).await.unwrap();
    common::expect_error(&mut t, ErrorCode::InvalidField).await;
    t.send(&ClientMessage::EndSession { confirm: true, closing_message: Some("Thank you all.".into()) }).await.unwrap();
    let ended = recv!(early, ServerMessage::SessionEnded { .. });
    assert!(
        matches!(&ended, ServerMessage::SessionEnded { reason: EndReason::Ended, closing_message: Some(c), .. } if c == "Thank you all."),
        "{ended:?}"
    );
    drop(t);
    drop(early);
    assert!(common::eventually(WAIT, || !server.state().rooms.is_running(&RoomId::new(room).unwrap())).await, "the room should close");

    // A link made before that end: the session it was for is over, and the door says so with
    // what it remembers. A link made after is for the next session.
    let old = signed(&server, room, Role::Participant, "Old", "p-old", -120, 600);
    let mut c = join_with(&server, room, old).await;
    let m = door(&mut c, "the ended session", |_| true).await;
    assert_eq!(
        m,
        ServerMessage::WaitingRoom {
            group_name: Some("Tuesday group".into()),
            therapist_name: Some("Dr Lee".into()),
            therapist_here: false,
            welcome: Some("Welcome. We start at six.".into()),
            session_ended: true,
        }
    );
    let fresh = signed(&server, room, Role::Participant, "New", "p-new", 5, 600);
    let mut n = join_with(&server, room, fresh).await;
    door(&mut n, "a new link's door", |m| matches!(m, ServerMessage::WaitingRoom { session_ended: false, therapist_here: false, .. }))
        .await;
    // A therapist starting the next session: the old link waits like anyone else.
    let _t2 = common::join(&server, room, Role::Therapist, "Dr Lee", "t-lee").await;
    door(&mut c, "the next session", |m| matches!(m, ServerMessage::WaitingRoom { session_ended: false, therapist_here: true, .. })).await;
    server.shutdown().await;
}
