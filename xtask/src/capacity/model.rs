//! The arithmetic: cores from CPU µs per request and a request rate, GiB
//! from RSS and a pod count, and costs over a reference taken within each
//! round (as the bench takes its ratios), then the median.

use super::input::{Bench, Configuration};
use super::rows::{self, Setup};
use crate::bench::report::median;

/// Cores kept busy by `rps` requests a second at `us` µs of CPU each.
pub fn cores(us_per_request: f64, rps: f64) -> f64 {
    us_per_request * rps / 1e6
}

/// GiB held by `pods` sidecars of `mib` MiB each.
pub fn gib(mib_per_sidecar: f64, pods: f64) -> f64 {
    mib_per_sidecar * pods / 1024.0
}

/// `a`'s CPU per request minus `b`'s, within each round, then the median.
pub fn over(a: &Configuration, b: &Configuration) -> f64 {
    differences(&a.rounds, &b.rounds)
}

pub fn find<'a>(bench: &'a Bench, name: &str) -> Result<&'a Configuration, String> {
    bench
        .configurations
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("the run has no `{name}` row"))
}

/// One row of the per-sidecar table.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    pub group: &'static str,
    pub name: String,
    pub what: String,
    pub cpu_us: f64,
    pub over_baseline_us: f64,
    pub over_chain_us: f64,
    pub rss_mib: f64,
    pub rss_over_baseline: f64,
    pub rss_over_chain: f64,
}

fn sidecar(setup: &Setup, c: &Configuration, baseline: &Configuration, chain: &Configuration) -> Sidecar {
    Sidecar {
        group: setup.group,
        name: c.name.clone(),
        what: c.what.clone(),
        cpu_us: c.cpu_us,
        over_baseline_us: over(c, baseline),
        over_chain_us: over(c, chain),
        rss_mib: c.rss_mib,
        rss_over_baseline: c.rss_mib - baseline.rss_mib,
        rss_over_chain: c.rss_mib - chain.rss_mib,
    }
}

/// The setups the run has, in the table's order (a partial run has some).
pub fn sidecars(bench: &Bench) -> Result<Vec<Sidecar>, String> {
    let baseline = find(bench, rows::BASELINE)?;
    let chain = find(bench, rows::NATIVE_CHAIN)?;
    Ok(rows::ALL
        .iter()
        .filter_map(|s| Some(sidecar(s, find(bench, s.name).ok()?, baseline, chain)))
        .collect())
}

/// What one sidecar costs, for the mesh, and that over `native_chain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    pub name: String,
    pub cpu_us: f64,
    pub rss_mib: f64,
    pub over_chain_us: f64,
    pub rss_over_chain: f64,
    pub composed: bool,
}

fn differences(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x - y).collect())
}

/// `base` plus what `added` costs over `pair`, per round, then the median;
/// RSS likewise (one figure per row).
pub fn composed(base: &Configuration, added: &Configuration, pair: &Configuration, chain: &Configuration) -> Cost {
    let per_round: Vec<f64> = base
        .rounds
        .iter()
        .zip(&added.rounds)
        .zip(&pair.rounds)
        .map(|((b, a), p)| b + a - p)
        .collect();
    let rss_mib = base.rss_mib + added.rss_mib - pair.rss_mib;
    Cost {
        name: COMPOSED.into(),
        cpu_us: median(per_round.clone()),
        over_chain_us: differences(&per_round, &chain.rounds),
        rss_mib,
        rss_over_chain: rss_mib - chain.rss_mib,
        composed: true,
    }
}

/// The composed row's name on the page.
pub const COMPOSED: &str = "tollgate_composed";

/// The mesh's rows the run has, and the composed Tollgate chain if its
/// three rows ran.
pub fn mesh_costs(bench: &Bench) -> Result<Vec<Cost>, String> {
    let chain = find(bench, rows::NATIVE_CHAIN)?;
    let mut costs: Vec<Cost> = rows::MESH
        .iter()
        .filter_map(|name| find(bench, name).ok())
        .map(|c| Cost {
            name: c.name.clone(),
            cpu_us: c.cpu_us,
            rss_mib: c.rss_mib,
            over_chain_us: over(c, chain),
            rss_over_chain: c.rss_mib - chain.rss_mib,
            composed: false,
        })
        .collect();
    let part = |name| find(bench, name).ok();
    if let (Some(base), Some(added), Some(pair)) = (
        part(rows::COMPOSED_BASE),
        part(rows::COMPOSED_ADDED),
        part(rows::COMPOSED_PAIR),
    ) {
        costs.push(composed(base, added, pair, chain));
    }
    Ok(costs)
}

/// The mesh sizes the page states.
pub const PODS: [u64; 3] = [100, 1_000, 10_000];

/// Cores and GiB of `pods` sidecars of `us` µs per request and `mib` MiB,
/// at `rps_per_pod` requests a second each.
pub fn mesh(us: f64, mib: f64, pods: u64, rps_per_pod: f64) -> (f64, f64) {
    let pods = pods as f64;
    (cores(us, pods * rps_per_pod), gib(mib, pods))
}
