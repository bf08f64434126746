//! The Kafka REST Proxy v2 front over a real broker: records produced
//! through it are read back from the broker; its error answers; a broker
//! outage under it; the fault facility.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tollgate_integration::http::{Request, Response};
use tollgate_kafka_party::murmur2::partition_for_key;
use tollgate_kafka_party::rest::CONTENT_TYPE;
use tollgate_kafka_party::{Broker, Front, Refusal, PARTITIONS};

fn post_as(front: &Front, path: &str, content_type: &str, body: &[u8]) -> Response {
    let mut request = Request::get(path).method("POST").header("content-type", content_type);
    request.body = body.to_vec();
    request.send(front.addr()).unwrap()
}

fn post(front: &Front, topic: &str, records: &Value) -> Response {
    let body = json!({ "records": records }).to_string();
    post_as(front, &format!("/topics/{topic}"), CONTENT_TYPE, body.as_bytes())
}

fn event(tenant: &str, n: u32) -> Value {
    json!({"key": tenant, "value": {"event_id": format!("{tenant}-{n}"), "tenant": tenant}})
}

fn start() -> Option<(Broker, Front)> {
    let broker = common::broker()?;
    let front = Front::start(&broker);
    Some((broker, front))
}

#[test]
fn records_posted_to_the_front_are_in_the_broker_keyed_and_partitioned_by_tenant() {
    let Some((broker, front)) = start() else { return };
    let tenants = ["acme", "globex", "initech", "umbrella", "hooli"];
    let mut answered = Vec::new();
    for batch in 0..4 {
        let records: Vec<Value> = tenants.iter().map(|t| event(t, batch)).collect();
        let response = post(&front, "audit-api-calls", &json!(records));
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("content-type"), Some(CONTENT_TYPE));
        let body = response.json();
        assert_eq!(
            (&body["key_schema_id"], &body["value_schema_id"]),
            (&Value::Null, &Value::Null)
        );
        let offsets = body["offsets"].as_array().unwrap().clone();
        assert_eq!(offsets.len(), tenants.len());
        for (tenant, offset) in tenants.iter().zip(offsets) {
            assert_eq!((&offset["error_code"], &offset["error"]), (&Value::Null, &Value::Null));
            let partition = offset["partition"].as_i64().unwrap();
            answered.push((tenant.to_string(), batch, partition, offset["offset"].as_i64().unwrap()));
        }
    }
    let records = broker.records("audit-api-calls").unwrap();
    let held: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    let told: Vec<(i64, i64)> = answered.iter().map(|a| (a.2, a.3)).collect();
    assert_eq!(records.len(), answered.len(), "held {held:?}\nanswered {told:?}");
    for (tenant, batch, partition, offset) in answered {
        // Kafka's default partitioner over the key's JSON text, quotes included.
        let key = format!("\"{tenant}\"");
        assert_eq!(i64::from(partition_for_key(key.as_bytes(), PARTITIONS)), partition);
        let held = records
            .iter()
            .find(|r| i64::from(r.partition) == partition && r.offset == offset)
            .unwrap_or_else(|| panic!("{tenant} {batch}: no record at {partition}/{offset}"));
        assert_eq!(held.key_text().as_deref(), Some(key.as_str()));
        assert_eq!(held.value_json(), event(&tenant, batch)["value"]);
    }
    let used: std::collections::BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(used.len() > 1, "five tenants on one partition of four: {used:?}");
    let counters = front.counters().unwrap();
    assert_eq!((counters.requests, counters.produced["audit-api-calls"]), (4, 20));
    assert_eq!((counters.refused, counters.failed), (0, 0));
}

#[test]
fn a_base_path_an_explicit_partition_and_null_keys_are_served() {
    let Some((broker, front)) = start() else { return };
    let body = json!({"records": [{"value": {"n": 1}, "partition": 3}, {"value": {"n": 2}}, {"value": {"n": 3}}]});
    let response = post_as(
        &front,
        "/kafka/topics/audit-user-actions",
        CONTENT_TYPE,
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let offsets = response.json()["offsets"].clone();
    assert_eq!(offsets[0]["partition"], 3);
    // Null keys go round robin: two records, two partitions.
    assert_ne!(offsets[1]["partition"], offsets[2]["partition"]);
    let records = broker.records("audit-user-actions").unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.key.is_none()));
    let out_of_range = post(
        &front,
        "audit-user-actions",
        &json!([{"value": 1, "partition": PARTITIONS}]),
    );
    assert_eq!(out_of_range.status, 404);
    assert_eq!(out_of_range.json()["error_code"], 40402);
}

