//! The Kafka REST Proxy v2 produce API, as data: the request the front
//! accepts and the answers it gives, without I/O (unit-tested here).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The embedded format the front serves (JSON keys and values, API v2).
pub const CONTENT_TYPE: &str = "application/vnd.kafka.json.v2+json";

/// The proxy's per-record error codes: 1 non-retriable, 2 retriable.
pub const NON_RETRIABLE: u8 = 1;
pub const RETRIABLE: u8 = 2;

/// `{"records": [...]}`; unknown fields are refused (422) so that a sink
/// sending a field the proxy would read differently is caught here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    pub records: Vec<InRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InRecord {
    #[serde(default)]
    pub key: Value,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub partition: Option<i32>,
}

/// Status and JSON body of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// `{"error_code": code, "message": message}`, the proxy's error body.
pub fn error(status: u16, code: u32, message: &str) -> Answer {
    Answer {
        status,
        body: json!({"error_code": code, "message": message}),
    }
}

pub fn topic_not_found() -> Answer {
    error(404, 40401, "Topic not found.")
}

pub fn partition_not_found() -> Answer {
    error(404, 40402, "Partition not found.")
}

pub fn unsupported_media_type() -> Answer {
    error(415, 415, "HTTP 415 Unsupported Media Type")
}

/// The broker could not be asked (down, paused, timed out): 50003, the
/// proxy's "retriable Kafka error"; other broker failures are 50002.
pub fn kafka_error(retriable: bool, why: &str) -> Answer {
    if retriable {
        error(500, 50003, &format!("Retriable Kafka error: {why}"))
    } else {
        error(500, 50002, &format!("Kafka error: {why}"))
    }
}

/// The topic of `POST [base]/topics/{topic}`: the last two segments.
pub fn topic_of(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or(path);
    let (rest, topic) = path.rsplit_once('/')?;
    (rest.ends_with("/topics") || rest == "topics")
        .then_some(topic)
        .filter(|t| !t.is_empty())
}

