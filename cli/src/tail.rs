//! `tollgate audit tail`: the audit topics' events as they arrive, one
//! aligned line each (or the event JSON, unchanged). Decoding, filtering
//! and formatting are plain functions here; the Kafka reads are in `kafka`.

pub mod kafka;

use serde::Deserialize;
use std::io::Write;
use std::time::{Duration, Instant};
use tollgate_core::audit::{EventType, Outcome, SCHEMA_VERSION};

/// The broker when neither `--brokers` nor `KAFKA_BROKERS` names one.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
/// The stages every line shows, `-` when the event has no decision of one.
const STAGES: [&str; 3] = ["jwt", "tenant", "ratelimit"];
/// The longest wait of one fetch: how late an idle tail notices `--timeout-ms`.
const POLL_WAIT_MS: i32 = 250;
/// How often the topics' partitions are listed again (topics created later).
const RELIST_EVERY: Duration = Duration::from_secs(2);

/// One record as read from a partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub value: Option<Vec<u8>>,
}

/// Which events are printed.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Any of these tenants (all when empty).
    pub tenants: Vec<String>,
    pub decision: Option<Outcome>,
    pub event_type: Option<EventType>,
}

/// `audit tail`'s options.
#[derive(Debug, Clone)]
pub struct Options {
    pub brokers: Vec<String>,
    /// Empty: the `--event-type`'s topic, else all four.
    pub topics: Vec<String>,
    pub filter: Filter,
    pub json: bool,
    pub from_beginning: bool,
    pub max_events: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub idle_exit: bool,
}

/// The fields of an event a line shows and the filters read.
#[derive(Debug, Clone, Deserialize)]
pub struct View {
    pub time: String,
    pub event_type: EventType,
    pub tenant: Option<String>,
    pub subject: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub decisions: Vec<StageDecision>,
}

/// One stage's decision as the event writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct StageDecision {
    pub stage: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

/// What one record gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A line for standard output.
    Print(String),
    /// An event the filters leave out.
    Skip,
    /// A warning for standard error.
    Warn(String),
}

/// The topics to read: those given, else the `--event-type`'s, else all four.
pub fn topics(given: &[String], event_type: Option<EventType>) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    match event_type {
        Some(t) => vec![t.topic().to_string()],
        None => EventType::ALL.iter().map(|t| t.topic().to_string()).collect(),
    }
}

/// `host:port[,host:port..]`, blanks ignored.
pub fn parse_brokers(text: &str) -> Result<Vec<String>, String> {
    let brokers: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect();
    match brokers.iter().find(|b| !b.contains(':')) {
        _ if brokers.is_empty() => Err("no broker given".into()),
        Some(b) => Err(format!("broker '{b}' is not HOST:PORT")),
        None => Ok(brokers),
    }
}

/// An outcome as events write it: `allow`, `deny`, `shadow_deny`.
pub fn parse_outcome(text: &str) -> Result<Outcome, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| format!("'{text}' is not allow, deny or shadow_deny"))
}

/// An event type as events write it (`api_call`, ...).
pub fn parse_event_type(text: &str) -> Result<EventType, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| {
        let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        format!("'{text}' is not one of {}", all.join(", "))
    })
}

/// A record's value as an event of this schema version.
pub fn decode(value: &[u8]) -> Result<View, String> {
    #[derive(Deserialize)]
    struct Version {
        schema_version: Option<serde_json::Value>,
    }
    let version: Version = serde_json::from_slice(value).map_err(|e| format!("not an event: {e}"))?;
    match version.schema_version {
        Some(v) if v == SCHEMA_VERSION => {}
        Some(v) => return Err(format!("schema_version {v}, this tool reads {SCHEMA_VERSION}")),
        None => return Err("not an event: no schema_version".into()),
    }
    serde_json::from_slice(value).map_err(|e| format!("not an event of schema_version {SCHEMA_VERSION}: {e}"))
}

/// The request's outcome: `deny` when a stage denied it, `shadow_deny` when
/// one would have (shadow mode) and none did, `allow` otherwise.
pub fn verdict(view: &View) -> Outcome {
    let any = |o: Outcome| view.decisions.iter().any(|d| d.outcome == o);
    if any(Outcome::Deny) {
        Outcome::Deny
    } else if any(Outcome::ShadowDeny) {
        Outcome::ShadowDeny
    } else {
        Outcome::Allow
    }
}

