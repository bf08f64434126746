//! A test audit sink: an HTTP/1.1 server (on `docker::party_host()`, so a
//! containerized Envoy reaches it) that records every request it receives
//! and answers 200, or a status it is told, or hangs (holds the connection
//! unanswered, up to a bound, then closes it). It can be stopped (nothing
//! listens) and started again on the same port. Readers parse what arrived
//! per format and check method, path and content type; every wait polls
//! with a deadline.

use crate::server::{Received, Server, CLOSE};
use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const JSONL_CONTENT_TYPE: &str = "application/x-ndjson";
pub const KAFKA_CONTENT_TYPE: &str = "application/vnd.kafka.json.v2+json";
pub const OTLP_CONTENT_TYPE: &str = "application/json";

const POLL: Duration = Duration::from_millis(20);
/// How long `start_again` retries binding the old port.
const REBIND_WITHIN: Duration = Duration::from_secs(5);

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Record {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When its body had been read.
    pub at: Instant,
    /// What the sink answered: `None` while it hangs or when it closed the
    /// connection without answering.
    pub status: Option<u16>,
}

impl Record {
    /// Answered 2xx: the events in it count as delivered.
    pub fn accepted(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// Every byte the sink was sent: request line, headers, body.
    pub fn raw(&self) -> Vec<u8> {
        let mut out = format!("{} {}\n", self.method, self.path).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// `Ok` when it is a POST to `path` with `content_type`.
    pub fn check(&self, path: &str, content_type: &str) -> Result<(), String> {
        let seen = (self.method.as_str(), self.path.as_str(), self.content_type.as_deref());
        if seen == ("POST", path, Some(content_type)) {
            Ok(())
        } else {
            Err(format!("expected POST {path} ({content_type}), got {seen:?}"))
        }
    }
}

/// How the sink answers from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Answer(u16),
    /// Hold each request unanswered for up to this long (or until told
    /// otherwise), then close its connection.
    Hang(Duration),
}

#[derive(Default)]
struct Shared {
    records: Mutex<Vec<Record>>,
    behaviour: Mutex<Option<Behaviour>>,
    /// Signalled when the behaviour changes: hung requests let go.
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        lock(&self.behaviour).unwrap_or(Behaviour::Answer(200))
    }

    fn handle(&self, request: &Received) -> (u16, String) {
        let behaviour = self.behaviour();
        let answered = match behaviour {
            Behaviour::Answer(status) => Some(status),
            Behaviour::Hang(_) => None,
        };
        lock(&self.records).push(Record {
            method: request.method.clone(),
            path: request.path.clone(),
            content_type: crate::http::header(&request.headers, "content-type").map(str::to_string),
            headers: request.headers.clone(),
            body: request.body.clone(),
            at: Instant::now(),
            status: answered,
        });
        match behaviour {
            Behaviour::Answer(status) => (status, "{}".to_string()),
            Behaviour::Hang(bound) => {
                self.hold(behaviour, bound);
                (CLOSE, String::new())
            }
        }
    }

