//! `tollgate-kafka-rest --broker HOST:PORT --listen 0.0.0.0:8082`: the
//! Kafka REST Proxy v2 front of the audit tests, as a process (the
//! `tollgate/kafka-rest:dev` image runs it). Stops on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use tollgate_integration::service_main::{serve, Command};
use tollgate_kafka_party::Front;

const COMMAND: Command = Command {
    name: "tollgate-kafka-rest",
    upstream: "--broker",
    listen: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8082),
    usage: "usage: tollgate-kafka-rest --broker HOST:PORT [--listen ADDR:PORT (default 0.0.0.0:8082)]",
};

fn main() -> ExitCode {
    serve(&COMMAND, |listen, broker| {
        let front = Front::start_on(listen, broker)?;
        let line = format!("listening on {}, producing to {broker}", front.addr());
        Ok((front, line))
    })
}
