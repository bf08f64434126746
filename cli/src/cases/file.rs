//! The cases file of `tollgate test`: YAML (or JSON, which is YAML), read
//! into typed structs that refuse unknown fields, then checked as a whole.
//! Every error carries its path and is shown where it is written, as
//! `tollgate validate` shows a policy's.

use crate::policy_file::Finding;
use crate::positions::{Duplicate, Position, Positions};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tollgate_core::policy::strict;

/// A cases file larger than this is refused before it is parsed.
pub const MAX_BYTES: u64 = 4 << 20;
/// Most cases in one file.
pub const MAX_CASES: usize = 10_000;
/// Deepest nesting read (serde_yaml_ng's own recursion limit).
const MAX_DEPTH: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    /// A JWKS file (relative to the cases file) for providers that fetch theirs.
    #[serde(default, deserialize_with = "given")]
    pub jwks: Option<String>,
    /// The clock of every case that gives none (Unix seconds).
    #[serde(default, deserialize_with = "given")]
    pub now: Option<u64>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub request: CaseRequest,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    #[serde(default = "get")]
    pub method: String,
    /// `http://host/path?query`; or `path` (with `host`).
    #[serde(default, deserialize_with = "given")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub path: Option<String>,
    /// The `:authority`; with `url`, it replaces the URL's.
    #[serde(default, deserialize_with = "given")]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "unique")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "given")]
    pub source_address: Option<String>,
    /// Answer as the rendered plugin of this namespace runs (explain's `--namespace`).
    #[serde(default, deserialize_with = "given")]
    pub namespace: Option<String>,
    /// A JWT, verified unless `no_verify`.
    #[serde(default, deserialize_with = "given")]
    pub token: Option<String>,
    #[serde(default)]
    pub no_verify: bool,
    /// Claims of a token made for the case and trusted (`--no-verify`).
    #[serde(default, deserialize_with = "given")]
    pub claims: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "given")]
    pub now: Option<u64>,
}

fn get() -> String {
    "GET".to_string()
}

/// What the case must give; only what is listed is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default, deserialize_with = "given")]
    pub status: Option<u16>,
    /// The denial's `reason` (of the JSON body of the local reply).
    #[serde(default, deserialize_with = "given")]
    pub reason: Option<String>,
    /// The route chosen.
    #[serde(default, deserialize_with = "given")]
    pub route: Option<String>,
    #[serde(default, deserialize_with = "unique")]
    pub stages: BTreeMap<String, StageWant>,
    /// Header name -> value the application receives, or null: must be absent.
    #[serde(default, deserialize_with = "unique")]
    pub upstream_headers: BTreeMap<String, Option<String>>,
}

/// `OUTCOME [REASON]`: what a stage must decide.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StageWant {
    pub outcome: String,
    pub reason: Option<String>,
}

/// A stage's outcomes as explain names them, and `not_run` for a stage an
/// earlier one answered before.
pub const OUTCOMES: &[&str] = &["allow", "deny", "shadow_deny", "not_run"];

impl TryFrom<String> for StageWant {
    type Error = String;

    fn try_from(text: String) -> Result<StageWant, String> {
        let mut words = text.split_whitespace();
        let (outcome, reason, rest) = (words.next(), words.next(), words.next());
        let outcome = outcome.filter(|o| OUTCOMES.contains(o)).ok_or_else(|| {
            format!(
                "'{text}': expected OUTCOME [REASON], the outcome one of {}",
                OUTCOMES.join(", ")
            )
        })?;
        if rest.is_some() || (reason.is_some() && !matches!(outcome, "deny" | "shadow_deny")) {
            return Err(format!("'{text}': only deny and shadow_deny take a reason, one word"));
        }
        Ok(StageWant {
            outcome: outcome.to_string(),
            reason: reason.map(str::to_string),
        })
    }
}

impl std::fmt::Display for StageWant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            Some(reason) => write!(f, "{} {reason}", self.outcome),
            None => f.write_str(&self.outcome),
        }
    }
}

/// An optional field that, when written, must have a value: `null` is an
/// error rather than "not given", so `status: ~` cannot silently check nothing.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A mapping whose keys are given once: a map would keep the last of two
/// silently, and one of the two expectations would never be checked.
fn unique<'de, D: Deserializer<'de>, V: Deserialize<'de>>(d: D) -> Result<BTreeMap<String, V>, D::Error> {
    d.deserialize_map(Unique(std::marker::PhantomData))
}

struct Unique<V>(std::marker::PhantomData<V>);

impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, V>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("'{key}': {}", strict::DUPLICATE_KEY)));
            }
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// Reads and checks a cases file's text; `Err` lists every error as
/// `FILE:LINE:COL: path: message`.
pub fn parse(text: &str, file: &str) -> Result<CasesFile, String> {
    let located = |findings: Vec<Finding>| {
        let lines: Vec<String> = findings.iter().map(|f| f.render(file)).collect();
        format!("{file}: {} error(s):\n{}", lines.len(), lines.join("\n"))
    };
    if let Some(finding) = too_deep(text) {
        return Err(located(vec![finding]));
    }
    let cases: CasesFile = serde_yaml_ng::from_str(text).map_err(|e| located(vec![serde_finding(&e)]))?;
    let errors = check(&cases);
    if errors.is_empty() {
        return Ok(cases);
    }
    let positions = Positions::read(text).unwrap_or_default();
    let mut findings: Vec<Finding> = errors
        .into_iter()
        .map(|(path, message)| Finding {
            at: positions.find(&path, Duplicate::First),
            warning: false,
            path,
            message,
        })
        .collect();
    findings.sort_by_key(|f| (f.at.line, f.at.col));
    Err(located(findings))
}

