//! Container mode: `tollgate/kafka-rest:dev` and `tollgate/tansu:dev`
//! sharing one network namespace on a test's network. `#[ignore]`d like
//! the suite's other container-only tests: `cargo xtask ci` runs them in
//! its container step (`-- --ignored`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::json;
use std::time::{Duration, Instant};
use tollgate_integration::docker::{self, Network, KAFKA_REST_PORT};
use tollgate_integration::http::{Request, Response};
use tollgate_kafka_party::rest::CONTENT_TYPE;
use tollgate_kafka_party::{Broker, Front, KAFKA_ALIAS};

fn post(front: &Front, n: u32) -> Response {
    let mut request = Request::get("/topics/audit-api-calls")
        .method("POST")
        .header("content-type", CONTENT_TYPE);
    request.body = json!({"records": [{"key": "acme", "value": {"event_id": format!("e{n}")}}]})
        .to_string()
        .into_bytes();
    request.send(front.addr()).unwrap()
}

#[test]
#[ignore = "containers: run by cargo xtask ci's container step"]
fn in_containers_the_front_produces_to_the_broker_and_survives_its_restart() {
    if let Err(why) = docker::engine() {
        eprintln!("skipped: no Docker engine answers ({why})");
        return;
    }
    let network = Network::create().unwrap();
    let mut broker = Broker::start_in(&network.name);
    let front = Front::start(&broker);
    assert!(!front.in_process());
    assert_eq!(front.cluster_address(), (KAFKA_ALIAS.to_string(), KAFKA_REST_PORT));
    let first = post(&front, 1);
    assert_eq!(first.status, 200, "{}\n{}", first.text(), broker.logs());
    let records = broker.records("audit-api-calls").unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key_text().as_deref(), Some("\"acme\""));
    assert_eq!(records[0].value_json(), json!({"event_id": "e1"}));

    broker.stop().unwrap();
    let down = post(&front, 2);
    assert_eq!((down.status, down.json()["error_code"].clone()), (500, json!(50003)));
    broker.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = post(&front, 3);
    while back.status != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        back = post(&front, 3);
    }
    assert_eq!(back.status, 200, "{}\n{}", back.text(), broker.logs());
    let ids: Vec<_> = broker
        .records("audit-api-calls")
        .unwrap()
        .iter()
        .map(|r| r.value_json()["event_id"].clone())
        .collect();
    assert_eq!(ids, [json!("e3")], "memory storage: only what came after the restart");
    assert_eq!(front.counters().unwrap().produced["audit-api-calls"], 2);
}
