//! docs/protocol.md is the protocol's one description: every JSON example in it decodes as the
//! message it shows (with the tag it shows), every client message type has an example, and
//! every error code is documented. A message or code added without its documentation, or an
//! example that drifted from the types, fails here.

use std::collections::BTreeSet;

use hearth::signal::protocol::{ClientMessage, ErrorCode, ServerMessage};
use serde_json::Value;
use strum::VariantNames;

fn docs() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md")).expect("docs/protocol.md")
}

/// Every inline-code span of the docs that is a JSON object with a `type`.
fn examples(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).filter(|span| span.starts_with("{\"type\":\"")).map(str::to_string).collect()
}

#[test]
fn every_json_example_decodes_as_the_message_it_shows() {
    let text = docs();
    let mut client_seen = BTreeSet::new();
    let mut server_seen = BTreeSet::new();
    let mut placeholders = 0;
    let mut failures = Vec::new();
    for example in examples(&text) {
        // Examples that elide a part ("…" for a long SDP or a whole roster entry) are not JSON;
        // those that are must decode exactly.
        let Ok(value) = serde_json::from_str::<Value>(&example) else {
            assert!(example.contains('…'), "not JSON and no elision: {example}");
            placeholders += 1;
            continue;
        };
        let ty = value["type"].as_str().unwrap_or_default().to_string();
        let as_client = ClientMessage::TYPES.contains(&ty.as_str());
        let as_server = ServerMessage::VARIANTS.contains(&ty.as_str());
        if !as_client && !as_server {
            failures.push(format!("no message has the type `{ty}`: {example}"));
            continue;
        }
        if as_client {
            match serde_json::from_value::<ClientMessage>(value.clone()) {
                Ok(m) if m.kind() == ty => {
                    client_seen.insert(ty.clone());
                }
                Ok(m) => failures.push(format!("`{ty}` decoded as `{}`: {example}", m.kind())),
                Err(e) if !as_server => failures.push(format!("client `{ty}`: {e}: {example}")),
                Err(_) => {}
            }
        }
        if as_server && !client_seen.contains(&ty) {
            match serde_json::from_value::<ServerMessage>(value) {
                Ok(m) => {
                    let tag: &'static str = (&m).into();
                    assert_eq!(tag, ty, "{example}");
                    server_seen.insert(ty);
                }
                Err(e) => failures.push(format!("server `{ty}`: {e}: {example}")),
            }
        }
    }
    assert!(failures.is_empty(), "examples that do not decode:\n{}", failures.join("\n"));
    let missing: Vec<_> = ClientMessage::TYPES.iter().filter(|t| !client_seen.contains(**t)).collect();
    assert!(missing.is_empty(), "client messages without a decodable example in docs/protocol.md: {missing:?}");
    assert!(server_seen.len() >= 30, "only {} server message types have decodable examples", server_seen.len());
    eprintln!("{} client and {} server types decoded; {placeholders} elided examples", client_seen.len(), server_seen.len());
}

#[test]
fn every_error_code_is_documented() {
    let text = docs();
    let missing: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).filter(|c| !text.contains(&format!("`{c}`"))).collect();
    assert!(missing.is_empty(), "error codes not in docs/protocol.md: {missing:?}");
}

#[test]
fn tags_are_the_variants_in_camel_case() {
    // The wire tag (serde) and the listed tag (strum) follow one rule; spot-check both ways.
    let m = ClientMessage::SetVideoPreference { track_id: "t".into(), max_height: 1 };
    let json = serde_json::to_value(&m).expect("encodes");
    assert_eq!(json["type"], m.kind());
    assert!(ClientMessage::TYPES.contains(&"screenShare") && ClientMessage::TYPES.contains(&"allowScreenShare"));
    assert_eq!(ErrorCode::ScreenShareNotReceived.as_str(), serde_json::to_value(ErrorCode::ScreenShareNotReceived).unwrap());
}

/// The permission table in docs/protocol.md is the one the server enforces.
#[test]
fn the_permission_table_in_the_docs_is_the_servers() {
    let text = docs();
    let (begin, end) = ("<!-- permissions:begin -->\n", "<!-- permissions:end -->");
    let start = text.find(begin).expect("permissions:begin marker") + begin.len();
    let stop = text.find(end).expect("permissions:end marker");
    let table = hearth::room::permissions::markdown();
    assert_eq!(&text[start..stop], table, "docs/protocol.md's permission table differs from the server's; paste this:\n{table}");
}
