//! Tansu, a Kafka-compatible broker, with memory storage: natively a child
//! process on a free 127.0.0.1 port, killed by PID; in container mode the
//! `tollgate/tansu:dev` image (see [`crate::containers`]). Ready when a
//! Kafka client has read its metadata; the four audit topics are created
//! with [`PARTITIONS`] partitions each.

use crate::kafka::{self, bounded};
use rskafka::client::error::ProtocolError;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::Client;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The audit stage's topics, one per event type (core's `EventType::topic`;
/// a test checks they match).
pub const AUDIT_TOPICS: [&str; 4] = [
    "audit-api-calls",
    "audit-data-access",
    "audit-admin-operations",
    "audit-user-actions",
];

/// Partitions of each audit topic: several, so keying by tenant matters.
pub const PARTITIONS: i32 = 4;

/// How long a starting broker may take to answer a Kafka client.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// How long a fetch may wait for data: Tansu 0.6 answers a fetch with a
/// wait of 0 with no topic at all, even where records are.
const FETCH_WAIT_MS: i32 = 100;

/// The most fetches [`Broker::records`] makes per partition.
const MAX_FETCHES: usize = 10_000;

/// One record as the broker holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl Record {
    /// The key as text (lossy; `None` for a null key).
    pub fn key_text(&self) -> Option<String> {
        self.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The value parsed as JSON (`Null` for a null or unparsable value).
    pub fn value_json(&self) -> serde_json::Value {
        self.value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or_default()
    }
}

/// Where the broker runs.
enum Process {
    Native(Option<Child>),
    Containers(crate::containers::Pair),
}

/// A running Tansu with the audit topics; stopped (and its containers
/// removed) when dropped.
pub struct Broker {
    port: u16,
    process: Process,
    runtime: tokio::runtime::Runtime,
}

impl Broker {
    /// Natively, on a free 127.0.0.1 port; panics if it cannot start.
    pub fn start() -> Broker {
        Broker::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// In containers on the Docker network `network` (see
    /// [`crate::containers`]); panics if it cannot start.
    pub fn start_in(network: &str) -> Broker {
        Broker::try_start_in(network).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Natively: a port is picked by binding port 0 and closing it; should
    /// another process take it in between, another is tried (three times).
    pub fn try_start() -> Result<Broker, String> {
        let binary = tollgate_integration::paths::tansu_binary();
        tollgate_integration::paths::require(&binary, "cargo xtask setup")?;
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let mut broker = Broker {
                port,
                process: Process::Native(None),
                runtime: runtime()?,
            };
            match broker.spawn().and_then(|()| broker.ready()) {
                Ok(()) => return Ok(broker),
                Err(e) => last = e,
            }
        }
        Err(format!("tansu did not start: {last}"))
    }

    /// In containers: the broker's port P is picked free on the host, as
    /// natively, and published at the same number (three tries).
    pub fn try_start_in(network: &str) -> Result<Broker, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            // The port may have been taken since it was free: another one.
            let pair = match crate::containers::Pair::run(network, port) {
                Ok(pair) => pair,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut broker = Broker {
                port,
                process: Process::Containers(pair),
                runtime: runtime()?,
            };
            match broker.ready() {
                Ok(()) => return Ok(broker),
                Err(e) => last = format!("{e}\n{}", broker.logs()),
            }
        }
        Err(format!("tansu did not start in a container: {last}"))
    }

    /// Starts the child natively (its output discarded: Tansu logs every
    /// request).
    fn spawn(&mut self) -> Result<(), String> {
        let binary = tollgate_integration::paths::tansu_binary();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{} (cargo xtask setup): {e}", binary.display()))?;
        self.process = Process::Native(Some(child));
        Ok(())
    }

