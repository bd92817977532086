//! Milestone badges: small self-contained SVG images made by the server.
//!
//! A badge shows the milestone (kind, value, label), never a person's name. Everything in it is
//! drawn here: no fonts, images or stylesheets are fetched, and every piece of text is escaped,
//! so a label cannot inject markup. Celebrations carry the SVG inline (`badgeSvg`) and
//! `GET /api/badges/{kind}/{value}.svg` serves the label-less ones.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::signal::protocol::{Milestone, MilestoneKind};

/// Characters of a label shown on a badge; longer ones end in an ellipsis.
const LABEL_CHARS: usize = 22;

/// Escapes text for SVG/XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

struct Palette {
    light: &'static str,
    dark: &'static str,
    ink: &'static str,
}

fn palette(kind: MilestoneKind) -> Palette {
    match kind {
        MilestoneKind::DaysSober => Palette { light: "#5fd3bc", dark: "#1b7f79", ink: "#0b3d3a" },
        MilestoneKind::SessionsAttended => Palette { light: "#9fa8ff", dark: "#4450c8", ink: "#1c2270" },
        MilestoneKind::ProgramCompletion => Palette { light: "#ffd66b", dark: "#d08a12", ink: "#5a3a00" },
        MilestoneKind::Custom => Palette { light: "#ff9fb8", dark: "#c8436b", ink: "#5c1630" },
    }
}

/// The number in the middle (none without a value: a symbol is drawn instead), and the line
/// under it.
fn headline(m: &Milestone) -> (Option<String>, String) {
    let plural = |n: u32, one: &str, many: &str| if n == 1 { one.to_string() } else { many.to_string() };
    let has_label = m.label.as_deref().is_some_and(|l| !l.trim().is_empty());
    match (m.kind, m.value) {
        (MilestoneKind::DaysSober, Some(d)) if d >= 365 && d % 365 == 0 => {
            let y = d / 365;
            (Some(y.to_string()), format!("{} sober", plural(y, "year", "years")))
        }
        (MilestoneKind::DaysSober, Some(d)) => (Some(d.to_string()), format!("{} sober", plural(d, "day", "days"))),
        (MilestoneKind::DaysSober, None) => (None, "sober".into()),
        (MilestoneKind::SessionsAttended, Some(n)) => (Some(n.to_string()), plural(n, "session", "sessions")),
        (MilestoneKind::SessionsAttended, None) => (None, "sessions".into()),
        (MilestoneKind::ProgramCompletion, v) => (v.map(|n| n.to_string()), "completed".into()),
        // A custom milestone's label is on the ribbon; the line under the symbol stays empty.
        (MilestoneKind::Custom, v) => (v.map(|n| n.to_string()), if has_label { String::new() } else { "milestone".into() }),
    }
}

fn polar(cx: f32, cy: f32, r: f32, a: f32) -> (f32, f32) {
    (cx + r * a.cos(), cy + r * a.sin())
}

