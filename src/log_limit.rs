//! Bounded logs: a warning or error that repeats is written a few times per window, then
//! counted instead, and summarised once per window ("… 4,210 more like this in the last
//! 10 s"). Under overload the media path can produce a warning per packet (an overflowing
//! queue in the webrtc crate, SRTP failures before DTLS is up): 473 lines a second were seen,
//! which costs CPU exactly when there is none to spare and buries everything else.
//!
//! "One kind" is one callsite (one `warn!`/`error!` in the source). [`RateLimit`] is a
//! per-layer filter for the log output; [`spawn_reporter`] closes each window and writes the
//! summaries. Suppressed lines are counted in [`suppressed_total`] (`/metrics`:
//! `hearth_log_lines_suppressed_total`). Owns nothing else; knows nothing of Hearth's types.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tracing::callsite::Identifier;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// Lines of one kind written per window before the rest are only counted.
pub const BURST: u32 = 10;
/// How often suppressed lines are summarised and the allowance renewed.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The summaries' own target: never limited (at most one line per kind per window).
const SUMMARY_TARGET: &str = "hearth::log_limit";

static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
static GLOBAL: LazyLock<Arc<Limiter>> = LazyLock::new(Arc::default);

/// Log lines suppressed since start (all kinds), for `/metrics`.
pub fn suppressed_total() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

#[derive(Default)]
struct Kind {
    /// Where it is logged from, for the summary: `target`, level and the callsite's name
    /// (`event src/x.rs:12`).
    target: String,
    level: Option<Level>,
    name: String,
    written: u32,
    suppressed: u64,
}

/// Counts per kind within the current window.
#[derive(Default)]
pub struct Limiter {
    kinds: Mutex<HashMap<Identifier, Kind>>,
}

/// One kind's suppressed lines in a window that just closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub target: String,
    pub level: Level,
    pub name: String,
    pub count: u64,
}

impl Suppressed {
    /// The summary line, e.g. "… 4,210 more WARN webrtc::x (event src/a.rs:9) in the last 10 s".
    pub fn summary(&self) -> String {
        format!("… {} more {} {} ({}) in the last {} s", thousands(self.count), self.level, self.target, self.name, WINDOW.as_secs())
    }
}

/// `4210` → `4,210`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Limiter {
    /// Whether a line from `meta` may be written now (counts it either way).
    fn admit(&self, meta: &Metadata<'_>) -> bool {
        let Ok(mut kinds) = self.kinds.lock() else { return true };
        // Allocates once per kind, not per line.
        let kind = kinds.entry(meta.callsite()).or_insert_with(|| Kind {
            target: meta.target().to_string(),
            level: Some(*meta.level()),
            name: meta.name().to_string(),
            ..Kind::default()
        });
        if kind.written < BURST {
            kind.written += 1;
            return true;
        }
        kind.suppressed += 1;
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Closes the window: every kind may write [`BURST`] lines again; returns what was
    /// suppressed in the window that closed.
    pub fn close_window(&self) -> Vec<Suppressed> {
        let Ok(mut kinds) = self.kinds.lock() else { return Vec::new() };
        let mut out: Vec<Suppressed> = kinds
            .values()
            .filter(|k| k.suppressed > 0)
            .map(|k| Suppressed {
                target: k.target.clone(),
                level: k.level.unwrap_or(Level::WARN),
                name: k.name.clone(),
                count: k.suppressed,
            })
            .collect();
        // Kinds quiet for a whole window are forgotten, so the map holds only what is noisy now.
        kinds.retain(|_, k| k.written > 0);
        for k in kinds.values_mut() {
            k.written = 0;
            k.suppressed = 0;
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.count));
        out
    }
}

/// The per-layer filter: warnings and errors pass [`BURST`] times per kind and window; other
/// levels and the summaries always pass (the layer's level filter decides about those).
#[derive(Clone)]
pub struct RateLimit(Arc<Limiter>);

impl RateLimit {
    /// The process's limiter, the one [`spawn_reporter`] summarises.
    pub fn global() -> Self {
        Self(GLOBAL.clone())
    }

    /// A limiter of its own (tests).
    pub fn new(limiter: Arc<Limiter>) -> Self {
        Self(limiter)
    }
}

fn limited(meta: &Metadata<'_>) -> bool {
    meta.is_event() && *meta.level() <= Level::WARN && meta.target() != SUMMARY_TARGET
}

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        if !limited(meta) {
            return true;
        }
        self.0.admit(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Asked per event for the limited ones (the answer changes), never for the rest.
        if limited(meta) {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }
}

/// Every [`WINDOW`], writes one summary line per kind that was suppressed in it.
pub fn spawn_reporter() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(WINDOW);
        tick.tick().await;
        loop {
            tick.tick().await;
            for s in GLOBAL.close_window() {
                tracing::warn!(target: "hearth::log_limit", "{}", s.summary());
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).lines().map(str::to_string).collect()
        }
    }

    #[test]
    fn a_repeated_warning_is_written_a_few_times_then_counted_and_summarised() {
        let limiter = Arc::new(Limiter::default());
        let out = Buffer::default();
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(RateLimit::new(limiter.clone()));
        let before = suppressed_total();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for i in 0..4_220 {
                tracing::warn!(packet = i, "queue full");
            }
            for _ in 0..3 {
                tracing::error!("another kind");
            }
            for i in 0..50 {
                tracing::info!(i, "info is not limited");
            }
        });
        let lines = out.lines();
        assert_eq!(lines.iter().filter(|l| l.contains("queue full")).count(), BURST as usize, "only the burst is written");
        assert_eq!(lines.iter().filter(|l| l.contains("another kind")).count(), 3, "another kind has its own allowance");
        assert_eq!(lines.iter().filter(|l| l.contains("info is not limited")).count(), 50);
        assert!(suppressed_total() >= before + 4_210, "counted for /metrics");

        let closed = limiter.close_window();
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0].count, 4_210);
        assert_eq!(closed[0].level, Level::WARN);
        let summary = closed[0].summary();
        assert!(summary.starts_with("… 4,210 more WARN "), "{summary}");
        assert!(summary.ends_with("in the last 10 s"), "{summary}");
        assert!(summary.contains("log_limit.rs"), "names where it comes from: {summary}");

        // A new window: the allowance is back, nothing is left to summarise.
        assert!(limiter.close_window().is_empty());
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer({
                        let w = out.clone();
                        move || w.clone()
                    })
                    .with_filter(RateLimit::new(limiter.clone())),
            ),
            || tracing::warn!("after the window"),
        );
        assert!(out.lines().iter().any(|l| l.contains("after the window")));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4_210), "4,210");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
