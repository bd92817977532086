//! Where the load generator may send traffic: this machine only.
//!
//! A load run pushes hundreds of Mbit/s; aimed at someone else's host it is an attack. So the
//! target is checked before anything connects: the scheme must be `ws`, the host `localhost`
//! or a loopback literal (127.0.0.0/8, ::1). Nothing is resolved here, so no name can sneak a
//! remote address past the check except `localhost` itself, which the resolver keeps local.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("`{0}` is not a ws:// URL")]
    Scheme(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}` carries credentials; a load target never needs them")]
    Credentials(String),
    #[error("refusing `{host}`: the load generator only targets this machine (localhost, 127.0.0.0/8, ::1)")]
    NotLoopback { host: String },
}

/// Accepts `ws://localhost:PORT/...`, `ws://127.x.y.z:PORT/...` and `ws://[::1]:PORT/...`.
pub fn check_loopback(url: &str) -> Result<(), TargetError> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.get(..5).filter(|p| p.eq_ignore_ascii_case("ws://")).map(|_| &url[5..]))
        .ok_or_else(|| TargetError::Scheme(url.to_string()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(TargetError::Credentials(url.to_string()));
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        // IPv6 literal: `[addr]` or `[addr]:port`.
        let (inner, after) = bracketed.split_once(']').ok_or_else(|| TargetError::NoHost(url.to_string()))?;
        if !(after.is_empty() || after.starts_with(':')) {
            return Err(TargetError::NoHost(url.to_string()));
        }
        inner
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(TargetError::NoHost(url.to_string()));
    }
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(TargetError::NotLoopback { host: host.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        for url in [
            "ws://127.0.0.1:8080/ws",
            "ws://127.1.2.3:1/ws",
            "ws://localhost:9/ws",
            "WS://LocalHost:9/ws",
            "ws://[::1]:8080/ws",
            "ws://127.0.0.1/ws",
        ] {
            assert_eq!(check_loopback(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for url in [
            "ws://10.0.0.1:8080/ws",
            "ws://192.168.1.2:80/ws",
            "ws://example.org/ws",
            "ws://localhost.example.org/ws",
            "ws://127.0.0.1.nip.io/ws",
            "ws://0.0.0.0:8080/ws",
            "ws://[::ffff:127.0.0.1]:80/ws",
            "ws://[2001:db8::1]:80/ws",
            "ws://user@127.0.0.1:80/ws",
            "ws://evil.org@127.0.0.1/ws",
            "wss://127.0.0.1/ws",
            "http://127.0.0.1/ws",
            "ws://:80/ws",
            "ws://[::1/ws",
        ] {
            assert!(check_loopback(url).is_err(), "{url} must be refused");
        }
    }
}
