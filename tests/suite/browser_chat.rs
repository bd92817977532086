//! Chat and "I need support" end to end through a real browser. A headless participant (Alex)
//! posts a message with markup in it; the participant's page counts it as unread, and once the
//! chat is opened shows it as text (no element is made from it) under the "messages sent
//! before you joined are not shown" note. The participant writes privately to the therapist,
//! whose page shows it marked private and deletes Alex's message for everyone. Then the
//! participant presses "I need support": their page says the request was sent but not yet seen,
//! with the crisis resources, and the therapist's page shows the support item (a fixed banner,
//! a screen reader alert, the tab title). One click on "Open private room" moves both into a
//! private room (a bar says so); closing it brings them back. The item stands until the
//! therapist acknowledges it (only then is the participant told it was seen) and resolves it
//! with an outcome.
//!
//! Written with the browser fixture (`tests/common/fixture.rs`); screenshots and logs go to
//! `target/test-artifacts/chat/`.

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::Duration;

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use serde_json::{json, Value};

const ROOM: &str = "browser-chat";
const THERAPIST: (&str, &str) = ("t-rivera", "Dr. Rivera");
const PARTICIPANT: (&str, &str) = ("p-pat", "Pat");
const ALEX: (&str, &str) = ("p-alex", "Alex");
const MARKUP: &str = "Hi all <b>not bold</b> <img src=x onerror=alert(1)>";
const PRIVATE_TEXT: &str = "Can we talk after the session?";
const TEST_DEADLINE: Duration = Duration::from_secs(90);

/// The unread counter on the Chat button says `arguments[0]`.
const UNREAD_JS: &str = r#"
const badge = document.querySelector('#chat-button #chat-unread');
return Boolean(badge && !badge.hidden && badge.textContent === arguments[0]
  && /unread message/.test(document.querySelector('#chat-button').getAttribute('aria-label')));
"#;

/// The open panel shows Alex's message as literal text: no element was made from it.
const MARKUP_AS_TEXT_JS: &str = r#"
const msgs = [...document.querySelectorAll('#chat-list .chat-msg')];
const m = msgs.find((li) => li.querySelector('.chat-from').textContent === 'Alex');
return Boolean(m && m.querySelector('.chat-text').textContent === arguments[0]
  && m.querySelector('.chat-text').children.length === 0
  && !document.querySelector('#chat-list b, #chat-list img')
  && document.querySelector('#chat-unread').hidden
  && /Messages sent before you joined are not shown/.test(document.querySelector('#chat-note').textContent));
"#;

/// The therapist's panel shows the participant's private message, marked private to them.
const PRIVATE_SEEN_JS: &str = r#"
const m = [...document.querySelectorAll('#chat-list .chat-msg.private')]
  .find((li) => li.querySelector('.chat-text').textContent === arguments[0]);
return Boolean(m && m.querySelector('.chat-from').textContent === 'Pat'
  && m.querySelector('.chat-private-tag').textContent === 'Private, to you');
"#;

/// Alex's message reads as removed on this page.
const ROUTED_JS: &str = r#"
const s = document.querySelector('#chat-setting-peerSupport');
return Boolean(s && s.getAttribute('aria-checked') === arguments[0]);
"#;

const DELETED_JS: &str = r#"
const m = [...document.querySelectorAll('#chat-list .chat-msg')]
  .find((li) => li.querySelector('.chat-from').textContent === 'Alex');
return Boolean(m && m.classList.contains('deleted')
  && /removed by the therapist/.test(m.querySelector('.chat-text').textContent));
"#;

/// The participant's page confirms the support request.
const SUPPORT_CONFIRMED_JS: &str = r#"
const s = document.querySelector('#support-status');
const b = document.querySelector('#support-button');
return Boolean(s && !s.hidden && /sent to the therapist, privately\. They have not seen it yet/.test(s.textContent)
  && s.querySelector('.support-resources').textContent.length > 10 && !s.querySelector('.support-resources').hidden
  && b.disabled && b.querySelector('.label').textContent === 'Support requested');
"#;

/// The therapist's alert: visible, in an assertive alert region, names Pat, one-click action.
const ALERT_SHOWN_JS: &str = r#"
const stack = document.querySelector('#support-alerts');
const a = stack && stack.querySelector('.support-alert');
if (!a || a.offsetParent === null && getComputedStyle(a).position !== 'fixed' && a.getBoundingClientRect().height === 0) return false;
const r = a.getBoundingClientRect();
return stack.getAttribute('role') === 'alert'
  && r.top >= 0 && r.top < 100 && r.height > 60
  && a.querySelector('.support-alert-title').textContent === 'Pat needs support'
  && a.querySelector('button[data-action="open-private-room"]').textContent === 'Open private room with Pat'
  && /Support requested/.test(document.title);
"#;

