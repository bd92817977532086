//! One UDP port for every peer connection: a clinic opens one port in its firewall, not a range.
//!
//! The webrtc crate (0.21) binds a socket per peer connection inside that connection's driver
//! and has no UDP mux of its own. It does let a connection run on a [`Runtime`] of our choosing,
//! and every socket it uses is made by [`Runtime::wrap_udp_socket`]. [`UdpMux`] owns the one
//! real socket; each peer connection gets a [`MuxRuntime`] (the tokio runtime, except for UDP)
//! whose socket is a [`PeerSocket`]: it sends through the shared socket and receives what the
//! demultiplexer routes to it. The crate still binds a socket of its own per connection (on an
//! ephemeral port of the bind address); that socket is closed at once, and the port it had is
//! only the name the connection uses for its side of the path. Candidates we hand out carry the
//! shared port instead ([`PeerRoute::public_candidate`]).
//!
//! Demultiplexing, one cheap parse per datagram: a STUN request names the connection in its
//! USERNAME (`<our ufrag>:<theirs>`), and the source address it came from is then routed to
//! that connection; everything else (DTLS, SRTP, SRTCP) is routed by source address alone.
//! Anything unroutable is dropped and counted. A stranger can bind only its own address, and
//! only to a connection whose ICE agent then checks the request's integrity, so garbage,
//! wrong-ufrag STUN and replayed SRTP from elsewhere reach no one.
//!
//! Owns the shared socket and the routes; knows nothing of rooms or tracks.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use super::SfuStats;
use tokio::sync::mpsc;
use webrtc::runtime::{AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime, Transmit};

/// Datagrams queued for one connection before more are dropped (about 0.3 s of a publisher's
/// 1.5 Mbit/s video with audio): its driver reads them as fast as it can.
const PEER_QUEUE: usize = 512;
/// Remote addresses one connection is reached from (a client's candidates, an ICE restart).
const ADDRS_PER_PEER: usize = 8;
/// Local ufrags one connection answers to (a new one per ICE restart).
const UFRAGS_PER_PEER: usize = 4;
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_USERNAME: u16 = 0x0006;
/// The largest datagram read; a larger one is truncated and then fails its checks.
const MAX_DATAGRAM: usize = 2048;

/// The shared socket and who is reached through it.
pub struct UdpMux {
    socket: Arc<tokio::net::UdpSocket>,
    local: SocketAddr,
    routes: Mutex<Routes>,
    stats: Arc<SfuStats>,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Weak<PeerRoute>>,
    by_addr: HashMap<SocketAddr, Weak<PeerRoute>>,
}

impl std::fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpMux").field("local", &self.local).finish_non_exhaustive()
    }
}

impl UdpMux {
    /// Binds the shared port (0: an ephemeral one) with `buffer` bytes of receive and send
    /// buffer (0: the kernel's default) and starts reading it. Needs a tokio runtime.
    pub fn bind(addr: SocketAddr, buffer: usize, stats: Arc<SfuStats>) -> io::Result<Arc<Self>> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let granted = size_buffers(&socket, buffer)?;
        stats.media_port_buffer_bytes.store(granted, Ordering::Relaxed);
        let socket = Arc::new(tokio::net::UdpSocket::from_std(socket)?);
        let local = socket.local_addr()?;
        let mux = Arc::new(Self { socket, local, routes: Mutex::default(), stats, reader: Mutex::default() });
        let task = tokio::spawn(read_loop(Arc::downgrade(&mux), mux.socket.clone()));
        if let Ok(mut reader) = mux.reader.lock() {
            *reader = Some(task);
        }
        Ok(mux)
    }

    /// The shared address every candidate carries.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A route for one new peer connection, and the runtime to build it with.
    pub fn route(self: &Arc<Self>) -> (Arc<PeerRoute>, Arc<dyn Runtime>) {
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let route = Arc::new_cyclic(|me| PeerRoute {
            me: me.clone(),
            mux: Arc::downgrade(self),
            tx,
            rx: Arc::new(Mutex::new(rx)),
            private: Mutex::new(None),
            ufrags: Mutex::default(),
            addrs: Mutex::default(),
        });
        let inner = webrtc::runtime::default_runtime().unwrap_or_else(|| Arc::new(webrtc::runtime::TokioRuntime));
        let runtime = Arc::new(MuxRuntime { inner, route: route.clone() });
        (route, runtime)
    }

    /// Where a datagram from `from` goes, learning `from` when it is a STUN request naming a
    /// connection by its ufrag.
    fn lookup(&self, datagram: &[u8], from: SocketAddr) -> Option<Arc<PeerRoute>> {
        let Ok(mut routes) = self.routes.lock() else { return None };
        if let Some(ufrag) = stun_local_ufrag(datagram) {
            if let Some(route) = routes.by_ufrag.get(ufrag).and_then(Weak::upgrade) {
                if !routes.by_addr.get(&from).and_then(Weak::upgrade).is_some_and(|r| Arc::ptr_eq(&r, &route)) {
                    routes.by_addr.insert(from, Arc::downgrade(&route));
                    if let Some(evicted) = route.learn_addr(from) {
                        routes.by_addr.remove(&evicted);
                    }
                }
                return Some(route);
            }
        }
        routes.by_addr.get(&from).and_then(Weak::upgrade)
    }

    /// Removes a closed connection's entries (those another connection took over stay).
    fn forget(&self, route: &PeerRoute) {
        let Ok(mut routes) = self.routes.lock() else { return };
        let dead = |w: &Weak<PeerRoute>| w.upgrade().is_none();
        for ufrag in route.ufrags.lock().map(|u| u.clone()).unwrap_or_default() {
            if routes.by_ufrag.get(&ufrag).is_some_and(dead) {
                routes.by_ufrag.remove(&ufrag);
            }
        }
        for addr in route.addrs.lock().map(|a| a.clone()).unwrap_or_default() {
            if routes.by_addr.get(&addr).is_some_and(dead) {
                routes.by_addr.remove(&addr);
            }
        }
    }
}

