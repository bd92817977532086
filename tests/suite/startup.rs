//! Start-up errors are clear: they name what is wrong, through the real binary.

use crate::common;

use std::process::Command;

fn hearth(envs: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.args(args).env_remove("HEARTH_CONFIG").current_dir(env!("CARGO_MANIFEST_DIR"));
    let store = common::test_dir().join("hearth-startup.db");
    cmd.env("HEARTH_STORE__PATH", &store);
    // Test servers run side by side: the shared media port on an ephemeral port.
    cmd.env("HEARTH_ICE__UDP_PORT", "0");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hearth");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn bad_config_value_names_key_and_value() {
    let (ok, err) = hearth(&[("HEARTH_LIMITS__MAX_ROOM_SIZE", "lots")], &["check-config"]);
    assert!(!ok);
    assert!(err.contains("limits.max_room_size") && err.contains("lots"), "{err}");
    let (ok, err) = hearth(&[("HEARTH_SERVER__LISTEN", "not-an-address")], &[]);
    assert!(!ok);
    assert!(err.contains("server.listen") && err.contains("not-an-address"), "{err}");
    assert!(!err.contains("backtrace"), "one readable line, not a dump: {err}");
}

#[test]
fn missing_config_file_is_named() {
    let (ok, err) = hearth(&[], &["--config", "/nonexistent/hearth.toml", "check-config"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/hearth.toml"), "{err}");
}

#[test]
fn port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, err) = hearth(&[("HEARTH_SERVER__LISTEN", &addr)], &[]);
    assert!(!ok);
    assert!(err.contains(&addr) && err.contains("cannot listen"), "{err}");
}

#[test]
fn unreadable_tls_files_are_reported() {
    let (ok, err) = hearth(&[("HEARTH_SERVER__TLS_CERT", "/nonexistent/c.pem"), ("HEARTH_SERVER__TLS_KEY", "/nonexistent/k.pem")], &[]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/c.pem") && err.contains("TLS"), "{err}");
}

#[test]
fn production_refuses_the_development_secret() {
    let (ok, err) = hearth(&[("HEARTH_SERVER__PRODUCTION", "true")], &["check-config"]);
    assert!(!ok);
    assert!(err.contains("auth.token_secret"), "{err}");
}

fn check_config(envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.arg("check-config").env_remove("HEARTH_CONFIG").current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hearth");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

const REAL_SECRET: &str = "a-real-secret-for-the-startup-tests-0123";

#[test]
fn development_mode_is_not_an_open_door() {
    // Embedded defaults: development, and check-config says so and why.
    let (ok, out, err) = check_config(&[]);
    assert!(ok, "{err}");
    assert!(out.lines().next().is_some_and(|l| l.starts_with("mode: development") && l.contains("loopback")), "{out}");
    // The development secret on a public address refuses to start, naming what to set.
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (ok, _, err) = check_config(&[("HEARTH_SERVER__LISTEN", listen)]);
        assert!(!ok, "{listen} started in development mode");
        assert!(err.contains("server.production = true") && err.contains("auth.token_secret") && err.contains("127.0.0.1"), "{err}");
        let (ok, err) = hearth(&[("HEARTH_SERVER__LISTEN", listen)], &[]);
        assert!(!ok && err.contains("server.production"), "serve must refuse too: {err}");
    }
    let (ok, _, err) = check_config(&[("HEARTH_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]")]);
    assert!(!ok && err.contains("trusted proxies"), "{err}");
    // A real secret runs as production, wherever it listens, even with production = false.
    let (ok, out, err) = check_config(&[("HEARTH_SERVER__LISTEN", "0.0.0.0:0"), ("HEARTH_AUTH__TOKEN_SECRET", REAL_SECRET)]);
    assert!(ok, "{err}");
    assert!(out.starts_with("mode: production") && out.contains("auth.token_secret"), "{out}");
    assert!(!out.contains(REAL_SECRET), "the secret is redacted");
}

#[tokio::test]
async fn a_real_secret_turns_development_tokens_off() {
    let mut config = common::test_config();
    config.auth.token_secret = REAL_SECRET.into();
    assert!(!config.server.production);
    let server = hearth::server::start(config).await.expect("starts");
    let addr = server.addr();
    let body = r#"{"room":"g1","role":"therapist","name":"Anyone"}"#;
    let (status, reply) = http_request(addr, "POST", "/dev/token", body).await;
    assert_eq!(status, 404, "a therapist token for anyone: {reply}");
    let (_, info) = http_request(addr, "GET", "/api/info", "").await;
    assert!(info.contains(r#""devTokens":false"#), "{info}");
    server.shutdown().await;
    // Development mode: minted, but never through a proxy in front of the loopback server.
    let server = hearth::server::start(common::test_config()).await.expect("starts");
    let (status, reply) = http_request(server.addr(), "POST", "/dev/token", body).await;
    assert_eq!(status, 200, "{reply}");
    let (status, _) = http_request_with(server.addr(), "POST", "/dev/token", &[("x-forwarded-for", "203.0.113.5")], body).await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

async fn http_request(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_request_with(addr, method, path, &[], body).await
}

async fn http_request_with(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[tokio::test]
async fn json_logs_carry_ids_but_never_names() {
    use hearth::auth::{Role, TokenIssuer};
    use hearth::signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
    use std::io::Read;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store = common::unique_temp_path("hearth-logs", "db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HEARTH_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("HEARTH_ICE__UDP_PORT", "0")
        .env("HEARTH_STORE__PATH", &store)
        .env("HEARTH_LOG__FORMAT", "json")
        .env("HEARTH_LOG", "debug,webrtc=warn,rtc=warn")
        .env("HEARTH_ROOMS__WAITING_ROOM", "false")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = hearth::client::SignalClient::connect(&url).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut c = client.expect("server came up");
    let issuer = TokenIssuer::new(hearth::config::DEV_TOKEN_SECRET);
    let room = hearth::room::RoomId::new("logs").unwrap();
    let (token, claims) = issuer.mint(&room, Role::Therapist, "Zebulon Secretname", None, std::time::Duration::from_secs(60)).unwrap();
    c.send(&ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: room, token }).await.unwrap();
    recv!(c, ServerMessage::Admitted { .. });
    c.send(&ClientMessage::LockRoom { locked: true }).await.unwrap();
    c.send(&ClientMessage::EndSession { confirm: false, closing_message: None }).await.unwrap();
    let _ = c.recv_until("ended", std::time::Duration::from_secs(5), |m| matches!(m, ServerMessage::SessionEnded { .. })).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    assert!(logs.lines().filter(|l| !l.is_empty()).all(|l| l.starts_with('{')), "JSON lines:\n{logs}");
    assert!(logs.contains(&claims.sub), "logs carry the participant id:\n{logs}");
    assert!(logs.contains("\"room\":\"logs\""), "logs carry the room id:\n{logs}");
    assert!(!logs.contains("Zebulon") && !logs.contains("Secretname"), "no display names in logs:\n{logs}");
}
