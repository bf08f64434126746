//! The recorded events, one JSON line at a time: a line is read into a
//! buffer of at most `MAX_LINE` bytes (a longer one is skipped whole, read
//! past without keeping it), so memory does not grow with the input.

use serde_json::Value;
use std::io::BufRead;
use tollgate_core::audit::SCHEMA_VERSION;

/// The longest line kept: events are a few KB (captured headers and the
/// request id are cut at 1 KiB each).
pub const MAX_LINE: usize = 1 << 20;

/// What one non-blank line gives.
#[derive(Debug)]
pub enum Line {
    Event(Value),
    /// Not an event this tool can re-decide, and why.
    Skip(String),
}

pub struct Events<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: BufRead> Events<R> {
    pub fn new(reader: R) -> Events<R> {
        Events {
            reader,
            buf: Vec::with_capacity(4096),
        }
    }

    /// The next non-blank line; `None` at the end of the input.
    pub fn next_line(&mut self) -> Result<Option<Line>, String> {
        loop {
            self.buf.clear();
            let Some(too_long) = self.fill_line()? else {
                return Ok(None);
            };
            if too_long {
                return Ok(Some(Line::Skip(format!("a line longer than {} bytes", MAX_LINE))));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(parse(&self.buf)));
        }
    }

    /// Reads one line into `buf` (without its newline); `Some(true)` when it
    /// was longer than `MAX_LINE` (what was kept is then meaningless),
    /// `None` at the end of the input.
    fn fill_line(&mut self) -> Result<Option<bool>, String> {
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self.reader.fill_buf().map_err(|e| format!("reading the events: {e}"))?;
            if chunk.is_empty() {
                return Ok(any.then_some(too_long));
            }
            any = true;
            let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => (chunk.get(..end).unwrap_or_default(), end + 1, true),
                None => (chunk, chunk.len(), false),
            };
            if !too_long && self.buf.len() + part.len() <= MAX_LINE {
                self.buf.extend_from_slice(part);
            } else {
                too_long = true;
                self.buf.clear();
            }
            self.reader.consume(used);
            if done {
                return Ok(Some(too_long));
            }
        }
    }
}

/// One line as an event of this schema version, or why it is skipped.
pub fn parse(line: &[u8]) -> Line {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return Line::Skip("not JSON".into());
    };
    if !value.is_object() {
        return Line::Skip("not a JSON object".into());
    }
    match value.get("schema_version") {
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => Line::Event(value),
        Some(v) => Line::Skip(format!(
            "schema_version {} (this tollgate reads {SCHEMA_VERSION})",
            short(v)
        )),
        None => Line::Skip("no schema_version: not an audit event".into()),
    }
}

/// A value as a short text for a skip reason (reasons are grouped by text).
fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(16) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn lines(input: &str) -> Vec<Line> {
        let mut events = Events::new(std::io::BufReader::with_capacity(16, input.as_bytes()));
        let mut out = Vec::new();
        while let Some(line) = events.next_line().unwrap() {
            out.push(line);
        }
        out
    }

    fn skip_reason(line: &Line) -> &str {
        match line {
            Line::Skip(why) => why,
            Line::Event(v) => panic!("an event: {v}"),
        }
    }

    #[test]
    fn events_of_another_schema_version_are_skipped_with_the_reason() {
        let input = "{\"schema_version\":1,\"a\":1}\n\n{\"schema_version\":2}\n{\"x\":1}\nnot json\n[1]\n";
        let got = lines(input);
        assert_eq!(got.len(), 5, "the blank line is not a line: {got:?}");
        assert!(matches!(&got[0], Line::Event(v) if v["a"] == 1));
        assert_eq!(skip_reason(&got[1]), "schema_version 2 (this tollgate reads 1)");
        assert_eq!(skip_reason(&got[2]), "no schema_version: not an audit event");
        assert_eq!(skip_reason(&got[3]), "not JSON");
        assert_eq!(skip_reason(&got[4]), "not a JSON object");
    }

    #[test]
    fn a_line_over_the_bound_is_skipped_and_the_next_one_read() {
        let long = format!("{{\"schema_version\":1,\"pad\":\"{}\"}}", "x".repeat(MAX_LINE));
        let input = format!("{long}\n{{\"schema_version\":1}}");
        let got = lines(&input);
        assert_eq!(got.len(), 2);
        assert!(skip_reason(&got[0]).starts_with("a line longer than"));
        assert!(matches!(&got[1], Line::Event(_)), "the last line needs no newline");
    }
}
