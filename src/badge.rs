//! Milestone badges: small self-contained SVG images made by the server (issue 6).
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

/// The big line and the small line under it.
fn headline(m: &Milestone) -> (String, String) {
    let plural = |n: u32, one: &str, many: &str| if n == 1 { one.to_string() } else { many.to_string() };
    match (m.kind, m.value) {
        (MilestoneKind::DaysSober, Some(d)) if d >= 365 && d % 365 == 0 => {
            let y = d / 365;
            (y.to_string(), format!("{} sober", plural(y, "year", "years")))
        }
        (MilestoneKind::DaysSober, Some(d)) => (d.to_string(), format!("{} sober", plural(d, "day", "days"))),
        (MilestoneKind::DaysSober, None) => ("\u{2600}".into(), "sober".into()),
        (MilestoneKind::SessionsAttended, Some(n)) => (n.to_string(), plural(n, "session", "sessions")),
        (MilestoneKind::SessionsAttended, None) => ("\u{2713}".into(), "sessions".into()),
        (MilestoneKind::ProgramCompletion, Some(n)) => (n.to_string(), "completed".into()),
        (MilestoneKind::ProgramCompletion, None) => ("\u{2713}".into(), "completed".into()),
        (MilestoneKind::Custom, Some(n)) => (n.to_string(), "milestone".into()),
        (MilestoneKind::Custom, None) => ("\u{2605}".into(), "milestone".into()),
    }
}

/// The small emblem at the top of the medallion, drawn with shapes only.
fn emblem(kind: MilestoneKind, ink: &str) -> String {
    match kind {
        // A rising sun: a new day.
        MilestoneKind::DaysSober => {
            let mut s = format!(r##"<g fill="none" stroke="{ink}" stroke-width="3" stroke-linecap="round">"##);
            for i in 0..7 {
                let a = std::f32::consts::PI * (i as f32) / 6.0;
                let (x1, y1) = (100.0 - 17.0 * a.cos(), 52.0 - 17.0 * a.sin());
                let (x2, y2) = (100.0 - 24.0 * a.cos(), 52.0 - 24.0 * a.sin());
                s.push_str(&format!(r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"/>"##));
            }
            s.push_str(&format!(r##"</g><path d="M88 52a12 12 0 0 1 24 0z" fill="{ink}"/>"##));
            s
        }
        // Chairs in a circle: the group.
        MilestoneKind::SessionsAttended => {
            let mut s = format!(r##"<g fill="{ink}">"##);
            for i in 0..6 {
                let a = std::f32::consts::TAU * (i as f32) / 6.0;
                s.push_str(&format!(r##"<circle cx="{:.1}" cy="{:.1}" r="4"/>"##, 100.0 + 14.0 * a.cos(), 44.0 + 14.0 * a.sin()));
            }
            s.push_str("</g>");
            s
        }
        // A laurel-like pair of arcs around a dot.
        MilestoneKind::ProgramCompletion => format!(
            r##"<g fill="none" stroke="{ink}" stroke-width="3" stroke-linecap="round"><path d="M86 32q-8 14 6 24"/><path d="M114 32q8 14 -6 24"/></g><circle cx="100" cy="42" r="6" fill="{ink}"/>"##
        ),
        // A four-pointed sparkle.
        MilestoneKind::Custom => format!(r##"<path d="M100 26l5 13 13 5-13 5-5 13-5-13-13-5 13-5z" fill="{ink}"/>"##),
    }
}

/// A badge for `m`: a 200×200 medallion.
pub fn svg(m: &Milestone) -> String {
    let p = palette(m.kind);
    let (big, small) = headline(m);
    let big_size = match big.chars().count() {
        0..=2 => 64,
        3 => 54,
        4 => 44,
        _ => 34,
    };
    let label = m.label.as_deref().map(str::trim).filter(|l| !l.is_empty()).map(|l| {
        let mut short: String = l.chars().take(LABEL_CHARS).collect();
        if l.chars().count() > LABEL_CHARS {
            short.push('\u{2026}');
        }
        short
    });
    let title = match &m.label {
        Some(l) if !l.trim().is_empty() => format!("{big} {small}: {}", l.trim()),
        _ => format!("{big} {small}"),
    };
    let ribbon = match &label {
        Some(l) => format!(
            r##"<rect x="24" y="150" width="152" height="28" rx="14" fill="#ffffff" fill-opacity="0.92"/><text x="100" y="169" font-size="13" font-weight="600" fill="{}" text-anchor="middle">{}</text>"##,
            p.ink,
            escape(l)
        ),
        None => String::new(),
    };
    let kind = escape(&format!("{:?}", m.kind).to_lowercase());
    format!(
        concat!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 200" width="200" height="200" role="img" aria-label="{title}">"##,
            r##"<title>{title}</title>"##,
            r##"<defs><linearGradient id="hb-{kind}" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="{light}"/><stop offset="1" stop-color="{dark}"/></linearGradient></defs>"##,
            r##"<circle cx="100" cy="100" r="96" fill="url(#hb-{kind})"/>"##,
            r##"<circle cx="100" cy="100" r="84" fill="none" stroke="#ffffff" stroke-opacity="0.7" stroke-width="3" stroke-dasharray="2 6" stroke-linecap="round"/>"##,
            r##"<circle cx="100" cy="100" r="72" fill="#ffffff" fill-opacity="0.88"/>"##,
            "{emblem}",
            r##"<g font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" text-anchor="middle">"##,
            r##"<text x="100" y="{big_y}" font-size="{big_size}" font-weight="800" fill="{ink}">{big}</text>"##,
            r##"<text x="100" y="134" font-size="16" font-weight="600" fill="{ink}">{small}</text>"##,
            "{ribbon}</g></svg>"
        ),
        title = escape(&title),
        kind = kind,
        light = p.light,
        dark = p.dark,
        emblem = emblem(m.kind, p.ink),
        big_y = 96 + big_size / 3,
        big_size = big_size,
        ink = p.ink,
        big = escape(&big),
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
        let m = Milestone {
            kind: MilestoneKind::Custom,
            value: None,
            label: Some(r##"</text><script>alert("x")</script>&"##.into()),
        };
        let s = svg(&m);
        assert!(!s.contains("<script"), "{s}");
        assert!(s.contains("&lt;/text&gt;&lt;script&gt;"), "{s}");
        assert!(!s.contains("href"), "no external references");
        assert_eq!(s.matches("<svg").count(), 1);
    }

    #[test]
    fn headline_by_kind() {
        let m = |kind, value| Milestone { kind, value, label: None };
        assert_eq!(headline(&m(MilestoneKind::DaysSober, Some(30))), ("30".into(), "days sober".into()));
        assert_eq!(headline(&m(MilestoneKind::DaysSober, Some(730))), ("2".into(), "years sober".into()));
        assert_eq!(headline(&m(MilestoneKind::SessionsAttended, Some(1))), ("1".into(), "session".into()));
        assert!(svg(&m(MilestoneKind::ProgramCompletion, None)).contains("completed"));
    }
}
