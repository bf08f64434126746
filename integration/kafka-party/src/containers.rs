//! Container mode: the front and the broker share one network namespace.
//!
//! Kafka clients bootstrap, then connect to the one address the broker
//! advertises, so that address must work from the host (the tests read the
//! topics) and from the front. The `tollgate/kafka-rest:dev` container
//! comes first, on the test's network as [`KAFKA_ALIAS`], publishing its
//! own port and the broker's port P at the same number (`127.0.0.1:P:P`);
//! the `tollgate/tansu:dev` container joins its namespace (`--network
//! container:<front>`), listens on `0.0.0.0:P` and advertises
//! `127.0.0.1:P`. The host reaches 127.0.0.1:P through the published port,
//! the front reaches it inside the shared namespace, and Envoy reaches the
//! front at `kafka:8082`. The front owns the namespace, so the broker's
//! container can be killed and started again (an outage) without taking
//! the front's network with it.

use std::net::SocketAddr;
use tollgate_integration::docker::{Container, Spec, KAFKA_REST_IMAGE, KAFKA_REST_PORT, TANSU_IMAGE};

/// The front's name on the test's network.
pub const KAFKA_ALIAS: &str = "kafka";

/// The broker's and the front's containers; the broker's is removed first.
pub struct Pair {
    broker: Container,
    front: Container,
}

impl Pair {
    /// Runs both on `network`, the broker at `port` (see the module's
    /// documentation); not yet ready.
    pub fn run(network: &str, port: u16) -> Result<Pair, String> {
        let front = Container::run(&Spec {
            image: KAFKA_REST_IMAGE.into(),
            alias: KAFKA_ALIAS.into(),
            network: Some(network.into()),
            publish: vec![KAFKA_REST_PORT],
            publish_same: vec![port],
            args: vec![
                "--broker".into(),
                format!("127.0.0.1:{port}"),
                "--listen".into(),
                format!("0.0.0.0:{KAFKA_REST_PORT}"),
            ],
            ..Spec::default()
        })
        .map_err(|e| format!("{e} (images: cargo xtask setup)"))?;
        let url = format!("tcp://0.0.0.0:{port}");
        let advertised = format!("tcp://127.0.0.1:{port}");
        let broker = Container::run(&Spec {
            image: TANSU_IMAGE.into(),
            alias: "tansu".into(),
            network_of: Some(front.id.clone()),
            args: [
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ]
            .into_iter()
            .chain(["--storage-engine", "memory://tansu/"])
            .map(String::from)
            .collect(),
            ..Spec::default()
        })
        .map_err(|e| format!("{e} (images: cargo xtask setup)"))?;
        Ok(Pair { broker, front })
    }

    /// Where the host reaches the front (its published port).
    pub fn front_addr(&self) -> Result<SocketAddr, String> {
        self.front.published(KAFKA_REST_PORT)
    }

    /// The front's container (the owner of the shared namespace).
    pub fn front(&self) -> &Container {
        &self.front
    }

    /// The broker's container.
    pub fn broker(&self) -> &Container {
        &self.broker
    }

    pub(crate) fn kill_broker(&self) -> Result<(), String> {
        // Already stopped is fine: `docker kill` fails then.
        match self.broker.kill() {
            Ok(()) => Ok(()),
            Err(e) if e.contains("is not running") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn start_broker(&self) -> Result<(), String> {
        self.broker.start()
    }

    pub(crate) fn pause_broker(&self) -> Result<(), String> {
        self.broker.pause()
    }

    pub(crate) fn unpause_broker(&self) -> Result<(), String> {
        self.broker.unpause()
    }

    pub fn logs(&self) -> String {
        format!(
            "--- tansu ---\n{}\n--- kafka-rest ---\n{}",
            self.broker.logs(),
            self.front.logs()
        )
    }
}
