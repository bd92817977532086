//! The HTTP edge's defences, through the real server on port 0: short error replies,
//! websocket caps, the join timeout, the header-read timeout, the join limiter and trusted
//! proxies, security headers, the websocket Origin check and the metrics key.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hearth::auth::Role;
use hearth::room::RoomId;
use hearth::signal::protocol::{ClientMessage, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws` with extra request headers; `Err(status)` when the upgrade is refused.
async fn ws_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, (u16, String)> {
    let mut req = format!("ws://{addr}/ws").into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            tungstenite::http::HeaderValue::from_str(v).expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("websocket connect failed unexpectedly: {e}"),
    }
}

/// The refusal of an upgrade that must be refused: (status, body).
async fn refused(addr: SocketAddr, headers: &[(&str, &str)], why: &str) -> (u16, String) {
    match ws_with(addr, headers).await {
        Ok(_) => panic!("{why}: the upgrade was accepted"),
        Err(e) => e,
    }
}

async fn ws(addr: SocketAddr) -> Ws {
    ws_with(addr, &[]).await.expect("upgrade accepted")
}

/// The next JSON text frame within `wait`; `None` when the socket closed first.
async fn next_json(ws: &mut Ws, wait: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.expect("a frame or a close before the deadline");
        match frame {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).expect("json")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn send_text(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

fn join_text(room: &str, token: &str) -> String {
    let join = ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).expect("room"), token: token.into() };
    serde_json::to_string(&join).expect("encode")
}

/// A raw HTTP/1.1 request; returns (status, lower-cased head, body).
async fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.expect("response in time").expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn error_replies_never_echo_large_input() {
    let server = common::start_server().await;
    let mut ws = ws(server.addr()).await;
    let big = "a".repeat(60_000);
    let frames = [
        ("malformed_json", format!(r#"{{"type":"join","token":"{big}"#)),
        ("invalid_message", format!(r#"{{"type":"join","protocolVersion":"{big}","roomId":"r","token":"t"}}"#)),
        ("invalid_message", format!(r#"{{"type":"setMute","kind":"{big}","muted":true}}"#)),
        ("unknown_type", format!(r#"{{"type":"{big}"}}"#)),
    ];
    for (code, frame) in frames {
        send_text(&mut ws, frame).await;
        let reply = next_json(&mut ws, Duration::from_secs(5)).await.expect("an error reply");
        let message = reply["message"].as_str().expect("message");
        eprintln!("{code}: {} characters back for a {}-byte frame", message.chars().count(), big.len());
        assert_eq!(reply["code"], code, "{reply}");
        assert!(message.chars().count() <= 201, "{code}: {} characters echoed", message.chars().count());
    }
    // HTTP JSON rejections: serde names the unknown field, which the client chose.
    let body = format!(r#"{{"room":"g1","role":"participant","name":"Sam","{big}":1}}"#);
    let (status, _, resp) = raw(server.addr(), "POST", "/dev/token", &[("content-type", "application/json")], &body).await;
    assert_eq!(status, 400, "{}", &resp[..resp.len().min(300)]);
    let reply: serde_json::Value = serde_json::from_str(&resp).expect("json error");
    let message = reply["message"].as_str().expect("message");
    eprintln!("HTTP rejection: {} characters back", message.chars().count());
    assert!(message.chars().count() <= 201, "{} characters echoed over HTTP", message.chars().count());
    server.shutdown().await;
}

#[tokio::test]
async fn websockets_are_capped_per_address_and_in_total() {
    let mut config = common::test_config();
    config.limits.max_connections_per_ip = 3;
    let server = common::start_with(config).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(ws(server.addr()).await);
    }
    let (status, body) = refused(server.addr(), &[], "the fourth").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_connections"), "{body}");
    // Closing one frees its slot (the guard counts it out when the socket task ends).
    let mut first = open.remove(0);
    first.close(None).await.expect("close");
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        match ws_with(server.addr(), &[]).await {
            Ok(ws) => break ws,
            Err((429, _)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(other) => panic!("the freed slot was not reusable: {other:?}"),
        }
    };
    drop((open, again));
    server.shutdown().await;

    let mut config = common::test_config();
    config.limits.max_connections = 2;
    let server = common::start_with(config).await;
    let _a = ws(server.addr()).await;
    let _b = ws(server.addr()).await;
    let (status, body) = refused(server.addr(), &[], "over the total cap").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("server_full"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_socket_that_never_joins_is_closed() {
    let mut config = common::test_config();
    config.limits.join_timeout_ms = 300;
    let server = common::start_with(config).await;
    let started = Instant::now();
    let mut idle = ws(server.addr()).await;
    let reply = next_json(&mut idle, Duration::from_secs(5)).await.expect("a join_timeout error");
    assert_eq!(reply["code"], "join_timeout", "{reply}");
    assert!(next_json(&mut idle, Duration::from_secs(5)).await.is_none(), "the socket closes after join_timeout");
    eprintln!("idle socket closed after {:?}", started.elapsed());

    // A socket that joined in time stays open past the timeout.
    let mut joined = ws(server.addr()).await;
    send_text(&mut joined, join_text("timely", &common::token(&server, "timely", Role::Therapist, "T"))).await;
    let reply = next_json(&mut joined, Duration::from_secs(5)).await.expect("joined");
    assert_eq!(reply["type"], "joined", "{reply}");
    let quiet = tokio::time::timeout(Duration::from_millis(900), async {
        loop {
            match joined.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().contains("join_timeout") => return "join_timeout",
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return "closed",
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a joined socket was ended: {quiet:?}");
    server.shutdown().await;
}

/// Trickles a request's headers one byte every 100 ms; returns how long until the server
/// closed the connection, or `None` if it was still open after `give_up`.
async fn slowloris(addr: SocketAddr, give_up: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.expect("write");
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        for b in b"X-Slow: ".iter().cycle() {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::future::pending::<()>().await
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // a 408 or similar before the close is fine
            }
        }
    };
    tokio::select! {
        _ = closed => Some(started.elapsed()),
        _ = trickle => None,
        _ = tokio::time::sleep(give_up) => None,
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let mut config = common::test_config();
    config.server.header_read_timeout_ms = 500;
    let server = common::start_with(config).await;
    let closed = slowloris(server.addr(), Duration::from_secs(8)).await;
    eprintln!("slowloris connection closed after {closed:?} (timeout 500 ms)");
    assert!(closed.is_some_and(|d| d < Duration::from_secs(5)), "still open after 8 s");
    // An ordinary request on the same server is unaffected.
    let (status, _, _) = raw(server.addr(), "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn good_joins_are_never_rate_limited_but_bad_tokens_are() {
    let mut config = common::test_config();
    config.limits.joins_per_minute_per_ip = 3;
    let server = common::start_with(config).await;
    for i in 0..10 {
        let mut c = ws(server.addr()).await;
        let token = common::token(&server, "busy", Role::Therapist, &format!("T{i}"));
        send_text(&mut c, join_text("busy", &token)).await;
        let reply = next_json(&mut c, Duration::from_secs(5)).await.expect("reply");
        assert_eq!(reply["type"], "joined", "good join {i} was refused: {reply}");
        c.close(None).await.expect("close");
    }
    let mut c = ws(server.addr()).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        send_text(&mut c, join_text("busy", "not-a-token")).await;
        let reply = next_json(&mut c, Duration::from_secs(5)).await.expect("reply");
        codes.push(reply["code"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(codes, ["token_invalid", "token_invalid", "token_invalid", "rate_limited", "rate_limited"]);
    // The sender of bad tokens still gets in with a good one.
    send_text(&mut c, join_text("busy", &common::token(&server, "busy", Role::Participant, "P"))).await;
    let reply = next_json(&mut c, Duration::from_secs(5)).await.expect("reply");
    assert_eq!(reply["type"], "joined", "{reply}");
    server.shutdown().await;
}

/// Spends address `spent`'s failure quota (2) and returns what a bad join from `other` gets.
async fn bad_join_after_spending(server: &hearth::server::RunningServer, spent: &str, other: &str) -> String {
    let mut c = ws_with(server.addr(), &[("x-forwarded-for", spent)]).await.expect("upgrade");
    for expected in ["token_invalid", "token_invalid", "rate_limited"] {
        send_text(&mut c, join_text("fwd", "bad")).await;
        let reply = next_json(&mut c, Duration::from_secs(5)).await.expect("reply");
        assert_eq!(reply["code"], expected, "{reply}");
    }
    let mut d = ws_with(server.addr(), &[("x-forwarded-for", other)]).await.expect("upgrade");
    send_text(&mut d, join_text("fwd", "bad")).await;
    let reply = next_json(&mut d, Duration::from_secs(5)).await.expect("reply");
    reply["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let mut config = common::test_config();
    config.limits.joins_per_minute_per_ip = 2;
    let server = common::start_with(config).await;
    // Untrusted peer: the header is ignored, both "clients" are 127.0.0.1.
    assert_eq!(bad_join_after_spending(&server, "203.0.113.1", "203.0.113.2").await, "rate_limited");
    server.shutdown().await;

    let mut config = common::test_config();
    config.limits.joins_per_minute_per_ip = 2;
    config.server.trusted_proxies = vec!["127.0.0.1".into()];
    let server = common::start_with(config).await;
    // Trusted proxy: each forwarded client has its own quota; a spoofed left-most entry
    // does not help (the right-most untrusted one counts).
    assert_eq!(bad_join_after_spending(&server, "203.0.113.1", "203.0.113.2").await, "token_invalid");
    let mut c = ws_with(server.addr(), &[("x-forwarded-for", "198.51.100.9, 203.0.113.1")]).await.expect("upgrade");
    send_text(&mut c, join_text("fwd", "bad")).await;
    assert_eq!(next_json(&mut c, Duration::from_secs(5)).await.expect("reply")["code"], "rate_limited");
    server.shutdown().await;
}

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "camera=(self), microphone=(self), display-capture=(self)"),
    ("x-frame-options", "deny"),
];

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = common::start_server().await;
    let requests = [
        ("GET", "/", 200),
        ("GET", "/main.js", 200),
        ("GET", "/healthz", 200),
        ("GET", "/api/info", 200),
        ("GET", "/api/badges/nope/x.svg", 404),
        ("GET", "/dev/token", 405),
    ];
    for (method, path, expected) in requests {
        let (status, head, _) = raw(server.addr(), method, path, &[], "").await;
        assert_eq!(status, expected, "{method} {path}");
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(header(&head, name), Some(*value), "{name} on {path}:\n{head}");
        }
        let csp = header(&head, "content-security-policy").unwrap_or_else(|| panic!("no CSP on {path}:\n{head}"));
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "connect-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "img-src 'self' data:",
        ] {
            assert!(csp.contains(directive), "{directive} missing on {path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // WebAssembly may be compiled (background blur), JavaScript never evaluated.
        assert!(!csp.replace("'wasm-unsafe-eval'", "").contains("unsafe-eval"), "{csp}");
        assert!(header(&head, "strict-transport-security").is_none(), "no HSTS over plain HTTP");
    }
    // A badge keeps its own, stricter policy (opened on its own, it runs and loads nothing).
    let (status, head, _) = raw(server.addr(), "GET", "/api/badges/daysSober/30.svg", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-security-policy"), Some("default-src 'none'; style-src 'unsafe-inline'"), "{head}");
    assert_eq!(header(&head, "x-frame-options"), Some("deny"));
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_origin_is_checked() {
    let mut config = common::test_config();
    config.server.allowed_origins = vec!["https://app.example.org".into()];
    let server = common::start_with(config).await;
    let addr = server.addr();
    let (status, body) = refused(addr, &[("origin", "https://evil.example")], "a foreign origin").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("forbidden_origin"), "{body}");
    assert_eq!(refused(addr, &[("origin", "null")], "origin null").await.0, 403);
    // Forwarded host/proto count only from trusted proxies.
    let spoof = [("origin", "https://evil.example"), ("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "https")];
    assert_eq!(refused(addr, &spoof, "a spoofed forwarded host").await.0, 403);
    let own = format!("http://{addr}");
    for headers in [vec![("origin", own.as_str())], vec![("origin", "https://app.example.org")], vec![]] {
        let mut c = ws_with(addr, &headers).await.unwrap_or_else(|e| panic!("{headers:?} refused: {e:?}"));
        send_text(&mut c, r#"{"type":"ping","nonce":1}"#.to_string()).await;
        assert_eq!(next_json(&mut c, Duration::from_secs(5)).await.expect("pong")["type"], "pong");
    }
    server.shutdown().await;

    let mut config = common::test_config();
    config.server.trusted_proxies = vec!["127.0.0.1".into()];
    let server = common::start_with(config).await;
    let proxied = [("origin", "https://video.example.org"), ("x-forwarded-host", "video.example.org"), ("x-forwarded-proto", "https")];
    assert!(ws_with(server.addr(), &proxied).await.is_ok(), "the proxy's public origin is the server's own");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_need_the_key_when_one_is_set() {
    let mut config = common::test_config();
    config.server.metrics_key = "a-metrics-key-for-tests-0123456789".into();
    let server = common::start_with(config).await;
    assert_eq!(raw(server.addr(), "GET", "/metrics", &[], "").await.0, 401);
    assert_eq!(raw(server.addr(), "GET", "/metrics", &[("authorization", "Bearer wrong")], "").await.0, 401);
    let (status, _, body) =
        raw(server.addr(), "GET", "/metrics", &[("authorization", "Bearer a-metrics-key-for-tests-0123456789")], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("hearth_rooms"), "{body}");
    server.shutdown().await;
    // Without a key, open as before.
    let server = common::start_server().await;
    assert_eq!(raw(server.addr(), "GET", "/metrics", &[], "").await.0, 200);
    server.shutdown().await;
}
