//! Paced load and the audit stage's counters, for the tests that fault
//! the audit sink (`audit_faults.rs`) and the broker behind the Kafka
//! REST front (`audit_kafka.rs`): p99 with a fault against p99 without
//! it, and counters that say where each event went.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tollgate_integration::http::KeepAlive;
use tollgate_integration::{Envoy, Request};

const POLL: Duration = Duration::from_millis(100);

/// The bound on p99 with the fault: `P99_FACTOR` times p99 without it, or
/// p99 without it plus `P99_SLACK`, whichever is larger. What it must catch
/// is a request held by the sink: a hung sink holds a call its `timeout_ms` (1 s here), so
/// a request waiting on one would take a second; one waiting on a refused
/// connect or a 500 would add a round trip to the sink on top of the app's
/// (about as much again: the factor). The slack is for this machine: two
/// cores shared by Envoy, the client, the echo upstream, the sink and
/// other builds. Twelve fault-free phases in a row, at a load average of
/// 6, had p99s from 2.6 to 6.9 ms; and at 1000 requests a second a stall
/// of the machine longer than 30 ms delays 1% of a phase by up to its
/// length. 30 ms covers both, and is still 33 times less than a held call.
pub const P99_FACTOR: f64 = 2.0;
pub const P99_SLACK: Duration = Duration::from_millis(30);

/// One test at a time: each measures latency, which a neighbour's load
/// would skew.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The audit stage's counters, summed over the workers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub emitted: u64,
    pub sent: u64,
    pub buffer_full: u64,
    pub retry_overflow: u64,
    pub resized: u64,
    /// Refused by the sink for good (4xx, non-retriable record errors).
    pub rejected: u64,
    pub batches_sent: u64,
    pub batches_failed: u64,
    pub batches_rejected: u64,
}

impl Counts {
    pub fn read(envoy: &Envoy) -> Counts {
        let stats = envoy.admin_get("/stats").map(|r| r.text()).unwrap_or_default();
        let values: BTreeMap<&str, u64> = stats
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((k.strip_prefix("wasmcustom.tollgate.audit.")?, v.trim().parse().ok()?)))
            .collect();
        let get = |name: &str| values.get(name).copied().unwrap_or(0);
        Counts {
            emitted: get("events_emitted"),
            sent: get("events_sent"),
            buffer_full: get("events_dropped.buffer_full"),
            retry_overflow: get("events_dropped.retry_overflow"),
            resized: get("events_dropped.resized"),
            rejected: get("events_dropped.rejected"),
            batches_sent: get("batches_sent"),
            batches_failed: get("batches_failed"),
            batches_rejected: get("batches_rejected"),
        }
    }

    pub fn dropped(&self) -> u64 {
        self.buffer_full + self.retry_overflow + self.resized + self.rejected
    }

    /// Neither sent nor dropped: in a buffer or in a call to the sink.
    pub fn outstanding(&self) -> u64 {
        self.emitted.saturating_sub(self.sent + self.dropped())
    }
}

/// Polls the counters until `done` holds; the last reading, or a panic
/// naming `what` with it.
pub fn wait_counts(envoy: &Envoy, within: Duration, what: &str, done: impl Fn(&Counts) -> bool) -> (Counts, Duration) {
    let started = Instant::now();
    loop {
        let counts = Counts::read(envoy);
        if done(&counts) {
            return (counts, started.elapsed());
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}: {counts:?}");
        std::thread::sleep(POLL);
    }
}

/// Latencies of one phase, and what went wrong.
pub struct Run {
    pub latencies: Vec<Duration>,
    /// Requests without the app's answer: (path, what came back).
    pub failures: Vec<(String, String)>,
    pub took: Duration,
}

impl Run {
    pub fn p99(&self) -> Duration {
        percentile(&self.latencies, 0.99)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} requests in {:.1} s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.latencies.len(),
            self.took.as_secs_f64(),
            ms(percentile(&self.latencies, 0.5)),
            ms(self.p99()),
            ms(percentile(&self.latencies, 1.0)),
        )
    }

    pub fn assert_all_answered(&self, phase: &str) {
        assert!(
            self.failures.is_empty(),
            "{phase}: {} of {} requests without the app's answer, e.g. {:?}",
            self.failures.len(),
            self.latencies.len(),
            &self.failures[..self.failures.len().min(5)]
        );
    }
}

pub fn percentile(latencies: &[Duration], q: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied().unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `count` requests to `/{phase}/{n}` over `threads` keep-alive
/// connections, paced to `rate` a second in all (`None`: as fast as they
/// go); each must get the echo upstream's answer for its own path.
pub fn drive(envoy: &Envoy, phase: &str, count: usize, threads: usize, rate: Option<u64>) -> Run {
    drive_paths(envoy, count, threads, rate, &|n| format!("/{phase}/{n}"))
}

/// As [`drive`], request `n` going to `path(n)`, computed when it is sent.
pub fn drive_paths(
    envoy: &Envoy,
    count: usize,
    threads: usize,
    rate: Option<u64>,
    path: &(dyn Fn(usize) -> String + Sync),
) -> Run {
    let started = Instant::now();
    // Each thread sends every `threads`-th request, on its own schedule.
    let gap = rate.map(|r| Duration::from_secs_f64(threads as f64 / r as f64));
    let parts: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut conn = KeepAlive::new(envoy.addr());
                    let mut part = Run {
                        latencies: Vec::with_capacity(count / threads + 1),
                        failures: Vec::new(),
                        took: Duration::ZERO,
                    };
                    for (i, n) in (t..count).step_by(threads).enumerate() {
                        if let Some(gap) = gap {
                            let due = started + gap * i as u32;
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                        let path = path(n);
                        let sent = Instant::now();
                        let answer = conn.send(&Request::get(&path));
                        part.latencies.push(sent.elapsed());
                        match answer {
                            Ok(r) if r.status == 200 && r.json()["path"] == path.as_str() => {}
                            Ok(r) => part.failures.push((path, format!("{} {}", r.status, r.text()))),
                            Err(e) => part.failures.push((path, e)),
                        }
                    }
                    part
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = started.elapsed();
    let mut run = Run {
        latencies: Vec::with_capacity(count),
        failures: Vec::new(),
        took,
    };
    for part in parts {
        run.latencies.extend(part.latencies);
        run.failures.extend(part.failures);
    }
    run
}

/// The most p99 with the fault may be, given p99 without it.
pub fn p99_bound(ok: Duration) -> Duration {
    ok.mul_f64(P99_FACTOR).max(ok + P99_SLACK)
}

/// Ids seen more than once.
pub fn repeated<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    ids.filter(|id| !seen.insert(*id)).collect()
}