/// Whether `Content-Type` names the JSON embedded format (parameters such
/// as `charset` ignored, case-insensitive as media types are).
pub fn content_type_ok(header: Option<&str>) -> bool {
    header
        .and_then(|h| h.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Parses a body: 422 (the REST Proxy's status for an entity it cannot
/// map, `error_code` 422) for JSON it cannot read, a body of the wrong
/// shape, or no records.
pub fn parse(body: &[u8]) -> Result<ProduceRequest, Answer> {
    let request: ProduceRequest =
        serde_json::from_slice(body).map_err(|e| error(422, 422, &format!("Unprocessable entity: {e}")))?;
    if request.records.is_empty() {
        return Err(error(422, 422, "Unprocessable entity: records is empty"));
    }
    Ok(request)
}

/// A key or value as the proxy's JSON serializer writes it: the JSON text
/// (a string key `"acme"` is the 6 bytes `"acme"`, quotes included); JSON
/// `null` (or absent) is Kafka's null.
pub fn json_bytes(value: &Value) -> Option<Vec<u8>> {
    (!value.is_null()).then(|| value.to_string().into_bytes())
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Stored { partition: i32, offset: i64 },
    Failed { code: u8, error: String },
}

/// 200 with one `offsets` entry per record, in record order.
pub fn offsets(outcomes: &[Outcome]) -> Answer {
    let entries: Vec<Value> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Stored { partition, offset } => {
                json!({"partition": partition, "offset": offset, "error_code": null, "error": null})
            }
            Outcome::Failed { code, error } => {
                json!({"partition": null, "offset": null, "error_code": code, "error": error})
            }
        })
        .collect();
    Answer {
        status: 200,
        body: json!({"key_schema_id": null, "value_schema_id": null, "offsets": entries}),
    }
}

/// The partition of each record: its own `partition` if given (404 40402
/// when out of range), else Kafka's default partitioner on the key bytes,
/// else (null key) round robin from `next`.
pub fn partitions(records: &[InRecord], count: i32, next: &mut dyn FnMut() -> u32) -> Result<Vec<i32>, Answer> {
    records
        .iter()
        .map(|r| match (r.partition, json_bytes(&r.key)) {
            (Some(p), _) if (0..count).contains(&p) => Ok(p),
            (Some(_), _) => Err(partition_not_found()),
            (None, Some(key)) => Ok(crate::murmur2::partition_for_key(&key, count)),
            (None, None) => Ok(i32::try_from(next() % count.max(1).unsigned_abs()).unwrap_or(0)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_is_the_last_segment_after_topics_under_any_base_path() {
        assert_eq!(topic_of("/topics/audit-api-calls"), Some("audit-api-calls"));
        assert_eq!(topic_of("/kafka/v2/topics/a?x=1"), Some("a"));
        assert_eq!(topic_of("/topics/"), None);
        assert_eq!(topic_of("/topic/a"), None);
        assert_eq!(topic_of("/xtopics/a"), None);
        assert_eq!(topic_of("/topics/a/partitions/1"), None);
    }

    #[test]
    fn only_the_json_v2_embedded_format_is_accepted() {
        assert!(content_type_ok(Some("application/vnd.kafka.json.v2+json")));
        assert!(content_type_ok(Some(
            "Application/VND.kafka.json.v2+json; charset=utf-8"
        )));
        assert!(!content_type_ok(Some("application/json")));
        assert!(!content_type_ok(Some("application/vnd.kafka.binary.v2+json")));
        assert!(!content_type_ok(None));
    }

    #[test]
    fn bodies_that_are_not_a_produce_request_are_422() {
        for body in [
            &b"{"[..],
            b"[]",
            b"{\"records\": []}",
            b"{\"records\": [{\"valu\": 1}]}",
            b"{}",
        ] {
            let answer = parse(body).map(drop).unwrap_err();
            assert_eq!(
                (answer.status, &answer.body["error_code"]),
                (422, &json!(422)),
                "{body:?}"
            );
        }
        let ok = parse(br#"{"records": [{"key": "acme", "value": {"a": 1}}, {"value": 2, "partition": 1}]}"#);
        assert_eq!(ok.map(|r| r.records.len()), Ok(2));
    }

    #[test]
    fn keys_and_values_are_their_json_text_and_null_is_kafkas_null() {
        assert_eq!(json_bytes(&json!("acme")), Some(b"\"acme\"".to_vec()));
        assert_eq!(json_bytes(&json!({"a": [1]})), Some(b"{\"a\":[1]}".to_vec()));
        assert_eq!(json_bytes(&Value::Null), None);
    }

    #[test]
    fn records_go_to_their_partition_their_keys_partition_or_round_robin() {
        let parsed = parse(
            br#"{"records": [{"key": "acme", "value": 1}, {"value": 2}, {"value": 3},
                {"key": "acme", "value": 4, "partition": 3}]}"#,
        )
        .map(|r| r.records)
        .unwrap_or_default();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let acme = crate::murmur2::partition_for_key(b"\"acme\"", 4);
        assert_eq!(partitions(&parsed, 4, &mut next), Ok(vec![acme, 1, 2, 3]));
        let out_of_range = parse(br#"{"records": [{"value": 1, "partition": 4}]}"#)
            .map(|r| r.records)
            .unwrap_or_default();
        assert_eq!(partitions(&out_of_range, 4, &mut || 0), Err(partition_not_found()));
    }

    #[test]
    fn the_answer_lists_an_offset_or_an_error_per_record_in_order() {
        let answer = offsets(&[
            Outcome::Stored {
                partition: 2,
                offset: 7,
            },
            Outcome::Failed {
                code: RETRIABLE,
                error: "refused".into(),
            },
        ]);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.body,
            json!({"key_schema_id": null, "value_schema_id": null, "offsets": [
                {"partition": 2, "offset": 7, "error_code": null, "error": null},
                {"partition": null, "offset": null, "error_code": 2, "error": "refused"}]})
        );
    }
}