impl Drop for UdpMux {
    fn drop(&mut self) {
        if let Ok(mut reader) = self.reader.lock() {
            if let Some(task) = reader.take() {
                task.abort();
            }
        }
    }
}

/// Asks for `wanted` bytes of receive and send buffer and returns the receive buffer the
/// kernel granted. Linux caps a request at `net.core.rmem_max`/`wmem_max` without an error,
/// so a shortfall is logged with the setting that would lift it: a small buffer is where media
/// is lost when the server is briefly short of CPU.
fn size_buffers(socket: &std::net::UdpSocket, wanted: usize) -> io::Result<usize> {
    let sock = socket2::SockRef::from(socket);
    if wanted > 0 {
        sock.set_recv_buffer_size(wanted)?;
        sock.set_send_buffer_size(wanted)?;
    }
    // Linux reports twice what it keeps for data (the rest is its bookkeeping): halve it.
    let reported = if cfg!(target_os = "linux") { 2 } else { 1 };
    let (granted, sent) = (sock.recv_buffer_size()? / reported, sock.send_buffer_size()? / reported);
    if wanted > 0 && (granted < wanted || sent < wanted) {
        tracing::warn!(
            wanted,
            receive = granted,
            send = sent,
            "the media port's socket buffers are smaller than ice.socket_buffer_bytes: the kernel caps them; \
             run `sysctl -w net.core.rmem_max={wanted} net.core.wmem_max={wanted}` (and keep it in /etc/sysctl.d) so a \
             short CPU stall does not drop media"
        );
    }
    Ok(granted)
}

