//! TURN credentials: who gets them and whether a real coturn takes them. Admitted participants
//! get credentials of their own in `admitted` (fresh on every admission and reconnection);
//! someone in the waiting room gets none; coturn (`use-auth-secret`, the secret Hearth mints
//! with) grants an allocation for fresh credentials and refuses expired ones.
//!
//! The coturn test needs Debian's `coturn` (`turnserver`), which `scripts/install-test-deps.sh`
//! installs; it fails with a clear message without it. coturn listens on loopback ports of its
//! own, with a configuration this test writes.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth::auth::Role;
use hearth::client::SignalClient;
use hearth::room::RoomId;
use hearth::signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use hearth::turn::TurnIssuer;
use hearth::vocab::IceServer;

const WAIT: Duration = Duration::from_secs(5);
const SECRET: &str = "coturn-static-auth-secret-for-tests-0123";
const TTL_SECS: u64 = 600;
const URLS: [&str; 3] =
    ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp", "turns:turn.example.org:443?transport=tcp"];

fn join_msg(room: &str, token: String) -> ClientMessage {
    ClientMessage::Join { protocol_version: PROTOCOL_VERSION, room_id: RoomId::new(room).unwrap(), token }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Checks the TURN entry of `servers` is for `participant`, expires about a TTL from now and
/// carries the HMAC coturn will compute; returns its expiry.
fn check_turn(servers: &[IceServer], participant: &str) -> u64 {
    let turn = servers.iter().find(|s| s.urls.iter().any(|u| u.starts_with("turn:"))).expect("a TURN server in iceServers");
    assert_eq!(turn.urls, URLS.map(String::from).to_vec(), "UDP, TCP and TLS URLs as configured");
    let username = turn.username.as_deref().expect("a username");
    let (expiry, who) = username.split_once(':').expect("username is expiry:participant");
    assert_eq!(who, participant, "credentials name the participant they are for");
    let expiry: u64 = expiry.parse().expect("expiry in unix seconds");
    let now = now_secs();
    assert!(expiry >= now + TTL_SECS - 5 && expiry <= now + TTL_SECS + 1, "expires a TTL from now: {expiry} vs now {now}");
    let issuer = TurnIssuer::new(&URLS.map(String::from), SECRET, Duration::from_secs(TTL_SECS)).unwrap();
    assert_eq!(turn.credential.as_deref(), Some(issuer.password(username).as_str()), "password is the HMAC of the username");
    expiry
}

/// Messages until `pong`: whatever reached `c` before it.
async fn until_pong(c: &mut SignalClient) -> Vec<ServerMessage> {
    c.send(&ClientMessage::Ping { nonce: Some(7) }).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let m = c.recv_until("pong", WAIT, |_| true).await.unwrap();
        if matches!(m, ServerMessage::Pong { .. }) {
            return seen;
        }
        seen.push(m);
    }
}

#[tokio::test]
async fn credentials_only_once_admitted_and_fresh_on_every_reconnection() {
    let mut config = common::test_config();
    config.turn.urls = URLS.map(String::from).to_vec();
    config.turn.secret = SECRET.into();
    config.turn.credential_ttl_secs = TTL_SECS;
    config.ice.ice_servers = vec![IceServer { urls: vec!["stun:stun.example.org:3478".into()], username: None, credential: None }];
    let server = common::start_with(config).await;

    let mut therapist = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    therapist.send(&join_msg("g", common::token_for(&server, "g", Role::Therapist, "Dr Lee", "t-lee"))).await.unwrap();
    let ServerMessage::Admitted { ice_servers, .. } = recv!(therapist, ServerMessage::Admitted { .. }) else { unreachable!() };
    assert_eq!(ice_servers[0].urls, vec!["stun:stun.example.org:3478".to_string()], "the configured STUN server comes first");
    check_turn(&ice_servers, "t-lee");

    // A stale token gets an error and nothing else.
    let mut stranger = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    stranger.send(&join_msg("g", "not-a-token".into())).await.unwrap();
    let reply = stranger.recv_until("error", WAIT, |_| true).await.unwrap();
    assert!(matches!(reply, ServerMessage::Error { .. }), "a bad token is refused: {reply:?}");

    // Waiting: `joined` (which has no ICE servers at all) and nothing that carries credentials.
    let sam_token = common::token_for(&server, "g", Role::Participant, "Sam", "p-sam");
    let mut sam = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    sam.send(&join_msg("g", sam_token.clone())).await.unwrap();
    let joined = recv!(sam, ServerMessage::Joined { .. });
    assert!(matches!(joined, ServerMessage::Joined { admitted: false, .. }), "{joined:?}");
    recv!(therapist, ServerMessage::WaitingList { waiting } if !waiting.is_empty());
    let while_waiting = until_pong(&mut sam).await;
    assert!(!while_waiting.iter().any(|m| matches!(m, ServerMessage::Admitted { .. })), "no credentials while waiting: {while_waiting:?}");

    therapist.send(&ClientMessage::Admit { participant_id: common::pid("p-sam") }).await.unwrap();
    let ServerMessage::Admitted { ice_servers, .. } = recv!(sam, ServerMessage::Admitted { .. }) else { unreachable!() };
    let first = check_turn(&ice_servers, "p-sam");

    // A reconnection gets credentials minted then, not the old ones again.
    drop(sam);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut sam = SignalClient::connect(&common::ws_url(&server)).await.unwrap();
    sam.send(&join_msg("g", sam_token)).await.unwrap();
    let ServerMessage::Admitted { ice_servers, .. } = recv!(sam, ServerMessage::Admitted { .. }) else { unreachable!() };
    let second = check_turn(&ice_servers, "p-sam");
    assert!(second > first, "fresh credentials on reconnection: expiry {second} after {first}");
    server.shutdown().await;
}