#[test]
fn unknown_topics_bad_bodies_and_other_media_types_are_refused_as_the_proxy_does() {
    let Some((broker, front)) = start() else { return };
    let unknown = post(&front, "audit-nothing", &json!([event("acme", 1)]));
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json(),
        json!({"error_code": 40401, "message": "Topic not found."})
    );
    for body in [
        "{\"records\": [",
        "{\"records\": []}",
        "{\"records\": [{\"value\": 1, \"value_schema\": \"x\"}]}",
    ] {
        let bad = post_as(&front, "/topics/audit-api-calls", CONTENT_TYPE, body.as_bytes());
        assert_eq!(bad.status, 422, "{body}");
        assert_eq!(bad.json()["error_code"], 422, "{body}");
    }
    let body = json!({"records": [event("acme", 1)]}).to_string();
    for media in ["application/json", "application/vnd.kafka.binary.v2+json"] {
        let wrong = post_as(&front, "/topics/audit-api-calls", media, body.as_bytes());
        assert_eq!(wrong.status, 415, "{media}");
        assert_eq!(wrong.json()["error_code"], 415);
    }
    let get = Request::get("/topics/audit-api-calls").send(front.addr()).unwrap();
    assert_eq!(get.status, 405);
    assert!(broker.audit_records().unwrap().is_empty(), "nothing was produced");
    assert_eq!(
        front.counters().unwrap().requests,
        6,
        "produce requests (the GET is not one)"
    );
}

