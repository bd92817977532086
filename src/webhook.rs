//! The session-end webhook: a signed `POST` of a session's summary (ids, times, roles and codes
//! only) to the operator's records system (`webhook.url`).
//!
//! Each delivery runs in a task of its own with its own retries (`webhook.max_attempts`, the
//! wait doubling from `webhook.first_retry_ms`), so a slow or failing receiver never holds up a
//! room, another delivery, or anything a person does. The body is signed with HMAC-SHA256 under
//! `webhook.secret`: header `X-Hearth-Signature: sha256=<hex>` over `<timestamp>.<body>`, with
//! the timestamp (milliseconds since the Unix epoch) in `X-Hearth-Timestamp`, so a receiver can
//! check both who sent it and that it is fresh. Every attempt of one delivery carries the same
//! `X-Hearth-Delivery` id, so a receiver that got a retry of what it already stored can tell.
//! Must not touch rooms: it is handed a finished summary.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use crate::store::{AttendanceRecord, SessionRecord, SupportRecord};

/// What the webhook posts when a session ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// Always `sessionEnded`.
    pub event: String,
    pub session: SessionRecord,
    pub attendance: Vec<AttendanceRecord>,
    pub support_requests: Vec<SupportRecord>,
}

/// Where and how to deliver (from `[webhook]`).
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
    pub max_attempts: u32,
    pub first_retry: Duration,
}

type HttpClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

/// Sends session summaries; cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    settings: Arc<WebhookSettings>,
    client: HttpClient,
}

/// How long one attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header's value for `body` sent at `timestamp_ms`.
pub fn sign(secret: &str, timestamp_ms: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp_ms.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut out = String::from("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Webhook {
    pub fn new(settings: WebhookSettings) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let https = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b.https_or_http().enable_http1().build(),
            Err(e) => {
                // Without the system's roots an https receiver fails every attempt (and says
                // so in the log); an http one on a private network still works.
                tracing::warn!(error = %e, "webhook: no system TLS roots");
                let empty = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth());
                match empty {
                    Ok(config) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build(),
                    Err(_) => unreachable!("ring supports the default protocol versions"),
                }
            }
        };
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Self { settings: Arc::new(settings), client }
    }

    /// Queues `summary` for delivery and returns at once.
    pub fn deliver(&self, summary: SessionSummary) {
        let this = self.clone();
        tokio::spawn(async move { this.run(summary).await });
    }

    async fn run(&self, summary: SessionSummary) {
        let body = match serde_json::to_vec(&summary) {
            Ok(b) => Bytes::from(b),
            Err(e) => return tracing::error!(error = %e, "webhook: summary not serialisable"),
        };
        let delivery = format!("d-{:016x}", rand::random::<u64>());
        let session = summary.session.id.as_str();
        let mut wait = self.settings.first_retry;
        for attempt in 1..=self.settings.max_attempts {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&body, &delivery)).await {
                Ok(Ok(())) => {
                    tracing::info!(session, attempt, "webhook delivered");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(session, attempt, error = %e, "webhook attempt failed"),
                Err(_) => tracing::warn!(session, attempt, "webhook attempt timed out"),
            }
            if attempt < self.settings.max_attempts {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
        tracing::error!(session, attempts = self.settings.max_attempts, "webhook not delivered; the summary is in the store");
    }

    async fn attempt(&self, body: &Bytes, delivery: &str) -> Result<(), String> {
        let timestamp = crate::store::now_ms();
        let request = hyper::Request::post(&self.settings.url)
            .header("content-type", "application/json")
            .header("user-agent", "hearth-webhook")
            .header("x-hearth-event", "sessionEnded")
            .header("x-hearth-delivery", delivery)
            .header("x-hearth-timestamp", timestamp.to_string())
            .header("x-hearth-signature", sign(&self.settings.secret, timestamp, body))
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {}", response.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let s = sign("a-webhook-secret-of-24-chars!", 1_700_000_000_000, b"{\"a\":1}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_eq!(s, sign("a-webhook-secret-of-24-chars!", 1_700_000_000_000, b"{\"a\":1}"));
        assert_ne!(s, sign("a-webhook-secret-of-24-chars!", 1_700_000_000_001, b"{\"a\":1}"));
        assert_ne!(s, sign("a-webhook-secret-of-24-chars!", 1_700_000_000_000, b"{\"a\":2}"));
        assert_ne!(s, sign("another-secret-of-24-chars!!", 1_700_000_000_000, b"{\"a\":1}"));
    }
}