/// A coturn of the test's own on loopback; killed on drop.
struct Coturn {
    child: Child,
    addr: SocketAddr,
    _dir: common::browser::TempDir,
}

impl Coturn {
    fn start() -> Self {
        let turnserver = ["/usr/bin/turnserver", "/usr/sbin/turnserver"].into_iter().find(|p| std::path::Path::new(p).exists());
        let turnserver = turnserver
            .unwrap_or_else(|| panic!("this test needs coturn (`turnserver`); run scripts/install-test-deps.sh (Debian package coturn)"));
        let dir = common::browser::TempDir::new("coturn");
        let port = free_udp_and_tcp_port();
        let conf = dir.path().join("turnserver.conf");
        std::fs::write(
            &conf,
            format!(
                "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={port}\nalt-listening-port={alt}\nno-tls\nno-dtls\n\
                 min-port=49152\nmax-port=65535\nuse-auth-secret\nstatic-auth-secret={SECRET}\nrealm=hearth.test\n\
                 fingerprint\nno-cli\nno-multicast-peers\nsimple-log\nlog-file=stdout\npidfile={pid}\nuserdb={db}\n",
                alt = free_udp_and_tcp_port(),
                pid = dir.path().join("turnserver.pid").display(),
                db = dir.path().join("turndb").display(),
            ),
        )
        .expect("write coturn's configuration");
        let log = std::fs::File::create(dir.path().join("turnserver.log")).expect("coturn log");
        let child = Command::new(turnserver)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {turnserver}: {e}"));
        Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), _dir: dir }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on loopback (bound and released: fine for a local test).
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// What coturn answers a TURN Allocate made with `username` and `password`: the STUN class
/// (0x0103 success, 0x0113 error) and the error code.
fn allocate(turn: SocketAddr, username: &str, password: &str) -> (u16, Option<u16>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    // First without credentials: coturn answers 401 with its realm and a nonce.
    let deadline = Instant::now() + WAIT;
    let (realm, nonce) = loop {
        assert!(Instant::now() < deadline, "coturn at {turn} did not answer (see its log in the temp dir)");
        socket.send_to(&stun::allocate(None), turn).unwrap();
        let mut buf = [0u8; 1500];
        let Ok(n) = socket.recv(&mut buf) else { continue };
        let reply = stun::parse(&buf[..n]);
        assert_eq!(reply.error, Some(401), "an unauthenticated Allocate is challenged");
        break (reply.realm.expect("a realm"), reply.nonce.expect("a nonce"));
    };
    let request = stun::allocate(Some((username, &realm, &nonce, password)));
    loop {
        assert!(Instant::now() < deadline, "coturn did not answer the authenticated Allocate");
        socket.send_to(&request, turn).unwrap();
        let mut buf = [0u8; 1500];
        let Ok(n) = socket.recv(&mut buf) else { continue };
        let reply = stun::parse(&buf[..n]);
        return (reply.typ, reply.error);
    }
}

