//! An observer in a real browser publishes nothing and knows it: the web client's offer has
//! only receiving media sections (no sender carries a track), the server's answer receives
//! nothing from it, and it still sees and hears the therapist. Written with the browser
//! fixture (`tests/common/fixture.rs`).

use crate::common;

use common::browser::*;
use common::fixture::*;

use std::time::Duration;

use hearth::auth::Role;
use serde_json::Value;

const ROOM: &str = "observer-room";
const TEST_DEADLINE: Duration = Duration::from_secs(90);

/// The observer decodes the therapist's video and receives audio.
const RECEIVES_JS: &str = r#"
const done = arguments[arguments.length - 1];
const pc = window.hearth.pc;
if (!pc) { done(false); return; }
pc.getStats().then((stats) => {
  let video = 0, audio = 0;
  stats.forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    if (r.kind === 'video') video = Math.max(video, r.framesDecoded || 0);
    if (r.kind === 'audio') audio = Math.max(audio, r.packetsReceived || 0);
  });
  done(video > 5 && audio > 20);
}).catch(() => done(false));
"#;

/// How the observer's connection is set up: the directions its transceivers ask for, senders
/// with a track, and the directions in its local description (while waiting: its offer).
const DIRECTIONS_JS: &str = r#"
const pc = window.hearth.pc;
const directions = (sdp) => (sdp || '').split(/\r?\n/).filter((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l)).map((l) => l.slice(2));
return {
  signaling: pc.signalingState,
  transceivers: pc.getTransceivers().map((t) => t.direction),
  sending: pc.getSenders().filter((s) => s.track).length,
  local: directions(pc.localDescription && pc.localDescription.sdp),
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_offers_to_receive_only() {
    // With the waiting room: the observer is admitted by the therapist.
    let mut fx = BrowserTest::with_server("observer", TEST_DEADLINE, common::test_config()).await;
    let [therapist, observer] = fx.open([PageSpec::desktop("therapist"), PageSpec::desktop("observer")]).await;
    let outcome = fx.within(scenario(&fx, &therapist, &observer)).await;
    fx.finish(outcome).await;
}

async fn scenario(fx: &BrowserTest, therapist: &Client, observer: &Client) -> Result<(), String> {
    fx.join(therapist, "therapist", ROOM, Role::Therapist, ("t-lee", "Dr. Lee")).await?;
    fx.enter(observer, "observer", ROOM, Role::Observer, ("o-student", "Student")).await?;
    // Waiting: no peer connection at all (it starts on admission, with the TURN credentials).
    let waiting = "return window.hearth.state === 'waiting' && !window.hearth.pc;";
    wait_for(observer, "the observer waiting with no peer connection", waiting, &[]).await?;
    wait_for(therapist, "the observer in the waiting list", "return document.querySelectorAll('#waiting-list li').length === 1;", &[])
        .await?;
    therapist.execute("window.hearth.send({ type: 'admitAll' }); return true;", vec![]).await.map_err(|e| format!("therapist: {e}"))?;
    wait_for(observer, "the observer to be admitted", "return window.hearth.state === 'joined';", &[]).await?;
    let described = "return Boolean(window.hearth.pc) && Boolean(window.hearth.pc.localDescription);";
    wait_for(observer, "the observer's first description after admission", described, &[]).await?;
    let offer = observer.execute(DIRECTIONS_JS, vec![]).await.map_err(|e| format!("observer: {e}"))?;
    eprintln!("observer's first description: {offer}");
    check_receive_only(&offer, "first description")?;
    let receives = async {
        loop {
            if let Ok(Value::Bool(true)) = observer.execute_async(RECEIVES_JS, vec![]).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), receives).await.map_err(|_| "the observer never decoded the therapist".to_string())?;
    let now = observer.execute(DIRECTIONS_JS, vec![]).await.map_err(|e| format!("observer: {e}"))?;
    eprintln!("observer's connection while receiving: {now}");
    check_receive_only(&now, "connection while receiving")?;
    Ok(())
}

/// Every transceiver and media section of `d` (see `DIRECTIONS_JS`) only receives, and no
/// sender carries a track.
fn check_receive_only(d: &Value, what: &str) -> Result<(), String> {
    let only_receive = |key: &str| {
        d[key].as_array().is_some_and(|v| !v.is_empty() && v.iter().all(|x| matches!(x.as_str(), Some("recvonly" | "inactive"))))
    };
    if only_receive("transceivers") && only_receive("local") && d["sending"] == 0 {
        Ok(())
    } else {
        Err(format!("the observer's {what} must only receive, with no track to send: {d}"))
    }
}
