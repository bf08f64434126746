//! `tollgate test POLICY CASES`: the differences it prints for cases that
//! fail on purpose, the example policy's own cases (one per demo request),
//! bad cases files refused with their path and position, and keys from a
//! `jwks` file beside the cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use tollgate_cli::cases::{self, file::parse};
use tollgate_cli::demo::{self, EXAMPLES, TOKENS};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

const POLICY: &str = "wasmplugins/policy.yaml";

fn tollgate_test(policy: &Path, cases: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("test")
        .arg(policy)
        .arg(cases)
        .args(extra)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn failing_cases_print_a_difference_per_field_and_exit_1() {
    let out = tollgate_test(&repo(POLICY), &repo("cli/tests/cases/failing.yaml"), &[]);
    let expected = "\
ok passes
FAIL wrong status and reason
    status: want 200, got 401
    reason: want tenant_unknown, got token_missing
FAIL wrong stage outcomes
    stages.ratelimit: want allow, got not_run
    stages.tenant: want allow, got deny tenant_unknown
FAIL wrong header, and one that must be absent
    upstream_headers.x-tenant-id: want \"STD-001\", got \"ACME\"
    upstream_headers.x-user-id: want absent, got \"u-1\"
FAIL headers of a request answered locally
    route: want mlflow, got datahub
    stages.tenant: want deny tenant_unknown, got not_run
    upstream_headers.x-tenant-id: want \"ACME\", got absent
1 passed, 4 failed
";
    assert_eq!(stdout(&out), expected, "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "");
}

#[test]
fn json_output_lists_each_case_and_its_differences() {
    let out = tollgate_test(&repo(POLICY), &repo("cli/tests/cases/failing.yaml"), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (report["passed"].clone(), report["failed"].clone()),
        (json!(1), json!(4))
    );
    assert_eq!(
        report["cases"][0],
        json!({"name": "passes", "passed": true, "differences": []})
    );
    assert_eq!(
        report["cases"][1]["differences"][0],
        json!({"field": "status", "want": "200", "got": "401"})
    );
}

#[test]
fn the_example_policy_passes_its_own_cases() {
    let file = repo("wasmplugins/policy.tests.yaml");
    let count = cases::load(&file).unwrap().cases.len();
    let out = tollgate_test(&repo(POLICY), &file, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), count + 1);
    assert!(lines[..count].iter().all(|l| l.starts_with("ok ")), "{text}");
    assert_eq!(lines[count], format!("{count} passed, 0 failed"));
}

/// The curl lines `cargo xtask demo` prints are `demo::EXAMPLES`: each has a
/// case with its request (the demo's token as claims) and its answer.
#[test]
fn every_demo_request_is_a_case_of_the_example_policy() {
    let file = cases::load(&repo("wasmplugins/policy.tests.yaml")).unwrap();
    let now = file.now.unwrap();
    for example in EXAMPLES {
        let claims = example.token.map(|var| {
            let (_, tenant, roles, scope, expired) = TOKENS.iter().find(|t| t.0 == var).unwrap();
            demo::token_claims(tenant, roles, scope, *expired, now)
        });
        let url = format!("http://127.0.0.1:10000{}", example.path);
        let host = example
            .headers
            .iter()
            .find(|(k, _)| *k == "host")
            .map(|(_, v)| v.to_string());
        let headers: Vec<(String, String)> = example
            .headers
            .iter()
            .filter(|(k, _)| *k != "host")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found = file.cases.iter().find(|c| {
            let r = &c.request;
            let sent: Vec<(String, String)> = r.headers.clone().into_iter().collect();
            r.method == example.method
                && r.url.as_deref() == Some(url.as_str())
                && r.host == host
                && sent.len() == headers.len()
                && headers.iter().all(|h| sent.contains(h))
                && r.claims.clone().map(Value::Object) == claims
                && r.token.is_none()
        });
        let case = found.unwrap_or_else(|| panic!("no case for the demo's '{}'", example.what));
        let expect = &case.expect;
        assert_eq!(expect.status, Some(example.status), "{}", case.name);
        assert_eq!(expect.reason.as_deref(), example.reason, "{}", case.name);
        for (name, value) in example.upstream {
            let want = expect.upstream_headers.get(*name).cloned().flatten();
            assert_eq!(want.as_deref(), Some(*value), "{}: {name}", case.name);
        }
    }
}

/// (cases file, the errors `tollgate test` prints for it).
const BAD_FILES: &[(&str, &str)] = &[
    (
        "cases:\n  - name: a\n    request: {path: /x}\n    expect:\n      stauts: 200\n",
        "c.yaml:5:7: cases[0].expect: unknown field `stauts`, expected one of \
         `status`, `reason`, `route`, `stages`, `upstream_headers`",
    ),
    (
        "cases:\n  - name: a\n    expect: {status: 200}\n",
        "c.yaml:2:5: cases[0]: missing field `request`",
    ),
    (
        "cases:\n  - name: a\n    request: {path: /x, method: GET, cookie: a}\n    expect: {status: 200}\n",
        "c.yaml:3:38: cases[0].request: unknown field `cookie`, expected one of `method`, `url`, \
         `path`, `host`, `headers`, `source_address`, `namespace`, `token`, `no_verify`, `claims`, `now`",
    ),
    (
        "cases:\n  - name: a\n    request: {path: /x}\n    expect: {status: ~}\n",
        "c.yaml:4:22: cases[0].expect.status: null is not allowed: leave the field out or give a value",
    ),
    (
        "{\"cases\": [{\"name\": \"a\", \"request\": {\"path\": \"/x\"}, \"expect\": {\"stages\": {\"jwt\": \"maybe\"}}}]}",
        "c.yaml:1:74: cases[0].expect.stages: 'maybe': expected OUTCOME [REASON], \
         the outcome one of allow, deny, shadow_deny, not_run",
    ),
    (
        "cases:\n  - name: a\n    request: {path: /x}\n    expect: {upstream_headers: {x-a: \"1\", x-a: ~}}\n",
        "c.yaml:4:32: cases[0].expect.upstream_headers: 'x-a': duplicate key",
    ),
    ("cases: []\n", "c.yaml:1:1: cases: no cases"),
];

#[test]
fn bad_cases_files_are_refused_with_the_path_and_position_of_each_error() {
    for (text, error) in BAD_FILES {
        assert_eq!(
            parse(text, "c.yaml").unwrap_err(),
            format!("c.yaml: 1 error(s):\n{error}"),
            "for {text}"
        );
    }
}

#[test]
fn what_typed_reading_cannot_see_is_refused_all_at_once() {
    let text = "\
cases:
  - name: a
    request: {path: x, claims: {a: 1}, token: t}
    expect: {stages: {tenant: deny tenant_unknwn, audit: allow}}
  - name: a
    request:
      url: http://h/x
      no_verify: true
    expect: {}
  - name: b
    request: {method: GET}
    expect: {upstream_headers: {X-Tenant-Id: ACME}}
";
    let expected = "\
c.yaml: 9 error(s):
c.yaml:3:15: cases[0].request.path: must start with '/'
c.yaml:3:24: cases[0].request.claims: give token or claims, not both
c.yaml:4:23: cases[0].expect.stages.tenant: the tenant stage has no denial 'tenant_unknwn'
c.yaml:4:51: cases[0].expect.stages.audit: not a deciding stage: jwt, tenant or ratelimit
c.yaml:5:5: cases[1].name: 'a' is also cases[0]'s name
c.yaml:8:7: cases[1].request.no_verify: only with token (a token made from claims is always trusted)
c.yaml:9:5: cases[1].expect: lists nothing to check: give status, reason, route, stages or upstream_headers
c.yaml:11:5: cases[2].request: give url (http://HOST/PATH) or path (with host)
c.yaml:12:33: cases[2].expect.upstream_headers.X-Tenant-Id: header names are lowercase, as the application receives them";
    assert_eq!(parse(text, "c.yaml").unwrap_err(), expected);
}

/// A temporary directory of the test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-cases-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_bad_file_or_policy_exits_2_and_runs_nothing() {
    let dir = scratch("bad");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, BAD_FILES[1].0).unwrap();
    let out = tollgate_test(&repo(POLICY), &bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("cases[0]: missing field `request`"),
        "{}",
        stderr(&out)
    );
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, "version: 2\n").unwrap();
    let out = tollgate_test(&policy, &repo("cli/tests/cases/failing.yaml"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unsupported version 2"), "{}", stderr(&out));
    // A case explain cannot run: a namespace that is no Kubernetes name.
    let unrunnable = dir.join("unrunnable.yaml");
    std::fs::write(
        &unrunnable,
        "cases:\n  - name: n\n    request: {path: /x, namespace: Not_A_Name}\n    expect: {status: 200}\n",
    )
    .unwrap();
    let out = tollgate_test(&repo(POLICY), &unrunnable, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cases[0] ('n'): --namespace"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The example policy with its keys fetched from an IdP, and the demo's
/// token signed with `pem`.
fn remote_policy_and_token(dir: &Path, pem: &str) -> (PathBuf, String) {
    let mut policy = tollgate_cli::policy_file::load_policy(&repo(POLICY)).unwrap();
    let provider = &mut policy["jwt"]["providers"][0];
    provider.as_object_mut().unwrap().remove("local_jwks");
    provider["remote_jwks"] = json!({"uri": "http://idp.test/jwks.json", "cluster": "idp"});
    let path = dir.join("policy.json");
    std::fs::write(&path, policy.to_string()).unwrap();
    let claims = demo::token_claims("STD-001", &["analyst"], "", false, 1_800_000_000);
    let key = EncodingKey::from_rsa_pem(&std::fs::read(repo(pem)).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(demo::SIGNING_KID.into());
    (path, encode(&header, &claims, &key).unwrap())
}

#[test]
fn keys_come_from_the_jwks_file_beside_the_cases() {
    let dir = scratch("jwks");
    let (policy, token) = remote_policy_and_token(&dir, demo::SIGNING_KEY);
    let (_, foreign) = remote_policy_and_token(&dir, "tests/fixtures/keys/rsa-2.pem");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::copy(repo("tests/fixtures/keys/jwks.json"), dir.join("keys/jwks.json")).unwrap();
    let case = |name: &str, token: &str, extra: &str, expect: &str| {
        format!("  - name: {name}\n    request: {{path: /api/datahub/x, token: \"{token}\"{extra}}}\n    expect: {expect}\n")
    };
    let with_keys = format!(
        "jwks: keys/jwks.json\nnow: 1800000000\ncases:\n{}{}{}",
        case(
            "verified",
            &token,
            "",
            "{status: 200, upstream_headers: {x-tenant-id: STD-001}}"
        ),
        case(
            "foreign key",
            &foreign,
            "",
            "{status: 401, reason: token_signature_invalid}"
        ),
        case("trusted", &foreign, ", no_verify: true", "{status: 200}"),
    );
    let file = dir.join("with-keys.yaml");
    std::fs::write(&file, with_keys).unwrap();
    let out = tollgate_test(&policy, &file, &[]);
    assert_eq!(
        stdout(&out),
        "ok verified\nok foreign key\nok trusted\n3 passed, 0 failed\n",
        "{}",
        stderr(&out)
    );
    // Without the file, the keys cannot be had offline.
    let without = format!(
        "now: 1800000000\ncases:\n{}",
        case("no keys", &token, "", "{status: 200}")
    );
    let file = dir.join("without.yaml");
    std::fs::write(&file, without).unwrap();
    let out = tollgate_test(&policy, &file, &[]);
    assert_eq!(
        stdout(&out),
        "FAIL no keys\n    status: want 200, got 503\n0 passed, 1 failed\n"
    );
    // A jwks file that is not there is the file's error.
    let file = dir.join("missing.yaml");
    std::fs::write(
        &file,
        "jwks: nope.json\ncases:\n  - {name: a, request: {path: /x}, expect: {status: 1}}\n",
    )
    .unwrap();
    let out = tollgate_test(&policy, &file, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("jwks: "), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The README's section: its example cases pass over the example policy,
/// and the failure it shows is what `tollgate test` prints.
#[test]
fn the_readme_example_runs_and_its_failure_is_the_printed_one() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let section = readme.split("### Policy tests: `tollgate test`").nth(1).unwrap();
    // The fenced blocks: the cases (```yaml), then the output (```).
    let blocks: Vec<&str> = section.split("```").skip(1).step_by(2).collect();
    let dir = scratch("readme");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::copy(repo("tests/fixtures/keys/jwks.json"), dir.join("keys/jwks.json")).unwrap();
    let file = dir.join("cases.yaml");
    std::fs::write(&file, blocks[0].strip_prefix("yaml\n").unwrap()).unwrap();
    let out = tollgate_test(&repo(POLICY), &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).ends_with("2 passed, 0 failed\n"));
    let failing = tollgate_test(&repo(POLICY), &repo("cli/tests/cases/failing.yaml"), &[]);
    let printed = stdout(&failing);
    let shown = blocks[1].trim();
    assert!(shown.lines().count() >= 5);
    for line in shown.lines() {
        assert!(
            printed.lines().any(|l| l == line),
            "README shows '{line}', not printed:\n{printed}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deep_or_huge_files_are_refused_quickly() {
    let started = std::time::Instant::now();
    let nested = |levels: usize| {
        format!(
            "cases:\n  - name: a\n    request: {{path: /x, claims: {{a: {}1{}}}}}\n    expect: {{status: 200}}\n",
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    // The claims' mapping is the fifth level; the 124th '[' the 129th.
    assert_eq!(
        parse(&nested(124), "c.yaml").unwrap_err(),
        "c.yaml: 1 error(s):\nc.yaml:3:160: is nested deeper than 128 levels"
    );
    assert!(parse(&nested(123), "c.yaml").is_ok());
    // Far deeper: saphyr's own limit stops it first.
    let error = parse(&nested(30_000), "c.yaml").unwrap_err();
    assert!(error.contains("is not YAML: recursion limit exceeded"), "{error}");
    assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
    let dir = scratch("huge");
    let huge = dir.join("huge.yaml");
    std::fs::write(&huge, " ".repeat(5 << 20)).unwrap();
    let error = cases::load(&huge).unwrap_err();
    assert!(error.ends_with("5242880 bytes; the limit is 4194304"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
