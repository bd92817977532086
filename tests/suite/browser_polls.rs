//! Polls end to end through a real browser: a therapist builds and launches a named poll from
//! the poll builder, the participant's page shows the poll card and the participant votes, and
//! the therapist's live results chart shows the vote (count, bar and name). Then the therapist
//! shares the results (the participant sees the chart) and closes the poll (the participant's
//! card says so and stops taking votes).
//!
//! Written with the browser fixture (`tests/common/fixture.rs`); screenshots and logs go to
//! `target/test-artifacts/polls/`.

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::Duration;

use hearth::auth::Role;
use serde_json::{json, Value};

const ROOM: &str = "browser-polls";
const THERAPIST: (&str, &str) = ("t-rivera", "Dr. Rivera");
const PARTICIPANT: (&str, &str) = ("p-pat", "Pat");
const QUESTION: &str = "What helped you most this week?";
const ANSWERS: [&str; 3] = ["Sleep", "Talking to a friend", "A walk outside"];
const TEST_DEADLINE: Duration = Duration::from_secs(90);

/// The participant's page shows one open poll card with the question, the three answers as
/// radio buttons, the "change your vote" hint and a countdown.
const PARTICIPANT_SEES_POLL_JS: &str = r#"
const card = document.querySelector('#poll-cards .poll-card');
if (!card || card.offsetParent === null) return false;
const radios = [...card.querySelectorAll('input[type="radio"]')];
const labels = [...card.querySelectorAll('label.choice')].map((l) => l.textContent.trim());
return card.querySelector('legend').textContent === arguments[0]
  && radios.length === 3 && radios.every((r) => !r.disabled)
  && JSON.stringify(labels) === JSON.stringify(arguments[1])
  && /change your vote until the poll closes/.test(card.querySelector('.poll-status').textContent)
  && /^Closes in \d+:\d\d$/.test(card.querySelector('.poll-countdown').textContent);
"#;

/// The participant's card confirms the vote for `arguments[0]`.
const VOTE_CONFIRMED_JS: &str = r#"
const card = document.querySelector('#poll-cards .poll-card');
const status = card && card.querySelector('.poll-status').textContent;
return Boolean(status && status.includes('Your vote is in: ' + arguments[0])
  && card.querySelector('.poll-submit').textContent === 'Change my vote');
"#;

/// The therapist's live chart shows one vote, for answer `arguments[0]` (option id) by
/// `arguments[1]`: the count as text, a bar drawn at full width, and the voter's name.
const THERAPIST_SEES_VOTE_JS: &str = r#"
const row = document.querySelector(`#poll-cards .poll-bar-row[data-option-id="${arguments[0]}"]`);
if (!row) return false;
const fill = row.querySelector('.poll-bar-fill');
const others = [...document.querySelectorAll('#poll-cards .poll-bar-row')].filter((r) => r !== row);
return row.querySelector('.poll-bar-value').textContent === '1 vote, 100%'
  && fill.getBoundingClientRect().width > 0.9 * row.querySelector('.poll-bar').getBoundingClientRect().width - 2
  && /Chosen by Pat/.test(row.textContent)
  && others.every((r) => r.querySelector('.poll-bar-value').textContent === '0 votes, 0%')
  && /1 person voted/.test(document.querySelector('#poll-cards .poll-total').textContent);
"#;

/// The participant sees the shared results: counts, no names.
const PARTICIPANT_SEES_RESULTS_JS: &str = r#"
const card = document.querySelector('#poll-cards .poll-card');
const row = card && card.querySelector(`.poll-bar-row[data-option-id="${arguments[0]}"]`);
return Boolean(row && row.querySelector('.poll-bar-value').textContent === '1 vote, 100%'
  && !card.querySelector('.poll-voters'));
"#;

