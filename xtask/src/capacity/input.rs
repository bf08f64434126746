//! The bench's JSON (`target/bench/bench.json`, written by
//! `bench::report::to_json`), read for what capacity needs, and the extract
//! of it kept beside the generated page.

use super::rows::{self, SCAFFOLDING};
use serde_json::{json, Value};

/// A bench run, as far as capacity reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bench {
    pub meta: Meta,
    pub configurations: Vec<Configuration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub command: String,
    pub date: String,
    pub commit: String,
    /// The working tree had changes (benches from before this field: unknown).
    pub dirty: Option<bool>,
    pub rounds: u64,
    pub seconds_per_load: u64,
    pub cpus: u64,
    pub cpu: Option<String>,
    pub envoy: Option<String>,
    /// `--only`: the configurations asked for (empty: all; absent in
    /// benches from before this field, read as all).
    pub only: Vec<String>,
}

impl Meta {
    pub fn partial(&self) -> bool {
        !self.only.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    pub name: String,
    pub what: String,
    /// Median over rounds of the CPU per request, µs.
    pub cpu_us: f64,
    pub rss_mib: f64,
    /// Each round's CPU per request (both of its loads), µs.
    pub rounds: Vec<f64>,
}

/// Why a JSON cannot be used: a field missing or of the wrong kind means a
/// bench from before capacity (or not a bench JSON at all).
fn old(field: &str) -> String {
    format!(
        "no usable `{field}`: not a bench JSON, or one written by an older `cargo xtask bench`; run the bench again"
    )
}

fn text(v: &Value, field: &str) -> Result<String, String> {
    v.as_str().map(str::to_string).ok_or_else(|| old(field))
}

fn number(v: &Value, field: &str) -> Result<f64, String> {
    v.as_f64().filter(|n| n.is_finite()).ok_or_else(|| old(field))
}

fn count(v: &Value, field: &str) -> Result<u64, String> {
    v.as_u64().ok_or_else(|| old(field))
}

fn meta(m: &Value) -> Result<Meta, String> {
    let only = match &m["only"] {
        Value::Null => Vec::new(),
        list => list
            .as_array()
            .ok_or_else(|| old("meta.only"))?
            .iter()
            .map(|n| text(n, "meta.only"))
            .collect::<Result<_, _>>()?,
    };
    Ok(Meta {
        command: text(&m["command"], "meta.command")?,
        date: text(&m["date"], "meta.date")?,
        commit: text(&m["commit"], "meta.commit")?,
        dirty: m["dirty"].as_bool(),
        rounds: count(&m["rounds"], "meta.rounds")?,
        seconds_per_load: count(&m["seconds_per_load"], "meta.seconds_per_load")?,
        cpus: count(&m["cpus"], "meta.cpus")?,
        cpu: m["cpu"].as_str().map(str::to_string),
        envoy: m["envoy"].as_str().map(str::to_string),
        only,
    })
}

/// One round's CPU per request over all of its loads.
fn round(samples: &Value, field: &str) -> Result<f64, String> {
    let samples = samples.as_array().ok_or_else(|| old(field))?;
    let (mut requests, mut cpu_us) = (0u64, 0.0);
    for s in samples {
        requests += count(&s["requests"], &format!("{field}.requests"))?;
        cpu_us += number(&s["cpu_us"], &format!("{field}.cpu_us"))?;
    }
    if requests == 0 {
        return Err(format!("{field}: no request was served"));
    }
    Ok(cpu_us / requests as f64)
}

fn configuration(c: &Value) -> Result<Configuration, String> {
    let name = text(&c["name"], "configurations[].name")?;
    let field = |key: &str| format!("configurations[{name}].{key}");
    let rounds = c["rounds"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| old(&field("rounds")))?
        .iter()
        .map(|r| round(r, &field("rounds[]")))
        .collect::<Result<_, _>>()?;
    Ok(Configuration {
        what: text(&c["what"], &field("what"))?,
        cpu_us: number(&c["cpu_us_per_request"], &field("cpu_us_per_request"))?,
        rss_mib: number(&c["rss_mib_2_workers"], &field("rss_mib_2_workers"))?,
        rounds,
        name,
    })
}

/// The run, with every row capacity reports present (for a partial run:
/// the rows it was asked for and `baseline` and `native_chain`).
pub fn parse(json: &Value) -> Result<Bench, String> {
    let meta = meta(&json["meta"])?;
    let configurations: Vec<Configuration> = json["configurations"]
        .as_array()
        .ok_or_else(|| old("configurations"))?
        .iter()
        .map(configuration)
        .collect::<Result<_, _>>()?;
    let bench = Bench { meta, configurations };
    let missing = missing(&bench);
    if !missing.is_empty() {
        return Err(format!(
            "the run has no row {} (rows of a full run: {}); {}",
            missing.join(", "),
            rows::ALL.len() + SCAFFOLDING.len(),
            "rerun `cargo xtask bench`, or `--only` with these rows"
        ));
    }
    let rounds = bench.meta.rounds as usize;
    if let Some(c) = bench.configurations.iter().find(|c| c.rounds.len() != rounds) {
        return Err(format!("{}: {} rounds, the run says {rounds}", c.name, c.rounds.len()));
    }
    Ok(bench)
}

/// Rows the run should have and has not.
pub fn missing(bench: &Bench) -> Vec<String> {
    let has = |name: &str| bench.configurations.iter().any(|c| c.name == name);
    let wanted: Vec<&str> = if bench.meta.partial() {
        let mut wanted = vec![rows::BASELINE, rows::NATIVE_CHAIN];
        wanted.extend(bench.meta.only.iter().map(String::as_str));
        wanted
    } else {
        rows::ALL.iter().map(|r| r.name).collect()
    };
    wanted.into_iter().filter(|n| !has(n)).map(str::to_string).collect()
}

/// What capacity reads of a bench JSON, in the bench's own shape (so the
/// extract is itself an input): kept beside the page so that `--check`
/// can regenerate it.
pub fn extract(json: &Value, rps_per_pod: f64, source: &str) -> Value {
    let keep = |v: &Value, keys: &[&str]| -> Value {
        keys.iter()
            .filter(|k| !v[**k].is_null())
            .map(|k| (k.to_string(), v[*k].clone()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let configurations: Vec<Value> = json["configurations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let mut kept = keep(c, &["name", "what", "cpu_us_per_request", "rss_mib_2_workers"]);
            let rounds: Vec<Value> = c["rounds"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    let samples = r.as_array().map(Vec::as_slice).unwrap_or_default();
                    samples.iter().map(|s| keep(s, &["requests", "cpu_us"])).collect()
                })
                .collect();
            kept["rounds"] = rounds.into();
            kept
        })
        .collect();
    json!({
        "meta": json["meta"],
        "configurations": configurations,
        "capacity": {"rps_per_pod": rps_per_pod, "source": source},
    })
}

/// The request rate and source an extract was generated with.
pub fn generated_with(json: &Value) -> Option<(f64, String)> {
    let c = &json["capacity"];
    Some((c["rps_per_pod"].as_f64()?, c["source"].as_str()?.to_string()))
}
