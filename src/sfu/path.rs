//! Which network path a connected peer uses, for `/metrics`: straight to the server over UDP
//! (`host`), through the client's NAT as seen by STUN (`srflx`), through a TURN server
//! (`relay`, whatever carried the client's leg to it: UDP, TCP or TLS), or ICE over TCP to the
//! server itself (`tcp`). Only counts: no address is kept or reported.
//!
//! The server is ICE-lite, so a client's first check can arrive before its trickled candidate
//! and the crate files the pair's remote side as peer-reflexive. The candidates the client did
//! send say what an address really is, when the crate reports it; a peer-reflexive remote it
//! does not report counts as `srflx`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::SfuStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaPath {
    Host,
    Srflx,
    Relay,
    Tcp,
}

impl MediaPath {
    pub const ALL: [MediaPath; 4] = [MediaPath::Host, MediaPath::Srflx, MediaPath::Relay, MediaPath::Tcp];

    pub fn as_str(self) -> &'static str {
        match self {
            MediaPath::Host => "host",
            MediaPath::Srflx => "srflx",
            MediaPath::Relay => "relay",
            MediaPath::Tcp => "tcp",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A client candidate's address and `typ`, from its SDP line
/// (`candidate:<foundation> <component> <protocol> <priority> <ip> <port> typ <type> ...`).
pub fn parse_candidate(line: &str) -> Option<(SocketAddr, &str)> {
    let line = line.trim().trim_start_matches("a=").trim_start_matches("candidate:");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let ip: IpAddr = fields.get(4)?.parse().ok()?;
    let port: u16 = fields.get(5)?.parse().ok()?;
    let typ = fields.iter().position(|f| *f == "typ").and_then(|i| fields.get(i + 1))?;
    Some((SocketAddr::new(ip, port), typ))
}

/// The path of a selected pair: `local_tcp` when the server's side is a TCP candidate; the
/// remote side's type as the crate knows it, and what the client said of that address.
pub fn classify(local_tcp: bool, remote_type: &str, remote: Option<SocketAddr>, told: &HashMap<SocketAddr, String>) -> MediaPath {
    if local_tcp {
        return MediaPath::Tcp;
    }
    let typ = match remote_type {
        "prflx" | "" => remote.and_then(|a| told.get(&a)).map(String::as_str).unwrap_or(remote_type),
        other => other,
    };
    match typ {
        "relay" => MediaPath::Relay,
        "srflx" | "prflx" => MediaPath::Srflx,
        _ => MediaPath::Host,
    }
}

/// One peer's share of the per-path gauges: counted while connected on a path.
pub struct PathGauge {
    stats: Arc<SfuStats>,
    current: Option<MediaPath>,
}

impl PathGauge {
    pub fn new(stats: Arc<SfuStats>) -> Self {
        Self { stats, current: None }
    }

    pub fn set(&mut self, path: Option<MediaPath>) {
        if path == self.current {
            return;
        }
        if let Some(old) = self.current {
            self.stats.peers_by_path[old.index()].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(new) = path {
            self.stats.peers_by_path[new.index()].fetch_add(1, Ordering::Relaxed);
        }
        self.current = path;
    }
}

impl Drop for PathGauge {
    fn drop(&mut self) {
        self.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_lines_give_address_and_type() {
        let relay = "candidate:3 1 udp 41885695 10.9.0.1 50123 typ relay raddr 10.9.0.2 rport 40001 generation 0 ufrag x";
        assert_eq!(parse_candidate(relay), Some(("10.9.0.1:50123".parse().unwrap(), "relay")));
        assert_eq!(parse_candidate("a=candidate:1 1 UDP 2122 ::1 9 typ host"), Some(("[::1]:9".parse().unwrap(), "host")));
        assert_eq!(parse_candidate("candidate:1 1 udp 2122 abcd.local 9 typ host"), None, "mDNS names are no address");
        assert_eq!(parse_candidate("garbage"), None);
    }

    #[test]
    fn a_peer_reflexive_pair_takes_the_type_the_client_told() {
        let addr: SocketAddr = "10.9.0.1:50123".parse().unwrap();
        let told = HashMap::from([(addr, "relay".to_string())]);
        assert_eq!(classify(false, "prflx", Some(addr), &told), MediaPath::Relay);
        assert_eq!(classify(false, "prflx", Some("10.9.0.7:1".parse().unwrap()), &told), MediaPath::Srflx);
        assert_eq!(classify(false, "relay", None, &told), MediaPath::Relay);
        assert_eq!(classify(false, "host", Some(addr), &told), MediaPath::Host);
        assert_eq!(classify(true, "host", None, &told), MediaPath::Tcp);
    }

    #[test]
    fn the_gauge_follows_the_path_and_forgets_it_on_drop() {
        let stats = Arc::new(SfuStats::default());
        let count = |p: MediaPath| stats.peers_by_path[p.index()].load(Ordering::Relaxed);
        let mut g = PathGauge::new(stats.clone());
        g.set(Some(MediaPath::Host));
        g.set(Some(MediaPath::Host));
        assert_eq!(count(MediaPath::Host), 1);
        g.set(Some(MediaPath::Relay));
        assert_eq!((count(MediaPath::Host), count(MediaPath::Relay)), (0, 1));
        drop(g);
        assert_eq!(count(MediaPath::Relay), 0);
    }
}