/// Both are in the private room: the bar says so.
const IN_PRIVATE_JS: &str = r#"
const bar = document.querySelector('#private-room-bar');
return Boolean(bar && !bar.hidden && /private room/i.test(bar.textContent));
"#;

/// The participant's page says, only now, that the therapist has seen the request.
const SEEN_JS: &str = r#"
const s = document.querySelector('#support-status');
return Boolean(s && !s.hidden && /Your therapist has seen this/.test(s.textContent));
"#;

/// The therapist's item stays, calmer, until resolved: acknowledged, with the outcome choice.
const ACKED_ITEM_JS: &str = r#"
const a = document.querySelector('#support-alerts .support-alert');
return Boolean(a && a.classList.contains('acknowledged') && a.querySelector('[data-action="acknowledge"]').hidden
  && /^Seen by/.test(a.querySelector('.support-alert-state').textContent) && a.querySelector('select.support-outcome'));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_support_in_the_browser() {
    let mut fx = BrowserTest::with_server("chat", TEST_DEADLINE, open_config()).await;
    let [therapist, participant] = fx.open([PageSpec::desktop("therapist"), PageSpec::desktop("participant")]).await;
    let outcome = fx.within(scenario(&fx, &therapist, &participant)).await;
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, therapist: &Client, participant: &Client) -> Result<(), String> {
    let server = fx.server();
    let shot = |name: &str| fx.shot_path(name);

    // Both open their join links and join (no waiting room on this server).
    for (client, who, role, person) in
        [(therapist, "therapist", Role::Therapist, THERAPIST), (participant, "participant", Role::Participant, PARTICIPANT)]
    {
        fx.join(client, who, ROOM, role, person).await?;
        wait_for(client, &format!("the {who}'s Chat button"), VISIBLE_JS, &[json!("#chat-button")]).await?;
    }
    // Only participants have the support button.
    wait_for(participant, "the participant's support button", VISIBLE_JS, &[json!("#support-button")]).await?;
    let therapist_has_it = therapist.execute(VISIBLE_JS, vec![json!("#support-button")]).await;
    if !matches!(therapist_has_it, Ok(Value::Bool(false))) {
        return Err(format!("the therapist should have no support button: {therapist_has_it:?}"));
    }

    // Alex (headless) posts markup; the participant's closed panel counts it.
    let mut alex = SignalClient::connect(&common::ws_url(server)).await.map_err(|e| format!("alex: {e}"))?;
    let token = common::token_for(server, ROOM, Role::Participant, ALEX.1, ALEX.0);
    alex.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(ROOM).unwrap(), token })
        .await
        .map_err(|e| format!("alex: {e}"))?;
    alex.recv_until("admitted", UI_DEADLINE, |m| matches!(m, ServerMessage::ChatSettings(_))).await.map_err(|e| format!("alex: {e}"))?;
    alex.send(&ClientMessage::Chat { text: MARKUP.into(), to: None }).await.map_err(|e| format!("alex: {e}"))?;
    wait_for(participant, "the unread counter at 1", UNREAD_JS, &[json!("1")]).await?;
    save_screenshot_of(participant, "#controls", &shot("participant-unread")).await;

    // Opening the chat clears the counter and shows the message as text.
    press(participant, "participant", "#chat-button", Key::Enter).await?;
    wait_for(participant, "the chat panel", VISIBLE_JS, &[json!("#chat-section")]).await?;
    wait_for(participant, "Alex's message as text", MARKUP_AS_TEXT_JS, &[json!(MARKUP)]).await?;
    let focused = participant.execute("return document.activeElement && document.activeElement.id;", vec![]).await;
    if !matches!(&focused, Ok(v) if v == "chat-input") {
        return Err(format!("opening the chat should focus the message box, focus is on {focused:?}"));
    }

    // A private message to the therapist: pick them, type, Enter.
    participant
        .find(Locator::Css("#chat-to"))
        .await
        .map_err(|e| format!("participant: finding the recipient: {e}"))?
        .select_by_value(THERAPIST.0)
        .await
        .map_err(|e| format!("participant: choosing the therapist: {e}"))?;
    fill(participant, "#chat-input", PRIVATE_TEXT).await?;
    press(participant, "participant", "#chat-input", Key::Enter).await?;
    wait_for(
        participant,
        "the participant's own private message",
        "return document.querySelectorAll('#chat-list .chat-msg.mine.private').length === 1;",
        &[],
    )
    .await?;
    dismiss_toasts(participant).await;
    save_screenshot_of(participant, "#chat-section", &shot("participant-panel")).await;

    // The therapist opens the chat, sees the private message and deletes Alex's.
    wait_for(therapist, "the therapist's unread counter at 2", UNREAD_JS, &[json!("2")]).await?;
    press(therapist, "therapist", "#chat-button", Key::Enter).await?;
    wait_for(therapist, "the private message on the therapist's page", PRIVATE_SEEN_JS, &[json!(PRIVATE_TEXT)]).await?;
    press(therapist, "therapist", "#chat-list .chat-msg:not(.mine):not(.private) .chat-delete", Key::Enter).await?;
    wait_for(participant, "the deletion on the participant's page", DELETED_JS, &[]).await?;
    wait_for(therapist, "the deletion on the therapist's page", DELETED_JS, &[]).await?;
    dismiss_toasts(therapist).await;
    save_screenshot_of(therapist, "#chat-section", &shot("therapist-panel")).await;
    press(therapist, "therapist", "#chat-settings summary", Key::Enter).await?;
    // "I need support" routed to peer-support staff too: the switch shows what the server
    // answered (`supportRequests` with `peerSupport`), so it turns on only once the server has.
    wait_for(therapist, "the routing switch off", ROUTED_JS, &[json!("false")]).await?;
    press(therapist, "therapist", "#chat-setting-peerSupport", Key::Enter).await?;
    wait_for(therapist, "the routing switch on, as the server says", ROUTED_JS, &[json!("true")]).await?;
    save_screenshot_of(therapist, "#chat-settings", &shot("therapist-settings")).await;
    press(therapist, "therapist", "#chat-setting-peerSupport", Key::Enter).await?;
    wait_for(therapist, "the routing switch off again", ROUTED_JS, &[json!("false")]).await?;

    // I need support: the participant's page confirms; the therapist's page alerts.
    press(participant, "participant", "#support-button", Key::Enter).await?;
    wait_for(participant, "the participant's confirmation", SUPPORT_CONFIRMED_JS, &[]).await?;
    wait_for(therapist, "the therapist's support alert", ALERT_SHOWN_JS, &[]).await?;
    save_screenshot(therapist, &shot("therapist-support-alert")).await;
    save_screenshot_of(therapist, "#support-alerts .support-alert", &shot("therapist-support-alert-close")).await;
    dismiss_toasts(participant).await;
    save_screenshot(participant, &shot("participant-support-received")).await;
    // On phones (360 px) the alert and the control bar still fit.
    for (who, client) in [("therapist", therapist), ("participant", participant)] {
        fx.fits_narrow_phone(client, who).await?;
    }
    // Alex, another participant, heard nothing of it.
    let heard = alex.recv_until("anything about support", Duration::from_millis(500), |m| {
        matches!(m, ServerMessage::SupportRequested { .. } | ServerMessage::SupportStatus { .. } | ServerMessage::SupportRequests { .. })
    });
    if let Ok(m) = heard.await {
        return Err(format!("another participant received {m:?}"));
    }

    // One click opens the private room; both pages say so; then the therapist closes it.
    press(therapist, "therapist", "#support-alerts button[data-action=\"open-private-room\"]", Key::Enter).await?;
    wait_for(therapist, "the therapist in the private room", IN_PRIVATE_JS, &[]).await?;
    wait_for(participant, "the participant in the private room", IN_PRIVATE_JS, &[]).await?;
    save_screenshot(participant, &shot("participant-private-room")).await;
    save_screenshot(therapist, &shot("therapist-private-room")).await;
    press(therapist, "therapist", "#private-room-close", Key::Enter).await?;
    for (client, who) in [(therapist, "therapist"), (participant, "participant")] {
        wait_for(client, &format!("the {who} back in the main room"), "return document.querySelector('#private-room-bar').hidden;", &[])
            .await?;
    }
    // The request is still standing: the therapist acknowledges it (the participant is told
    // only now), then resolves it with an outcome; the item and the tab title clear.
    press(therapist, "therapist", "#support-alerts button[data-action=\"acknowledge\"]", Key::Enter).await?;
    wait_for(participant, "the participant told it was seen", SEEN_JS, &[]).await?;
    wait_for(therapist, "the acknowledged item", ACKED_ITEM_JS, &[]).await?;
    save_screenshot_of(therapist, "#support-alerts .support-alert", &shot("therapist-support-item-acknowledged")).await;
    save_screenshot(participant, &shot("participant-support-seen")).await;
    therapist
        .execute("document.querySelector('#support-alerts select.support-outcome').value = 'followUpNeeded';", vec![])
        .await
        .map_err(|e| format!("therapist: choosing the outcome: {e}"))?;
    press(therapist, "therapist", "#support-alerts button[data-action=\"resolve\"]", Key::Enter).await?;
    wait_for(therapist, "the resolved item gone", "return !document.querySelector('#support-alerts .support-alert');", &[]).await?;
    wait_for(participant, "the participant told it was closed", "return /closed your request/.test(document.querySelector('#support-status').textContent) && !document.querySelector('#support-button').disabled;", &[]).await?;
    drop(alex);
    Ok(())
}

/// Closes other features' floating toasts (the milestones question), so they do not cover the
/// chat panel in screenshots.
async fn dismiss_toasts(client: &Client) {
    let _ = client.execute("document.querySelectorAll('.ms-toast').forEach((t) => t.remove());", vec![]).await;
}