impl Filter {
    pub fn keeps(&self, view: &View) -> bool {
        let tenant = self.tenants.is_empty() || view.tenant.as_ref().is_some_and(|t| self.tenants.contains(t));
        let decision = self.decision.is_none_or(|d| verdict(view) == d);
        let event_type = self.event_type.is_none_or(|t| view.event_type == t);
        tenant && decision && event_type
    }
}

/// Column widths: each grows to the longest value seen, up to its cap, so
/// lines stay aligned without truncating anything.
#[derive(Debug, Clone)]
pub struct Widths {
    tenant: usize,
    subject: usize,
    method: usize,
    path: usize,
}

impl Default for Widths {
    fn default() -> Widths {
        Widths {
            tenant: 8,
            subject: 12,
            method: 6,
            path: 24,
        }
    }
}

fn pad(text: &str, width: &mut usize, cap: usize) -> String {
    let len = text.chars().count();
    if len > *width && len <= cap {
        *width = len;
    }
    format!("{text:<w$}", w = *width)
}

/// Control characters escaped: a subject or path can hold terminal escapes.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// `2026-12-07T22:56:50.123456789Z` as `2026-12-07 22:56:50.123`; other text as it is.
pub fn short_time(time: &str) -> String {
    let Some((date, clock)) = time.split_once('T') else {
        return printable(time);
    };
    let clock = clock.trim_end_matches('Z');
    let cut = clock.find('.').map_or(clock.len(), |dot| (dot + 4).min(clock.len()));
    printable(&format!("{date} {}", clock.get(..cut).unwrap_or(clock)))
}

fn decision_text(d: &StageDecision) -> String {
    let outcome = match d.outcome {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
        Outcome::ShadowDeny => "shadow_deny",
    };
    let why = match (&d.reason, &d.detail) {
        (Some(r), Some(x)) => format!("({r}:{x})"),
        (Some(r), None) => format!("({r})"),
        (None, Some(x)) => format!("({x})"),
        (None, None) => String::new(),
    };
    format!("{outcome}{why}")
}

/// `jwt=allow tenant=deny(unknown_tenant) ratelimit=-`, then any other
/// stage's (`request=deny(...)` for a refusal before the stages).
pub fn decisions(list: &[StageDecision]) -> String {
    let of = |stage: &str| -> String {
        let texts: Vec<String> = list.iter().filter(|d| d.stage == stage).map(decision_text).collect();
        match texts.is_empty() {
            true => format!("{stage}=-"),
            false => format!("{stage}={}", texts.join(",")),
        }
    };
    let mut parts: Vec<String> = STAGES.iter().map(|s| of(s)).collect();
    for d in list.iter().filter(|d| !STAGES.contains(&d.stage.as_str())) {
        parts.push(format!("{}={}", d.stage, decision_text(d)));
    }
    printable(&parts.join(" "))
}

/// One event's line: time, tenant, subject, method, path, status, decisions.
pub fn line(view: &View, widths: &mut Widths) -> String {
    let dash = |v: &Option<String>| printable(v.as_deref().unwrap_or("-"));
    format!(
        "{}  {}  {}  {}  {}  {:>3}  {}",
        short_time(&view.time),
        pad(&dash(&view.tenant), &mut widths.tenant, 24),
        pad(&dash(&view.subject), &mut widths.subject, 32),
        pad(&printable(&view.method), &mut widths.method, 10),
        pad(&printable(dash_empty(&view.path)), &mut widths.path, 60),
        view.status,
        decisions(&view.decisions)
    )
}

fn dash_empty(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// One poll's records in the order of their events' times (records that
/// are not events first, as they came), and the columns widened to every
/// event printed, so the lines of one poll align with each other.
pub fn arrange<'r>(records: &'r [Fetched], filter: &Filter, widths: &mut Widths) -> Vec<&'r Fetched> {
    let view = |r: &Fetched| r.value.as_deref().and_then(|v| decode(v).ok());
    let mut keyed: Vec<(Option<View>, &Fetched)> = records.iter().map(|r| (view(r), r)).collect();
    keyed.sort_by(|a, b| {
        let time = |k: &Option<View>| k.as_ref().map(|v| v.time.clone());
        time(&a.0).cmp(&time(&b.0))
    });
    for v in keyed.iter().filter_map(|(v, _)| v.as_ref()).filter(|v| filter.keeps(v)) {
        // Formatting widens the columns; the line itself is made later.
        let _ = line(v, widths);
    }
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// The value, unchanged but for line breaks, which JSON reads only as
/// whitespace between tokens (in strings they are escaped): one a line.
pub fn json_line(value: &[u8]) -> String {
    String::from_utf8_lossy(value).replace(['\n', '\r'], " ")
}