    /// Waits until the behaviour changes or `bound` passes.
    fn hold(&self, hanging: Behaviour, bound: Duration) {
        let deadline = Instant::now() + bound;
        let mut current = lock(&self.behaviour);
        while current.unwrap_or(Behaviour::Answer(200)) == hanging {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            current = match self.changed.wait_timeout(current, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

pub struct Sink {
    server: Option<Server>,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Sink {
    /// Listens on a free port of `docker::party_host()`, answering 200.
    pub fn start() -> Sink {
        let shared = Arc::new(Shared::default());
        let bind = format!("{}:0", crate::docker::party_host());
        let server = serve(&bind, &shared).unwrap_or_else(|e| panic!("audit sink could not bind {bind}: {e}"));
        Sink {
            addr: server.addr(),
            server: Some(server),
            shared,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answer every request with `status` from now on (hung ones let go).
    pub fn answer(&self, status: u16) {
        self.set(Behaviour::Answer(status));
    }

    /// Hold every request unanswered from now on, each for up to `bound`.
    pub fn hang(&self, bound: Duration) {
        self.set(Behaviour::Hang(bound));
    }

    fn set(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = Some(behaviour);
        self.shared.changed.notify_all();
    }

    /// Stops listening and closes the open connections (what was received
    /// is kept).
    pub fn stop(&mut self) {
        // Let hung handlers go so their threads end.
        self.shared.changed.notify_all();
        self.server = None;
    }

    /// Listens again on the same port.
    pub fn start_again(&mut self) {
        if self.server.is_some() {
            return;
        }
        let bind = self.addr.to_string();
        let deadline = Instant::now() + REBIND_WITHIN;
        loop {
            match serve(&bind, &self.shared) {
                Ok(server) => {
                    self.server = Some(server);
                    return;
                }
                Err(e) if Instant::now() >= deadline => panic!("audit sink could not bind {bind} again: {e}"),
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    pub fn is_listening(&self) -> bool {
        self.server.is_some()
    }

    /// Every request received so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        lock(&self.shared.records).clone()
    }

    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.records().into_iter().map(|r| r.body).collect()
    }

    /// Everything received, requests and bodies, as one byte string (to
    /// search for what must never arrive).
    pub fn raw(&self) -> Vec<u8> {
        self.records().iter().flat_map(Record::raw).collect()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        lock(&self.shared.records).clear();
    }

    /// Polls `probe` on what was received until it gives `Some`, or
    /// `within` passes (`None`).
    pub fn wait_for<T>(&self, within: Duration, mut probe: impl FnMut(&[Record]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = probe(&self.records()) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `read` finds at least `count` events in what was
    /// received; the events then, or an error naming what was found.
    pub fn wait_events(
        &self,
        count: usize,
        within: Duration,
        read: impl Fn(&[Record]) -> Result<Vec<Value>, String>,
    ) -> Result<Vec<Value>, String> {
        let mut last = Ok(Vec::new());
        let found = self.wait_for(within, |records| {
            last = read(records);
            match &last {
                Ok(events) if events.len() >= count => Some(events.clone()),
                Err(_) => Some(Vec::new()),
                Ok(_) => None,
            }
        });
        match (found, last) {
            (_, Err(e)) => Err(e),
            (Some(events), Ok(_)) => Ok(events),
            (None, Ok(events)) => Err(format!(
                "{} of {count} events within {within:?}: {events:?}",
                events.len()
            )),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(bind: &str, shared: &Arc<Shared>) -> std::io::Result<Server> {
    let shared = shared.clone();
    Server::start(bind, move |request| shared.handle(request))
}

/// The events of JSON lines batches: each request a POST to `path`
/// (`application/x-ndjson`), each non-empty line a JSON object.
pub fn jsonl_events(records: &[Record], path: &str) -> Result<Vec<Value>, String> {
    let mut events = Vec::new();
    for record in records {
        record.check(path, JSONL_CONTENT_TYPE)?;
        let text = std::str::from_utf8(&record.body).map_err(|e| format!("jsonl body: {e}"))?;
        if !text.ends_with('\n') {
            return Err(format!("jsonl body does not end with a newline: {text:?}"));
        }
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).map_err(|e| format!("jsonl line {line:?}: {e}"))?;
            if !event.is_object() {
                return Err(format!("jsonl line is not an object: {line}"));
            }
            events.push(event);
        }
    }
    Ok(events)
}

/// A Kafka REST Proxy v2 produce body (JSON embedded format).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaBatch {
    pub records: Vec<KafkaRecord>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaRecord {
    pub key: Option<String>,
    pub value: Value,
}

/// One produced record and the topic it went to.
#[derive(Debug, Clone)]
pub struct Produced {
    pub topic: String,
    pub key: Option<String>,
    pub value: Value,
}

/// The records of Kafka REST batches: each request a POST to
/// `<base>/topics/<topic>` (`application/vnd.kafka.json.v2+json`) whose
/// body parses as `{"records":[{"key","value"}]}`.
pub fn kafka_records(records: &[Record], base: &str) -> Result<Vec<Produced>, String> {
    let prefix = format!("{}/topics/", base.trim_end_matches('/'));
    let mut out = Vec::new();
    for record in records {
        let topic = record
            .path
            .strip_prefix(&prefix)
            .filter(|t| !t.is_empty() && !t.contains(['/', '?']))
            .ok_or_else(|| format!("kafka-rest path {} is not {prefix}<topic>", record.path))?;
        record.check(&record.path, KAFKA_CONTENT_TYPE)?;
        let batch: KafkaBatch = serde_json::from_slice(&record.body).map_err(|e| format!("kafka-rest body: {e}"))?;
        if batch.records.is_empty() {
            return Err("kafka-rest batch with no records".into());
        }
        out.extend(batch.records.into_iter().map(|r| Produced {
            topic: topic.to_string(),
            key: r.key,
            value: r.value,
        }));
    }
    Ok(out)
}

/// The events (record values) of Kafka REST batches.
pub fn kafka_events(records: &[Record], base: &str) -> Result<Vec<Value>, String> {
    Ok(kafka_records(records, base)?.into_iter().map(|p| p.value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;

    fn post(sink: &Sink, path: &str, content_type: &str, body: &str) -> Result<u16, String> {
        let mut request = Request::get(path).method("POST").header("content-type", content_type);
        request.body = body.as_bytes().to_vec();
        request.send(sink.addr()).map(|r| r.status)
    }

    #[test]
    fn it_records_each_request_and_answers_the_status_it_is_told() {
        let sink = Sink::start();
        assert_eq!(post(&sink, "/events", JSONL_CONTENT_TYPE, "{\"a\":1}\n"), Ok(200));
        sink.answer(500);
        assert_eq!(
            post(&sink, "/events", JSONL_CONTENT_TYPE, "{\"a\":2}\n{\"a\":3}\n"),
            Ok(500)
        );
        let records = sink.records();
        let seen: Vec<(&str, &str, Option<u16>, bool)> = records
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str(), r.status, r.accepted()))
            .collect();
        assert_eq!(
            seen,
            [
                ("POST", "/events", Some(200), true),
                ("POST", "/events", Some(500), false)
            ]
        );
        let events = jsonl_events(&records, "/events").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            events,
            [
                serde_json::json!({"a": 1}),
                serde_json::json!({"a": 2}),
                serde_json::json!({"a": 3})
            ]
        );
        assert!(jsonl_events(&records, "/other").is_err());
        assert!(String::from_utf8_lossy(&sink.raw()).contains("content-type: application/x-ndjson"));
    }

    #[test]
    fn a_hung_request_is_held_until_its_bound_or_until_told_otherwise() {
        let sink = Sink::start();
        sink.hang(Duration::from_millis(300));
        let started = Instant::now();
        assert!(post(&sink, "/events", JSONL_CONTENT_TYPE, "{}\n").is_err());
        let held = started.elapsed();
        assert!(
            held >= Duration::from_millis(290) && held < Duration::from_secs(5),
            "{held:?}"
        );
        assert_eq!(sink.records()[0].status, None);

        sink.hang(Duration::from_secs(30));
        let started = Instant::now();
        std::thread::scope(|s| {
            let hung = s.spawn(|| post(&sink, "/events", JSONL_CONTENT_TYPE, "{}\n"));
            let arrived = sink.wait_for(Duration::from_secs(5), |r| (r.len() == 2).then_some(()));
            assert!(arrived.is_some());
            sink.answer(200);
            assert!(hung.join().unwrap_or_else(|_| panic!("client thread")).is_err());
        });
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(post(&sink, "/events", JSONL_CONTENT_TYPE, "{}\n"), Ok(200));
    }

    #[test]
    fn a_stopped_sink_refuses_connections_and_starts_again_on_its_port() {
        let mut sink = Sink::start();
        let addr = sink.addr();
        assert_eq!(post(&sink, "/events", JSONL_CONTENT_TYPE, "{}\n"), Ok(200));
        sink.stop();
        assert!(!sink.is_listening());
        assert!(post(&sink, "/events", JSONL_CONTENT_TYPE, "{}\n").is_err());
        sink.start_again();
        assert_eq!(sink.addr(), addr);
        assert_eq!(post(&sink, "/events", JSONL_CONTENT_TYPE, "{}\n"), Ok(200));
        assert_eq!(sink.records().len(), 2);
    }

    #[test]
    fn kafka_rest_batches_are_read_with_their_topic_and_key() {
        let sink = Sink::start();
        let body = r#"{"records":[{"key":"ACME","value":{"n":1}},{"key":null,"value":{"n":2}}]}"#;
        assert_eq!(
            post(&sink, "/kafka/topics/audit-api-calls", KAFKA_CONTENT_TYPE, body),
            Ok(200)
        );
        let records = sink.records();
        let produced = kafka_records(&records, "/kafka").unwrap_or_else(|e| panic!("{e}"));
        let seen: Vec<(&str, Option<&str>, &Value)> = produced
            .iter()
            .map(|p| (p.topic.as_str(), p.key.as_deref(), &p.value))
            .collect();
        assert_eq!(
            seen,
            [
                ("audit-api-calls", Some("ACME"), &serde_json::json!({"n": 1})),
                ("audit-api-calls", None, &serde_json::json!({"n": 2}))
            ]
        );
        assert!(kafka_records(&records, "/other").is_err());
        // A field the v2 API does not have is refused, as is another content type.
        assert_eq!(
            post(
                &sink,
                "/kafka/topics/t",
                KAFKA_CONTENT_TYPE,
                r#"{"records":[{"key":null,"value":1,"x":1}]}"#
            ),
            Ok(200)
        );
        assert!(kafka_records(&sink.records(), "/kafka").is_err());
        sink.clear();
        assert_eq!(post(&sink, "/kafka/topics/t", "application/json", body), Ok(200));
        assert!(kafka_records(&sink.records(), "/kafka").is_err());
    }
}
