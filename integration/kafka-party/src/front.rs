//! The Kafka REST Proxy v2 front: an HTTP/1.1 server (hyper) on its own
//! runtime that produces each `POST [base]/topics/{topic}` batch to the
//! broker with rskafka and answers as the proxy does (see the crate's
//! documentation for where it follows the proxy and where it stops).
//!
//! Test controls, on the same port under `/_front/` (so a front in a
//! container is driven like one in-process): `GET /_front/counters`,
//! `PUT /_front/refuse` (a [`Refusal`], or `null` to clear),
//! `PUT /_front/answer` (`{"status": n}` answers every produce request
//! with status n; `{"status": null}` clears).

use crate::kafka::{self, bounded, Failure};
use crate::rest::{self, Answer, Outcome};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use tollgate_integration::http::Request;

/// The largest body the front reads (413 above it).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Records of a batch refused on purpose: each record whose value's JSON
/// text contains `marker` gets `error_code` (1 or 2) instead of being
/// produced, the first `times` times that value arrives (so a retry of it
/// is refused again until then, and produced after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub marker: String,
    pub error_code: u8,
    pub times: u32,
}

/// What the front did, for the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Produce requests received (any answer).
    pub requests: u64,
    /// Records stored in the broker, by topic.
    pub produced: BTreeMap<String, u64>,
    /// Records refused by the [`Refusal`], and their values (JSON text),
    /// in the order they were refused.
    pub refused: u64,
    pub refused_values: Vec<String>,
    /// Records the broker failed to store (per-record errors).
    pub failed: u64,
}

/// A front: in-process (dropping it stops it, closing its connections) or
/// the front container of a broker in containers (removed with the broker).
pub struct Front {
    addr: SocketAddr,
    cluster: (String, u16),
    local: Option<Local>,
}

struct Local {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Front {
    /// The front of `broker`: in-process on a free 127.0.0.1 port for a
    /// native broker; the broker's front container in container mode.
    pub fn start(broker: &crate::Broker) -> Front {
        Front::try_start(broker).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(broker: &crate::Broker) -> Result<Front, String> {
        let front = match broker.containers() {
            Some(pair) => Front {
                addr: pair.front_addr()?,
                cluster: (crate::KAFKA_ALIAS.into(), tollgate_integration::docker::KAFKA_REST_PORT),
                local: None,
            },
            None => Front::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &broker.bootstrap())?,
        };
        front.wait_ready()?;
        Ok(front)
    }

