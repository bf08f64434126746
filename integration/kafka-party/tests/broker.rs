//! Tansu natively: ready with the audit topics, records read back by
//! partition, stopped and started again on its port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use std::collections::BTreeMap;
use tollgate_kafka_party::{AUDIT_TOPICS, PARTITIONS};

/// Produces `(partition, key, value)` records with an independent client.
fn produce(bootstrap: &str, topic: &str, records: &[(i32, &str, &str)]) -> Vec<i64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = ClientBuilder::new(vec![bootstrap.to_string()]).build().await.unwrap();
        let mut offsets = Vec::new();
        for (partition, key, value) in records {
            let writer = client
                .partition_client(topic, *partition, UnknownTopicHandling::Error)
                .await
                .unwrap();
            let record = rskafka::record::Record {
                key: Some(key.as_bytes().to_vec()),
                value: Some(value.as_bytes().to_vec()),
                headers: BTreeMap::new(),
                timestamp: rskafka::chrono::DateTime::from_timestamp_millis(0).unwrap(),
            };
            offsets.extend(writer.produce(vec![record], Compression::NoCompression).await.unwrap());
        }
        offsets
    })
}

#[test]
fn the_broker_starts_with_the_audit_topics_and_gives_back_what_was_produced() {
    let Some(broker) = common::broker() else { return };
    for topic in AUDIT_TOPICS {
        assert_eq!(broker.records(topic).unwrap(), vec![], "{topic} starts empty");
    }
    let sent = [
        (0, "a", "{\"n\":1}"),
        (3, "b", "{\"n\":2}"),
        (3, "b", "{\"n\":3}"),
        (1, "c", "4"),
    ];
    let offsets = produce(&broker.bootstrap(), "audit-data-access", &sent);
    assert_eq!(offsets, [0, 0, 1, 0]);
    let mut read: Vec<(i32, i64, String, String)> = broker
        .records("audit-data-access")
        .unwrap()
        .into_iter()
        .map(|r| {
            let key = r.key_text().unwrap();
            let value = String::from_utf8(r.value.unwrap()).unwrap();
            (r.partition, r.offset, key, value)
        })
        .collect();
    read.sort();
    assert_eq!(
        read,
        [
            (0, 0, "a".into(), "{\"n\":1}".into()),
            (1, 0, "c".into(), "4".into()),
            (3, 0, "b".into(), "{\"n\":2}".into()),
            (3, 1, "b".into(), "{\"n\":3}".into()),
        ]
    );
    assert!(broker.records("audit-api-calls").unwrap().is_empty());
    assert!(broker.records("no-such-topic").unwrap_err().contains("no topic"));
    assert_eq!(PARTITIONS, 4);
}

#[test]
fn a_broker_started_again_answers_on_its_port_with_empty_topics() {
    let Some(mut broker) = common::broker() else { return };
    let port = broker.port();
    produce(&broker.bootstrap(), "audit-api-calls", &[(2, "k", "1")]);
    assert_eq!(broker.records("audit-api-calls").unwrap().len(), 1);
    let pid = broker.pid().unwrap();
    broker.stop().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "killed and reaped"
    );
    assert!(broker.records("audit-api-calls").is_err(), "stopped");
    broker.start_again().unwrap();
    assert_eq!(broker.port(), port);
    // Memory storage: the topics are there again, the records are not.
    assert_eq!(broker.records("audit-api-calls").unwrap(), vec![]);
    produce(&broker.bootstrap(), "audit-api-calls", &[(2, "k", "2")]);
    assert_eq!(
        broker.records("audit-api-calls").unwrap()[0].value.as_deref(),
        Some(&b"2"[..])
    );
}

#[test]
fn a_dropped_broker_is_gone() {
    let Some(broker) = common::broker() else { return };
    let pid = broker.pid().unwrap();
    let addr = broker.addr();
    drop(broker);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(std::net::TcpStream::connect(addr).is_err());
}
