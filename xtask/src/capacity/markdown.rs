//! docs/capacity.md: the run it comes from, what its figures mean, the
//! per-sidecar table and the mesh table.

use super::input::{Bench, Meta};
use super::model::{self, Cost, Sidecar, PODS};
use super::rows;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A mesh figure to about three significant digits.
pub fn amount(x: f64) -> String {
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    if a >= 999.5 {
        format!("{sign}{}", thousands(a.round() as u64))
    } else if a >= 99.95 {
        format!("{sign}{a:.0}")
    } else if a >= 9.995 {
        format!("{sign}{a:.1}")
    } else {
        format!("{sign}{a:.2}")
    }
}

/// A stated rate: `50`, `1,000`, `12.5`.
pub fn rate(x: f64) -> String {
    if x.fract() == 0.0 && x < u64::MAX as f64 {
        thousands(x as u64)
    } else {
        x.to_string()
    }
}

fn signed(x: f64) -> String {
    if x >= 0.0 {
        format!("+{}", amount(x))
    } else {
        amount(x)
    }
}

/// Envoy's `--version` line's version number, or the line.
fn envoy_version(line: &str) -> &str {
    line.split('/')
        .find(|part| {
            let nums: Vec<&str> = part.split('.').collect();
            nums.len() == 3
                && nums
                    .iter()
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap_or(line)
}

fn run_section(meta: &Meta, source: &str, missing_setups: &[&str]) -> String {
    let dirty = match meta.dirty {
        Some(true) => " (with uncommitted changes)",
        _ => "",
    };
    let mut out = format!(
        "## The run\n\n\
         - `{}`, {}, commit `{}`{dirty}, read from `{source}`\n\
         - {} round(s) of {} s per load, at each of the bench's two concurrencies\n\
         - machine: {} cores{}{}\n",
        meta.command,
        meta.date,
        meta.commit,
        meta.rounds,
        meta.seconds_per_load,
        meta.cpus,
        meta.cpu.as_ref().map_or(String::new(), |c| format!(" ({c})")),
        meta.envoy
            .as_ref()
            .map_or(String::new(), |e| format!(", Envoy {}", envoy_version(e))),
    );
    if meta.rounds < 2 {
        out.push_str(
            "\n**One round only** (a quick or smoke run): each figure is a single \
             measurement on a shared machine, noisy; a full `cargo xtask bench` \
             (5 rounds) gives medians.\n",
        );
    }
    if meta.partial() {
        out.push_str(&format!(
            "\n**Partial run** (`--only {}`): only these rows, `baseline` and \
             `native_chain` and their pairs were measured.",
            meta.only.join(","),
        ));
        if !missing_setups.is_empty() {
            let names: Vec<String> = missing_setups.iter().map(|n| format!("`{n}`")).collect();
            out.push_str(&format!(" Not in this run: {}.", names.join(", ")));
        }
        out.push('\n');
    }
    out
}

const MEANING: &str = "## What the figures mean

- **CPU** is Envoy's own (utime + stime from `/proc`) over a round's loads,
  divided by the requests it completed: one Envoy worker (`--concurrency 1`)
  pinned to CPU 0, loaded by `wrk` pinned to CPU 1 with keep-alive
  connections, as fast as it answers. The machine's cores are shared with
  other work: CPU time counts only while Envoy runs, so a neighbour does not
  add to it directly, but it slows each µs (shared caches, the VM's host);
  the same row's µs move by tens of percent between runs, while differences
  and ratios within a run (taken round by round, then the median) are
  steadier. A saturated worker shares each wake-up among many requests: at a
  few requests a second per pod each request pays its own, so real per-request
  CPU is likely higher than here, for every row alike.
- **Not in these figures**: TLS (Istio's mTLS on both sides of the sidecar),
  the upstream connection (every route answers directly), xDS updates, stats
  scraping, and the parties the sidecar calls (the rate limit service and
  Redis, the audit sink, the Kafka REST front and broker run on `wrk`'s CPU).
  The global rate limit rows wait on that service, so their Envoy spends more
  per request than it would next to a dedicated one.
- **RSS** is a second Envoy per row with two workers (Istio's default sidecar
  concurrency), after a load: the whole process, Tollgate's compiled module
  in each worker included; not the istio-agent beside it.
";

fn sidecar_table(sidecars: &[Sidecar]) -> String {
    let mut out = String::from(
        "| group | configuration | CPU µs/req | cores per 1,000 req/s | over `baseline` | over `native_chain` \
         | RSS MiB, 2 workers | over `baseline` | over `native_chain` | what it runs |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for s in sidecars {
        let per_1k = |us: f64| model::cores(us, 1000.0);
        out.push_str(&format!(
            "| {} | `{}` | {:.1} | {:.3} | {:+.3} | {:+.3} | {:.1} | {:+.1} | {:+.1} | {} |\n",
            s.group,
            s.name,
            s.cpu_us,
            per_1k(s.cpu_us),
            per_1k(s.over_baseline_us),
            per_1k(s.over_chain_us),
            s.rss_mib,
            s.rss_over_baseline,
            s.rss_over_chain,
            s.what.replace('|', "\\|"),
        ));
    }
    out
}

fn mesh_header() -> String {
    let pods: Vec<String> = PODS.iter().map(|p| thousands(*p)).collect();
    let columns: String = pods.iter().map(|p| format!(" {p} pods: cores | GiB |")).collect();
    let align = " ---: | ---: |".repeat(PODS.len());
    format!("| sidecar | CPU µs/req | RSS MiB |{columns}\n| --- | ---: | ---: |{align}\n")
}

/// A mesh row; `difference`: figures over another row, with their sign.
fn mesh_row(name: &str, us: f64, mib: f64, rps_per_pod: f64, difference: bool) -> String {
    let show = if difference { signed } else { amount };
    let cells: String = PODS
        .iter()
        .map(|pods| {
            let (cores, gib) = model::mesh(us, mib, *pods, rps_per_pod);
            format!(" {} | {} |", show(cores), show(gib))
        })
        .collect();
    let (us, mib) = match difference {
        true => (format!("{us:+.1}"), format!("{mib:+.1}")),
        false => (format!("{us:.1}"), format!("{mib:.1}")),
    };
    format!("| {name} | {us} | {mib} |{cells}\n")
}

pub fn mesh_table(costs: &[Cost], rps_per_pod: f64) -> String {
    let mut out = mesh_header();
    for c in costs {
        let name = format!("`{}`{}", c.name, if c.composed { " (composed)" } else { "" });
        out.push_str(&mesh_row(&name, c.cpu_us, c.rss_mib, rps_per_pod, false));
    }
    let tollgate = costs.iter().filter(|c| c.name.starts_with("tollgate"));
    for c in tollgate {
        let name = format!("`{}` − `{}`", c.name, rows::NATIVE_CHAIN);
        out.push_str(&mesh_row(&name, c.over_chain_us, c.rss_over_chain, rps_per_pod, true));
    }
    out
}

fn composed_note(costs: &[Cost]) -> String {
    let parts = format!(
        "`{}` plus what the local limit adds, `{}` − `{}`",
        rows::COMPOSED_BASE,
        rows::COMPOSED_ADDED,
        rows::COMPOSED_PAIR
    );
    match costs.iter().any(|c| c.composed) {
        true => format!(
            " `{}` (composed) is Tollgate doing that job: {parts}, within each round \
             (`{}` has the jwt, tenant and audit stages, `filter_state: false`, every \
             request's event to a sink); its RSS likewise.",
            model::COMPOSED,
            rows::COMPOSED_BASE,
        ),
        false => format!(" Tollgate doing that job, {parts}, needs rows not in this run."),
    }
}

fn mesh_section(costs: &[Cost], rps_per_pod: f64) -> String {
    format!(
        "## A mesh\n\n\
         Every pod's sidecar at **{rps} requests a second** (`--rps-per-pod`), \
         with the CPU per request measured above:\n\n\
         - cores = pods × {rps} req/s × CPU µs/req ÷ 1,000,000\n\
         - GiB = pods × RSS MiB ÷ 1,024\n\n\
         A row \"− `native_chain`\" is the difference: CPU per request over \
         `native_chain`'s within each round, then the median, and RSS over its \
         RSS. `native_chain` is Envoy's jwt_authn with its cache, \
         header_mutation, a local_ratelimit and a JSON file access log: what a \
         native setup needs for part of what Tollgate does.{}\n\n{}",
        composed_note(costs),
        mesh_table(costs, rps_per_pod),
        rps = rate(rps_per_pod),
    )
}

/// The page. `source`: the bench JSON it was generated from.
pub fn page(bench: &Bench, rps_per_pod: f64, source: &str, extract: &str) -> Result<String, String> {
    let sidecars = model::sidecars(bench)?;
    let costs = model::mesh_costs(bench)?;
    let missing: Vec<&str> = rows::ALL
        .iter()
        .map(|s| s.name)
        .filter(|n| !sidecars.iter().any(|s| s.name == *n))
        .collect();
    Ok(format!(
        "# Capacity\n\n\
         <!-- Generated by `cargo xtask capacity`: do not edit. -->\n\n\
         What a Tollgate sidecar costs, and what that makes across a mesh, from \
         one run of `cargo xtask bench`. Generated by `cargo xtask capacity` \
         from the run's JSON; what it read is kept in `{extract}`, from which \
         `cargo xtask capacity --check` (a CI step) regenerates this page. \
         After a bench run: `cargo xtask capacity` (options: `--bench PATH`, \
         `--rps-per-pod N`).\n\n\
         {}\n{MEANING}\n\
         ## Per sidecar\n\n\
         cores per 1,000 req/s = CPU µs/req × 1,000 ÷ 1,000,000. \"over\" \
         columns: CPU per request over that row's within each round, then the \
         median; RSS over its RSS.\n\n{}\n{}",
        run_section(&bench.meta, source, &missing),
        sidecar_table(&sidecars),
        mesh_section(&costs, rps_per_pod),
    ))
}