    /// In-process on `listen` (port 0: a free one), producing to the
    /// broker at `bootstrap` (`HOST:PORT`), connected on the first request
    /// and again after a failure, so the broker may start later or restart.
    pub fn start_on(listen: SocketAddr, bootstrap: &str) -> Result<Front, String> {
        let listener = std::net::TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("local_addr: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("{addr}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kafka-rest")
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let listener = runtime
            .block_on(async { tokio::net::TcpListener::from_std(listener) })
            .map_err(|e| format!("{addr}: {e}"))?;
        let state = Arc::new(State::new(bootstrap));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("kafka-rest-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, state, stopped));
                // Drops the connection tasks: their sockets close.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(|e| format!("thread: {e}"))?;
        Ok(Front {
            addr,
            cluster: (addr.ip().to_string(), addr.port()),
            local: Some(Local {
                shutdown: Some(shutdown),
                thread: Some(thread),
            }),
        })
    }

    /// Where the tests reach the front.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where Envoy's cluster for the sink points: the listening address
    /// natively, `(kafka, 8082)` on the test's network in containers.
    pub fn cluster_address(&self) -> (String, u16) {
        self.cluster.clone()
    }

    /// Whether it runs in this process.
    pub fn in_process(&self) -> bool {
        self.local.is_some()
    }

    /// From now on, refuse the records `refusal` names (replacing any
    /// earlier refusal; its per-value counts start again).
    pub fn refuse_records(&self, refusal: &Refusal) -> Result<(), String> {
        self.control("/_front/refuse", &json!(refusal))
    }

    /// Refuses nothing any more.
    pub fn stop_refusing(&self) -> Result<(), String> {
        self.control("/_front/refuse", &Value::Null)
    }

    /// Answers every produce request with `status` (`None`: normally).
    pub fn answer(&self, status: Option<u16>) -> Result<(), String> {
        self.control("/_front/answer", &json!({ "status": status }))
    }

    pub fn counters(&self) -> Result<Counters, String> {
        let response = Request::get("/_front/counters").send(self.addr)?;
        if response.status != 200 {
            return Err(format!("counters: {} {}", response.status, response.text()));
        }
        serde_json::from_slice(&response.body).map_err(|e| format!("counters: {e}"))
    }

    fn control(&self, path: &str, body: &Value) -> Result<(), String> {
        let mut request = Request::get(path)
            .method("PUT")
            .header("content-type", "application/json");
        request.body = body.to_string().into_bytes();
        let response = request.send(self.addr)?;
        if response.status == 204 {
            Ok(())
        } else {
            Err(format!("{path}: {} {}", response.status, response.text()))
        }
    }

    /// Polls the counters until the front answers (bounded).
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match self.counters() {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(format!("the Kafka REST front at {} did not answer: {e}", self.addr))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(local) = &mut self.local {
            if let Some(shutdown) = local.shutdown.take() {
                let _ = shutdown.send(());
            }
            if let Some(thread) = local.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>, mut stopped: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors or similar: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(state.handle(request).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
            _ = &mut stopped => return,
        }
    }
}

/// The front's state: the Kafka client (made on demand, dropped after a
/// failure), its partition clients, the faults and the counters.
struct State {
    bootstrap: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    partitions: Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
    round_robin: AtomicU32,
    faults: Mutex<Faults>,
    counters: Mutex<Counters>,
}

#[derive(Default)]
struct Faults {
    refusal: Option<Refusal>,
    /// Times each refused value was refused.
    seen: HashMap<String, u32>,
    answer: Option<u16>,
    /// Bumped each time `answer` is set: a produce request that was in
    /// flight meanwhile answers the fault's status rather than 404.
    answer_epoch: u64,
    /// The status of the last fault set.
    last_answer: u16,
}

impl Faults {
    fn set_answer(&mut self, status: Option<u16>) {
        self.answer = status;
        if let Some(status) = status {
            self.answer_epoch += 1;
            self.last_answer = status;
        }
    }
}

type Reply = hyper::Response<Full<Bytes>>;

impl State {
    fn new(bootstrap: &str) -> State {
        State {
            bootstrap: bootstrap.to_string(),
            client: tokio::sync::Mutex::new(None),
            partitions: Mutex::new(HashMap::new()),
            round_robin: AtomicU32::new(0),
            faults: Mutex::new(Faults::default()),
            counters: Mutex::new(Counters::default()),
        }
    }

    async fn handle(&self, request: hyper::Request<Incoming>) -> Reply {
        let (head, body) = request.into_parts();
        let path = head.uri.path().to_string();
        let content_type = head
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return reply(&rest::error(413, 413, &format!("HTTP 413: {e}"))),
        };
        if let Some(control) = path.strip_prefix("/_front/") {
            return self.control(head.method.as_str(), control, &body);
        }
        let Some(topic) = rest::topic_of(&path) else {
            return reply(&rest::error(404, 404, "HTTP 404 Not Found"));
        };
        if head.method != hyper::Method::POST {
            return reply(&rest::error(405, 405, "HTTP 405 Method Not Allowed"));
        }
        reply(&self.produce_request(topic, content_type.as_deref(), &body).await)
    }

    fn control(&self, method: &str, what: &str, body: &[u8]) -> Reply {
        let done = rest::Answer {
            status: 204,
            body: Value::Null,
        };
        match (method, what) {
            ("GET", "counters") => reply(&rest::Answer {
                status: 200,
                body: json!(*lock(&self.counters)),
            }),
            ("PUT", "refuse") => match serde_json::from_slice::<Option<Refusal>>(body) {
                Ok(refusal) => {
                    let mut faults = lock(&self.faults);
                    faults.refusal = refusal;
                    faults.seen.clear();
                    reply(&done)
                }
                Err(e) => reply(&rest::error(400, 400, &e.to_string())),
            },
            ("PUT", "answer") => {
                let status = serde_json::from_slice::<Value>(body).ok().map(|v| {
                    v.get("status")
                        .and_then(Value::as_u64)
                        .and_then(|s| u16::try_from(s).ok())
                });
                match status {
                    Some(status) => {
                        lock(&self.faults).set_answer(status);
                        reply(&done)
                    }
                    None => reply(&rest::error(400, 400, "expected {\"status\": n|null}")),
                }
            }
            _ => reply(&rest::error(404, 404, "HTTP 404 Not Found")),
        }
    }

    async fn produce_request(&self, topic: &str, content_type: Option<&str>, body: &[u8]) -> Answer {
        lock(&self.counters).requests += 1;
        if !rest::content_type_ok(content_type) {
            return rest::unsupported_media_type();
        }
        let epoch = {
            let faults = lock(&self.faults);
            if let Some(status) = faults.answer {
                return fault_answer(status);
            }
            faults.answer_epoch
        };
        let request = match rest::parse(body) {
            Ok(request) => request,
            Err(answer) => return answer,
        };
        let count = match self.partition_count(topic).await {
            Ok(Some(count)) => count,
            Ok(None) => return self.topic_not_found(epoch),
            Err(e) => return rest::kafka_error(e.retriable(), &e.to_string()),
        };
        let mut next = || self.round_robin.fetch_add(1, Ordering::Relaxed);
        let partitions = match rest::partitions(&request.records, count, &mut next) {
            Ok(partitions) => partitions,
            Err(answer) => return answer,
        };
        rest::offsets(&self.produce(topic, &request.records, &partitions).await)
    }

    /// 404 40401, unless a fault answer was set while the request was in
    /// flight: a broker started again with memory storage lacks its topics
    /// until the test creates them, which a real Kafka's restart never does.
    fn topic_not_found(&self, epoch: u64) -> Answer {
        let faults = lock(&self.faults);
        if faults.answer_epoch != epoch {
            return fault_answer(faults.answer.unwrap_or(faults.last_answer));
        }
        rest::topic_not_found()
    }

    /// The topic's partition count from fresh metadata (`None`: no such
    /// topic), as the proxy checks the topic before producing.
    async fn partition_count(&self, topic: &str) -> Result<Option<i32>, Failure> {
        let client = self.client().await?;
        match bounded(client.list_topics()).await {
            Ok(topics) => Ok(topics
                .into_iter()
                .find(|t| t.name == topic)
                .and_then(|t| i32::try_from(t.partitions.len()).ok())),
            Err(e) => {
                self.forget().await;
                Err(e)
            }
        }
    }

    /// Produces the records not refused, one batch per partition, and
    /// returns each record's outcome in record order.
    async fn produce(&self, topic: &str, records: &[rest::InRecord], partitions: &[i32]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = records.iter().map(|r| self.refused(&r.value)).collect();
        let mut batches: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, partition) in partitions.iter().enumerate() {
            if outcomes.get(i).is_some_and(Option::is_none) {
                batches.entry(*partition).or_default().push(i);
            }
        }
        let now = now();
        for (partition, indices) in batches {
            let batch = indices
                .iter()
                .filter_map(|i| records.get(*i))
                .map(|r| rskafka::record::Record {
                    key: rest::json_bytes(&r.key),
                    value: rest::json_bytes(&r.value),
                    headers: BTreeMap::new(),
                    timestamp: now,
                })
                .collect();
            let results: Vec<Outcome> = match self.produce_batch(topic, partition, batch).await {
                Ok(offsets) => {
                    self.count(topic, offsets.len(), 0);
                    offsets
                        .into_iter()
                        .map(|offset| Outcome::Stored { partition, offset })
                        .collect()
                }
                Err(e) => {
                    self.count(topic, 0, indices.len());
                    indices.iter().map(|_| failed(&e)).collect()
                }
            };
            for (i, outcome) in indices.into_iter().zip(results) {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = Some(outcome);
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::Failed {
                    code: rest::RETRIABLE,
                    error: "not produced".into(),
                })
            })
            .collect()
    }

