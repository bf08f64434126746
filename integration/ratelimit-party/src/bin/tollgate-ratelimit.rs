//! `tollgate-ratelimit --redis redis://HOST:PORT --listen 0.0.0.0:8081`:
//! the rate limit service of the integration tests, as a process (the
//! `tollgate/ratelimit:dev` image runs it). Stops on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use tollgate_integration::service_main::{serve, Command};
use tollgate_ratelimit_party::Service;

const COMMAND: Command = Command {
    name: "tollgate-ratelimit",
    upstream: "--redis",
    listen: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8081),
    usage: "usage: tollgate-ratelimit --redis redis://HOST:PORT [--listen ADDR:PORT (default 0.0.0.0:8081)]",
};

fn main() -> ExitCode {
    serve(&COMMAND, |listen, redis| {
        let service = Service::start_on(listen, redis)?;
        let line = format!("listening on {}, counting in {redis}", service.addr());
        Ok((service, line))
    })
}
