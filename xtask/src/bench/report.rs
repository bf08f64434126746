//! Medians over rounds, ratios taken within each round, the Markdown table
//! and the JSON written under target/bench/.

use super::load::Sample;
use serde_json::{json, Value};

/// Everything measured for one configuration.
pub struct Measured {
    pub name: &'static str,
    pub what: &'static str,
    /// The row this one is compared with besides the baseline.
    pub over: Option<&'static str>,
    /// Per round: the load at the low and at the high concurrency.
    pub rounds: Vec<(Sample, Sample)>,
    pub rss_mib: f64,
    /// For audit rows: what reached the sink.
    pub audit: Option<Delivered>,
}

/// An audit row's events over its whole pinned run (smoke requests and
/// warm-up included), by Envoy's counters and by the sink's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub emitted: u64,
    pub sent: u64,
    pub dropped: u64,
    /// Events and POSTs the sink got.
    pub received: u64,
    pub batches: u64,
    /// The sink was the Kafka REST front: `received` is what the broker took.
    pub kafka: bool,
}

impl Delivered {
    pub fn line(&self, name: &str) -> String {
        let by = match self.kafka {
            true => "stored by the broker (through the Kafka REST front)",
            false => "received by the sink",
        };
        format!(
            "{name}: {} audit events emitted, {} {by} in {} batches, {} dropped",
            self.emitted, self.received, self.batches, self.dropped
        )
    }
}

impl Measured {
    /// CPU per request in one round, over both of its loads.
    fn cpu_per_request(&self, round: usize) -> Option<f64> {
        let (low, high) = self.rounds.get(round)?;
        let requests = (low.requests + high.requests).max(1) as f64;
        Some((low.cpu_us + high.cpu_us) / requests)
    }

    pub fn failures(&self) -> u64 {
        self.rounds.iter().map(|(l, h)| l.failures + h.failures).sum()
    }
}

/// One configuration's row: medians over rounds.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    pub what: &'static str,
    pub rps: [f64; 2],
    pub cpu_us: f64,
    pub added_us: f64,
    pub x_baseline: f64,
    /// Added CPU over `native_chain`'s added CPU.
    pub x_native_chain: f64,
    /// The row it is compared with, and its CPU per request over that row's.
    pub over: Option<(&'static str, f64)>,
    /// p50, p99, p99.9 in µs at the low and the high concurrency.
    pub latency: [[f64; 3]; 2],
    pub failures: u64,
    pub rss_mib: f64,
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match (values.get(n / 2), n.checked_sub(1).and_then(|m| values.get(m / 2))) {
        (Some(a), Some(b)) if n.is_multiple_of(2) => (a + b) / 2.0,
        (Some(a), _) => *a,
        _ => f64::NAN,
    }
}

/// Median over rounds of `f(round)`.
fn per_round(rounds: usize, f: impl Fn(usize) -> Option<f64>) -> f64 {
    median((0..rounds).filter_map(f).collect())
}

/// CPU per request of `m` over `reference`'s, in round `r`.
fn over(m: &Measured, reference: &Measured, r: usize) -> Option<f64> {
    Some(m.cpu_per_request(r)? - reference.cpu_per_request(r)?)
}

fn find<'a>(all: &'a [Measured], name: &str) -> Option<&'a Measured> {
    all.iter().find(|m| m.name == name)
}

/// `all[0]` is the baseline; `native_chain` and each row's `over` are
/// found by name.
pub fn rows(all: &[Measured]) -> Vec<Row> {
    let baseline = all.first();
    let chain = find(all, "native_chain");
    let added = |m: &Measured, r: usize| over(m, baseline?, r);
    all.iter()
        .map(|m| {
            let rounds = m.rounds.len();
            let sample = |high: bool, f: fn(&Sample) -> f64| {
                median(m.rounds.iter().map(|(l, h)| f(if high { h } else { l })).collect())
            };
            let latency = |high| {
                [
                    sample(high, |s| s.p50_us),
                    sample(high, |s| s.p99_us),
                    sample(high, |s| s.p999_us),
                ]
            };
            Row {
                name: m.name,
                what: m.what,
                rps: [sample(false, |s| s.rps), sample(true, |s| s.rps)],
                cpu_us: per_round(rounds, |r| m.cpu_per_request(r)),
                added_us: per_round(rounds, |r| added(m, r)),
                x_baseline: per_round(rounds, |r| Some(m.cpu_per_request(r)? / baseline?.cpu_per_request(r)?)),
                x_native_chain: per_round(rounds, |r| Some(added(m, r)? / added(chain?, r)?)),
                over: m.over.map(|name| {
                    let reference = find(all, name);
                    (name, per_round(rounds, |r| over(m, reference?, r)))
                }),
                latency: [latency(false), latency(true)],
                failures: m.failures(),
                rss_mib: m.rss_mib,
            }
        })
        .collect()
}

