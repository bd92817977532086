//! The HTTP edge's defences: who the client is (behind trusted proxies only), whether a
//! websocket's page origin may connect, per-IP and total websocket caps, the security headers
//! every response carries, and the plain-HTTP accept loop with a header-read timeout.
//!
//! Everything here is decided from configuration and the request alone; nothing is logged
//! beyond addresses, which the connection span already carries.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
pub use crate::vocab::{normalize_origin, IpNet};

/// The edge policy built from configuration once at start-up, plus what relay nodes learn
/// about each other (their origins may host the page that connects here after a redirect).
pub struct Edge {
    trusted: Vec<IpNet>,
    allowed_origins: Vec<String>,
    tls: bool,
    /// Other relay nodes' origins, refreshed from the cluster registry.
    node_origins: RwLock<Vec<String>>,
    csp: RwLock<HeaderValue>,
    pub connections: Arc<ConnectionCounter>,
}

// 'wasm-unsafe-eval' lets the page compile WebAssembly (background blur's segmentation model,
// served from here like every script); it allows no `eval` of JavaScript.
const CSP_BASE: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; style-src 'self'; \
                        frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

impl Edge {
    pub fn new(config: &Config) -> Self {
        let allowed_origins: Vec<String> = config.server.allowed_origins.iter().filter_map(|o| normalize_origin(o)).collect();
        let edge = Self {
            trusted: config.trusted_proxies(),
            allowed_origins,
            tls: config.server.tls().is_some(),
            node_origins: RwLock::new(Vec::new()),
            csp: RwLock::new(HeaderValue::from_static(CSP_BASE)),
            connections: Arc::new(ConnectionCounter::default()),
        };
        edge.rebuild_csp();
        edge
    }

    fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(peer))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy, in which case
    /// the right-most address in `X-Forwarded-For` (or `Forwarded: for=`) that is not itself a
    /// trusted proxy. Left-most entries are whatever the client claimed, so they never count.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer_ip = peer.ip();
        if !self.is_trusted(peer_ip) {
            return peer_ip;
        }
        let mut chain: Vec<IpAddr> = Vec::new();
        for v in headers.get_all("x-forwarded-for") {
            if let Ok(v) = v.to_str() {
                chain.extend(v.split(',').filter_map(|s| s.trim().parse::<IpAddr>().ok()));
            }
        }
        if chain.is_empty() {
            for v in headers.get_all(header::FORWARDED) {
                if let Ok(v) = v.to_str() {
                    chain.extend(v.split(',').filter_map(forwarded_for));
                }
            }
        }
        chain.into_iter().rev().find(|ip| !self.is_trusted(*ip)).unwrap_or(peer_ip)
    }

    /// `scheme://host` this request was addressed to, from `Host` (and, from a trusted
    /// proxy only, `X-Forwarded-Proto`/`X-Forwarded-Host`).
    fn own_origin(&self, peer: SocketAddr, headers: &HeaderMap) -> Option<String> {
        let first = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(str::trim);
        let trusted = self.is_trusted(peer.ip());
        let scheme = match (self.tls, trusted.then(|| first("x-forwarded-proto")).flatten()) {
            (true, _) => "https",
            (false, Some(p)) if p.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        let host = trusted.then(|| first("x-forwarded-host")).flatten().or_else(|| first("host"))?;
        normalize_origin(&format!("{scheme}://{host}"))
    }

    /// Whether a websocket upgrade may proceed: no `Origin` (not a browser), the server's own
    /// origin, a configured one, or another relay node's.
    pub fn origin_allowed(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else { return true };
        let Some(origin) = origin.to_str().ok().and_then(normalize_origin) else { return false };
        if self.own_origin(peer, headers).is_some_and(|own| own == origin) || self.allowed_origins.contains(&origin) {
            return true;
        }
        self.node_origins.read().map(|n| n.contains(&origin)).unwrap_or(false)
    }

    /// Relay nodes: the other nodes' public base URLs (their pages may connect here after a
    /// redirect, and ours may connect there).
    pub fn set_node_origins(&self, urls: impl IntoIterator<Item = String>) {
        let mut origins: Vec<String> = urls.into_iter().filter_map(|u| normalize_origin(&u)).collect();
        origins.sort();
        origins.dedup();
        let changed = match self.node_origins.write() {
            Ok(mut current) if *current != origins => {
                *current = origins;
                true
            }
            _ => false,
        };
        if changed {
            self.rebuild_csp();
        }
    }

    fn rebuild_csp(&self) {
        // `connect-src 'self'` covers ws/wss to our own origin; a redirect to another node,
        // or a configured origin, needs its ws(s) URL listed too.
        let mut connect = vec!["'self'".to_string()];
        let nodes = self.node_origins.read().map(|n| n.clone()).unwrap_or_default();
        for origin in self.allowed_origins.iter().chain(nodes.iter()) {
            connect.push(origin.clone());
            if let Some(rest) = origin.strip_prefix("https://") {
                connect.push(format!("wss://{rest}"));
            } else if let Some(rest) = origin.strip_prefix("http://") {
                connect.push(format!("ws://{rest}"));
            }
        }
        let csp = format!("{CSP_BASE}; connect-src {}", connect.join(" "));
        if let (Ok(value), Ok(mut slot)) = (HeaderValue::from_str(&csp), self.csp.write()) {
            *slot = value;
        }
    }

    pub fn csp(&self) -> HeaderValue {
        self.csp.read().map(|v| v.clone()).unwrap_or_else(|_| HeaderValue::from_static(CSP_BASE))
    }

    /// The security headers on every response (pages, API, errors, upgrades).
    pub fn apply_headers(self: &Arc<Self>, router: Router) -> Router {
        use tower_http::set_header::SetResponseHeaderLayer;
        let fixed: [(HeaderName, &'static str); 4] = [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Join links carry tokens (in the fragment, which browsers never send, but a
            // referrer-less policy also keeps the path and query of every page private).
            (header::REFERRER_POLICY, "no-referrer"),
            (HeaderName::from_static("permissions-policy"), "camera=(self), microphone=(self), display-capture=(self)"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ];
        let mut router = router;
        for (name, value) in fixed {
            router = router.layer(SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value)));
        }
        if self.tls {
            router = router.layer(SetResponseHeaderLayer::overriding(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            ));
        }
        // Not overriding: a handler may set a stricter policy of its own (badge SVGs run and
        // load nothing when opened directly).
        let edge = self.clone();
        router.layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, move |_: &axum::response::Response| {
            Some(edge.csp())
        }))
    }
}