/// The participant's card is closed: no submit, inputs disabled, the closing said.
const PARTICIPANT_SEES_CLOSED_JS: &str = r#"
const card = document.querySelector('#poll-cards .poll-card');
return Boolean(card && card.classList.contains('closed')
  && card.querySelector('.poll-submit').hidden
  && [...card.querySelectorAll('input')].every((i) => i.disabled)
  && /This poll has closed\. Your answer: /.test(card.querySelector('.poll-status').textContent));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_is_launched_answered_and_charted_in_the_browser() {
    let mut fx = BrowserTest::with_server("polls", TEST_DEADLINE, open_config()).await;
    let [therapist, participant] = fx.open([PageSpec::desktop("therapist"), PageSpec::desktop("participant")]).await;
    let outcome = fx.within(scenario(&fx, &therapist, &participant)).await;
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, therapist: &Client, participant: &Client) -> Result<(), String> {
    let shot = |name: &str| fx.shot_path(name);

    // Both open their join links and join (no waiting room on this server).
    for (client, who, role, person) in
        [(therapist, "therapist", Role::Therapist, THERAPIST), (participant, "participant", Role::Participant, PARTICIPANT)]
    {
        fx.join(client, who, ROOM, role, person).await?;
    }
    // Participants see no poll section until there is a poll; therapists see the builder button.
    wait_for(therapist, "the therapist's New poll button", VISIBLE_JS, &[json!("#poll-new-button")]).await?;
    let section_hidden = participant.execute("return document.querySelector('#polls-section').hidden;", vec![]).await;
    if !matches!(section_hidden, Ok(Value::Bool(true))) {
        return Err(format!("the participant's poll section should be hidden before any poll: {section_hidden:?}"));
    }

    // The therapist builds a named poll with three answers and a 5-minute limit.
    click(therapist, "therapist", "#poll-new-button").await?;
    wait_for(therapist, "the poll builder", VISIBLE_JS, &[json!("#poll-builder")]).await?;
    let focused = therapist.execute("return document.activeElement && document.activeElement.id;", vec![]).await;
    if !matches!(&focused, Ok(v) if v == "poll-question") {
        return Err(format!("opening the builder should focus the question, focus is on {focused:?}"));
    }
    fill(therapist, "#poll-question", QUESTION).await?;
    click(therapist, "therapist", "#poll-add-option").await?;
    for (i, answer) in ANSWERS.iter().enumerate() {
        fill(therapist, &format!("#poll-option-list li:nth-child({}) input", i + 1), answer).await?;
    }
    click(therapist, "therapist", "label[for=\"poll-anonymous\"]").await?; // untick: a named poll
    therapist
        .find(Locator::Css("#poll-duration"))
        .await
        .map_err(|e| format!("therapist: finding the time limit: {e}"))?
        .select_by_value("300")
        .await
        .map_err(|e| format!("therapist: choosing the time limit: {e}"))?;
    save_screenshot_of(therapist, "#polls-section", &shot("therapist-builder")).await;
    press(therapist, "therapist", "#poll-launch-button", Key::Enter).await?;
    wait_for(therapist, "the therapist's results card", VISIBLE_JS, &[json!("#poll-cards .poll-card .poll-chart")]).await?;

    // The participant's page shows the poll; they vote for the second answer.
    let answers = json!(ANSWERS);
    wait_for(participant, "the poll card on the participant's page", PARTICIPANT_SEES_POLL_JS, &[json!(QUESTION), answers]).await?;
    save_screenshot_of(participant, "#polls-section", &shot("participant-card")).await;
    // With the keyboard: Space picks the answer, Enter on the button sends the vote.
    press(participant, "participant", "#poll-cards .poll-card label.choice:nth-child(2) input", Key::Space).await?;
    press(participant, "participant", "#poll-cards .poll-submit", Key::Enter).await?;
    wait_for(participant, "the participant's vote confirmation", VOTE_CONFIRMED_JS, &[json!(ANSWERS[1])]).await?;

    // The therapist's chart shows it.
    wait_for(therapist, "the vote in the therapist's chart", THERAPIST_SEES_VOTE_JS, &[json!("o2")]).await?;
    save_screenshot_of(therapist, "#polls-section", &shot("therapist-results")).await;
    save_screenshot(therapist, &shot("therapist-page")).await;
    save_screenshot(participant, &shot("participant-page")).await;

    // Shared, then closed.
    press(therapist, "therapist", "#poll-cards button[data-action=\"share\"]", Key::Enter).await?;
    wait_for(participant, "the shared results on the participant's page", PARTICIPANT_SEES_RESULTS_JS, &[json!("o2")]).await?;
    press(therapist, "therapist", "#poll-cards button[data-action=\"close\"]", Key::Enter).await?;
    wait_for(participant, "the closed poll on the participant's page", PARTICIPANT_SEES_CLOSED_JS, &[]).await?;
    save_screenshot_of(participant, "#polls-section", &shot("participant-closed")).await;
    // The closing note and the shared chart, clear of other features' floating panels.
    save_screenshot_of(participant, "#poll-cards .poll-card .poll-status", &shot("participant-closed-status")).await;
    save_screenshot_of(participant, "#poll-cards .poll-card .poll-results", &shot("participant-closed-results")).await;
    save_screenshot_of(therapist, "#polls-section", &shot("therapist-closed")).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Browser plumbing (as in tests/suite/browser.rs).