/// serde_yaml_ng's error, its path and message kept, its position moved
/// to the front.
fn serde_finding(e: &serde_yaml_ng::Error) -> Finding {
    let text = e.to_string();
    let (at, message) = match e.location() {
        Some(l) => {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            let message = text.strip_suffix(&suffix).unwrap_or(&text);
            // serde's words for a null where a value is needed.
            let message = match message.split_once("invalid type: unit value, expected ") {
                Some((path, _)) => format!("{path}{}", strict::NULL_VALUE),
                None => message.to_string(),
            };
            (
                Position {
                    line: l.line(),
                    col: l.column(),
                },
                message,
            )
        }
        None => (Position { line: 1, col: 1 }, text),
    };
    Finding {
        at,
        warning: false,
        path: String::new(),
        message,
    }
}

/// serde_yaml_ng reads every event before deserializing, in time quadratic
/// in flow nesting depth; saphyr's events stop a deep document (or text
/// that is not YAML) early, as `tollgate validate` does for policies.
fn too_deep(text: &str) -> Option<Finding> {
    let mut depth = 0usize;
    for next in saphyr_parser::Parser::new_from_str(text) {
        let (event, span) = match next {
            Ok(next) => next,
            // Not read further: serde_yaml_ng would take as long as for a deep one.
            Err(e) => {
                return Some(Finding {
                    at: Position {
                        line: e.marker().line(),
                        col: e.marker().col() + 1,
                    },
                    warning: false,
                    path: String::new(),
                    message: format!("is not YAML: {e}"),
                })
            }
        };
        match event {
            saphyr_parser::Event::SequenceStart(..) | saphyr_parser::Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(Finding {
                        at: Position {
                            line: span.start.line(),
                            col: span.start.col() + 1,
                        },
                        warning: false,
                        path: String::new(),
                        message: format!("is nested deeper than {MAX_DEPTH} levels"),
                    });
                }
            }
            saphyr_parser::Event::SequenceEnd | saphyr_parser::Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// What typed reading cannot see: each error as (path, message).
fn check(file: &CasesFile) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if file.cases.is_empty() {
        errors.push(("cases".to_string(), "no cases".to_string()));
    }
    if file.cases.len() > MAX_CASES {
        errors.push(("cases".to_string(), format!("more than {MAX_CASES} cases")));
    }
    for (i, case) in file.cases.iter().enumerate().take(MAX_CASES) {
        let at = format!("cases[{i}]");
        if case.name.trim().is_empty() {
            errors.push((format!("{at}.name"), "must not be empty".to_string()));
        }
        if let Some(first) = file.cases.iter().take(i).position(|c| c.name == case.name) {
            errors.push((
                format!("{at}.name"),
                format!("'{}' is also cases[{first}]'s name", case.name),
            ));
        }
        check_request(&case.request, &format!("{at}.request"), &mut errors);
        check_expect(&case.expect, &format!("{at}.expect"), &mut errors);
    }
    errors
}

fn check_request(request: &CaseRequest, at: &str, errors: &mut Vec<(String, String)>) {
    let mut error = |field: &str, message: &str| errors.push((format!("{at}{field}"), message.to_string()));
    match (&request.url, &request.path) {
        (Some(_), Some(_)) => error(".path", "give url or path, not both"),
        (None, None) => error("", "give url (http://HOST/PATH) or path (with host)"),
        (None, Some(path)) if !path.starts_with('/') => error(".path", "must start with '/'"),
        _ => {}
    }
    if request.token.is_some() && request.claims.is_some() {
        error(".claims", "give token or claims, not both");
    }
    if request.no_verify && request.token.is_none() {
        error(
            ".no_verify",
            "only with token (a token made from claims is always trusted)",
        );
    }
    for name in request.headers.keys() {
        if name.is_empty() || name.starts_with(':') {
            error(
                &format!(".headers.{name}"),
                "a header name (pseudo-headers come from method, url, path and host)",
            );
        }
    }
}

fn check_expect(expect: &Expect, at: &str, errors: &mut Vec<(String, String)>) {
    let nothing = expect.status.is_none()
        && expect.reason.is_none()
        && expect.route.is_none()
        && expect.stages.is_empty()
        && expect.upstream_headers.is_empty();
    if nothing {
        errors.push((
            at.to_string(),
            "lists nothing to check: give status, reason, route, stages or upstream_headers".to_string(),
        ));
    }
    for (stage, want) in &expect.stages {
        let deciding = tollgate_core::stage::by_key(stage).is_some_and(|s| s.route_mode.is_some());
        if !deciding {
            errors.push((
                format!("{at}.stages.{stage}"),
                "not a deciding stage: jwt, tenant or ratelimit".to_string(),
            ));
        } else if let Some(reason) = &want.reason {
            if tollgate_core::stage::denial(stage, reason).is_none() {
                errors.push((
                    format!("{at}.stages.{stage}"),
                    format!("the {stage} stage has no denial '{reason}'"),
                ));
            }
        }
    }
    for name in expect.upstream_headers.keys() {
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            errors.push((
                format!("{at}.upstream_headers.{name}"),
                "header names are lowercase, as the application receives them".to_string(),
            ));
        }
    }
}
