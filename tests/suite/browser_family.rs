//! A family session in real browsers: a family guest (a token with role `familyGuest` and
//! claim `sponsor`) waits labelled "Guest of <sponsor>"; the therapist opens the sponsor's
//! family space from the guest's row, admits the guest into it, and ends it. The guest's page
//! never shows anyone else of the group. A co-facilitator admits the group from their own
//! waiting room. Screenshots: the therapist's family-space controls and
//! the guest's view (`target/test-artifacts/family/`). Written with the browser fixture
//! (`tests/common/fixture.rs`).

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::Duration;

use hearth::auth::Role;
use hearth::room::RoomId;
use serde_json::json;

const ROOM: &str = "family-room";

/// The person-row actions for `arguments[0]` and the staff panels, as a co-facilitator
/// (`arguments[1]` true: no remove, no hard mute) or a therapist (both) should have them.
const CO_CONTROLS_JS: &str = r#"
const li = document.querySelector(`#people-list li[data-participant-id="${arguments[0]}"]`);
if (!li) return false;
const shown = (a) => { const b = li.querySelector(`[data-action="${a}"]`); return Boolean(b) && !b.hidden; };
const panel = (id) => { const p = document.getElementById(id); return Boolean(p) && !p.hidden; };
const staff = shown('ask-mute') && shown('spotlight') && panel('breakouts-section') && panel('rounds-section');
return staff && (arguments[1] ? !shown('remove') && !shown('hard-mute') : shown('remove') && shown('hard-mute'));
"#;
const TEST_DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_therapist_opens_a_family_space_for_a_guest_and_ends_it() {
    let mut fx = BrowserTest::with_server("family", TEST_DEADLINE, common::test_config()).await;
    let [therapist, co, guest] = fx.open([PageSpec::desktop("therapist"), PageSpec::desktop("co"), PageSpec::phone("guest")]).await;
    let outcome = fx.within(scenario(&fx, &therapist, &co, &guest)).await;
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, therapist: &Client, co: &Client, guest: &Client) -> Result<(), String> {
    fx.join(therapist, "therapist", ROOM, Role::Therapist, ("t-rivera", "Dr. Rivera")).await?;
    // Staff enter without waiting.
    fx.join(co, "co-facilitator", ROOM, Role::CoFacilitator, ("c-kim", "Kim Co")).await?;
    // The group: the sponsor and another member, headless (they need no camera here).
    let mut sponsor = common::join_upto(fx.server(), ROOM, Role::Participant, "Sam Sponsor", "sponsor-1", "joined").await;
    let _other = common::join_upto(fx.server(), ROOM, Role::Participant, "Olivia Other", "other-2", "joined").await;
    wait_for(co, "two people waiting", "return document.querySelectorAll('#waiting-list li').length === 2;", &[]).await?;
    fx.shot(co, "co-facilitator-waiting-room").await;
    for id in ["sponsor-1", "other-2"] {
        click(co, "co-facilitator", &format!("#waiting-list li[data-participant-id=\"{id}\"] [data-action=\"admit\"]")).await?;
        let gone = format!("return !document.querySelector('#waiting-list li[data-participant-id=\"{id}\"]');");
        wait_for(co, "the admitted row gone", &gone, &[]).await?;
    }
    sponsor
        .recv_until("admitted", common::WAIT, |m| matches!(m, hearth::signal::protocol::ServerMessage::Admitted { .. }))
        .await
        .map_err(|e| e.to_string())?;
    fx.step("the group is in");
    // The co-facilitator's controls are what the server's permission table gives the role
    // (`admitted.permissions`): ask to mute, breakouts and rounds, but not remove or a hard mute.
    wait_for(co, "the co-facilitator's controls by permission", CO_CONTROLS_JS, &[json!("other-2"), json!(true)]).await?;
    wait_for(therapist, "the therapist's controls by permission", CO_CONTROLS_JS, &[json!("other-2"), json!(false)]).await?;
    fx.shot(co, "co-facilitator-controls").await;

    let room = RoomId::new(ROOM).map_err(|e| e.to_string())?;
    let (token, _) = fx
        .server()
        .state()
        .tokens
        .mint_with_sponsor(&room, Role::FamilyGuest, "Gail Guest", Some("g-gail"), Duration::from_secs(3600), Some("sponsor-1"))
        .map_err(|e| e.to_string())?;
    enter_with_link(guest, "guest", &fx.base_url(), &token).await?;
    wait_for(guest, "the guest waiting", "return window.hearth.state === 'waiting';", &[]).await?;
    let labelled = "const row = document.querySelector('#waiting-list li[data-participant-id=\"g-gail\"]'); \
                    return Boolean(row) && row.querySelector('.role-inline').textContent === 'Guest of Sam Sponsor';";
    wait_for(therapist, "the guest labelled with their sponsor", labelled, &[]).await?;
    wait_for(therapist, "the family-space button", VISIBLE_JS, &[json!("#waiting-list [data-action=\"family\"]")]).await?;
    // Only a therapist opens a family space: the co-facilitator sees the guest, not the button.
    wait_for(co, "the guest in the co-facilitator's list", labelled, &[]).await?;
    let hidden = "return document.querySelector('#waiting-list [data-action=\"family\"]').hidden;";
    wait_for(co, "no family-space button for a co-facilitator", hidden, &[]).await?;
    fx.shot(therapist, "therapist-guest-waiting").await;
    fx.shot(guest, "guest-waiting").await;

    click(therapist, "therapist", "#waiting-list [data-action=\"family\"]").await?;
    wait_for(therapist, "the family-space panel", VISIBLE_JS, &[json!("#family-close-button")]).await?;
    click(therapist, "therapist", "#waiting-list li[data-participant-id=\"g-gail\"] [data-action=\"admit\"]").await?;
    wait_for(guest, "the guest admitted", "return window.hearth.state === 'joined';", &[]).await?;
    wait_for(guest, "the guest told where they are", VISIBLE_JS, &[json!("#family-section")]).await?;
    let together = "return document.querySelectorAll('.tile').length >= 2 && document.body.innerText.includes('Sam Sponsor');";
    wait_for(guest, "the guest with their sponsor", together, &[]).await?;
    fx.step("the guest is in the family space");
    fx.shot(guest, "guest-family-space").await;
    fx.shot(therapist, "therapist-family-space").await;
    fx.shot_of(therapist, "#family-section", "therapist-family-controls").await;
    let seen: String = guest
        .execute("return document.body.innerText;", vec![])
        .await
        .map_err(|e| format!("guest: {e}"))?
        .as_str()
        .unwrap_or_default()
        .to_string();
    if seen.contains("Olivia Other") || seen.contains("other-2") {
        return Err(format!("the guest's page shows another member: {seen}"));
    }

    click(therapist, "therapist", "#family-close-button").await?;
    wait_for(guest, "the guest's session to end", "return window.hearth.state !== 'joined';", &[]).await?;
    wait_for(therapist, "the therapist back in the main room", "return document.getElementById('family-section').hidden;", &[]).await?;
    fx.shot(guest, "guest-ended").await;
    Ok(())
}