/// Posts until the answer has `status` (bounded), returning the last answer.
fn until_status(front: &Front, status: u16, within: Duration) -> Response {
    let deadline = Instant::now() + within;
    loop {
        let response = post(front, "audit-admin-operations", &json!([event("acme", 9)]));
        if response.status == status || Instant::now() >= deadline {
            return response;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn while_the_broker_is_down_the_front_answers_5xx_and_after_a_restart_200_again() {
    let Some((mut broker, front)) = start() else { return };
    assert_eq!(
        post(&front, "audit-admin-operations", &json!([event("acme", 1)])).status,
        200
    );
    broker.stop().unwrap();
    let started = Instant::now();
    let down = post(&front, "audit-admin-operations", &json!([event("acme", 2)]));
    let took = started.elapsed();
    assert_eq!(down.status, 500, "{}", down.text());
    assert_eq!(down.json()["error_code"], 50003, "{}", down.text());
    // Refused connections are retried for half a second (RETRY_FOR), within
    // the audit sink's default 1 s timeout; 3 s leaves room for a loaded machine.
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    eprintln!("broker stopped: 500 in {took:?}");
    broker.start_again().unwrap();
    let back = until_status(&front, 200, Duration::from_secs(10));
    assert_eq!(back.status, 200, "{}", back.text());
    // Memory storage: only what was produced after the restart.
    let records = broker.records("audit-admin-operations").unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value_json()["event_id"], "acme-9");
}

#[test]
fn while_the_broker_is_paused_the_front_answers_5xx_within_its_bound() {
    let Some((broker, front)) = start() else { return };
    assert_eq!(
        post(&front, "audit-data-access", &json!([event("acme", 1)])).status,
        200
    );
    broker.pause().unwrap();
    let started = Instant::now();
    let paused = post(&front, "audit-data-access", &json!([event("acme", 2)]));
    let took = started.elapsed();
    broker.resume().unwrap();
    eprintln!("broker paused: 500 in {took:?}");
    assert_eq!(paused.status, 500, "{}", paused.text());
    assert_eq!(paused.json()["error_code"], 50003);
    assert!(took < Duration::from_secs(5), "answered in {took:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = post(&front, "audit-data-access", &json!([event("acme", 3)]));
    while back.status != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        back = post(&front, "audit-data-access", &json!([event("acme", 3)]));
    }
    assert_eq!(back.status, 200, "{}", back.text());
    let ids: Vec<Value> = broker
        .records("audit-data-access")
        .unwrap()
        .iter()
        .map(|r| r.value_json()["event_id"].clone())
        .collect();
    assert!(
        ids.contains(&json!("acme-1")) && ids.contains(&json!("acme-3")),
        "{ids:?}"
    );
}

#[test]
fn refused_records_get_their_error_code_are_not_produced_and_are_named() {
    let Some((broker, front)) = start() else { return };
    front
        .refuse_records(&Refusal {
            marker: "\"refuse-me\"".into(),
            error_code: 2,
            times: 1,
        })
        .unwrap();
    let records = json!([
        {"key": "acme", "value": {"event_id": "a1"}},
        {"key": "acme", "value": {"event_id": "a2", "note": "refuse-me"}},
        {"key": "globex", "value": {"event_id": "g1"}},
        {"key": "globex", "value": {"event_id": "g2", "note": "refuse-me"}},
    ]);
    let response = post(&front, "audit-api-calls", &records);
    assert_eq!(response.status, 200);
    let codes: Vec<Value> = response.json()["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["error_code"].clone())
        .collect();
    assert_eq!(codes, [Value::Null, json!(2), Value::Null, json!(2)]);
    let refused = &response.json()["offsets"][1];
    assert_eq!(
        (&refused["partition"], &refused["offset"]),
        (&Value::Null, &Value::Null)
    );
    assert!(refused["error"].as_str().unwrap().contains("refuse-me"));
    let counters = front.counters().unwrap();
    assert_eq!(counters.refused, 2);
    assert_eq!(
        counters.refused_values,
        [
            json!({"event_id": "a2", "note": "refuse-me"}).to_string(),
            json!({"event_id": "g2", "note": "refuse-me"}).to_string()
        ]
    );
    // Refused once each (`times: 1`): sent again, they are produced.
    let again = post(&front, "audit-api-calls", &json!([records[1], records[3]]));
    assert!(again.json()["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["error_code"].is_null()));
    let mut ids: Vec<String> = broker
        .records("audit-api-calls")
        .unwrap()
        .iter()
        .map(|r| r.value_json()["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a1", "a2", "g1", "g2"], "each exactly once");
    let counters = front.counters().unwrap();
    assert_eq!((counters.refused, counters.produced["audit-api-calls"]), (2, 4));
    // Non-retriable refusals, then none.
    front
        .refuse_records(&Refusal {
            marker: "a3".into(),
            error_code: 1,
            times: 5,
        })
        .unwrap();
    let one = post(
        &front,
        "audit-api-calls",
        &json!([{"key": "acme", "value": {"event_id": "a3"}}]),
    );
    assert_eq!(one.json()["offsets"][0]["error_code"], 1);
    front.stop_refusing().unwrap();
    let two = post(
        &front,
        "audit-api-calls",
        &json!([{"key": "acme", "value": {"event_id": "a3"}}]),
    );
    assert!(two.json()["offsets"][0]["error_code"].is_null());
}

#[test]
fn a_whole_batch_fault_answers_the_status_until_cleared() {
    let Some((broker, front)) = start() else { return };
    front.answer(Some(503)).unwrap();
    let faulted = post(&front, "audit-api-calls", &json!([event("acme", 1)]));
    assert_eq!(faulted.status, 503);
    assert_eq!(faulted.json()["error_code"], 503);
    front.answer(None).unwrap();
    assert_eq!(post(&front, "audit-api-calls", &json!([event("acme", 2)])).status, 200);
    let records = broker.records("audit-api-calls").unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value_json()["event_id"], "acme-2");
}

#[test]
fn a_broker_restarted_between_two_requests_is_found_again() {
    let Some((mut broker, front)) = start() else { return };
    assert_eq!(post(&front, "audit-api-calls", &json!([event("acme", 1)])).status, 200);
    broker.start_again().unwrap();
    // The front's connection broke with no request in flight: the next
    // request is answered, stored or failed per record, never lost.
    let started = Instant::now();
    let next = post(&front, "audit-api-calls", &json!([event("acme", 2)]));
    eprintln!(
        "after a restart: {} in {:?}: {}",
        next.status,
        started.elapsed(),
        next.text()
    );
    let back = until_status(&front, 200, Duration::from_secs(10));
    assert_eq!(back.status, 200, "{}", back.text());
    assert!(back.json()["offsets"][0]["error_code"].is_null(), "{}", back.text());
}

/// A timing, not a judgement: a shared machine is too noisy to fail on.
#[test]
fn batches_of_fifty_are_stored_in_order_and_timed() {
    let Some((broker, front)) = start() else { return };
    let tenants = ["acme", "globex", "initech"];
    let started = Instant::now();
    let batches = 40;
    for b in 0..batches {
        let records: Vec<Value> = (0..50).map(|i| event(tenants[i % 3], b * 50 + i as u32)).collect();
        let response = post(&front, "audit-api-calls", &json!(records));
        assert_eq!(response.status, 200);
    }
    let took = started.elapsed();
    eprintln!(
        "{batches} batches of 50 records: {took:?}, {:?} per batch",
        took / batches
    );
    let records = broker.records("audit-api-calls").unwrap();
    assert_eq!(records.len(), 2_000);
    // Each tenant's records on one partition, in the order they were sent.
    for tenant in tenants {
        let key = format!("\"{tenant}\"");
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.key_text().as_deref() == Some(key.as_str()))
            .collect();
        let partitions: std::collections::BTreeSet<i32> = mine.iter().map(|r| r.partition).collect();
        assert_eq!(partitions.len(), 1, "{tenant}");
        let ids: Vec<u64> = mine
            .iter()
            .map(|r| {
                r.value_json()["event_id"]
                    .as_str()
                    .unwrap()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{tenant}: {ids:?}");
    }
}
