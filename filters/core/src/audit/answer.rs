//! What the sink's answers mean for the events they carried: taken,
//! retried (with backoff, within the buffer's bound) or dropped for good
//! (counted `rejected`), and the bounded reason a refusal is logged with,
//! at most once per interval per outbox.

use serde_json::Value;

/// What becomes of events the sink did not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It may take them later: back to the buffer, after a backoff.
    Retry,
    /// Sending them again cannot help: dropped, counted `rejected`.
    Reject,
}

/// A whole batch answered with `status` (not 2xx; empty when there was no
/// answer: a timeout or a reset). 4xx says the request is wrong (a bad
/// body, credentials, an unknown topic, too large) and stays wrong, except
/// 408 and 429, which ask to come back later, as 5xx and no answer do.
pub fn batch_failure(status: &[u8]) -> Failure {
    // Three digits, read by hand: `str::parse` is code the module need not carry.
    match status {
        [a @ b'1'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            let digit = |d: &u8| i64::from(d - b'0');
            by_http_status(digit(a) * 100 + digit(b) * 10 + digit(c))
        }
        _ => Failure::Retry,
    }
}

fn by_http_status(code: i64) -> Failure {
    match code {
        408 | 429 => Failure::Retry,
        400..=499 => Failure::Reject,
        _ => Failure::Retry,
    }
}

/// A record's `error_code` in a 2xx Kafka REST answer. The REST Proxy v2
/// documents 1 (non-retriable Kafka exception) and 2 (retriable); its
/// later releases write five digits, the HTTP status and a number
/// (40101 authentication, 40301 authorization, 50002 a non-retriable Kafka
/// exception, 50003 a retriable one); the Strimzi bridge writes HTTP
/// statuses (404: the topic is not in the metadata; 500: anything else,
/// a broker timeout mostly). A code not known is retried: the buffer's
/// bound caps what that costs, and dropping would lose an event.
pub fn record_failure(code: i64) -> Failure {
    match code {
        1 | 50002 => Failure::Reject,
        2 | 50003 => Failure::Retry,
        100..=599 => by_http_status(code),
        10_000..=59_999 => by_http_status(code / 100),
        _ => Failure::Retry,
    }
}

/// What became of each record of a Kafka REST answer (2xx), in record
/// order: `None` for one the broker took, else what its `error_code`
/// says. The proxy answers 200 for a batch whose records partly failed
/// (v2 API; the Strimzi bridge too). Empty when the body is not such an
/// answer (every record taken).
pub fn kafka_failed_records(body: &[u8]) -> Vec<Option<Failure>> {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let Some(offsets) = answer.get("offsets").and_then(Value::as_array) else {
        return Vec::new();
    };
    offsets.iter().map(|o| record_code(o).map(record_failure)).collect()
}

/// A record's error code; a code that is not an integer (a string some
/// front writes) reads as unknown, and so is retried.
fn record_code(offset: &Value) -> Option<i64> {
    match offset.get("error_code")? {
        Value::Null => None,
        code => Some(code.as_i64().unwrap_or(-1)),
    }
}

/// How many log records an OTLP answer (2xx) says the collector rejected
/// (`partialSuccess.rejectedLogRecords`, a string or a number); they must
/// not be sent again.
pub fn otlp_rejected(body: &[u8]) -> u64 {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let rejected = answer.get("partialSuccess").and_then(|p| p.get("rejectedLogRecords"));
    match rejected {
        Some(Value::String(n)) => n.parse().unwrap_or(0),
        Some(n) => n.as_u64().unwrap_or(0),
        None => 0,
    }
}

/// Bytes of a refusal's reason kept for the log: the sink writes the
/// body, and the log is not its to fill.
pub const MAX_REASON_BYTES: usize = 200;

/// Why the sink refused a batch (`status`, empty for a 2xx with refused
/// records) or records of it, for the log: the POST's path (it names the
/// topic), the status, and the body's `error_code` and `message` (REST
/// Proxy, Strimzi), else the first failed record's `error_code` and
/// `error`. Bounded, printable.
pub fn refusal_reason(path: &str, status: &[u8], body: &[u8]) -> String {
    let answer = serde_json::from_slice::<Value>(body).ok();
    let detail = answer.as_ref().and_then(|a| {
        let rejected = |o: &&Value| record_code(o).is_some_and(|c| record_failure(c) == Failure::Reject);
        let record = || error_of(a.get("offsets")?.as_array()?.iter().find(rejected)?, "error");
        error_of(a, "message").or_else(record)
    });
    let status = match status {
        [] => "records refused".into(),
        status => String::from_utf8_lossy(status),
    };
    bound(format!("{path}: {status}{}", detail.unwrap_or_default()))
}

/// `, error_code N: text` from an object's `error_code` and its `field`
/// (`Value`'s `Display` is not used: it would bring the module a
/// serializer of its own).
fn error_of(object: &Value, field: &str) -> Option<String> {
    let code = object.get("error_code").and_then(Value::as_i64);
    let text = object.get(field).and_then(Value::as_str);
    if code.is_none() && text.is_none() {
        return None;
    }
    let code = code.map(|c| format!("error_code {c}: ")).unwrap_or_default();
    let detail = format!(", {code}{}", text.unwrap_or_default());
    Some(detail.trim_end_matches([':', ' ']).to_string())
}

/// Cut to `MAX_REASON_BYTES` (on a character boundary), and control
/// characters blanked: one log line, nothing forged.
fn bound(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason.replace(char::is_control, " ")
}

/// At most one log line per this long per outbox for refusals: a topic
/// that does not exist refuses every batch, at the rate of the traffic.
pub const REFUSAL_LOG_INTERVAL_NANOS: u64 = 30_000_000_000;

/// Refusals since the last line logged, summed into the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Events dropped, and the whole batches refused among them.
    events: u64,
    batches: u64,
    last: String,
    logged_at: Option<u64>,
}

impl Refusals {
    /// `events` were dropped for `reason`: a whole batch's, or records of
    /// a batch the sink otherwise took.
    pub fn add(&mut self, events: u64, whole_batch: bool, reason: String) {
        self.events += events;
        if whole_batch {
            self.batches += 1;
        }
        self.last = reason;
    }

    /// The line to log now: when refusals wait and the interval passed
    /// since the last line (the first at once). The counts start again.
    pub fn due(&mut self, now_nanos: u64) -> Option<String> {
        if self.events == 0 {
            return None;
        }
        let waited = self
            .logged_at
            .is_none_or(|at| now_nanos.saturating_sub(at) >= REFUSAL_LOG_INTERVAL_NANOS);
        if !waited {
            return None;
        }
        let since = if self.logged_at.is_some() {
            " since the last line"
        } else {
            ""
        };
        self.logged_at = Some(now_nanos);
        let line = format!(
            "audit: the sink refused {} events{since} ({} whole batches): dropped, not retried; last: {}",
            self.events, self.batches, self.last
        );
        self.batches = 0;
        self.events = 0;
        Some(line)
    }
}
