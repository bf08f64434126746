//! A JWKS server: answers every GET with the current key set, counts the
//! requests, can change its keys or answer slowly, and stops when dropped.

use crate::server::Server;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct JwksServer {
    server: Server,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    status: Arc<AtomicU16>,
}

impl JwksServer {
    pub fn start(jwks: &str) -> JwksServer {
        let body = Arc::new(Mutex::new(jwks.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let (b, h, d, s) = (body.clone(), hits.clone(), delay_ms.clone(), status.clone());
        let server = Server::start(&format!("{}:0", crate::docker::party_host()), move |_| {
            std::thread::sleep(Duration::from_millis(d.load(Ordering::SeqCst)));
            h.fetch_add(1, Ordering::SeqCst);
            (
                s.load(Ordering::SeqCst),
                b.lock().map(|b| b.clone()).unwrap_or_default(),
            )
        });
        match server {
            Ok(server) => JwksServer {
                server,
                body,
                hits,
                delay_ms,
                status,
            },
            Err(e) => panic!("JWKS server could not bind: {e}"),
        }
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Serves another key set from now on.
    pub fn set(&self, jwks: &str) {
        if let Ok(mut body) = self.body.lock() {
            *body = jwks.to_string();
        }
    }

    /// Answers with this status from now on (200 at start).
    pub fn status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Answers each request only after `delay`.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
