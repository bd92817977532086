//! One UDP port for all media: every peer connection's candidates name the server's one media
//! port, media flows through it, and strangers sending garbage to it change nothing.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use hearth::auth::Role;
use hearth::client::{MediaClient, MediaOptions};
use hearth::signal::protocol::MediaKind;

async fn join(server: &hearth::server::RunningServer, room: &str, names: &[&str]) -> Vec<MediaClient> {
    let url = common::ws_url(server);
    let mut clients = Vec::new();
    for name in names {
        let token = common::token(server, room, Role::Participant, name);
        clients.push(MediaClient::join(MediaOptions::light(&url, room, *name).with_token(token)).await.expect("join"));
    }
    clients
}

/// Whether every client receives video from every other one, at least `n` packets each.
fn all_receive(clients: &[MediaClient], n: u64) -> bool {
    clients.iter().all(|c| {
        clients.iter().filter(|o| o.participant_id != c.participant_id).all(|o| c.packets_from(&o.participant_id, MediaKind::Video) >= n)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_connection_uses_the_one_media_port() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let port = server.state().sfu.media_port().expect("the server has a shared media port").port();
    let clients = join(&server, "one-port", &["ana", "ben", "cleo", "dev"]).await;
    assert!(common::eventually(Duration::from_secs(20), || all_receive(&clients, 20)).await, "media flows between all four");
    for c in &clients {
        assert_eq!(c.server_candidate_ports(), vec![port], "{}: the server's candidates name only the media port", c.participant_id);
    }
    for c in clients {
        c.close().await;
    }
    server.shutdown().await;
}

/// A STUN binding request naming `ufrag` (no integrity: it only has to look like one).
fn stun_request(ufrag: &str) -> Vec<u8> {
    let username = format!("{ufrag}:stranger");
    let padded = username.len().div_ceil(4) * 4;
    let mut m = Vec::new();
    m.extend_from_slice(&0x0001u16.to_be_bytes());
    m.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&rand::random::<[u8; 12]>());
    m.extend_from_slice(&0x0006u16.to_be_bytes());
    m.extend_from_slice(&(username.len() as u16).to_be_bytes());
    m.extend_from_slice(username.as_bytes());
    m.resize(20 + 4 + padded, 0);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_media_port_change_nothing() {
    let _machine = common::machine(common::Load::Media).await;
    let server = common::start_open_server().await;
    let media = server.state().sfu.media_port().expect("the server has a shared media port");
    let clients = join(&server, "strangers", &["ana", "ben"]).await;
    assert!(common::eventually(Duration::from_secs(20), || all_receive(&clients, 20)).await, "media flows");
    let unrouted_before = server.state().sfu.stats.media_port_unrouted.load(Ordering::Relaxed);

    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut sent = 0u64;
    for i in 0..300usize {
        let datagram: Vec<u8> = match i % 6 {
            // Garbage of every size.
            0 => (0..1 + i * 5 % 1400).map(|_| rand::random()).collect(),
            // STUN naming nobody, and STUN that is cut short.
            1 => stun_request("nosuchufrag"),
            2 => stun_request("x")[..21].to_vec(),
            // Looks like DTLS, like SRTP, like SRTCP.
            3 => [vec![22, 254, 253], (0..60).map(|_| rand::random()).collect()].concat(),
            4 => [vec![0x80, 96], (0..200).map(|_| rand::random()).collect()].concat(),
            _ => [vec![0x81, 200], (0..40).map(|_| rand::random()).collect()].concat(),
        };
        stranger.send_to(&datagram, media).await.expect("send");
        sent += 1;
        // In batches the socket's receive buffer holds whole: each datagram is then read, and
        // every one of them is dropped as belonging to no connection.
        if sent.is_multiple_of(20) {
            let dropped = common::eventually(Duration::from_secs(10), || {
                server.state().sfu.stats.media_port_unrouted.load(Ordering::Relaxed) >= unrouted_before + sent
            })
            .await;
            let unrouted = server.state().sfu.stats.media_port_unrouted.load(Ordering::Relaxed) - unrouted_before;
            assert!(dropped, "the stranger's datagrams reached no connection: {unrouted} of {sent} counted as unrouted");
        }
    }
    // ...and the room's media keeps flowing.
    let before: Vec<u64> = clients.iter().map(|c| c.packets_from(&clients[0].participant_id, MediaKind::Video)).collect();
    let flowing = common::eventually(Duration::from_secs(10), || {
        clients[1].packets_from(&clients[0].participant_id, MediaKind::Video) > before[1] + 30
            && clients[0].packets_from(&clients[1].participant_id, MediaKind::Video) > 30
    })
    .await;
    assert!(flowing, "media keeps flowing after the stranger's datagrams");
    assert_eq!(common::health(&server).await["status"], "ok");
    for c in clients {
        c.close().await;
    }
    server.shutdown().await;
}
