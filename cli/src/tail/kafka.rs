//! The Kafka reads of `audit tail`: every partition of the topics, by
//! assignment (no consumer group: Tansu's do not work, and a tail commits
//! nothing), each fetched from its own offset with bounded waits.

use super::Fetched;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use std::sync::Arc;
use std::time::Duration;

/// rskafka retries a failing call until this deadline (none by default).
const RETRY_DEADLINE: Duration = Duration::from_secs(5);
/// Bytes one fetch of one partition asks for at most.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;

struct Partition {
    client: Arc<PartitionClient>,
    offset: i64,
    /// The last error reported, so a failing partition warns once per error.
    error: Option<String>,
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
    /// Where partitions found at start begin; those found later begin at 0.
    from_beginning: bool,
    missing: Vec<String>,
}

impl Reader {
    /// Connects and finds the topics' partitions.
    pub async fn connect(brokers: &[String], topics: &[String], from_beginning: bool) -> Result<Reader, String> {
        let backoff = BackoffConfig {
            deadline: Some(RETRY_DEADLINE),
            ..BackoffConfig::default()
        };
        let client = ClientBuilder::new(brokers.to_vec())
            .client_id("tollgate-audit-tail")
            .backoff_config(backoff)
            .build()
            .await
            .map_err(|e| format!("Kafka at {}: {e}", brokers.join(",")))?;
        let mut reader = Reader {
            client,
            topics: topics.to_vec(),
            partitions: Vec::new(),
            from_beginning,
            missing: Vec::new(),
        };
        reader.add_partitions(true).await?;
        Ok(reader)
    }

    /// Picks up topics and partitions created since (errors are warned).
    pub async fn refresh(&mut self) {
        if let Err(e) = self.add_partitions(false).await {
            eprintln!("tollgate: warning: {e}");
        }
    }

    async fn add_partitions(&mut self, at_start: bool) -> Result<(), String> {
        let listed = self
            .client
            .list_topics()
            .await
            .map_err(|e| format!("listing topics: {e}"))?;
        let mut missing = Vec::new();
        for topic in &self.topics {
            let Some(found) = listed.iter().find(|t| &t.name == topic) else {
                missing.push(topic.clone());
                continue;
            };
            for &index in &found.partitions {
                let known = self
                    .partitions
                    .iter()
                    .any(|p| p.client.topic() == topic && p.client.partition() == index);
                if !known {
                    let start = match at_start && !self.from_beginning {
                        true => OffsetAt::Latest,
                        false => OffsetAt::Earliest,
                    };
                    self.partitions.push(self.open(topic, index, start).await?);
                }
            }
        }
        for topic in missing.iter().filter(|t| !self.missing.contains(t)) {
            eprintln!("tollgate: warning: no topic {topic} yet; reading it once it exists");
        }
        self.missing = missing;
        Ok(())
    }

    async fn open(&self, topic: &str, index: i32, start: OffsetAt) -> Result<Partition, String> {
        let at = |e: rskafka::client::error::Error| format!("{topic}/{index}: {e}");
        let client = self
            .client
            .partition_client(topic, index, UnknownTopicHandling::Retry)
            .await
            .map_err(at)?;
        let offset = client.get_offset(start).await.map_err(at)?;
        Ok(Partition {
            client: Arc::new(client),
            offset,
            error: None,
        })
    }

    /// Fetches every partition at once, each waiting at most `max_wait_ms`.
    pub async fn poll(&mut self, max_wait_ms: i32) -> Poll {
        let mut set = tokio::task::JoinSet::new();
        for (i, p) in self.partitions.iter().enumerate() {
            let (client, offset) = (Arc::clone(&p.client), p.offset);
            set.spawn(async move { (i, client.fetch_records(offset, 1..FETCH_BYTES, max_wait_ms).await) });
        }
        let mut poll = Poll {
            records: Vec::new(),
            caught_up: true,
        };
        while let Some(joined) = set.join_next().await {
            let Ok((i, fetched)) = joined else { continue };
            let Some(p) = self.partitions.get_mut(i) else { continue };
            match fetched {
                Ok((records, high_watermark)) => {
                    p.error = None;
                    for r in records {
                        p.offset = p.offset.max(r.offset + 1);
                        poll.records.push(Fetched {
                            topic: p.client.topic().to_string(),
                            partition: p.client.partition(),
                            offset: r.offset,
                            timestamp_ms: r.record.timestamp.timestamp_millis(),
                            value: r.record.value,
                        });
                    }
                    poll.caught_up &= p.offset >= high_watermark;
                }
                Err(e) => {
                    let e = e.to_string();
                    if p.error.as_ref() != Some(&e) {
                        eprintln!("tollgate: warning: {}/{}: {e}", p.client.topic(), p.client.partition());
                    }
                    p.error = Some(e);
                    poll.caught_up = false;
                }
            }
        }
        poll
    }
}
