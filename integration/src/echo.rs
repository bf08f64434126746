//! An upstream that answers every request with what it received, as JSON:
//! `{"method", "path", "headers": [[name, value], ...], "body"}`.

use crate::server::{Received, Server};
use serde_json::json;
use std::net::SocketAddr;

pub struct Echo {
    server: Server,
}

impl Echo {
    /// Binds `bind` (`{docker::party_host()}:0` for a free port where Envoy reaches it) and serves until dropped.
    pub fn start_on(bind: &str) -> std::io::Result<Echo> {
        let server = Server::start(bind, |r: &Received| {
            let answer = json!({
                "method": r.method,
                "path": r.path,
                "headers": r.headers,
                "body": String::from_utf8_lossy(&r.body),
            });
            (200, answer.to_string())
        })?;
        Ok(Echo { server })
    }

    pub fn start() -> Echo {
        match Echo::start_on(&format!("{}:0", crate::docker::party_host())) {
            Ok(echo) => echo,
            Err(e) => panic!("echo upstream could not bind: {e}"),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }
}
