//! The web client and the server speak the same protocol: every server message type the client
//! handles, every client message type it sends and every error code it acts on exists on the
//! server. A renamed or removed message or code on either side fails here, not in a session.
//!
//! The client (web-client/, plain ES modules) keeps to three conventions so this can be checked
//! without running it:
//! - server messages are handled through the bus with a literal type: `on('pollStarted', …)`;
//!   events the page makes itself are named `local:<name>` and are not server messages;
//! - error codes are named only through `CODES` (web-client/core/codes.js): `code === CODES.X`,
//!   `{ [CODES.X]: '…' }`, never a bare `'room_full'`;
//! - messages it sends are object literals starting with their type: `send({ type: 'vote', … })`.
//!
//! The server's lists: `ErrorCode::ALL` (checked against the enum's source, so a new code cannot
//! be left out of it), and the variants of `ServerMessage` / `ClientMessage` in
//! src/signal/protocol.rs, camelCased as serde tags them (checked on a few by serialising).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hearth::signal::protocol::{ErrorCode, ServerMessage};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn protocol_source() -> String {
    std::fs::read_to_string(root().join("src/signal/protocol.rs")).expect("reading src/signal/protocol.rs")
}

/// The variant names of `pub enum <name> { … }` in the protocol source (4-space indented lines
/// starting with an upper-case identifier; doc comments and attributes are skipped).
fn enum_variants(source: &str, name: &str) -> Vec<String> {
    let start = source.find(&format!("pub enum {name} {{")).unwrap_or_else(|| panic!("no `pub enum {name}` in protocol.rs"));
    let body = &source[start..];
    let end = body.find("\n}\n").expect("end of enum");
    body[..end]
        .lines()
        .skip(1)
        .filter_map(|line| {
            let rest = line.strip_prefix("    ")?;
            if rest.starts_with(' ') {
                return None;
            }
            let ident: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            ident.chars().next().filter(|c| c.is_ascii_uppercase()).map(|_| ident)
        })
        .collect()
}

fn camel(variant: &str) -> String {
    let mut chars = variant.chars();
    chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

fn server_types() -> BTreeSet<String> {
    let types: BTreeSet<String> = enum_variants(&protocol_source(), "ServerMessage").iter().map(|v| camel(v)).collect();
    // The tag convention, checked on real values (a one-word and a two-word variant).
    let tag = |m: ServerMessage| serde_json::to_value(m).unwrap()["type"].as_str().unwrap().to_string();
    let error = tag(ServerMessage::Error { code: ErrorCode::Forbidden, message: String::new() });
    let speaker = tag(ServerMessage::ActiveSpeaker { participant_id: None });
    for t in [error, speaker] {
        assert!(types.contains(&t), "serde tags ServerMessage as {t:?}, which the source scan did not find: {types:?}");
    }
    assert!(types.len() > 30, "too few ServerMessage variants found: {types:?}");
    types
}

fn client_types() -> BTreeSet<String> {
    let types: BTreeSet<String> = enum_variants(&protocol_source(), "ClientMessage").iter().map(|v| camel(v)).collect();
    assert!(types.contains("join") && types.contains("createPoll"), "ClientMessage scan: {types:?}");
    types
}

fn server_codes() -> BTreeSet<&'static str> {
    let declared = enum_variants(&protocol_source(), "ErrorCode").len();
    assert_eq!(ErrorCode::ALL.len(), declared, "ErrorCode::ALL must list every ErrorCode variant");
    let codes: BTreeSet<&'static str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes.len(), declared, "error codes are unique");
    codes
}

/// Every `.js` file of the web client, with its path relative to web-client/; not the
/// third-party code vendored under `vendor/`, which speaks no protocol of ours.
fn client_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("reading web-client") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() && path.strip_prefix(base).is_ok_and(|p| p == Path::new("vendor")) {
                continue;
            }
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "js") {
                let name = path.strip_prefix(base).unwrap().display().to_string();
                out.push((name, std::fs::read_to_string(&path).expect("reading a client file")));
            }
        }
    }
    let base = root().join("web-client");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    assert!(out.len() > 10, "web client sources not found in {}", base.display());
    out
}