/// What a record gives: its line, nothing (filtered out), or a warning.
pub fn output(record: &Fetched, filter: &Filter, json: bool, widths: &mut Widths) -> Output {
    let at = format!("{}/{}@{}", record.topic, record.partition, record.offset);
    let Some(value) = &record.value else {
        return Output::Warn(format!("{at}: a record without a value"));
    };
    match decode(value) {
        Err(e) => Output::Warn(format!("{at}: {e}")),
        Ok(view) if !filter.keeps(&view) => Output::Skip,
        Ok(_) if json => Output::Print(json_line(value)),
        Ok(view) => Output::Print(line(&view, widths)),
    }
}

/// Counts printed lines and says when to stop.
struct Stop {
    printed: u64,
    max_events: Option<u64>,
    deadline: Option<Instant>,
}

impl Stop {
    fn reached_max(&self) -> bool {
        self.max_events.is_some_and(|max| self.printed >= max)
    }

    /// At the deadline: an error only when `--max-events` was not reached.
    fn at_timeout(&self, timeout_ms: u64) -> Result<(), String> {
        match self.max_events {
            Some(max) if self.printed < max => Err(format!(
                "timed out after {timeout_ms} ms with {} of {max} events",
                self.printed
            )),
            _ => Ok(()),
        }
    }
}

/// Prints the records of one poll; `Ok(false)` when output must stop
/// (`--max-events` reached, or standard output closed).
fn print_all(records: &[Fetched], options: &Options, widths: &mut Widths, stop: &mut Stop) -> bool {
    let mut out = std::io::stdout().lock();
    for record in arrange(records, &options.filter, widths) {
        match output(record, &options.filter, options.json, widths) {
            Output::Skip => {}
            Output::Warn(w) => eprintln!("tollgate: warning: {w}"),
            Output::Print(l) => {
                if writeln!(out, "{l}").and_then(|()| out.flush()).is_err() {
                    return false;
                }
                stop.printed += 1;
                if stop.reached_max() {
                    return false;
                }
            }
        }
    }
    true
}

/// `tollgate audit tail`.
pub fn run(options: &Options) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("async runtime: {e}"))?;
    runtime.block_on(tail(options))
}

async fn tail(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    let mut stop = Stop {
        printed: 0,
        max_events: options.max_events,
        deadline: options.timeout_ms.map(|ms| started + Duration::from_millis(ms)),
    };
    let connect = kafka::Reader::connect(&options.brokers, &options.topics, options.from_beginning);
    let bound = Instant::now() + 2 * kafka::CALL_BOUND;
    let by = stop.deadline.map_or(bound, |d| d.min(bound));
    let mut reader = tokio::time::timeout_at(by.into(), connect)
        .await
        .map_err(|_| format!("no answer from {}", options.brokers.join(",")))??;
    // At the deadline the loop is dropped wherever it waits: a broker
    // that hangs cannot hold the tail past --timeout-ms.
    match stop.deadline {
        Some(d) => match tokio::time::timeout_at(d.into(), follow(&mut reader, options, &mut stop)).await {
            Ok(done) => done,
            Err(_) => stop.at_timeout(options.timeout_ms.unwrap_or_default()),
        },
        None => follow(&mut reader, options, &mut stop).await,
    }
}

/// Polls and prints until `--max-events`, `--idle-exit` or a closed output.
async fn follow(reader: &mut kafka::Reader, options: &Options, stop: &mut Stop) -> Result<(), String> {
    let mut widths = Widths::default();
    let mut listed = Instant::now();
    loop {
        if reader.has_lost() || listed.elapsed() >= RELIST_EVERY {
            reader.refresh().await;
            listed = Instant::now();
        }
        let poll = reader.poll(POLL_WAIT_MS).await;
        if !print_all(&poll.records, options, &mut widths, stop) {
            return Ok(());
        }
        if options.idle_exit && poll.caught_up && poll.records.is_empty() {
            return Ok(());
        }
        if poll.records.is_empty() {
            // Some brokers answer an empty fetch at once, and one that is
            // away at once too: do not spin.
            let pause = if reader.has_lost() { POLL_WAIT_MS } else { 50 };
            tokio::time::sleep(Duration::from_millis(pause.unsigned_abs().into())).await;
        }
    }
}

#[cfg(test)]
mod tests;
