//! rskafka with every call bounded: a client that cannot reach the broker
//! fails instead of retrying for minutes (rskafka's default backoff has no
//! deadline). Refused connections (a stopped broker) fail once retries have
//! taken [`RETRY_FOR`]; a call that hangs (a paused broker) after
//! [`CALL_TIMEOUT`].

use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use std::future::Future;
use std::time::Duration;

/// The most one Kafka call (with its retries) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long failed attempts are retried: short, so that the front answers
/// 5xx for a stopped broker within the audit sink's default 1 s timeout.
pub const RETRY_FOR: Duration = Duration::from_millis(500);

fn backoff() -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(250),
        base: 2.0,
        deadline: Some(RETRY_FOR),
    }
}

/// A client of the broker at `bootstrap` (`HOST:PORT`), its metadata read.
pub async fn connect(bootstrap: &str) -> Result<Client, String> {
    let build = ClientBuilder::new(vec![bootstrap.to_string()])
        .client_id("tollgate-kafka-party")
        .backoff_config(backoff())
        .build();
    bounded(build).await.map_err(|e| format!("Kafka at {bootstrap}: {e}"))
}

/// `call`, failed with "timed out" after [`CALL_TIMEOUT`].
pub async fn bounded<T>(call: impl Future<Output = Result<T, KafkaError>>) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure::from(e)),
        Err(_) => Err(Failure::TimedOut),
    }
}

/// Why a Kafka call failed, as far as the front's answers care.
#[derive(Debug)]
pub enum Failure {
    TimedOut,
    /// The broker answered with this protocol error.
    Server(ProtocolError, String),
    /// Connection, request or retry failures: the broker is away.
    Unreachable(String),
}

impl Failure {
    /// Whether a producer would retry it (Kafka's `RetriableException`).
    pub fn retriable(&self) -> bool {
        match self {
            Failure::TimedOut | Failure::Unreachable(_) => true,
            Failure::Server(code, _) => matches!(
                code,
                ProtocolError::CorruptMessage
                    | ProtocolError::UnknownTopicOrPartition
                    | ProtocolError::LeaderNotAvailable
                    | ProtocolError::NotLeaderOrFollower
                    | ProtocolError::RequestTimedOut
                    | ProtocolError::NetworkException
                    | ProtocolError::NotEnoughReplicas
                    | ProtocolError::NotEnoughReplicasAfterAppend
                    | ProtocolError::KafkaStorageError
            ),
        }
    }
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Failure {
        let text = e.to_string();
        match e {
            KafkaError::ServerError { protocol_error, .. } => Failure::Server(protocol_error, text),
            _ => Failure::Unreachable(text),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::TimedOut => write!(f, "timed out after {CALL_TIMEOUT:?}"),
            Failure::Server(_, text) | Failure::Unreachable(text) => f.write_str(text),
        }
    }
}