    async fn produce_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Vec<rskafka::record::Record>,
    ) -> Result<Vec<i64>, Failure> {
        let writer = self.partition_client(topic, partition).await?;
        match bounded(writer.produce(batch, Compression::NoCompression)).await {
            Ok(offsets) => Ok(offsets),
            Err(e) => {
                self.forget().await;
                Err(e)
            }
        }
    }

    /// The refusal's outcome for a record with this value, if it is refused.
    fn refused(&self, value: &Value) -> Option<Outcome> {
        let mut faults = lock(&self.faults);
        let refusal = faults.refusal.clone()?;
        let text = value.to_string();
        if !text.contains(&refusal.marker) {
            return None;
        }
        let seen = faults.seen.entry(text.clone()).or_insert(0);
        if *seen >= refusal.times {
            return None;
        }
        *seen += 1;
        drop(faults);
        let mut counters = lock(&self.counters);
        counters.refused += 1;
        counters.refused_values.push(text);
        Some(Outcome::Failed {
            code: refusal.error_code,
            error: format!("Refused by the test's fault (marker {:?})", refusal.marker),
        })
    }

    /// Counts what the broker stored and what it failed to store.
    fn count(&self, topic: &str, stored: usize, failed: usize) {
        let mut counters = lock(&self.counters);
        *counters.produced.entry(topic.to_string()).or_default() += stored as u64;
        counters.failed += failed as u64;
    }

