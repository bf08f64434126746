//! Kafka for the audit tests: a real Kafka-compatible broker (Tansu 0.6,
//! memory storage) and a Kafka REST Proxy v2 front that produces to it.
//!
//! - [`Broker::start`]: Tansu natively on a free 127.0.0.1 port, ready (a
//!   Kafka client read its metadata) with the [`AUDIT_TOPICS`] created
//!   ([`PARTITIONS`] each); [`Broker::start_in`] the same in containers on a
//!   test's network ([`containers`]). [`Broker::records`] reads a topic back
//!   by partition (Tansu's consumer groups do not work; none are used).
//!   [`Broker::stop`]/[`Broker::start_again`] and [`Broker::pause`]/
//!   [`Broker::resume`] make outages.
//! - [`Front::start`]: the front of a broker; [`Front::cluster_address`]
//!   is where Envoy's sink cluster points, [`Front::refuse_records`] and
//!   [`Front::answer`] inject faults, [`Front::counters`] says what it did.
//! - The `tollgate-kafka-rest` binary runs the front in a container.
//!
//! # Where the front follows the REST Proxy v2, and where it stops
//!
//! It serves `POST /topics/{topic}` (under any base path) with
//! `Content-Type: application/vnd.kafka.json.v2+json` and a body
//! `{"records": [{"key"?, "value"?, "partition"?}]}`, and answers:
//! - 200 `{"key_schema_id": null, "value_schema_id": null, "offsets": [...]}`
//!   with one entry per record in record order: `partition` and `offset`,
//!   or `error_code` (1 non-retriable, 2 retriable) and `error`, with
//!   `partition`/`offset` null, for a record that was not stored;
//! - 404 `{"error_code": 40401, "message": "Topic not found."}` for a topic
//!   the broker does not have (checked on fresh metadata per request), and
//!   40402 for a `partition` out of range;
//! - 415 for another content type; 422 (`error_code` 422) for a body that
//!   is not such a request, has unknown fields or no records;
//! - 500 with `error_code` 50003 ("retriable Kafka error") while the
//!   broker cannot be reached: within about half a second for a stopped
//!   broker ([`RETRY_FOR`]), after 2 s for one that does not answer
//!   ([`CALL_TIMEOUT`]; the real proxy's producer would block longer);
//!   50002 for other broker errors. The next request connects again, so a
//!   broker restarted under the front is found again.
//!
//! Records are produced as the proxy's JSON serializer writes them: key and
//! value are their JSON text (a string key `"acme"` is stored as the six
//! bytes `"acme"`, quotes included, as the real proxy stores it:
//! confluentinc/kafka-rest issues 465 and 562; the Strimzi bridge does the
//! same, strimzi-kafka-bridge pull request 737), JSON null
//! is Kafka's null. A keyed record goes to Kafka's default partitioner's
//! partition (murmur2 of the key bytes, [`murmur2`]), so each tenant's
//! records sit on one partition as with the real proxy; null keys go round
//! robin; an explicit `partition` is honoured.
//!
//! It stops there: no consumer API, no topic or partition listing, no
//! `/topics/{topic}/partitions/{p}` endpoint, no binary, Avro or Protobuf
//! embedded formats and no schema registry (`key_schema`/`value_schema`
//! fields are refused), no API v3, no authentication; one broker, no
//! idempotent or transactional producer, no compression.

// A test harness: a fixture that cannot start must fail the test loudly
// (`Broker::start`/`Front::start` panic; the `try_` variants do not).
#![allow(clippy::panic)]

pub mod broker;
pub mod containers;
pub mod front;
mod kafka;
pub mod murmur2;
pub mod rest;

pub use broker::{Broker, Record, AUDIT_TOPICS, PARTITIONS};
pub use containers::KAFKA_ALIAS;
pub use front::{Counters, Front, Refusal};
pub use kafka::{CALL_TIMEOUT, RETRY_FOR};