async fn read_loop(mux: Weak<UdpMux>, socket: Arc<tokio::net::UdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // ICMP errors surface here on Linux (a client went away): not the socket's fault.
            Err(e)
                if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(error = %e, "media port read failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(mux) = mux.upgrade() else { return };
        let datagram = &buf[..len];
        match mux.lookup(datagram, from) {
            Some(route) => {
                if route.tx.try_send((Bytes::copy_from_slice(datagram), from)).is_err() {
                    mux.stats.media_port_overflow.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                mux.stats.media_port_unrouted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The local ufrag a STUN message names (`USERNAME` = `<ours>:<theirs>`), if it is one.
fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    // A STUN header: a first byte of 0 to 3 (RFC 7983; DTLS is 20 to 63, RTP and RTCP 128 to
    // 191), the magic cookie, a length that fits.
    if datagram.len() < 20 || datagram[0] > 3 || datagram[4..8] != STUN_MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let attributes = datagram.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= attributes.len() {
        let kind = u16::from_be_bytes([attributes[at], attributes[at + 1]]);
        let len = usize::from(u16::from_be_bytes([attributes[at + 2], attributes[at + 3]]));
        let value = attributes.get(at + 4..at + 4 + len)?;
        if kind == STUN_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// One peer connection's share of the port.
pub struct PeerRoute {
    me: Weak<PeerRoute>,
    mux: Weak<UdpMux>,
    tx: mpsc::Sender<(Bytes, SocketAddr)>,
    rx: Arc<Mutex<mpsc::Receiver<(Bytes, SocketAddr)>>>,
    /// The address the crate bound for this connection (and closed): its name for our side.
    private: Mutex<Option<SocketAddr>>,
    ufrags: Mutex<VecDeque<String>>,
    addrs: Mutex<VecDeque<SocketAddr>>,
}

impl PeerRoute {
    /// Our ICE username fragment in a local description just set: STUN naming it reaches
    /// this connection. Takes the `a=ice-ufrag:` lines of `sdp`.
    pub fn learn_ufrags(&self, sdp: &str) {
        let Some(mux) = self.mux.upgrade() else { return };
        let Ok(mut routes) = mux.routes.lock() else { return };
        let Ok(mut mine) = self.ufrags.lock() else { return };
        for ufrag in sdp.lines().filter_map(|l| l.trim().strip_prefix("a=ice-ufrag:")) {
            if mine.iter().any(|u| u == ufrag) {
                continue;
            }
            routes.by_ufrag.insert(ufrag.to_string(), self.me.clone());
            mine.push_back(ufrag.to_string());
            if mine.len() > UFRAGS_PER_PEER {
                if let Some(old) = mine.pop_front() {
                    routes.by_ufrag.remove(&old);
                }
            }
        }
    }

    fn learn_addr(&self, addr: SocketAddr) -> Option<SocketAddr> {
        let mut addrs = self.addrs.lock().ok()?;
        addrs.push_back(addr);
        (addrs.len() > ADDRS_PER_PEER).then(|| addrs.pop_front()).flatten()
    }

    /// A candidate line of ours as the client must see it: the shared port instead of the
    /// port the crate bound. Other candidates (TCP, relayed) are left as they are.
    pub fn public_candidate(&self, candidate: &str) -> String {
        let (Some(private), Some(mux)) = (self.private.lock().ok().and_then(|p| *p), self.mux.upgrade()) else {
            return candidate.to_string();
        };
        let mut fields: Vec<&str> = candidate.split(' ').collect();
        let public = mux.local.port().to_string();
        let private = private.port().to_string();
        // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
        if fields.len() > 7 && fields[2].eq_ignore_ascii_case("udp") && fields[5] == private && fields[7] == "host" {
            fields[5] = &public;
            return fields.join(" ");
        }
        candidate.to_string()
    }

    /// An SDP of ours with every candidate line made public (see [`Self::public_candidate`]).
    pub fn public_sdp(&self, sdp: &str) -> String {
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            match line.strip_prefix("a=") {
                Some(rest) if rest.starts_with("candidate:") => {
                    let (body, end) = rest.split_at(rest.trim_end_matches(['\r', '\n']).len());
                    out.push_str("a=");
                    out.push_str(&self.public_candidate(body));
                    out.push_str(end);
                }
                _ => out.push_str(line),
            }
        }
        out
    }
}

impl Drop for PeerRoute {
    fn drop(&mut self) {
        if let Some(mux) = self.mux.upgrade() {
            mux.forget(self);
        }
    }
}

impl std::fmt::Debug for PeerRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerRoute").finish_non_exhaustive()
    }
}

/// The tokio runtime, except that UDP sockets are a [`PeerSocket`] on the shared port.
struct MuxRuntime {
    inner: Arc<dyn Runtime>,
    route: Arc<PeerRoute>,
}

impl std::fmt::Debug for MuxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MuxRuntime")
    }
}

/// The port mDNS sockets bind; they are the crate's own business, not the peer's media.
const MDNS_PORT: u16 = 5353;

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(&self, pool: usize, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(pool, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let private = socket.local_addr()?;
        if private.port() == MDNS_PORT {
            return self.inner.wrap_udp_socket(socket);
        }
        let mux = self.route.mux.upgrade().ok_or_else(|| io::Error::other("the media port is closed"))?;
        if let Ok(mut p) = self.route.private.lock() {
            *p = Some(private);
        }
        // The crate's own socket is not used: closing it frees the port at once.
        drop(socket);
        Ok(Arc::new(PeerSocket { mux, private, rx: self.route.rx.clone() }))
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "hearth-udp-mux"
    }
}

/// A peer connection's socket on the shared port.
struct PeerSocket {
    mux: Arc<UdpMux>,
    private: SocketAddr,
    rx: Arc<Mutex<mpsc::Receiver<(Bytes, SocketAddr)>>>,
}

impl std::fmt::Debug for PeerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSocket").field("private", &self.private).finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for PeerSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.private)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        // `max_gso_segments` is 1 (the default), so every transmit is one datagram.
        self.mux.socket.poll_send_to(cx, transmit.contents, transmit.destination)
    }

    fn poll_recv(&self, cx: &mut Context<'_>, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else { return Poll::Ready(Ok(0)) };
        let Ok(mut rx) = self.rx.lock() else { return Poll::Ready(Err(io::Error::other("receiver poisoned"))) };
        match rx.poll_recv(cx) {
            Poll::Ready(Some((datagram, from))) => {
                let len = datagram.len().min(buf.len());
                buf[..len].copy_from_slice(&datagram[..len]);
                let mut filled = RecvMeta::default();
                filled.addr = from;
                filled.len = len;
                filled.stride = len.max(1);
                filled.dst_ip = Some(self.private.ip());
                *m = filled;
                Poll::Ready(Ok(1))
            }
            Poll::Ready(None) => Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "the media port is closed"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A STUN binding request carrying `attributes` (type, value), padded as RFC 8489 says.
    fn stun(attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attributes {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&u16::try_from(value.len()).expect("short value").to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut message = vec![0x00, 0x01];
        message.extend_from_slice(&u16::try_from(body.len()).expect("short body").to_be_bytes());
        message.extend_from_slice(&STUN_MAGIC_COOKIE);
        message.extend_from_slice(&[7; 12]);
        message.extend(body);
        message
    }

    #[test]
    fn the_local_ufrag_comes_from_the_username_and_nothing_else_names_one() {
        assert_eq!(stun_local_ufrag(&stun(&[(STUN_USERNAME, b"srv1:cli9")])), Some("srv1"));
        let priority = [0, 0, 0, 1];
        assert_eq!(stun_local_ufrag(&stun(&[(0x0024, &priority), (0x8022, b"x"), (STUN_USERNAME, b"ab:cd")])), Some("ab"));
        let valid = stun(&[(STUN_USERNAME, b"srv1:cli9")]);
        let mut no_cookie = valid.clone();
        no_cookie[4] ^= 1;
        let mut dtls = valid.clone();
        dtls[0] = 22; // a DTLS handshake record
        let mut rtp = valid.clone();
        rtp[0] = 0x80;
        for (what, datagram) in [
            ("no magic cookie", no_cookie),
            ("DTLS", dtls),
            ("RTP", rtp),
            ("no username", stun(&[(0x0024, &priority)])),
            ("an empty local ufrag", stun(&[(STUN_USERNAME, b":cli9")])),
            ("a username that is not UTF-8", stun(&[(STUN_USERNAME, &[0xff, 0xfe, b':', b'a'])])),
            ("shorter than a header", valid[..19].to_vec()),
            ("cut inside the username", valid[..valid.len() - 2].to_vec()),
        ] {
            assert_eq!(stun_local_ufrag(&datagram), None, "{what}");
        }
    }

    /// The kernel's cap on a socket's receive buffer (Linux), if this machine says.
    fn rmem_max() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok()?.trim().parse().ok()
    }

    #[tokio::test]
    async fn the_media_socket_gets_the_configured_buffer_up_to_the_kernels_cap() {
        let Some(cap) = rmem_max() else { return };
        let stats = Arc::new(SfuStats::default());
        let wanted = 1 << 20;
        let mux = UdpMux::bind("127.0.0.1:0".parse().expect("addr"), wanted, stats.clone()).expect("bind");
        let granted = stats.media_port_buffer_bytes.load(Ordering::Relaxed);
        assert_eq!(granted, wanted.min(cap), "asked for {wanted}, the kernel caps at {cap}");
        drop(mux);
        // 0 keeps the kernel's default, whatever it is.
        let stats = Arc::new(SfuStats::default());
        let _mux = UdpMux::bind("127.0.0.1:0".parse().expect("addr"), 0, stats.clone()).expect("bind");
        assert!(stats.media_port_buffer_bytes.load(Ordering::Relaxed) > 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Whatever a stranger sends to the shared port: one bounded parse, no panic, and a
        /// ufrag only out of a STUN header's USERNAME.
        #[test]
        fn any_datagram_is_parsed_once_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(ufrag) = stun_local_ufrag(&data) {
                prop_assert!(!ufrag.is_empty() && !ufrag.contains(':'));
                prop_assert_eq!(&data[4..8], &STUN_MAGIC_COOKIE[..]);
                prop_assert!(data[0] <= 3);
            }
        }

        /// A username after any other attributes is found; the same message cut anywhere
        /// names no one (its header promises more than arrived).
        #[test]
        fn a_username_after_any_attributes_is_found_and_a_cut_message_names_no_one(
            others in proptest::collection::vec((0u16..0x8030, proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
            ours in "[A-Za-z0-9+/]{1,32}",
            theirs in "[A-Za-z0-9+/]{0,32}",
            cut in any::<prop::sample::Index>(),
        ) {
            let username = format!("{ours}:{theirs}");
            let mut attributes: Vec<(u16, &[u8])> =
                others.iter().filter(|(kind, _)| *kind != STUN_USERNAME).map(|(kind, value)| (*kind, value.as_slice())).collect();
            attributes.push((STUN_USERNAME, username.as_bytes()));
            let message = stun(&attributes);
            prop_assert_eq!(stun_local_ufrag(&message), Some(ours.as_str()));
            let cut = cut.index(message.len());
            prop_assert_eq!(stun_local_ufrag(&message[..cut]), None);
        }
    }
}