/// The address in one `Forwarded` element's `for=` (RFC 7239: maybe quoted, maybe
/// `[v6]:port` or `v4:port`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim().trim_matches('"'))
    })?;
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    value.parse().ok().or_else(|| value.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}

/// Open websockets, per client IP and in total.
#[derive(Default)]
pub struct ConnectionCounter {
    inner: Mutex<(HashMap<IpAddr, usize>, usize)>,
}

/// Why a websocket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("too many connections from this address")]
    PerIp,
    #[error("the server has reached its connection limit")]
    Total,
}

impl ConnectionCounter {
    /// Counts a connection in, or says which cap it would break. The guard counts it out.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, per_ip: usize, total: usize) -> Result<ConnectionGuard, CapError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.1 >= total {
            return Err(CapError::Total);
        }
        let n = inner.0.entry(ip).or_insert(0);
        if *n >= per_ip {
            return Err(CapError::PerIp);
        }
        *n += 1;
        inner.1 += 1;
        Ok(ConnectionGuard { counter: self.clone(), ip })
    }

    pub fn total(&self) -> usize {
        self.inner.lock().map(|i| i.1).unwrap_or(0)
    }
}

/// One counted connection; dropping it (the socket task ending, or an upgrade that never
/// completed) counts it out, and an address with no connections left is forgotten.
pub struct ConnectionGuard {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut inner = self.counter.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.1 = inner.1.saturating_sub(1);
        if let Some(n) = inner.0.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.0.remove(&self.ip);
            }
        }
    }
}

/// Plain HTTP: hyper with a timer, so `header_read_timeout` fires (axum::serve has no timer,
/// and a client trickling header bytes held a connection forever). HTTP/1 only: browsers
/// never speak cleartext HTTP/2, and the version sniffing of the auto builder has no timeout.
/// Each request carries `ConnectInfo<SocketAddr>`; websocket upgrades work; on `shutdown`
/// the listener closes and open connections finish their current request.
pub async fn serve_http(listener: TcpListener, router: Router, header_timeout: Option<Duration>, shutdown: CancellationToken) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let builder = Arc::new(builder);
    let connections = TaskTracker::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                let mut router = router.clone();
                async move { Ok::<_, Infallible>(tower::Service::call(&mut router, req).await.unwrap_or_else(|e| match e {})) }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_their_addresses() {
        let net = IpNet::parse("10.1.0.0/16").expect("cidr");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("mapped ip")));
        assert!(IpNet::parse("0.0.0.0/0").expect("all").contains("192.0.2.1".parse().expect("ip")));
        assert!(IpNet::parse("::1").expect("ip").contains("::1".parse().expect("ip")));
        assert!(IpNet::parse("10.0.0.0/33").is_none() && IpNet::parse("nope").is_none());
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(normalize_origin("HTTPS://Video.Example.org:443/").as_deref(), Some("https://video.example.org"));
        assert_eq!(normalize_origin("http://127.0.0.1:8080").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(normalize_origin("null"), None);
        assert_eq!(normalize_origin("https://a.example/x"), None);
        assert_eq!(normalize_origin("ftp://a.example"), None);
    }

    #[test]
    fn forwarded_elements_are_read() {
        assert_eq!(forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43"), "192.0.2.60".parse().ok());
        assert_eq!(forwarded_for(r#"for="[2001:db8:cafe::17]:4711""#), "2001:db8:cafe::17".parse().ok());
        assert_eq!(forwarded_for("for=198.51.100.17:8080"), "198.51.100.17".parse().ok());
        assert_eq!(forwarded_for("for=unknown"), None);
    }
}
