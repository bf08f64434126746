#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::configs::{self, Load, StatShare};
use super::load::{self, Sample};
use super::report::{self, Measured};
use super::tokens;

#[test]
fn median_of_odd_even_and_empty() {
    let rows: &[(&[f64], f64)] = &[
        (&[3.0, 1.0, 2.0], 2.0),
        (&[4.0, 1.0, 3.0, 2.0], 2.5),
        (&[5.0], 5.0),
        (&[1.0, f64::NAN, 3.0], 2.0),
    ];
    for (values, want) in rows {
        assert_eq!(report::median(values.to_vec()), *want, "{values:?}");
    }
    assert!(report::median(Vec::new()).is_nan());
}

/// One load whose CPU per request is `us` (the high-concurrency load equal).
fn load_at(us: f64) -> (Sample, Sample) {
    let sample = Sample {
        requests: 1000,
        rps: 1000.0,
        cpu_us: us * 1000.0,
        p99_us: us * 10.0,
        ..Sample::default()
    };
    (sample.clone(), sample)
}

fn measured(name: &'static str, per_round: &[f64]) -> Measured {
    Measured {
        name,
        what: "",
        over: None,
        rounds: per_round.iter().copied().map(load_at).collect(),
        rss_mib: 64.0,
        audit: None,
    }
}

/// Ratios are medians of within-round ratios: a round where the whole
/// machine was slow must not skew them (the ratio of the medians here
/// would be 2.5 and the difference of the medians 30).
#[test]
fn ratios_are_taken_within_each_round() {
    let all = [
        measured("baseline", &[10.0, 40.0, 20.0]),
        measured("native_chain", &[15.0, 45.0, 25.0]),
        measured("x", &[20.0, 50.0, 60.0]),
    ];
    let rows = report::rows(&all);
    let x = rows.get(2).unwrap();
    assert_eq!(x.cpu_us, 50.0);
    assert_eq!(x.x_baseline, 2.0);
    assert_eq!(x.added_us, 10.0);
    assert_eq!(x.x_native_chain, 2.0);
    let baseline = rows.first().unwrap();
    assert_eq!((baseline.added_us, baseline.x_baseline), (0.0, 1.0));
}

#[test]
fn the_table_has_a_row_per_configuration() {
    let all = [measured("baseline", &[20.0]), measured("native_chain", &[30.0])];
    let table = report::markdown(&report::rows(&all), [4, 32]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines.first().unwrap().starts_with("| configuration | req/s c4 |"));
    assert_eq!(
        *lines.get(3).unwrap(),
        "| `native_chain` | 1000 | 30.0 | +10.0 | 1.50 | 1.00 |  | 0 / 300 / 0 | 0 / 300 / 0 | 0 | 64.0 |"
    );
}

fn paired(name: &'static str, over: &'static str, per_round: &[f64]) -> Measured {
    Measured {
        over: Some(over),
        ..measured(name, per_round)
    }
}

/// A row's cost over its pair is taken within each round, and the goal
/// compares two such costs round by round.
#[test]
fn costs_over_a_pair_and_goals_are_taken_within_each_round() {
    let all = [
        measured("baseline", &[10.0, 40.0, 20.0]),
        paired("native_local_ratelimit", "baseline", &[12.0, 43.0, 22.0]),
        measured("tollgate_fused_tenant_stage", &[20.0, 60.0, 30.0]),
        paired(
            "tollgate_fused_ratelimit_local",
            "tollgate_fused_tenant_stage",
            &[21.0, 62.0, 33.0],
        ),
    ];
    let rows = report::rows(&all);
    let over = |i: usize| rows.get(i).unwrap().over;
    assert_eq!(over(0), None);
    assert_eq!(over(1), Some(("baseline", 2.0)));
    assert_eq!(over(3), Some(("tollgate_fused_tenant_stage", 2.0)));
    // Per round: 1 - 2, 2 - 3, 3 - 2.
    let goal = report::GOALS.first().unwrap();
    assert_eq!(report::goal_us(&all, goal), -1.0);
    let goals = report::goals(&all);
    assert_eq!(goals.len(), 1, "the global rows did not run: no line");
    let table = report::markdown(&rows, [4, 32]);
    assert!(table.contains("| +2.0 over `tollgate_fused_tenant_stage` |"), "{table}");
}

#[test]
fn failures_count_every_load() {
    let mut m = measured("x", &[10.0, 10.0]);
    for (low, high) in &mut m.rounds {
        low.failures = 1;
        high.failures = 2;
    }
    assert_eq!(m.failures(), 6);
}

