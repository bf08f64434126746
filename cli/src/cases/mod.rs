//! `tollgate test POLICY CASES`: declared requests with the answer they
//! must get, each run through `explain` (the fused filter's own pipeline on
//! the in-memory host), so a case and a sidecar cannot disagree. Recorded
//! traffic says what happened; declared cases say what must happen.

pub mod check;
pub mod file;
pub mod token;

use crate::explain::{self, Request};
use check::Difference;
use file::{Case, CasesFile};
use serde_json::{json, Value};
use std::path::Path;

/// One case's result.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub differences: Vec<Difference>,
}

/// Runs every case of `cases` over `policy` and prints the results (text,
/// or JSON with `json_out`). `Ok(true)` when every case passed; `Err` for a
/// policy or cases file that cannot be run.
pub fn run(policy: &Path, cases: &Path, json_out: bool) -> Result<bool, String> {
    let doc = crate::policy_file::load_policy(policy)?;
    let file = load(cases)?;
    let jwks = read_jwks(cases, &file)?;
    let outcomes = run_cases(&doc, &file, jwks.as_deref()).map_err(|e| format!("{}: {e}", cases.display()))?;
    let failed = outcomes.iter().filter(|o| !o.differences.is_empty()).count();
    if json_out {
        let text = serde_json::to_string_pretty(&report_json(&outcomes)).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", report_text(&outcomes));
    }
    Ok(failed == 0)
}

/// Reads and checks a cases file (bounded in size).
pub fn load(path: &Path) -> Result<CasesFile, String> {
    let name = path.display().to_string();
    let size = std::fs::metadata(path).map_err(|e| format!("{name}: {e}"))?.len();
    if size > file::MAX_BYTES {
        return Err(format!("{name}: {size} bytes; the limit is {}", file::MAX_BYTES));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    file::parse(&text, &name)
}

/// The file's `jwks`, relative to the cases file.
fn read_jwks(cases: &Path, file: &CasesFile) -> Result<Option<Vec<u8>>, String> {
    let Some(jwks) = &file.jwks else { return Ok(None) };
    let path = cases.parent().unwrap_or(Path::new(".")).join(jwks);
    std::fs::read(&path)
        .map(Some)
        .map_err(|e| format!("{}: jwks: {}: {e}", cases.display(), path.display()))
}

/// Every case's differences; `Err` lists the cases explain could not run
/// (a URL without a host, an unknown namespace).
pub fn run_cases(policy: &Value, file: &CasesFile, jwks: Option<&[u8]>) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        let request = request(case, file.now, jwks);
        match explain::explain(policy, &request) {
            Ok(e) => outcomes.push(Outcome {
                name: case.name.clone(),
                differences: check::compare(&case.expect, &e),
            }),
            Err(e) => errors.push(format!("  cases[{i}] ('{}'): {e}", case.name)),
        }
    }
    if errors.is_empty() {
        Ok(outcomes)
    } else {
        Err(format!(
            "{} case(s) cannot be run:\n{}",
            errors.len(),
            errors.join("\n")
        ))
    }
}

/// The case's request as explain takes it.
fn request(case: &Case, now: Option<u64>, jwks: Option<&[u8]>) -> Request {
    let r = &case.request;
    let url = r.url.clone().or_else(|| r.path.clone()).unwrap_or_default();
    let mut headers: Vec<(String, String)> = Vec::new();
    // explain makes a `host` header the :authority; a bare path needs one.
    let host = r
        .host
        .clone()
        .or_else(|| r.url.is_none().then(|| "localhost".to_string()));
    headers.extend(host.map(|h| ("host".to_string(), h)));
    headers.extend(r.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    let (token, no_verify) = match (&r.token, &r.claims) {
        (Some(token), _) => (Some(token.clone()), r.no_verify),
        (None, Some(claims)) => (Some(token::unsigned(claims)), true),
        (None, None) => (None, false),
    };
    Request {
        method: r.method.clone(),
        url,
        headers,
        token,
        no_verify,
        now: r.now.or(now),
        jwks: jwks.map(<[u8]>::to_vec),
        namespace: r.namespace.clone(),
        source_address: r.source_address.clone(),
    }
}

/// `ok NAME` or `FAIL NAME` and its differences, then the counts.
pub fn report_text(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        if outcome.differences.is_empty() {
            out.push_str(&format!("ok {}\n", outcome.name));
            continue;
        }
        out.push_str(&format!("FAIL {}\n", outcome.name));
        for difference in &outcome.differences {
            out.push_str(&format!("    {difference}\n"));
        }
    }
    let failed = outcomes.iter().filter(|o| !o.differences.is_empty()).count();
    out.push_str(&format!("{} passed, {failed} failed\n", outcomes.len() - failed));
    out
}

fn report_json(outcomes: &[Outcome]) -> Value {
    let failed = outcomes.iter().filter(|o| !o.differences.is_empty()).count();
    let cases: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let differences: Vec<Value> = o
                .differences
                .iter()
                .map(|d| json!({"field": d.field, "want": d.want, "got": d.got}))
                .collect();
            json!({"name": o.name, "passed": differences.is_empty(), "differences": differences})
        })
        .collect();
    json!({"cases": cases, "passed": outcomes.len() - failed, "failed": failed})
}
