#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::input::{self, Configuration};
use super::markdown::{self, amount, thousands};
use super::model;
use super::rows::{self, ALL, SCAFFOLDING};
use crate::bench::load::Sample;
use crate::bench::report::{self, Measured};
use serde_json::{json, Value};

/// A round whose two loads cost `us` µs of CPU per request each.
fn round(us: f64) -> (Sample, Sample) {
    let sample = Sample {
        requests: 1000,
        rps: 1000.0,
        cpu_us: us * 1000.0,
        ..Sample::default()
    };
    (sample.clone(), sample)
}

fn measured(name: &'static str, per_round: &[f64], rss_mib: f64) -> Measured {
    Measured {
        name,
        what: "fixture row",
        over: None,
        rounds: per_round.iter().copied().map(round).collect(),
        rss_mib,
        audit: None,
    }
}

/// The rows with figures of their own (CPU per round, RSS); every other
/// row costs 40 µs in each round and 100 MiB.
const FIGURES: [(&str, [f64; 3], f64); 6] = [
    ("baseline", [20.0, 30.0, 25.0], 64.0),
    ("native_chain", [30.0, 38.0, 35.0], 66.0),
    ("tollgate_fused", [50.0, 62.0, 58.0], 118.0),
    ("tollgate_fused_audit", [70.0, 80.0, 75.0], 120.0),
    ("tollgate_fused_ratelimit_local", [45.0, 50.0, 49.0], 119.0),
    ("tollgate_fused_tenant_stage", [40.0, 44.0, 42.0], 118.5),
];

fn meta(only: &[&str]) -> Value {
    json!({
        "command": "cargo xtask bench", "date": "2026-12-08 00:10 UTC", "commit": "abc1234",
        "dirty": false, "cpu": "Fixture CPU", "cpus": 2,
        "envoy": "envoy  version: 0123abcd/1.40.0/Clean/RELEASE/BoringSSL",
        "rounds": 3, "seconds_per_load": 3, "only": only,
    })
}

/// A bench JSON as the bench writes it (`report::to_json`) with the named
/// rows, `baseline` first.
fn bench_json(names: &[&'static str], only: &[&str]) -> Value {
    let all: Vec<Measured> = names
        .iter()
        .map(|name| match FIGURES.iter().find(|(n, _, _)| n == name) {
            Some((_, rounds, rss)) => measured(name, rounds, *rss),
            None => measured(name, &[40.0; 3], 100.0),
        })
        .collect();
    report::to_json(meta(only), &all, &report::rows(&all))
}

fn full_names() -> Vec<&'static str> {
    ALL.iter().map(|s| s.name).chain(SCAFFOLDING).collect()
}