#[test]
fn proc_fields_are_read_past_the_command_name() {
    let stat = "4242 (envoy (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 9 0 100 1 2";
    assert_eq!(load::ticks_of(stat), Some(1801));
    assert_eq!(load::ticks_of("4242 (envoy) S 1 2"), None);
    let status = "Name:\tenvoy\nVmPeak:\t  300000 kB\nVmRSS:\t   66560 kB\nThreads:\t9\n";
    assert_eq!(load::rss_of(status), Some(65.0));
    assert_eq!(load::rss_of("Name:\tenvoy\n"), None);
}

#[test]
fn request_lines_are_tab_separated_pairs() {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("requests.txt");
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    load::write_requests(
        &path,
        &[
            vec![pair("x-tenant-id", "ACME"), pair("Authorization", "Bearer a.b.c")],
            vec![],
        ],
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(text, "x-tenant-id\tACME\tAuthorization\tBearer a.b.c\t\n\n");
}

fn share(stat: &'static str, min: f64, max: f64) -> StatShare {
    StatShare { stat, min, max }
}

#[test]
fn a_config_that_skipped_its_code_path_fails() {
    let stats = |requests: u64, hits: u64| {
        vec![
            ("http.ingress.downstream_rq_completed".to_string(), requests),
            ("wasmcustom.tollgate.jwt.signature_host".to_string(), hits),
        ]
    };
    let host = [share("wasmcustom.tollgate.jwt.signature_host", 0.99, 1.0)];
    let rust = [share("wasmcustom.tollgate.jwt.signature_host", 0.0, 0.0)];
    let before = stats(10, 5);
    assert!(super::check_shares("x", &host, &before, &stats(1010, 1005)).is_ok());
    let err = super::check_shares("x", &host, &before, &stats(1010, 505)).unwrap_err();
    assert_eq!(
        err,
        "x: wasmcustom.tollgate.jwt.signature_host grew by 0.500 per request, expected 0.99 to 1"
    );
    assert!(super::check_shares("x", &rust, &before, &stats(1010, 5)).is_ok());
    assert!(super::check_shares("x", &rust, &before, &stats(1010, 6)).is_err());
}

/// Every configuration that checks something has a request it must refuse
/// before its load, and all answer directly (no upstream is measured).
#[test]
fn configurations_are_checked_before_their_load() {
    let tokens = tokens::mint_all(3).unwrap();
    assert_eq!(tokens.valid.len(), 3);
    let all = configs::all(&tokens);
    assert_eq!(all.first().map(|c| c.name), Some("baseline"));
    assert!(all.iter().any(|c| c.name == "native_chain"));
    for config in &all {
        let refused = config.refused.as_ref().map(|(_, status)| *status);
        let want = match (config.load, config.name) {
            (Load::Plain, "tollgate_tenant" | "tollgate_fused_tenant_stage") => Some(403),
            (Load::Plain, "native_local_ratelimit" | "tollgate_fused_ratelimit_local") => Some(429),
            (Load::Plain, "tollgate_fused_ratelimit_global") => Some(429),
            (Load::Plain, _) => None,
            // Carries the token, but no stage checks one.
            (_, "tollgate_fused_floor") => None,
            _ => Some(401),
        };
        assert_eq!(refused, want, "{}", config.name);
        let ports = configs::Ports {
            ratelimit: Some(7),
            sink: Some(8),
            kafka: Some(9),
        };
        let bootstrap = config.bootstrap("/tmp/log", ports);
        let manager = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let route = &manager["route_config"]["virtual_hosts"][0]["routes"][0];
        if route["route"].is_object() {
            // Envoy's ratelimit filter needs a route entry: the fault
            // filter answers before the router.
            let filters = manager["http_filters"].as_array().unwrap();
            let fault = &filters[filters.len() - 2];
            assert_eq!(fault["typed_config"]["abort"]["http_status"], 200, "{}", config.name);
        } else {
            assert_eq!(route["direct_response"]["status"], 200, "{}", config.name);
        }
        let clusters = bootstrap["static_resources"]["clusters"].as_array().unwrap();
        let service = clusters.iter().find(|c| c["name"] == configs::SERVICE_CLUSTER);
        assert_eq!(service.is_some(), config.global, "{}", config.name);
        let sink = clusters.iter().find(|c| c["name"] == configs::SINK_CLUSTER);
        assert_eq!(sink.is_some(), config.sink, "{}", config.name);
        if let Some(sink) = sink {
            let port = sink["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"]
                .clone();
            let want = if config.kafka { 9 } else { 8 };
            assert_eq!(port, want, "{}: its sink", config.name);
        }
        let audited = config.sink && config.shares.iter().any(|s| s.stat == configs::AUDIT_EMITTED);
        assert_eq!(audited, config.sink, "{}: its events are counted", config.name);
        if let Some(over) = config.over {
            assert!(all.iter().any(|c| c.name == over), "{}: no {over}", config.name);
        }
        let logged = manager["access_log"][0]["typed_config"]["path"] == "/tmp/log";
        let log_rows = ["native_chain", "tollgate_fused_access_log"];
        assert_eq!(logged, log_rows.contains(&config.name), "{}", config.name);
    }
    let names: std::collections::BTreeSet<_> = all.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), all.len());
}