/// The source without `//` line comments (block comments are not used for code in the client).
fn strip_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| {
            // A `//` inside a string (a URL) is rare in this code; only strip it at a token start.
            match line.find("// ") {
                Some(i) if line[..i].matches('\'').count() % 2 == 0 && line[..i].matches('`').count() % 2 == 0 => &line[..i],
                _ => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// For every `needle` (not preceded by an identifier character or a `.`), what follows it after
/// optional spaces: `Ok(literal)` for a single-quoted string, `Err(snippet)` for anything else.
fn after(source: &str, needle: &str) -> Vec<Result<String, String>> {
    after_any(source, needle, true)
}

/// Like [`after`]; `bounded: false` also counts a needle in the middle of a word.
fn after_any(source: &str, needle: &str, bounded: bool) -> Vec<Result<String, String>> {
    scan(source, needle, bounded).into_iter().map(|(_, found)| found).collect()
}

/// Like [`after`], with the byte offset of each needle.
fn after_at(source: &str, needle: &str) -> Vec<(usize, Result<String, String>)> {
    scan(source, needle, true)
}

fn scan(source: &str, needle: &str, bounded: bool) -> Vec<(usize, Result<String, String>)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = source[from..].find(needle) {
        let at = from + i;
        from = at + needle.len();
        let before = source[..at].chars().next_back();
        if bounded && before.is_some_and(|c| is_ident(c) || c == '.') {
            continue;
        }
        let rest = source[from..].trim_start();
        if let Some(lit) = rest.strip_prefix('\'') {
            let end = lit.find('\'').expect("unterminated string");
            out.push((at, Ok(lit[..end].to_string())));
        } else {
            out.push((at, Err(rest.chars().take(40).collect())));
        }
    }
    out
}

#[test]
fn the_web_client_handles_only_server_message_types_that_exist() {
    let types = server_types();
    let mut handled = BTreeSet::new();
    let mut problems = Vec::new();
    for (file, source) in client_sources() {
        let code = strip_comments(&source);
        for found in after(&code, "on(") {
            match found {
                Ok(t) if t.starts_with("local:") => {}
                Ok(t) if types.contains(&t) => {
                    handled.insert(t);
                }
                Ok(t) => problems.push(format!("{file}: on('{t}') — the server sends no message of type {t:?}")),
                // The bus declares `on`; the test probe (window.hearth.onMessage) passes it on.
                Err(_) if file == "core/bus.js" || file == "core/probe.js" => {}
                Err(s) => problems.push(format!("{file}: on({s}…) — register bus handlers with a literal type")),
            }
        }
    }
    assert!(problems.is_empty(), "the web client names message types the server does not have:\n{}", problems.join("\n"));
    // The scan found the client's handlers at all (a broken convention would find nothing).
    for t in ["joined", "admitted", "error", "offer", "pollStarted", "chatMessage", "spaceChanged", "celebration", "videoState"] {
        assert!(handled.contains(t), "no handler for {t:?} found; handled: {handled:?}");
    }
}

#[test]
fn the_web_client_acts_only_on_error_codes_that_exist() {
    let codes = server_codes();
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for (file, source) in client_sources() {
        let code = strip_comments(&source);
        if file == "core/codes.js" {
            // `NAME: 'value',` lines inside `CODES = Object.freeze({ … })`.
            let body = &code[code.find("Object.freeze({").expect("CODES in codes.js")..];
            let body = &body[..body.find("});").expect("end of CODES")];
            for line in body.lines().skip(1) {
                let Some((name, value)) = line.trim().trim_end_matches(',').split_once(": ") else { continue };
                let value = value.trim_matches('\'');
                names.insert(name.to_string());
                if !codes.contains(value) {
                    problems.push(format!("codes.js: CODES.{name} = '{value}' — the server has no error code {value:?}"));
                }
            }
            continue;
        }
        // Codes are compared only through CODES: a bare literal would escape this check.
        for needle in ["code === ", "code !== ", "code == ", "code != "] {
            for lit in after_any(&code, needle, false).into_iter().flatten() {
                problems.push(format!("{file}: `{needle}'{lit}'` — compare error codes through CODES (core/codes.js)"));
            }
        }
        let mut from = 0;
        while let Some(i) = code[from..].find("CODES.") {
            let start = from + i + "CODES.".len();
            let name: String = code[start..].chars().take_while(|c| is_ident(*c)).collect();
            from = start;
            names.insert(format!("used:{name}"));
        }
    }
    let defined: BTreeSet<&String> = names.iter().filter(|n| !n.starts_with("used:")).collect();
    for used in names.iter().filter_map(|n| n.strip_prefix("used:")) {
        if !defined.contains(&used.to_string()) {
            problems.push(format!("CODES.{used} is used but not defined in core/codes.js"));
        }
    }
    assert!(defined.len() > 20, "too few codes found in codes.js: {defined:?}");
    assert!(problems.is_empty(), "the web client names error codes the server does not have:\n{}", problems.join("\n"));
}

#[test]
fn the_web_client_sends_only_message_types_the_server_accepts() {
    let types = client_types();
    // `{ type: '…' }` literals that are not protocol messages: element attributes and SDP.
    let not_messages = ["button", "submit", "text", "number", "radio", "checkbox", "rollback"];
    let mut sent = BTreeSet::new();
    let mut problems = Vec::new();
    for (file, source) in client_sources() {
        let code = strip_comments(&source);
        for (at, found) in after_at(&code, "type:") {
            // Only a `type` that opens an object literal: `{ type: '…'` (also across a line break).
            if !code[..at].trim_end().ends_with('{') {
                continue;
            }
            let Ok(t) = found else { continue };
            if not_messages.contains(&t.as_str()) {
                continue;
            }
            if types.contains(&t) {
                sent.insert(t);
            } else {
                problems.push(format!("{file}: {{ type: '{t}' }} — the server accepts no message of type {t:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "the web client sends message types the server does not have:\n{}", problems.join("\n"));
    for t in ["join", "offer", "answer", "iceCandidate", "ping", "createPoll", "vote", "chat", "screenShare", "setVideoPreference"] {
        assert!(sent.contains(t), "no `{{ type: '{t}' }}` found; sent: {sent:?}");
    }
}