/// The small emblem above the number, drawn with shapes only.
fn emblem(kind: MilestoneKind, ink: &str) -> String {
    match kind {
        // A rising sun: a new day.
        MilestoneKind::DaysSober => {
            let mut s = format!(r##"<g fill="none" stroke="{ink}" stroke-width="3" stroke-linecap="round">"##);
            for i in 0..7 {
                let a = std::f32::consts::PI * (1.0 + i as f32 / 6.0);
                let ((x1, y1), (x2, y2)) = (polar(100.0, 50.0, 16.0, a), polar(100.0, 50.0, 23.0, a));
                s.push_str(&format!(r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"/>"##));
            }
            s.push_str(&format!(r##"</g><path d="M89 50a11 11 0 0 1 22 0z" fill="{ink}"/>"##));
            s
        }
        // Chairs in a circle: the group.
        MilestoneKind::SessionsAttended => {
            let mut s = format!(r##"<g fill="{ink}">"##);
            for i in 0..6 {
                let (x, y) = polar(100.0, 40.0, 11.0, std::f32::consts::TAU * (i as f32) / 6.0);
                s.push_str(&format!(r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.3"/>"##));
            }
            s.push_str("</g>");
            s
        }
        // A check mark: done.
        MilestoneKind::ProgramCompletion => format!(
            r##"<path d="M90 41l7 7 14-15" fill="none" stroke="{ink}" stroke-width="4.5" stroke-linecap="round" stroke-linejoin="round"/>"##
        ),
        MilestoneKind::Custom => star(100.0, 41.0, 11.0, ink),
    }
}

fn star(cx: f32, cy: f32, r: f32, ink: &str) -> String {
    let points: Vec<String> = (0..10)
        .map(|i| {
            let radius = if i % 2 == 0 { r } else { r * 0.45 };
            let (x, y) = polar(cx, cy, radius, std::f32::consts::PI * (i as f32 / 5.0 - 0.5));
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(r##"<polygon points="{}" fill="{ink}"/>"##, points.join(" "))
}

/// The large symbol in the middle when there is no number.
fn symbol(kind: MilestoneKind, ink: &str) -> String {
    match kind {
        MilestoneKind::DaysSober => {
            let mut s =
                format!(r##"<circle cx="100" cy="88" r="17" fill="{ink}"/><g stroke="{ink}" stroke-width="4" stroke-linecap="round">"##);
            for i in 0..8 {
                let a = std::f32::consts::TAU * (i as f32) / 8.0;
                let ((x1, y1), (x2, y2)) = (polar(100.0, 88.0, 25.0, a), polar(100.0, 88.0, 33.0, a));
                s.push_str(&format!(r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"/>"##));
            }
            s.push_str("</g>");
            s
        }
        MilestoneKind::SessionsAttended => {
            let mut s = format!(r##"<g fill="{ink}">"##);
            for i in 0..6 {
                let (x, y) = polar(100.0, 88.0, 24.0, std::f32::consts::TAU * (i as f32) / 6.0);
                s.push_str(&format!(r##"<circle cx="{x:.1}" cy="{y:.1}" r="7"/>"##));
            }
            s.push_str("</g>");
            s
        }
        MilestoneKind::ProgramCompletion => format!(
            r##"<path d="M74 88l17 17 35-37" fill="none" stroke="{ink}" stroke-width="12" stroke-linecap="round" stroke-linejoin="round"/>"##
        ),
        MilestoneKind::Custom => star(100.0, 88.0, 36.0, ink),
    }
}

/// A badge for `m`: a 200×200 medallion.
pub fn svg(m: &Milestone) -> String {
    let p = palette(m.kind);
    let (big, small) = headline(m);
    let label = m.label.as_deref().map(str::trim).filter(|l| !l.is_empty()).map(|l| {
        let mut short: String = l.chars().take(LABEL_CHARS).collect();
        if l.chars().count() > LABEL_CHARS {
            short.push('\u{2026}');
        }
        short
    });
    let title = [big.clone().unwrap_or_default(), small.clone(), m.label.as_deref().map(str::trim).unwrap_or_default().to_string()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let middle = match &big {
        Some(big) => {
            let size = match big.chars().count() {
                0..=2 => 64,
                3 => 54,
                4 => 44,
                _ => 34,
            };
            format!(
                r##"{}<text x="100" y="{}" font-size="{size}" font-weight="800" fill="{}">{}</text>"##,
                emblem(m.kind, p.ink),
                98 + size / 3,
                p.ink,
                escape(big)
            )
        }
        None => symbol(m.kind, p.ink),
    };
    let ribbon = match &label {
        Some(l) => format!(
            r##"<rect x="24" y="150" width="152" height="28" rx="14" fill="#ffffff" fill-opacity="0.92"/><text x="100" y="169" font-size="13" font-weight="600" fill="{}">{}</text>"##,
            p.ink,
            escape(l)
        ),
        None => String::new(),
    };
    format!(
        concat!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 200" width="200" height="200" role="img" aria-label="{title}">"##,
            r##"<title>{title}</title>"##,
            r##"<defs><linearGradient id="hb-{kind}" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="{light}"/><stop offset="1" stop-color="{dark}"/></linearGradient></defs>"##,
            r##"<circle cx="100" cy="100" r="96" fill="url(#hb-{kind})"/>"##,
            r##"<circle cx="100" cy="100" r="84" fill="none" stroke="#ffffff" stroke-opacity="0.7" stroke-width="3" stroke-dasharray="2 6" stroke-linecap="round"/>"##,
            r##"<circle cx="100" cy="100" r="72" fill="#ffffff" fill-opacity="0.88"/>"##,
            r##"<g font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" text-anchor="middle">"##,
            "{middle}",
            r##"<text x="100" y="138" font-size="16" font-weight="600" fill="{ink}">{small}</text>"##,
            "{ribbon}</g></svg>"
        ),
        title = escape(&title),
        kind = format!("{:?}", m.kind).to_lowercase(),
        light = p.light,
        dark = p.dark,
        middle = middle,
        ink = p.ink,
        small = escape(&small),
        ribbon = ribbon,
    )
}

/// `GET /api/badges/{kind}/{value}.svg`, e.g. `/api/badges/daysSober/30.svg` (`0`: no value).
pub async fn serve(Path((kind, file)): Path<(String, String)>) -> Response {
    let kind: Option<MilestoneKind> = serde_json::from_value(serde_json::Value::String(kind)).ok();
    let value = file.strip_suffix(".svg").and_then(|v| v.parse::<u32>().ok());
    let (Some(kind), Some(value)) = (kind, value) else {
        return (StatusCode::NOT_FOUND, "no such badge").into_response();
    };
    let body = svg(&Milestone { kind, value: (value > 0).then_some(value), label: None });
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            // Opened on its own, the image may run nothing and load nothing.
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_inject_markup() {
        let m = Milestone { kind: MilestoneKind::Custom, value: None, label: Some(r##"</text><script>alert("x")</script>&"##.into()) };
        let s = svg(&m);
        assert!(!s.contains("<script"), "{s}");
        assert!(s.contains("&lt;/text&gt;&lt;script&gt;"), "{s}");
        assert!(!s.contains("href"), "no external references");
        assert_eq!(s.matches("<svg").count(), 1);
    }

    #[test]
    fn headline_by_kind() {
        let m = |kind, value| Milestone { kind, value, label: None };
        assert_eq!(headline(&m(MilestoneKind::DaysSober, Some(30))), (Some("30".into()), "days sober".into()));
        assert_eq!(headline(&m(MilestoneKind::DaysSober, Some(730))), (Some("2".into()), "years sober".into()));
        assert_eq!(headline(&m(MilestoneKind::SessionsAttended, Some(1))), (Some("1".into()), "session".into()));
        assert!(svg(&m(MilestoneKind::ProgramCompletion, None)).contains("completed"));
    }
}