/// The audit rows and the access log row differ from their pair by one
/// thing each: the same policy but for `audit`, the same requests.
#[test]
fn the_audit_rows_and_the_access_log_row_share_their_pair() {
    let tokens = tokens::mint_all(1).unwrap();
    let all = configs::all(&tokens);
    let find = |name: &str| all.iter().find(|c| c.name == name).unwrap();
    let pair = find("tollgate_fused_no_state");
    let policy = |c: &configs::Config| {
        let json = c.bootstrap("/tmp/log", configs::Ports::default());
        let filters = json.pointer(HTTP_FILTERS).and_then(|f| f.as_array()).unwrap().clone();
        let config = filters
            .iter()
            .find_map(|f| f.pointer(WASM_CONFIG)?.as_str())
            .unwrap()
            .to_string();
        let mut policy: serde_json::Value = serde_json::from_str(&config).unwrap();
        policy.as_object_mut().unwrap().remove("audit");
        policy
            .pointer_mut("/routes/0")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("audit");
        policy
    };
    for name in [
        "tollgate_fused_access_log",
        "tollgate_fused_audit",
        "tollgate_fused_audit_sampled",
        "tollgate_fused_audit_kafka",
    ] {
        let row = find(name);
        assert_eq!(row.over, Some("tollgate_fused_no_state"), "{name}");
        assert_eq!(row.headers, pair.headers, "{name}");
        assert_eq!(row.load, pair.load, "{name}");
        assert_eq!(policy(row), policy(pair), "{name}");
    }
    let goal = report::GOALS.iter().find(|g| g.what == "audit").unwrap();
    assert_eq!(
        (goal.tollgate, goal.native),
        ("tollgate_fused_audit", "tollgate_fused_access_log")
    );
}

const HTTP_FILTERS: &str = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters";
const WASM_CONFIG: &str = "/typed_config/config/configuration/value";

#[test]
fn the_sink_counts_json_lines_per_path() {
    let counts = super::sink::Counts::default();
    let post = |path: &str, body: &str| tollgate_integration::server::Received {
        method: "POST".into(),
        path: path.into(),
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    };
    let answer = |r| super::sink::answer(&counts, &r).0;
    assert_eq!(answer(post("/events/a", "{}\n{}\n")), 200);
    assert_eq!(answer(post("/events/a", "{}\n")), 200);
    assert_eq!(answer(post("/events/b", "")), 200);
    let get = tollgate_integration::server::Received {
        method: "GET".into(),
        ..post("/events/a", "{}\n")
    };
    assert_eq!(answer(get), 405);
    let all = counts.lock().unwrap();
    let count = |path: &str| all.get(path).copied().unwrap();
    assert_eq!(count("/events/a"), super::sink::Count { events: 3, batches: 2 });
    assert_eq!(count("/events/b"), super::sink::Count { events: 0, batches: 1 });
    assert_eq!(all.len(), 2, "a refused GET counts nowhere");
}

#[test]
fn a_delivery_line_says_what_arrived() {
    let delivered = report::Delivered {
        emitted: 10,
        sent: 10,
        dropped: 0,
        received: 10,
        batches: 2,
        kafka: false,
    };
    assert_eq!(
        delivered.line("x"),
        "x: 10 audit events emitted, 10 received by the sink in 2 batches, 0 dropped"
    );
    let kafka = report::Delivered {
        kafka: true,
        ..delivered
    };
    assert_eq!(
        kafka.line("k"),
        "k: 10 audit events emitted, 10 stored by the broker (through the Kafka REST front) in 2 batches, 0 dropped"
    );
}
