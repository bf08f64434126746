//! The audit rows' sink: the harness's keep-alive HTTP/1.1 server, answering
//! every POST 200 at once with an empty body and counting the JSON lines
//! and batches it got on each path (one path per configuration), so the
//! bench can show that every event an Envoy emitted arrived. Its threads
//! run on wrk's CPU so that Envoy's CPU stays Envoy's.
//!
//! Bounded: it keeps two numbers per path, and a body is read up to the
//! harness's limit (4 MiB); Envoy opens a connection per call in flight,
//! at most 4 per worker (the audit stage's `MAX_IN_FLIGHT`).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use tollgate_integration::server::{Answer, Received, Server};

/// What one path received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub events: u64,
    pub batches: u64,
}

pub type Counts = Arc<Mutex<BTreeMap<String, Count>>>;

pub struct Sink {
    server: Server,
    counts: Counts,
}

impl Sink {
    /// Starts the server on a free loopback port, its threads on `cpus`.
    pub fn start(cpus: &str) -> Result<Sink, String> {
        let counts = Counts::default();
        let counting = counts.clone();
        let cpus = cpus.to_string();
        // Threads inherit their creator's CPUs: the server's threads are
        // made by this pinned one.
        let starter = std::thread::spawn(move || -> Result<Server, String> {
            pin_this_thread(&cpus)?;
            Server::start("127.0.0.1:0", move |r| answer(&counting, r)).map_err(|e| format!("audit sink: {e}"))
        });
        let server = starter
            .join()
            .map_err(|_| "audit sink: its starter panicked".to_string())??;
        println!("audit sink on port {}", server.addr().port());
        Ok(Sink { server, counts })
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// What `path` received so far.
    pub fn received(&self, path: &str) -> Count {
        self.counts
            .lock()
            .map(|all| all.get(path).copied().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Counts a POST's events (JSON lines: one per line) under its path.
pub fn answer(counts: &Counts, request: &Received) -> Answer {
    if request.method != "POST" {
        return (405, String::new());
    }
    let events = request.body.iter().filter(|b| **b == b'\n').count() as u64;
    if let Ok(mut all) = counts.lock() {
        let count = all.entry(request.path.clone()).or_default();
        count.events += events;
        count.batches += 1;
    }
    (200, String::new())
}

/// `taskset -p` on this thread's id (`/proc/thread-self` is `<pid>/task/<tid>`).
pub fn pin_this_thread(cpus: &str) -> Result<(), String> {
    let link = std::fs::read_link("/proc/thread-self").map_err(|e| format!("/proc/thread-self: {e}"))?;
    let tid = link
        .file_name()
        .and_then(|t| t.to_str())
        .ok_or_else(|| format!("/proc/thread-self: {}", link.display()))?
        .to_string();
    taskset(&["-p", "-c", cpus, &tid])
}

/// `taskset ARGS`, quietly; an error naming them if it fails.
pub fn taskset(args: &[&str]) -> Result<(), String> {
    let status = Command::new("taskset")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e} (run `cargo xtask setup`)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset {}: {status}", args.join(" ")))
    }
}