#[tokio::test]
async fn coturn_grants_fresh_credentials_and_refuses_expired_ones() {
    let coturn = Coturn::start();
    let issuer = TurnIssuer::new(&[format!("turn:{}", coturn.addr)], SECRET, Duration::from_secs(TTL_SECS)).unwrap();
    let me = common::pid("p-sam");
    let fresh = issuer.mint(&me, SystemTime::now());
    let (typ, error) = allocate(coturn.addr, fresh.username.as_deref().unwrap(), fresh.credential.as_deref().unwrap());
    assert_eq!((typ, error), (0x0103, None), "coturn grants an allocation for fresh credentials");

    let expired = issuer.mint(&me, SystemTime::now() - Duration::from_secs(TTL_SECS + 60));
    let (typ, error) = allocate(coturn.addr, expired.username.as_deref().unwrap(), expired.credential.as_deref().unwrap());
    assert_eq!((typ, error), (0x0113, Some(401)), "coturn refuses credentials past their expiry");

    // Fresh expiry with the wrong password (minted with another secret) is refused too.
    let other =
        TurnIssuer::new(&[format!("turn:{}", coturn.addr)], "another-secret-entirely-0123456789", Duration::from_secs(TTL_SECS)).unwrap();
    let forged = other.mint(&me, SystemTime::now());
    let (_, error) = allocate(coturn.addr, forged.username.as_deref().unwrap(), forged.credential.as_deref().unwrap());
    assert_eq!(error, Some(401), "credentials not made with the shared secret are refused");
}

/// Just enough STUN (RFC 5389) and TURN (RFC 5766) to make an Allocate and read the answer.
mod stun {
    const MAGIC: u32 = 0x2112_A442;
    const USERNAME: u16 = 0x0006;
    const MESSAGE_INTEGRITY: u16 = 0x0008;
    const ERROR_CODE: u16 = 0x0009;
    const REALM: u16 = 0x0014;
    const NONCE: u16 = 0x0015;
    const REQUESTED_TRANSPORT: u16 = 0x0019;

    fn attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn set_length(msg: &mut [u8], len: usize) {
        msg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }

    /// An Allocate request for a UDP relay; with `(username, realm, nonce, password)`, signed
    /// with the long-term credential (key MD5(username:realm:password)).
    pub fn allocate(credentials: Option<(&str, &str, &str, &str)>) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&0x0003u16.to_be_bytes());
        msg.extend_from_slice(&0u16.to_be_bytes());
        msg.extend_from_slice(&MAGIC.to_be_bytes());
        msg.extend_from_slice(&rand::random::<[u8; 12]>());
        attr(&mut msg, REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        if let Some((username, realm, nonce, password)) = credentials {
            attr(&mut msg, USERNAME, username.as_bytes());
            attr(&mut msg, REALM, realm.as_bytes());
            attr(&mut msg, NONCE, nonce.as_bytes());
            // The integrity covers the message with its length already counting the attribute.
            let len = msg.len() - 20 + 24;
            set_length(&mut msg, len);
            let crypto = hearth_crypto();
            let key = crypto.crypto().hash(rtc::crypto::HashAlgorithm::Md5, format!("{username}:{realm}:{password}").as_bytes()).unwrap();
            let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key), &msg);
            attr(&mut msg, MESSAGE_INTEGRITY, mac.as_ref());
        }
        let len = msg.len() - 20;
        set_length(&mut msg, len);
        msg
    }

    fn hearth_crypto() -> std::sync::Arc<dyn rtc::crypto::RTCCryptoProvider> {
        rtc::crypto::default_provider().expect("the webrtc stack's crypto provider")
    }

    pub struct Reply {
        pub typ: u16,
        pub error: Option<u16>,
        pub realm: Option<String>,
        pub nonce: Option<String>,
    }

    pub fn parse(buf: &[u8]) -> Reply {
        assert!(buf.len() >= 20, "a STUN message: {buf:?}");
        let mut reply = Reply { typ: u16::from_be_bytes([buf[0], buf[1]]), error: None, realm: None, nonce: None };
        let mut at = 20;
        while at + 4 <= buf.len() {
            let typ = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
            let value = &buf[at + 4..(at + 4 + len).min(buf.len())];
            match typ {
                ERROR_CODE if value.len() >= 4 => reply.error = Some(u16::from(value[2]) * 100 + u16::from(value[3])),
                REALM => reply.realm = Some(String::from_utf8_lossy(value).into_owned()),
                NONCE => reply.nonce = Some(String::from_utf8_lossy(value).into_owned()),
                _ => {}
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        reply
    }
}