    async fn client(&self) -> Result<Arc<Client>, Failure> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(kafka::connect(&self.bootstrap).await.map_err(Failure::Unreachable)?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    async fn partition_client(&self, topic: &str, partition: i32) -> Result<Arc<PartitionClient>, Failure> {
        let key = (topic.to_string(), partition);
        if let Some(writer) = lock(&self.partitions).get(&key) {
            return Ok(Arc::clone(writer));
        }
        let client = self.client().await?;
        let writer = match bounded(client.partition_client(topic, partition, UnknownTopicHandling::Error)).await {
            Ok(writer) => Arc::new(writer),
            Err(e) => {
                self.forget().await;
                return Err(e);
            }
        };
        lock(&self.partitions).insert(key, Arc::clone(&writer));
        Ok(writer)
    }

    /// After a failure: the next request connects again (a broker that
    /// restarted, possibly with new topics, is found again).
    async fn forget(&self) {
        *self.client.lock().await = None;
        lock(&self.partitions).clear();
    }
}

/// The record timestamp (CreateTime), from the system clock.
fn now() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    rskafka::chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

fn failed(e: &Failure) -> Outcome {
    Outcome::Failed {
        code: if e.retriable() {
            rest::RETRIABLE
        } else {
            rest::NON_RETRIABLE
        },
        error: e.to_string(),
    }
}

fn fault_answer(status: u16) -> Answer {
    rest::error(
        status,
        u32::from(status),
        &format!("answered {status} by the test's fault"),
    )
}

fn reply(answer: &Answer) -> Reply {
    let body = if answer.body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(answer.body.to_string())
    };
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() =
        hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if !answer.body.is_null() {
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(rest::CONTENT_TYPE),
        );
    }
    response
}

/// A poisoned lock still holds usable counters (a panicking handler is a
/// bug the test shows anyway).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_answer(state: &State, status: Option<u16>) {
        lock(&state.faults).set_answer(status);
    }

    #[test]
    fn a_missing_topic_is_404_unless_a_fault_began_while_the_request_was_in_flight() {
        let state = State::new("127.0.0.1:1");
        let epoch = lock(&state.faults).answer_epoch;
        assert_eq!(state.topic_not_found(epoch).status, 404);
        set_answer(&state, Some(503));
        assert_eq!(state.topic_not_found(epoch).status, 503);
        set_answer(&state, None);
        assert_eq!(
            state.topic_not_found(epoch).status,
            503,
            "the fault ended, the request saw it"
        );
        let later = lock(&state.faults).answer_epoch;
        assert_eq!(state.topic_not_found(later).status, 404);
    }
}