    /// Polls until a Kafka client reads the metadata, then creates the
    /// audit topics.
    fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut last = String::from("not asked yet");
        while Instant::now() < deadline {
            if let Some(exited) = self.exited() {
                return Err(format!("tansu on port {} exited: {exited}", self.port));
            }
            match self.runtime.block_on(self.answering()) {
                Ok(()) => return self.create_topics(),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "tansu on port {} did not answer a Kafka client within {READY_WITHIN:?}: {last}",
            self.port
        ))
    }

    async fn answering(&self) -> Result<(), String> {
        let client = kafka::connect(&self.bootstrap()).await?;
        bounded(client.list_topics())
            .await
            .map(drop)
            .map_err(|e| format!("metadata: {e}"))
    }

    fn exited(&mut self) -> Option<String> {
        match &mut self.process {
            Process::Native(Some(child)) => child.try_wait().ok().flatten().map(|s| s.to_string()),
            Process::Native(None) => Some("not running".into()),
            Process::Containers(_) => None,
        }
    }

    /// Creates the audit topics (an existing one is left as it is). A
    /// broker started again has memory storage: nothing survives, so
    /// [`Broker::start_again`] calls this.
    pub fn create_topics(&self) -> Result<(), String> {
        self.runtime.block_on(async {
            let client = kafka::connect(&self.bootstrap()).await?;
            let controller = client.controller_client().map_err(|e| e.to_string())?;
            for topic in AUDIT_TOPICS {
                match bounded(controller.create_topic(topic, PARTITIONS, 1, 5_000)).await {
                    Ok(()) => {}
                    Err(kafka::Failure::Server(ProtocolError::TopicAlreadyExists, _)) => {}
                    Err(e) => return Err(format!("create topic {topic}: {e}")),
                }
            }
            Ok(())
        })
    }

    /// `127.0.0.1:PORT`: where a Kafka client on the host bootstraps (and,
    /// in containers, what the broker advertises).
    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's containers, if it runs in containers.
    pub fn containers(&self) -> Option<&crate::containers::Pair> {
        match &self.process {
            Process::Containers(pair) => Some(pair),
            Process::Native(_) => None,
        }
    }

    /// The native child's PID (`None` in containers or while stopped).
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Native(child) => child.as_ref().map(Child::id),
            Process::Containers(_) => None,
        }
    }

    /// The broker is gone: the process killed and reaped by PID (in
    /// containers: the broker's container killed, its front left running).
    pub fn stop(&mut self) -> Result<(), String> {
        match &mut self.process {
            Process::Native(child) => {
                if let Some(mut child) = child.take() {
                    child.kill().map_err(|e| format!("kill tansu {}: {e}", child.id()))?;
                    child.wait().map_err(|e| format!("wait tansu {}: {e}", child.id()))?;
                }
                Ok(())
            }
            Process::Containers(pair) => pair.kill_broker(),
        }
    }

    /// Starts the broker again on the same port, ready, with the audit
    /// topics created again: memory storage keeps nothing across a stop, so
    /// the records produced before it are gone too.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.stop()?;
        match &mut self.process {
            Process::Native(_) => self.spawn()?,
            Process::Containers(pair) => pair.start_broker()?,
        }
        self.ready()
    }

    /// The broker stops answering but keeps its connections and records
    /// (SIGSTOP natively, `docker pause` in containers).
    pub fn pause(&self) -> Result<(), String> {
        match &self.process {
            Process::Native(_) => self.signal("STOP"),
            Process::Containers(pair) => pair.pause_broker(),
        }
    }

    /// Resumes a paused broker.
    pub fn resume(&self) -> Result<(), String> {
        match &self.process {
            Process::Native(_) => self.signal("CONT"),
            Process::Containers(pair) => pair.unpause_broker(),
        }
    }

    fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.pid().ok_or("tansu is not running")?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .map_err(|e| format!("kill -{signal} {pid}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {pid}: {status}"))
        }
    }

    /// Every record of `topic`, partition by partition, each read from
    /// offset 0 to the high watermark it had when the read began.
    pub fn records(&self, topic: &str) -> Result<Vec<Record>, String> {
        self.runtime.block_on(async {
            let client = kafka::connect(&self.bootstrap()).await?;
            let partitions = partitions_of(&client, topic).await?;
            let mut all = Vec::new();
            for partition in partitions {
                all.extend(read_partition(&client, topic, partition).await?);
            }
            Ok(all)
        })
    }

    /// The records of every audit topic, by topic.
    pub fn audit_records(&self) -> Result<Vec<(String, Record)>, String> {
        let mut all = Vec::new();
        for topic in AUDIT_TOPICS {
            all.extend(self.records(topic)?.into_iter().map(|r| (topic.to_string(), r)));
        }
        Ok(all)
    }

    /// The containers' logs (empty natively).
    pub fn logs(&self) -> String {
        match &self.process {
            Process::Containers(pair) => pair.logs(),
            Process::Native(_) => String::new(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Process::Native(Some(child)) = &mut self.process {
            // SIGKILL ends a paused (SIGSTOPped) process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn partitions_of(client: &Client, topic: &str) -> Result<Vec<i32>, String> {
    let topics = bounded(client.list_topics())
        .await
        .map_err(|e| format!("metadata: {e}"))?;
    let mut partitions = topics
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions.into_iter().collect::<Vec<i32>>())
        .ok_or_else(|| format!("no topic {topic} on the broker"))?;
    partitions.sort_unstable();
    Ok(partitions)
}

/// Reads from offset 0 to the high watermark of the first fetch. Not to
/// ListOffsets(latest): after a batch of several records Tansu 0.6
/// answers it short of the next offset Kafka answers; it is only asked
/// whether the partition is empty (0), because Tansu answers a fetch on an
/// empty partition with no topic at all.
async fn read_partition(client: &Client, topic: &str, partition: i32) -> Result<Vec<Record>, String> {
    let at = |e: kafka::Failure| format!("{topic}/{partition}: {e}");
    let reader = bounded(client.partition_client(topic, partition, UnknownTopicHandling::Error))
        .await
        .map_err(at)?;
    if bounded(reader.get_offset(OffsetAt::Latest)).await.map_err(at)? == 0 {
        return Ok(Vec::new());
    }
    let mut records = Vec::new();
    let mut offset = 0;
    let mut end = None;
    for _ in 0..MAX_FETCHES {
        if end.is_some_and(|end| offset >= end) {
            return Ok(records);
        }
        let (batch, high_watermark) = bounded(reader.fetch_records(offset, 1..1_000_000, FETCH_WAIT_MS))
            .await
            .map_err(at)?;
        let end = *end.get_or_insert(high_watermark);
        let before = offset;
        for r in batch.into_iter().filter(|r| r.offset >= before && r.offset < end) {
            offset = offset.max(r.offset + 1);
            records.push(Record {
                partition,
                offset: r.offset,
                key: r.record.key,
                value: r.record.value,
            });
        }
        if offset == before && offset < end {
            return Err(format!(
                "{topic}/{partition}: no record at offset {offset} (high watermark {end})"
            ));
        }
    }
    Err(format!(
        "{topic}/{partition}: not read to the high watermark in {MAX_FETCHES} fetches"
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

#[cfg(test)]
mod tests {
    use tollgate_core::audit::EventType;

    #[test]
    fn the_audit_topics_are_the_ones_core_names() {
        let topic = |t: EventType| match t {
            // Exhaustive: a new event type fails to compile here.
            EventType::ApiCall | EventType::DataAccess | EventType::AdminOperation | EventType::UserAction => t.topic(),
        };
        let core = [
            EventType::ApiCall,
            EventType::DataAccess,
            EventType::AdminOperation,
            EventType::UserAction,
        ]
        .map(topic);
        assert_eq!(core, super::AUDIT_TOPICS);
    }
}
