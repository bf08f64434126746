//! The Kafka reads of `audit tail`: every partition of the topics, by
//! assignment (no consumer group: Tansu's do not work, and a tail commits
//! nothing), each fetched from its own offset with bounded waits.
//!
//! rskafka asks for a topic's metadata with auto-creation allowed (it has
//! no switch), and a broker that auto-creates topics (Tansu does, as Kafka
//! does by default) creates a missing topic for whoever asks. A tail must
//! not create topics, so a partition is opened only once a listing of all
//! topics (which creates nothing) shows it, rskafka retries nothing, and a
//! partition that fails is closed and opened again the same way, at its
//! offset.

use super::Fetched;
use rskafka::client::error::{Error, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use std::sync::Arc;
use std::time::Duration;

/// How long a call may take beyond the broker's own wait: a broker that
/// stops answering (paused, or a black hole) must not stall the tail.
pub const CALL_BOUND: Duration = Duration::from_secs(5);
/// Bytes one fetch of one partition asks for at most.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;

struct Partition {
    client: Arc<PartitionClient>,
    offset: i64,
}

/// A partition closed after an error, to open again at its offset.
struct Lost {
    topic: String,
    index: i32,
    offset: i64,
}

/// What one poll of every partition read.
pub struct Poll {
    pub records: Vec<Fetched>,
    /// Every partition has been read up to its high watermark.
    pub caught_up: bool,
}

/// The partitions being read.
pub struct Reader {
    client: Client,
    topics: Vec<String>,
    partitions: Vec<Partition>,
    lost: Vec<Lost>,
    /// Where partitions found at start begin; those found later begin at 0.
    from_beginning: bool,
    missing: Vec<String>,
    /// The last warning, so a failure that lasts warns once.
    warned: Option<String>,
}

impl Reader {
    /// Connects and finds the topics' partitions.
    pub async fn connect(brokers: &[String], topics: &[String], from_beginning: bool) -> Result<Reader, String> {
        // One attempt per call: the tail's loop is the retry (see above).
        let once = BackoffConfig {
            deadline: Some(Duration::ZERO),
            ..BackoffConfig::default()
        };
        let client = ClientBuilder::new(brokers.to_vec())
            .client_id("tollgate-audit-tail")
            .backoff_config(once)
            .build()
            .await
            .map_err(|e| format!("Kafka at {}: {e}", brokers.join(",")))?;
        let mut reader = Reader {
            client,
            topics: topics.to_vec(),
            partitions: Vec::new(),
            lost: Vec::new(),
            from_beginning,
            missing: Vec::new(),
            warned: None,
        };
        reader.add_partitions(true).await?;
        Ok(reader)
    }

    /// Some partition failed and waits to be opened again.
    pub fn has_lost(&self) -> bool {
        !self.lost.is_empty()
    }

    /// Opens topics and partitions created since, and lost ones again.
    pub async fn refresh(&mut self) {
        let bound = 2 * CALL_BOUND;
        match tokio::time::timeout(bound, self.add_partitions(false)).await {
            Ok(Ok(())) => self.warned = None,
            Ok(Err(e)) => self.warn(e),
            Err(_) => self.warn(format!("finding partitions: no answer in {}s", bound.as_secs())),
        }
    }

    fn warn(&mut self, warning: String) {
        if self.warned.as_ref() != Some(&warning) {
            eprintln!("tollgate: warning: {warning}");
        }
        self.warned = Some(warning);
    }

    async fn add_partitions(&mut self, at_start: bool) -> Result<(), String> {
        let listed = tokio::time::timeout(CALL_BOUND, self.client.list_topics())
            .await
            .map_err(|_| format!("listing topics: no answer in {}s", CALL_BOUND.as_secs()))?
            .map_err(|e| format!("listing topics: {e}"))?;
        let mut missing = Vec::new();
        for topic in self.topics.clone() {
            let Some(found) = listed.iter().find(|t| t.name == topic) else {
                missing.push(topic);
                continue;
            };
            for &index in &found.partitions {
                self.add_partition(&topic, index, at_start).await?;
            }
        }
        for topic in missing.iter().filter(|t| !self.missing.contains(t)) {
            eprintln!("tollgate: warning: no topic {topic} yet; reading it once it exists");
        }
        self.missing = missing;
        Ok(())
    }

    /// Opens a listed partition unless it is open: a lost one at its
    /// offset, a new one where `from_beginning` says.
    async fn add_partition(&mut self, topic: &str, index: i32, at_start: bool) -> Result<(), String> {
        let open = |p: &Partition| p.client.topic() == topic && p.client.partition() == index;
        if self.partitions.iter().any(open) {
            return Ok(());
        }
        let lost = self.lost.iter().position(|l| l.topic == topic && l.index == index);
        let at = |e: Error| format!("{topic}/{index}: {e}");
        let client = self
            .client
            .partition_client(topic, index, UnknownTopicHandling::Error)
            .await
            .map_err(at)?;
        let offset = match lost.map(|i| self.lost.swap_remove(i)) {
            Some(l) => l.offset,
            None if at_start && !self.from_beginning => client.get_offset(OffsetAt::Latest).await.map_err(at)?,
            None => client.get_offset(OffsetAt::Earliest).await.map_err(at)?,
        };
        self.partitions.push(Partition {
            client: Arc::new(client),
            offset,
        });
        Ok(())
    }

    /// Fetches every partition at once, each waiting at most `max_wait_ms`.
    pub async fn poll(&mut self, max_wait_ms: i32) -> Poll {
        let mut set = tokio::task::JoinSet::new();
        for (i, p) in self.partitions.iter().enumerate() {
            let (client, offset) = (Arc::clone(&p.client), p.offset);
            let limit = CALL_BOUND + Duration::from_millis(max_wait_ms.unsigned_abs().into());
            set.spawn(async move {
                let fetch = client.fetch_records(offset, 1..FETCH_BYTES, max_wait_ms);
                (i, tokio::time::timeout(limit, fetch).await)
            });
        }
        let mut poll = Poll {
            records: Vec::new(),
            caught_up: self.lost.is_empty(),
        };
        let mut failed = Vec::new();
        while let Some(joined) = set.join_next().await {
            let Ok((i, fetched)) = joined else { continue };
            let Some(p) = self.partitions.get_mut(i) else { continue };
            match fetched {
                Err(_) => {
                    poll.caught_up = false;
                    failed.push((i, Failure::Silent));
                }
                Ok(Ok((_, high_watermark))) if high_watermark < p.offset => {
                    // Kafka answers such a fetch with OffsetOutOfRange, Tansu with nothing.
                    poll.caught_up = false;
                    failed.push((i, Failure::PastTheEnd));
                }
                Ok(Ok((records, high_watermark))) => {
                    for r in records {
                        p.offset = p.offset.max(r.offset + 1);
                        poll.records.push(Fetched {
                            topic: p.client.topic().to_string(),
                            partition: p.client.partition(),
                            offset: r.offset,
                            value: r.record.value,
                        });
                    }
                    poll.caught_up &= p.offset >= high_watermark;
                }
                Ok(Err(e)) if out_of_range(&e) => {
                    poll.caught_up = false;
                    failed.push((i, Failure::PastTheEnd));
                }
                Ok(Err(e)) => {
                    poll.caught_up = false;
                    failed.push((i, Failure::Error(e)));
                }
            }
        }
        self.close(failed).await;
        poll
    }

    /// Partitions whose fetch failed: one whose log is now shorter than
    /// its offset (a broker with memory storage started again) is read
    /// from its start; any other is closed, to open again.
    async fn close(&mut self, mut failed: Vec<(usize, Failure)>) {
        failed.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, e) in failed {
            let Some(p) = self.partitions.get_mut(i) else { continue };
            let name = format!("{}/{}", p.client.topic(), p.client.partition());
            let e = match e {
                Failure::PastTheEnd => {
                    match tokio::time::timeout(CALL_BOUND, p.client.get_offset(OffsetAt::Earliest)).await {
                        Err(_) => format!("no answer in {}s", CALL_BOUND.as_secs()),
                        Ok(Err(e)) => e.to_string(),
                        Ok(Ok(earliest)) => {
                            eprintln!(
                            "tollgate: warning: {name}: offset {} is past the partition's end; reading it from its start",
                            p.offset
                        );
                            p.offset = earliest;
                            continue;
                        }
                    }
                }
                Failure::Error(e) => e.to_string(),
                Failure::Silent => format!("no answer in {}s", CALL_BOUND.as_secs()),
            };
            let p = self.partitions.swap_remove(i);
            self.lost.push(Lost {
                topic: p.client.topic().to_string(),
                index: p.client.partition(),
                offset: p.offset,
            });
            self.warn(format!("{name}: {e}"));
        }
    }
}

/// Why a partition's fetch gave no records.
enum Failure {
    /// Its log ends before the offset.
    PastTheEnd,
    Error(Error),
    /// No answer within `CALL_BOUND` (a broker that hangs).
    Silent,
}

fn out_of_range(e: &Error) -> bool {
    matches!(
        e,
        Error::ServerError {
            protocol_error: ProtocolError::OffsetOutOfRange,
            ..
        }
    )
}
