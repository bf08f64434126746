//! The audit-to-Kafka row's parties: Tansu (memory storage, the four audit
//! topics) and the Kafka REST v2 front of the integration tests, both on
//! wrk's CPU so that Envoy's CPU stays Envoy's. The front's counters say
//! how many records the broker took, for the delivery check.

use super::sink::{pin_this_thread, taskset};
use std::net::{Ipv4Addr, SocketAddr};
use tollgate_kafka_party::{Broker, Front};

/// The broker and its front; the front stops first.
pub struct Kafka {
    front: Front,
    _broker: Broker,
}

impl Kafka {
    pub fn start(cpus: &str) -> Result<Kafka, String> {
        let broker = Broker::try_start()?;
        if let Some(pid) = broker.pid() {
            pin_process(pid, cpus)?;
        }
        let bootstrap = broker.bootstrap();
        let cpus = cpus.to_string();
        // The front's runtime threads inherit this pinned thread's CPUs.
        let starter = std::thread::spawn(move || -> Result<Front, String> {
            pin_this_thread(&cpus)?;
            Front::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &bootstrap)
        });
        let front = starter
            .join()
            .map_err(|_| "kafka front: its starter panicked".to_string())??;
        println!(
            "Kafka REST front on port {}, Tansu on {}",
            front.addr().port(),
            broker.bootstrap()
        );
        Ok(Kafka { front, _broker: broker })
    }

    pub fn port(&self) -> u16 {
        self.front.addr().port()
    }

    /// Records the broker took, and produce requests the front answered;
    /// an error if it refused or failed any record.
    pub fn received(&self) -> Result<(u64, u64), String> {
        let counters = self.front.counters()?;
        if counters.refused + counters.failed > 0 {
            return Err(format!("kafka front: records refused or failed: {counters:?}"));
        }
        Ok((counters.produced.values().sum(), counters.requests))
    }
}

/// Every thread of `pid` on `cpus`.
fn pin_process(pid: u32, cpus: &str) -> Result<(), String> {
    taskset(&["-a", "-p", "-c", cpus, &pid.to_string()])
}