fn full() -> Value {
    bench_json(&full_names(), &[])
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn cores_and_gib() {
    assert_eq!(model::cores(50.0, 1000.0), 0.05);
    assert_eq!(model::cores(58.0, 100.0 * 100.0), 0.58);
    assert_eq!(model::gib(120.0, 1024.0), 120.0);
    assert_eq!(model::mesh(82.0, 64.0, 10_000, 100.0), (82.0, 625.0));
}

#[test]
fn figures_read_like_a_person_writes_them() {
    assert_eq!(thousands(1_177), "1,177");
    assert_eq!(thousands(10_000), "10,000");
    assert_eq!(thousands(999), "999");
    let cases = [
        (0.58, "0.58"),
        (11.767, "11.8"),
        (115.23, "115"),
        (1152.3, "1,152"),
        (-50.78, "-50.8"),
    ];
    for (x, want) in cases {
        assert_eq!(amount(x), want, "{x}");
    }
}

fn configuration(name: &str, rounds: &[f64], rss_mib: f64) -> Configuration {
    Configuration {
        name: name.into(),
        what: String::new(),
        cpu_us: report::median(rounds.to_vec()),
        rss_mib,
        rounds: rounds.to_vec(),
    }
}

/// A round where the machine was slow must not count twice: the median of
/// differences (10), not the difference of medians (15).
#[test]
fn costs_over_a_row_are_taken_within_each_round() {
    let a = configuration("a", &[20.0, 60.0, 40.0], 0.0);
    let b = configuration("b", &[10.0, 50.0, 15.0], 0.0);
    assert_eq!(model::over(&a, &b), 10.0);
}

#[test]
fn the_composed_chain_adds_the_limit_over_its_pair_round_by_round() {
    let base = configuration("audit", &[70.0, 80.0, 75.0], 120.0);
    let added = configuration("local", &[45.0, 50.0, 49.0], 119.0);
    let pair = configuration("tenant", &[40.0, 44.0, 42.0], 118.5);
    let chain = configuration("chain", &[30.0, 38.0, 35.0], 66.0);
    let cost = model::composed(&base, &added, &pair, &chain);
    // Per round 75, 86, 82; over the chain 45, 48, 47.
    assert_eq!((cost.cpu_us, cost.over_chain_us), (82.0, 47.0));
    assert_eq!((cost.rss_mib, cost.rss_over_chain), (120.5, 54.5));
    assert!(cost.composed);
}

#[test]
fn the_bench_json_is_read_as_the_bench_writes_it() {
    let bench = input::parse(&full()).unwrap();
    assert_eq!(bench.meta.commit, "abc1234");
    assert_eq!(bench.meta.rounds, 3);
    assert!(!bench.meta.partial());
    let fused = model::find(&bench, "tollgate_fused").unwrap();
    assert_eq!(fused.rounds, vec![50.0, 62.0, 58.0]);
    assert_eq!((fused.cpu_us, fused.rss_mib), (58.0, 118.0));
}

#[test]
fn the_per_sidecar_table_has_a_row_per_setup() {
    let (page, _) = super::generate(&full(), 100.0, "bench.json", "capacity.json").unwrap();
    let rows: Vec<&str> = lines(&page).into_iter().filter(|l| l.starts_with("| ")).collect();
    for setup in &ALL {
        let row = format!("| {} | `{}` |", setup.group, setup.name);
        assert_eq!(rows.iter().filter(|l| l.starts_with(&row)).count(), 1, "{row}");
    }
    for name in SCAFFOLDING {
        assert!(!page.contains(&format!("`{name}`")), "{name} is no sidecar");
    }
    let want = [
        "| Envoy, native filters | `baseline` | 25.0 | 0.025 | +0.000 | -0.010 | 64.0 | +0.0 | -2.0 | fixture row |",
        "| Tollgate, fused filter | `tollgate_fused` | 58.0 | 0.058 | +0.032 | +0.023 | 118.0 | +54.0 | +52.0 | fixture row |",
    ];
    for row in want {
        assert!(rows.contains(&row), "{row}\n{page}");
    }
}

#[test]
fn the_mesh_table_states_tollgate_and_the_native_chain() {
    let bench = input::parse(&full()).unwrap();
    let table = markdown::mesh_table(&model::mesh_costs(&bench).unwrap(), 100.0);
    let want = [
        "| sidecar | CPU µs/req | RSS MiB | 100 pods: cores | GiB | 1,000 pods: cores | GiB | 10,000 pods: cores | GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| `baseline` | 25.0 | 64.0 | 0.25 | 6.25 | 2.50 | 62.5 | 25.0 | 625 |",
        "| `native_chain` | 35.0 | 66.0 | 0.35 | 6.45 | 3.50 | 64.5 | 35.0 | 645 |",
        "| `tollgate_fused` | 58.0 | 118.0 | 0.58 | 11.5 | 5.80 | 115 | 58.0 | 1,152 |",
        "| `tollgate_fused_audit` | 75.0 | 120.0 | 0.75 | 11.7 | 7.50 | 117 | 75.0 | 1,172 |",
        "| `tollgate_fused_audit_kafka` | 40.0 | 100.0 | 0.40 | 9.77 | 4.00 | 97.7 | 40.0 | 977 |",
        "| `tollgate_composed` (composed) | 82.0 | 120.5 | 0.82 | 11.8 | 8.20 | 118 | 82.0 | 1,177 |",
        "| `tollgate_fused` − `native_chain` | +23.0 | +52.0 | +0.23 | +5.08 | +2.30 | +50.8 | +23.0 | +508 |",
        "| `tollgate_fused_audit` − `native_chain` | +40.0 | +54.0 | +0.40 | +5.27 | +4.00 | +52.7 | +40.0 | +527 |",
        "| `tollgate_fused_audit_kafka` − `native_chain` | +5.0 | +34.0 | +0.05 | +3.32 | +0.50 | +33.2 | +5.00 | +332 |",
        "| `tollgate_composed` − `native_chain` | +47.0 | +54.5 | +0.47 | +5.32 | +4.70 | +53.2 | +47.0 | +532 |",
    ];
    assert_eq!(lines(&table), want, "{table}");
}

#[test]
fn the_page_says_which_run_and_what_rate() {
    let (page, _) = super::generate(&full(), 50.0, "target/bench/bench.json", "docs/capacity.json").unwrap();
    assert!(page.contains(
        "- `cargo xtask bench`, 2026-12-08 00:10 UTC, commit `abc1234`, read from `target/bench/bench.json`"
    ));
    assert!(page.contains("- machine: 2 cores (Fixture CPU), Envoy 1.40.0"));
    assert!(page.contains("**50 requests a second**"));
    assert!(page.contains("- cores = pods × 50 req/s × CPU µs/req ÷ 1,000,000"));
    assert!(!page.contains("Partial run") && !page.contains("One round only"));
}

#[test]
fn a_missing_row_is_an_error_that_names_it() {
    let names: Vec<_> = full_names()
        .into_iter()
        .filter(|n| *n != "tollgate_fused_audit_kafka")
        .collect();
    let err = input::parse(&bench_json(&names, &[])).unwrap_err();
    assert!(err.contains("no row tollgate_fused_audit_kafka"), "{err}");
}

#[test]
fn an_old_or_foreign_json_is_an_error_that_says_so() {
    let mut json = full();
    json["meta"].as_object_mut().unwrap().remove("commit");
    let err = input::parse(&json).unwrap_err();
    assert!(err.contains("`meta.commit`") && err.contains("older"), "{err}");
    let mut json = full();
    json["configurations"][2].as_object_mut().unwrap().remove("rounds");
    let err = input::parse(&json).unwrap_err();
    assert!(err.contains("configurations[native_jwt].rounds"), "{err}");
    let mut json = full();
    json["configurations"][3]["rss_mib_2_workers"] = Value::Null;
    assert!(input::parse(&json).unwrap_err().contains("rss_mib_2_workers"));
    assert!(input::parse(&json!({"hello": 1})).is_err());
    let err = super::generate(&full(), 0.0, "b", "c").unwrap_err();
    assert!(err.contains("--rps-per-pod"), "{err}");
}

/// A bench from before `only` was recorded is read as a full run.
#[test]
fn a_json_without_only_is_a_full_run() {
    let mut json = full();
    json["meta"].as_object_mut().unwrap().remove("only");
    assert!(!input::parse(&json).unwrap().meta.partial());
}

#[test]
fn a_partial_run_says_so_and_has_only_its_rows() {
    let json = bench_json(&["baseline", "native_chain", "tollgate_fused"], &["tollgate_fused"]);
    let (page, _) = super::generate(&json, 100.0, "target/bench/partial/bench.json", "c.json").unwrap();
    assert!(page.contains("**Partial run** (`--only tollgate_fused`)"), "{page}");
    assert!(page.contains("Not in this run: `native_jwt`, "), "{page}");
    let (_, mesh) = page.split_once("## A mesh").unwrap();
    let mesh: Vec<&str> = lines(mesh).into_iter().filter(|l| l.starts_with("| `")).collect();
    assert_eq!(mesh.len(), 4, "{mesh:?}");
    assert!(mesh.contains(
        &"| `tollgate_fused` − `native_chain` | +23.0 | +52.0 | +0.23 | +5.08 | +2.30 | +50.8 | +23.0 | +508 |"
    ));
    assert!(!page.contains(model::COMPOSED));
    // Asked for a row it has not: an error.
    let json = bench_json(&["baseline", "native_chain"], &["tollgate_fused"]);
    assert!(input::parse(&json).unwrap_err().contains("no row tollgate_fused"));
}

/// The extract kept beside the page regenerates the same page: what
/// `--check` relies on.
#[test]
fn the_extract_regenerates_the_same_page() {
    let (page, extract) = super::generate(&full(), 75.0, "target/bench/bench.json", "x.json").unwrap();
    let (rate, source) = input::generated_with(&extract).unwrap();
    assert_eq!((rate, source.as_str()), (75.0, "target/bench/bench.json"));
    let (again, extract_again) = super::generate(&extract, rate, &source, "x.json").unwrap();
    assert_eq!(page, again);
    assert_eq!(extract, extract_again);
    assert!(extract["configurations"][0].get("latency_us").is_none());
}

#[test]
fn check_fails_on_a_page_edited_by_hand() {
    let dir = std::env::temp_dir().join(format!("tollgate-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bench = dir.join("bench.json");
    std::fs::write(&bench, full().to_string()).unwrap();
    let out = dir.join("capacity.md");
    let (b, o) = (bench.to_str().unwrap(), out.to_str().unwrap());
    super::run(b, o, None, false).unwrap();
    super::run(b, o, None, true).unwrap();
    let page = std::fs::read_to_string(&out).unwrap();
    std::fs::write(&out, page.replace("| 58.0 |", "| 48.0 |")).unwrap();
    let err = super::run(b, o, None, true).unwrap_err();
    assert!(err.contains("is not what `cargo xtask capacity` makes"), "{err}");
    let err = super::run(dir.join("none.json").to_str().unwrap(), o, None, false).unwrap_err();
    assert!(err.contains("run `cargo xtask bench` first"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every bench row is a sidecar setup on the page or named as scaffolding,
/// so a new bench row cannot be left out silently.
#[test]
fn every_bench_row_is_on_the_page_or_scaffolding() {
    let mut bench = crate::bench::names().unwrap();
    let mut listed = full_names();
    bench.sort_unstable();
    listed.sort_unstable();
    assert_eq!(bench, listed);
    for name in rows::MESH
        .iter()
        .chain(&[rows::COMPOSED_BASE, rows::COMPOSED_ADDED, rows::COMPOSED_PAIR])
    {
        assert!(ALL.iter().any(|s| s.name == *name), "{name}");
    }
}
