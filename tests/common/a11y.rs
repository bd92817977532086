//! Accessibility checks in the browser tests: axe-core (vendored under tests/vendor/axe-core,
//! never served to users) is put into the page through webdriver, which CSP does not restrict,
//! and run on the whole document. Serious and critical violations fail the test, named with
//! the elements they were found on.
#![allow(dead_code)]

use std::time::Duration;

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::Client;
use serde_json::{json, Value};

const AXE_SOURCE: &str = include_str!("../vendor/axe-core/axe.min.js");

/// How long loading axe (650 kB of script) and one run may take on a busy machine; the
/// harness's usual 10 s script timeout is restored afterwards.
const AXE_SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);
const USUAL_SCRIPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The serious and critical axe violations on the page as it is now, one line each.
pub async fn serious_violations(client: &Client) -> Result<Vec<String>, String> {
    set_script_timeout(client, AXE_SCRIPT_TIMEOUT).await?;
    let found = run_axe(client).await;
    set_script_timeout(client, USUAL_SCRIPT_TIMEOUT).await?;
    found
}

async fn set_script_timeout(client: &Client, timeout: Duration) -> Result<(), String> {
    let timeouts = TimeoutConfiguration::new(Some(timeout), Some(Duration::from_secs(20)), Some(Duration::ZERO));
    client.update_timeouts(timeouts).await.map_err(|e| format!("setting the script timeout: {e}"))
}

async fn run_axe(client: &Client) -> Result<Vec<String>, String> {
    let loaded = client.execute("return typeof window.axe !== 'undefined';", vec![]).await.map_err(|e| format!("checking for axe: {e}"))?;
    if loaded != json!(true) {
        client
            .execute(&format!("{AXE_SOURCE}\n;return true;"), vec![])
            .await
            .map_err(|e| format!("loading axe-core into the page: {e}"))?;
    }
    let result = client
        .execute_async(
            r#"
const done = arguments[arguments.length - 1];
window.axe.run(document, { resultTypes: ['violations'] })
  .then((r) => done(r.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} on ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(', ')}`)))
  .catch((e) => done([`axe failed: ${e}`]));
"#,
            vec![],
        )
        .await
        .map_err(|e| format!("running axe: {e}"))?;
    match result {
        Value::Array(items) => Ok(items.into_iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()),
        other => Err(format!("axe returned {other}")),
    }
}

/// Fails with the list when the page (`what`) has a serious or critical violation.
pub async fn assert_accessible(client: &Client, what: &str) -> Result<(), String> {
    let found = serious_violations(client).await?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("axe-core finds serious or critical problems on {what}:\n  {}", found.join("\n  ")))
    }
}
