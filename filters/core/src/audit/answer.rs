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
    let code = std::str::from_utf8(status).ok().and_then(|s| s.parse::<u16>().ok());
    match code {
        Some(code) => by_http_status(i64::from(code)),
        None => Failure::Retry,
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

/// The records of a Kafka REST answer (2xx) that failed, in record order,
/// with what becomes of each: the indices of its `offsets` with an
/// `error_code`. The proxy answers 200 for a batch whose records partly
/// failed (v2 API; the Strimzi bridge too). Empty when the body is not
/// such an answer.
pub fn kafka_failed_records(body: &[u8]) -> Vec<(usize, Failure)> {
    offsets(body)
        .iter()
        .enumerate()
        .filter_map(|(i, o)| record_code(o).map(|code| (i, record_failure(code))))
        .collect()
}

fn offsets(body: &[u8]) -> Vec<Value> {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    match answer.get("offsets") {
        Some(Value::Array(offsets)) => offsets.clone(),
        _ => Vec::new(),
    }
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

/// Characters of a refusal's reason kept for the log: the sink writes the
/// body, and the log is not its to fill.
pub const MAX_REASON_CHARS: usize = 200;

/// Why the sink refused a batch (`status`, empty for a 2xx with refused
/// records) or records of it, for the log: the POST's path (it names the
/// topic), the status, and the body's `error_code` and `message` (REST
/// Proxy, Strimzi), else the first rejected record's `error_code` and
/// `error`. Bounded, printable.
pub fn refusal_reason(path: &str, status: &[u8], body: &[u8]) -> String {
    let answer = serde_json::from_slice::<Value>(body).ok();
    let detail = answer.as_ref().and_then(|a| error_of(a, "message")).or_else(|| {
        let offsets = answer.as_ref()?.get("offsets")?.as_array()?;
        offsets
            .iter()
            .find(|o| record_code(o).is_some_and(|c| record_failure(c) == Failure::Reject))
            .and_then(|o| error_of(o, "error"))
    });
    let status = String::from_utf8_lossy(status);
    let mut reason = match (status.is_empty(), detail) {
        (true, Some(d)) => format!("{path}: a record refused, {d}"),
        (true, None) => format!("{path}: records refused"),
        (false, Some(d)) => format!("{path}: {status}, {d}"),
        (false, None) => format!("{path}: {status}"),
    };
    bound(&mut reason);
    reason
}

/// `error_code N: text` from an object's `error_code` and its `field`.
fn error_of(object: &Value, field: &str) -> Option<String> {
    let code = object.get("error_code").filter(|c| !c.is_null());
    let text = object.get(field).and_then(Value::as_str);
    match (code, text) {
        (None, None) => None,
        (Some(c), None) => Some(format!("error_code {c}")),
        (None, Some(t)) => Some(t.to_string()),
        (Some(c), Some(t)) => Some(format!("error_code {c}: {t}")),
    }
}

/// Control characters out (one log line, nothing forged), and cut to
/// `MAX_REASON_CHARS`.
fn bound(reason: &mut String) {
    let mut out: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    if reason.chars().count() > MAX_REASON_CHARS {
        out.push('…');
    }
    *reason = out;
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
            " since the last such line"
        } else {
            ""
        };
        self.logged_at = Some(now_nanos);
        let line = format!(
            "audit: the sink refused {} events for good{since} ({} whole batches), \
             dropped and not retried (tollgate.audit.events_dropped.rejected); last: {}",
            self.events, self.batches, self.last
        );
        self.batches = 0;
        self.events = 0;
        Some(line)
    }
}
