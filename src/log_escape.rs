//! Log lines that cannot be forged. Field values and messages carry text that came from
//! clients (an SDP parser's complaint quotes the offending line, a candidate, a header): a
//! newline in one would start what looks like a new log line, an ESC would drive the reader's
//! terminal, a bidi override would reorder what an operator reads. [`Escaping`] wraps the
//! writer `tracing_subscriber::fmt` writes each event to and escapes every such character
//! except the one newline that ends the event, for the text and the JSON format alike.
//!
//! Escapes are `\n`, `\r`, `\t` and `\uXXXX`, which read the same in text and are valid JSON
//! string escapes (JSON output has already escaped controls itself; what is left there is the
//! bidi and line-separator characters JSON allows raw).

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Characters escaped in log output: every C0 and C1 control and DEL, the bidirectional marks,
/// embeddings, overrides and isolates, and the Unicode line and paragraph separators.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// `text` with [`needs_escape`] characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A [`MakeWriter`] whose writers escape each event (see the module comment).
#[derive(Debug, Clone)]
pub struct Escaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter { inner: self.0.make_writer(), event: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        EscapingWriter { inner: self.0.make_writer_for(meta), event: Vec::new() }
    }
}

/// Collects one event and writes it escaped, in one write, when dropped or flushed (the fmt
/// layer makes one writer per event).
pub struct EscapingWriter<W: Write> {
    inner: W,
    event: Vec<u8>,
}

impl<W: Write> EscapingWriter<W> {
    fn emit(&mut self) -> io::Result<()> {
        if self.event.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.event);
        let text = String::from_utf8_lossy(&raw);
        let body = text.strip_suffix('\n').unwrap_or(&text);
        let mut line = escape(body);
        line.push('\n');
        self.inner.write_all(line.as_bytes())
    }
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.event.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for EscapingWriter<W> {
    fn drop(&mut self) {
        let _ = self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_stays_one_line() {
        let mut out = Vec::new();
        {
            let mut w = EscapingWriter { inner: &mut out, event: Vec::new() };
            w.write_all("WARN error=bad\nFAKE LOG LINE\r\u{1b}[2J \u{202E}x\u{85}\n".as_bytes()).unwrap();
        }
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "WARN error=bad\\nFAKE LOG LINE\\r\\u001b[2J \\u202ex\\u0085\n");
        assert_eq!(s.lines().count(), 1);
    }

    #[test]
    fn escapes_are_valid_json() {
        let line = escape(r#"{"msg":"a\u202Eb"}"#.replace("\\u202E", "\u{202E}").as_str());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "a\u{202E}b");
    }
}
