//! TLS (rustls) and the HTTP endpoints around signaling.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use hearth::auth::Role;
use hearth::room::RoomId;
use hearth::server::MintResponse;
use hearth::signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};

use common::http;

/// A self-signed certificate for `localhost` in a folder of its own (removed by the caller), and
/// a test config serving it.
fn tls_config(name: &str) -> (rcgen::CertifiedKey<rcgen::KeyPair>, hearth::config::Config, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = common::test_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut config = common::test_config();
    config.server.tls_cert = cert_path;
    config.server.tls_key = key_path;
    (cert, config, dir)
}

#[tokio::test]
async fn wss_client_connects_and_joins() {
    let (cert, config, dir) = tls_config("hearth-tls");
    let server = common::start_with(config).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the server's certificate");
    let url = format!("wss://localhost:{}/ws", server.addr().port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("websocket over TLS");
    use futures::{SinkExt, StreamExt};
    let token = common::token(&server, "secure", Role::Therapist, "Dr T");
    let join = ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new("secure").unwrap(), token };
    ws.send(tokio_tungstenite::tungstenite::Message::Text(serde_json::to_string(&join).unwrap().into())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    let msg: ServerMessage = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert!(matches!(msg, ServerMessage::Joined { admitted: true, .. }), "{msg:?}");

    // Plain HTTP to the TLS port gets nothing useful.
    let (status, _) = http(server.addr(), "GET", "/healthz", &[], "").await;
    assert_ne!(status, 200);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn unreadable_tls_files_stop_startup_with_a_clear_error() {
    let mut config = common::test_config();
    config.server.tls_cert = "/nonexistent/cert.pem".into();
    config.server.tls_key = "/nonexistent/key.pem".into();
    let err = hearth::server::start(config).await.err().expect("start-up fails").to_string();
    assert!(err.contains("/nonexistent/cert.pem") && err.contains("TLS"), "{err}");
}

#[tokio::test]
async fn api_tokens_need_the_api_key() {
    let mut config = common::test_config();
    config.auth.api_key = "an-api-key-for-tests-0123456789".into();
    let server = common::start_with(config).await;
    let body = r#"{"room":"g1","role":"therapist","name":"Dr Lee","ttlSeconds":600}"#;
    let (status, _) = http(server.addr(), "POST", "/api/tokens", &[("content-type", "application/json")], body).await;
    assert_eq!(status, 401);
    let wrong = [("content-type", "application/json"), ("authorization", "Bearer nope")];
    assert_eq!(http(server.addr(), "POST", "/api/tokens", &wrong, body).await.0, 401);
    let good = [("content-type", "application/json"), ("authorization", "Bearer an-api-key-for-tests-0123456789")];
    let (status, resp) = http(server.addr(), "POST", "/api/tokens", &good, body).await;
    assert_eq!(status, 200, "{resp}");
    let minted: MintResponse = serde_json::from_str(&resp).unwrap();
    let grant = server.state().tokens.verify(&minted.token, &RoomId::new("g1").unwrap()).unwrap();
    assert_eq!((grant.role, grant.name.as_str()), (Role::Therapist, "Dr Lee"));
    assert!(minted.join_path.starts_with("/#token="));
    // Bad input: a clear 400 with a code.
    let (status, resp) = http(server.addr(), "POST", "/api/tokens", &good, r#"{"room":"bad room","role":"therapist","name":"x"}"#).await;
    assert_eq!(status, 400);
    assert!(resp.contains("invalid_room"), "{resp}");
    let (status, resp) = http(server.addr(), "POST", "/api/tokens", &good, r#"{"room":"g","role":"king","name":"x"}"#).await;
    assert_eq!(status, 400, "{resp}");
    server.shutdown().await;
}

#[tokio::test]
async fn dev_tokens_only_outside_production() {
    let server = common::start_server().await;
    let body = r#"{"room":"g1","role":"participant","name":"Sam"}"#;
    let (status, resp) = http(server.addr(), "POST", "/dev/token", &[("content-type", "application/json")], body).await;
    assert_eq!(status, 200, "{resp}");
    let (_, info) = http(server.addr(), "GET", "/api/info", &[], "").await;
    assert!(info.contains(r#""devTokens":true"#), "{info}");
    server.shutdown().await;

    let mut config = common::test_config();
    config.server.production = true;
    config.auth.token_secret = "a-production-secret-that-is-long-enough".into();
    let server = common::start_with(config).await;
    let (status, _) = http(server.addr(), "POST", "/dev/token", &[("content-type", "application/json")], body).await;
    assert_eq!(status, 404);
    let (_, info) = http(server.addr(), "GET", "/api/info", &[], "").await;
    assert!(info.contains(r#""devTokens":false"#), "{info}");
    let (status, page) = http(server.addr(), "GET", "/", &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"));
    server.shutdown().await;
}

#[tokio::test]
async fn tls_responses_carry_hsts_and_slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cert, mut config, dir) = tls_config("hearth-tls-slow");
    config.server.header_read_timeout_ms = 500;
    let server = common::start_with(config).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        tokio_rustls::TlsConnector::from(tls.clone())
            .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake")
    };

    let mut s = connect().await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("a response");
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("strict-transport-security: max-age="), "{head}");
    assert!(head.contains("content-security-policy: "), "{head}");

    // A client trickling its headers over TLS is cut off too.
    let started = std::time::Instant::now();
    let mut s = connect().await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(s);
    let trickle = async {
        loop {
            if wr.write_all(b"X").await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let closed = async {
        let mut byte = [0u8; 256];
        while let Ok(n) = rd.read(&mut byte).await {
            if n == 0 {
                break;
            }
        }
    };
    let cut = tokio::select! {
        _ = closed => true,
        _ = trickle => true,
        _ = tokio::time::sleep(Duration::from_secs(8)) => false,
    };
    eprintln!("slow TLS client cut off after {:?}", started.elapsed());
    assert!(cut && started.elapsed() < Duration::from_secs(5), "a slow TLS client was still connected after {:?}", started.elapsed());
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