fn latency_cell(l: &[f64; 3]) -> String {
    format!("{:.0} / {:.0} / {:.0}", l[0], l[1], l[2])
}

fn over_cell(over: Option<(&str, f64)>) -> String {
    over.map_or(String::new(), |(name, us)| format!("{us:+.1} over `{name}`"))
}

pub fn markdown(rows: &[Row], connections: [u32; 2]) -> String {
    let [low, high] = connections;
    let mut out = format!(
        "| configuration | req/s c{low} | CPU µs/req | added µs/req | × baseline | added × native_chain \
         | µs/req over its pair | latency µs c{low} p50 / p99 / p99.9 | latency µs c{high} p50 / p99 / p99.9 \
         | non-2xx | RSS MiB, 2 workers |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for r in rows {
        out.push_str(&format!(
            "| `{}` | {:.0} | {:.1} | {:+.1} | {:.2} | {:.2} | {} | {} | {} | {} | {:.1} |\n",
            r.name,
            r.rps[0],
            r.cpu_us,
            r.added_us,
            r.x_baseline,
            r.x_native_chain,
            over_cell(r.over),
            latency_cell(&r.latency[0]),
            latency_cell(&r.latency[1]),
            r.failures,
            r.rss_mib,
        ));
    }
    out
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "requests": s.requests, "rps": s.rps, "cpu_us": s.cpu_us,
        "p50_us": s.p50_us, "p99_us": s.p99_us, "p999_us": s.p999_us, "failures": s.failures,
    })
}

fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

pub fn to_json(meta: Value, all: &[Measured], rows: &[Row]) -> Value {
    let configurations: Vec<Value> = all
        .iter()
        .zip(rows)
        .map(|(m, r)| {
            json!({
                "name": r.name, "what": r.what,
                "rps": [finite(r.rps[0]), finite(r.rps[1])],
                "cpu_us_per_request": finite(r.cpu_us),
                "added_cpu_us_per_request": finite(r.added_us),
                "x_baseline": finite(r.x_baseline),
                "added_x_native_chain": finite(r.x_native_chain),
                "over": r.over.map(|(name, us)| json!({"configuration": name, "cpu_us_per_request": finite(us)})),
                "latency_us": r.latency.iter().map(|l| json!({"p50": finite(l[0]), "p99": finite(l[1]), "p999": finite(l[2])})).collect::<Vec<_>>(),
                "non_2xx": r.failures,
                "rss_mib_2_workers": finite(r.rss_mib),
                "audit_events": m.audit.map(|d| json!({
                    "emitted": d.emitted, "sent": d.sent, "dropped": d.dropped,
                    "received": d.received, "batches": d.batches, "into_kafka": d.kafka,
                })),
                "rounds": m.rounds.iter().map(|(l, h)| json!([sample_json(l), sample_json(h)])).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"meta": meta, "configurations": configurations})
}

/// A Tollgate stage and the native filter doing its job, each measured
/// over its pair (`over`): issues 22's and 23's goal is a stage costing
/// no more.
pub struct Goal {
    pub what: &'static str,
    pub tollgate: &'static str,
    pub native: &'static str,
}

pub const GOALS: [Goal; 3] = [
    Goal {
        what: "local limit",
        tollgate: "tollgate_fused_ratelimit_local",
        native: "native_local_ratelimit",
    },
    Goal {
        what: "global limit",
        tollgate: "tollgate_fused_ratelimit_global",
        native: "native_ratelimit",
    },
    Goal {
        what: "audit",
        tollgate: "tollgate_fused_audit",
        native: "tollgate_fused_access_log",
    },
];

/// The stage's cost minus the native filter's, in µs per request: the
/// median over rounds of the difference within each round (a difference,
/// not a ratio: the native costs are a few µs, so their ratio is noise).
pub fn goal_us(all: &[Measured], goal: &Goal) -> f64 {
    let cost = |name: &str, r: usize| {
        let m = find(all, name)?;
        over(m, find(all, m.over?)?, r)
    };
    let rounds = find(all, goal.tollgate).map_or(0, |m| m.rounds.len());
    per_round(rounds, |r| Some(cost(goal.tollgate, r)? - cost(goal.native, r)?))
}

/// One line per goal whose rows ran.
pub fn goals(all: &[Measured]) -> Vec<(String, f64)> {
    GOALS
        .iter()
        .map(|g| {
            let line = format!(
                "{}: `{}` over its pair minus `{}` over its pair",
                g.what, g.tollgate, g.native
            );
            (line, goal_us(all, g))
        })
        .filter(|(_, us)| us.is_finite())
        .collect()
}
