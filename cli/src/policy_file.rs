//! Reading a policy file as the filters would, with the line and column of
//! every error: `tollgate validate`, and the first step of every command.

use crate::positions::{Duplicate, Position, Positions};
use serde_json::Value;
use std::path::Path;
use tollgate_core::policy::{lint, strict, Policy, PolicyDoc, PolicyError, MAX_POLICY_BYTES};

/// Reads a YAML or JSON policy and checks it; the error lists every problem.
pub fn load_policy(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_policy(&text).map_err(|e| format!("{} {e}", path.display()))
}

/// Checks a YAML (or JSON, which is YAML) policy as the filters would:
/// duplicate keys and nulls are read strictly, then `Policy` checks the rest.
pub fn check_policy(text: &str) -> Result<Value, String> {
    check_depth(text)?;
    let read = strict::read(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| format!("is not YAML: {e}"))?;
    let value = read.value.clone();
    let size = value.to_string().len();
    let errors = match Policy::from_read(read) {
        Ok(_) if size <= MAX_POLICY_BYTES => return Ok(value),
        Ok(_) => vec![format!(
            "  policy is {size} bytes as JSON; the limit is {MAX_POLICY_BYTES}"
        )],
        Err(errors) => errors.iter().map(|e| format!("  {e}")).collect(),
    };
    Err(format!("has {} error(s):\n{}", errors.len(), errors.join("\n")))
}

/// Deepest nesting read, as serde_json's and serde_yaml_ng's recursion limit.
const MAX_DEPTH: usize = 128;

/// serde_yaml_ng reads every event of a document before deserializing it,
/// in time quadratic in the depth of flow collections (`[[[[...`: 19 s for
/// 60 KB; yaml/yaml-serde#1). saphyr-parser yields events one at a time, so
/// too deep a document is refused after reading no more than its first
/// MAX_DEPTH levels; under that bound serde_yaml_ng's work is linear.
fn check_depth(text: &str) -> Result<(), String> {
    depth_error(text).map_or(Ok(()), |(_, e)| Err(e))
}

/// `check_depth`'s error with where it was found.
fn depth_error(text: &str) -> Option<(Position, String)> {
    let mut depth = 0usize;
    for next in saphyr_parser::Parser::new_from_str(text) {
        let (event, span) = match next {
            Ok(next) => next,
            Err(e) => {
                let at = Position {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                };
                return Some((at, format!("is not YAML: {e}")));
            }
        };
        match event {
            saphyr_parser::Event::SequenceStart(..) | saphyr_parser::Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let line = span.start.line();
                    let at = Position {
                        line,
                        col: span.start.col() + 1,
                    };
                    return Some((at, format!("is nested deeper than {MAX_DEPTH} levels (line {line})")));
                }
            }
            saphyr_parser::Event::SequenceEnd | saphyr_parser::Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// One line of `tollgate validate`: an error or a warning, where it is
/// written and the path core gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub at: Position,
    pub warning: bool,
    pub path: String,
    pub message: String,
}

impl Finding {
    /// `FILE:LINE:COL: [warning: ]path: message`, as compilers write them.
    pub fn render(&self, file: &str) -> String {
        let kind = if self.warning { "warning: " } else { "" };
        let what = PolicyError::new(self.path.clone(), self.message.clone());
        format!("{file}:{}:{}: {kind}{what}", self.at.line, self.at.col)
    }
}

/// Every error of a policy text, each where it is written; for a valid
/// policy, core's warnings (`policy::lint`). Sorted by position.
pub fn diagnose(text: &str) -> Vec<Finding> {
    let mut findings = match diagnose_unsorted(text) {
        Ok(findings) => findings,
        Err((at, message)) => vec![Finding {
            at,
            warning: false,
            path: String::new(),
            message,
        }],
    };
    findings.sort_by_key(|f| (f.at.line, f.at.col));
    findings
}

fn diagnose_unsorted(text: &str) -> Result<Vec<Finding>, (Position, String)> {
    if let Some(error) = depth_error(text) {
        return Err(error);
    }
    let read = strict::read(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| {
        let at = e.location().map_or(Position { line: 1, col: 1 }, |l| Position {
            line: l.line(),
            col: l.column(),
        });
        (at, format!("is not YAML: {e}"))
    })?;
    let value = read.value.clone();
    let (errors, warnings) = match Policy::from_read(read) {
        Ok(policy) => (size_error(&value), warnings(&value, &policy)),
        Err(errors) => (errors.0, Vec::new()),
    };
    if errors.is_empty() && warnings.is_empty() {
        return Ok(Vec::new());
    }
    let positions = Positions::read(text).map_err(|e| (Position { line: 1, col: 1 }, format!("is not YAML: {e}")))?;
    let locate = |e: PolicyError, warning: bool| {
        let duplicate = if e.message == strict::DUPLICATE_KEY {
            Duplicate::Last
        } else {
            Duplicate::First
        };
        Finding {
            at: positions.find(&e.path, duplicate),
            warning,
            path: e.path,
            message: e.message,
        }
    };
    let errors = errors.into_iter().map(|e| locate(e, false));
    Ok(errors.chain(warnings.into_iter().map(|e| locate(e, true))).collect())
}

fn size_error(value: &Value) -> Vec<PolicyError> {
    let size = value.to_string().len();
    if size <= MAX_POLICY_BYTES {
        return Vec::new();
    }
    let message = format!("policy is {size} bytes as JSON; the limit is {MAX_POLICY_BYTES}");
    vec![PolicyError::new("", message)]
}

/// Core's warnings about a valid policy.
fn warnings(value: &Value, policy: &Policy) -> Vec<PolicyError> {
    match serde_json::from_value::<PolicyDoc>(value.clone()) {
        Ok(doc) => lint::warnings(&doc, policy),
        // Cannot happen for a policy that compiled; say so rather than hide it.
        Err(e) => vec![PolicyError::new("", format!("could not be re-read for warnings: {e}"))],
    }
}

/// `tollgate validate`: every error and warning as `FILE:LINE:COL: ...`;
/// `Err` when there are errors, or warnings and `deny_warnings`.
pub fn validate(path: &Path, deny_warnings: bool) -> Result<(), String> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
    let findings = diagnose(&text);
    for finding in &findings {
        println!("{}", finding.render(&file));
    }
    let warnings = findings.iter().filter(|f| f.warning).count();
    let errors = findings.len() - warnings;
    if errors > 0 {
        return Err(format!("{file}: {errors} error(s), {warnings} warning(s)"));
    }
    if warnings > 0 && deny_warnings {
        return Err(format!("{file}: {warnings} warning(s), denied by --deny-warnings"));
    }
    let policy = check_policy(&text).map_err(|e| format!("{file} {e}"))?;
    let count = |k: &str| policy[k].as_array().map_or(0, Vec::len);
    println!(
        "{file}: ok ({} routes, {} tenants, {warnings} warning(s))",
        count("routes"),
        count("tenants")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_policy, diagnose, validate};

    fn refused(yaml: &str) -> String {
        check_policy(yaml).unwrap_err()
    }

    #[test]
    fn yaml_duplicates_and_nulls_are_refused_with_their_path() {
        let null = "null is not allowed: leave the field out or give a value";
        let rows: &[(&str, &[&str])] = &[
            ("version: 1\nversion: 1\n", &["version: duplicate key"]),
            (
                "version: 1\ntenants:\n  - {id: a}\n  - {id: b}\n  - id: c\n    status: active\n    status: suspended\n",
                &["tenants[2].status: duplicate key"],
            ),
            ("version: 1\nroutes:\n", &[&format!("routes: {null}")]),
            // A tenant whose `routes:` is left empty may not use every route.
            (
                "version: 1\ntenants:\n  - id: a\n    routes:\n",
                &[&format!("tenants[0].routes: {null}")],
            ),
            ("version: 1\nrealm: ~\n", &[&format!("realm: {null}")]),
        ];
        for (yaml, want) in rows {
            let lines: Vec<String> = want.iter().map(|w| format!("  {w}")).collect();
            let expected = format!("has {} error(s):\n{}", want.len(), lines.join("\n"));
            assert_eq!(refused(yaml), expected, "for {yaml}");
        }
    }

    #[test]
    fn odd_yaml_is_refused_not_guessed() {
        assert!(refused("version: 1\nrealm: .nan\n").contains("NaN is not a finite number"));
        assert!(refused("version: 1\nrealm: !tag x\n").contains("tagged values are not allowed"));
        assert!(refused("version: 1\n---\nversion: 1\n").contains("is not YAML"));
    }

    #[test]
    fn deep_or_wide_yaml_is_checked_quickly() {
        let started = std::time::Instant::now();
        let deep = format!("version: 1\nrealm: {}1{}\n", "[".repeat(30_000), "]".repeat(30_000));
        assert!(
            refused(&deep).starts_with("is not YAML: recursion limit exceeded"),
            "{}",
            refused(&deep)
        );
        let deep_map = format!("version: 1\nrealm: {}1{}\n", "{a: ".repeat(20_000), "}".repeat(20_000));
        assert_eq!(refused(&deep_map), "is nested deeper than 128 levels (line 2)");
        let deeper_than_policies = format!("version: 1\nrealm: {}1{}\n", "[".repeat(129), "]".repeat(129));
        assert_eq!(
            refused(&deeper_than_policies),
            "is nested deeper than 128 levels (line 2)"
        );
        let tenants: String = (0..4000).map(|i| format!("  - {{id: t{i}}}\n")).collect();
        let wide = format!("version: 1\ntenants:\n{tenants}");
        assert!(wide.len() > 60_000);
        assert!(check_policy(&wide).is_ok());
        let flow: Vec<String> = (0..5000).map(|i| format!("{{id: tenant-{i}}}")).collect();
        let one_line = format!("version: 1\ntenants: [{}]\n", flow.join(", "));
        assert!(one_line.len() > 60_000);
        assert!(check_policy(&one_line).is_ok());
        assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
    }

    /// `LINE:COL: [warning: ]path: message` for each finding.
    fn lines(text: &str) -> Vec<String> {
        diagnose(text).iter().map(|f| f.render("p.yaml")).collect()
    }

    #[test]
    fn every_error_is_given_with_its_line_and_column() {
        let text = "\
version: 2
routes:
  - name: a
    match:
      prefix: api
      methods: [GET, 7]
  - match: {exact: /x}
  - name: c
    jwt:
      requirement: sometimes
tenants:
  - id: acme
    status: paused
tenant:
  hedaer: x
";
        assert_eq!(
            lines(text),
            [
                "p.yaml:1:1: version: unsupported version 2; this build reads version 1",
                "p.yaml:5:7: routes[0].match.prefix: 'api' must start with '/'",
                "p.yaml:6:22: routes[0].match.methods[1]: invalid type: integer `7`, expected a string",
                // A missing field: its parent, the list item.
                "p.yaml:7:5: routes[1].name: missing required field",
                "p.yaml:10:7: routes[2].jwt.requirement: unknown variant `sometimes`, expected one of `required`, `optional`, `none`",
                "p.yaml:13:5: tenants[0].status: unknown variant `paused`, expected `active` or `suspended`",
                "p.yaml:15:3: tenant.hedaer: unknown field",
            ]
        );
    }

    #[test]
    fn errors_deep_in_list_items_and_missing_nested_fields() {
        let text = "\
version: 1
jwt:
  providers:
    - name: a
      issuer: a
      hmac_secret_base64: MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=
      claim_to_headers:
        - {claim_name: a, header_name: x-a}
        - {claim_name: b, header_name: ':path'}
    - name: b
      issuer: b
      remote_jwks:
        uri: https://idp.example.com/jwks
";
        let got = lines(text);
        assert_eq!(got.len(), 2, "{got:#?}");
        // Inside an item of a list inside an item of a list.
        assert!(
            got[0].starts_with("p.yaml:9:27: jwt.providers[0].claim_to_headers[1].header_name: "),
            "{got:#?}"
        );
        // A missing field of a nested mapping: the key of that mapping.
        assert_eq!(
            got[1],
            "p.yaml:12:7: jwt.providers[1].remote_jwks.cluster: missing required field"
        );
    }

    /// Core's limit errors, each at its line with its path.
    #[test]
    fn bad_limits_are_reported_where_they_are_written() {
        let text = "\
version: 1
tenants:
  - id: ACME
    tier: standard
routes:
  - name: api
    match: { prefix: /api }
    limits:
      - name: by-header
        key: ['header:']
        requests: 5
        period: second
      - name: by-tier
        key: [tenant]
        requests: 5
        period: second
        tiers: { gold: 9 }
      - name: everywhere
        key: [tenant]
        requests: 5
        period: second
        scope: global
";
        assert_eq!(
            lines(text),
            [
                "p.yaml:10:15: routes[0].limits[0].key[0]: unknown key kind 'header:': \
                 use tenant, tier, subject, client_ip, route or header:<name>",
                "p.yaml:17:18: routes[0].limits[1].tiers.gold: no tenant has tier 'gold'",
                "p.yaml:22:9: routes[0].limits[2].scope: a global limit needs ratelimit.service",
            ]
        );
    }

    #[test]
    fn duplicates_point_at_the_second_key_and_json_is_located_too() {
        let text = "version: 1\ntenants:\n  - id: a\n    status: active\n    status: suspended\n";
        assert_eq!(lines(text), ["p.yaml:5:5: tenants[0].status: duplicate key"]);
        let json = "{\n  \"version\": 1,\n  \"routes\": [\n    {\"name\": \"a\"},\n    {\"name\": \"b\", \"match\": {\"prefix\": \"x\"}}\n  ]\n}\n";
        assert_eq!(
            lines(json),
            ["p.yaml:5:29: routes[1].match.prefix: 'x' must start with '/'"]
        );
    }

    #[test]
    fn yaml_errors_have_a_position_too() {
        assert_eq!(lines("version: 1\nroutes: [1\n").len(), 1);
        assert!(
            lines("version: 1\nroutes: [1\n")[0].starts_with("p.yaml:3:1: is not YAML: "),
            "{:?}",
            lines("version: 1\nroutes: [1\n")
        );
        let deep = format!("version: 1\nrealm: {}1{}\n", "[".repeat(129), "]".repeat(129));
        assert_eq!(
            lines(&deep),
            ["p.yaml:2:135: is nested deeper than 128 levels (line 2)"]
        );
    }

    const SHADOWED: &str = "\
version: 1
routes:
  - name: a
    match: {prefix: /api}
  - name: b
    match: {prefix: /api}
";

    #[test]
    fn warnings_are_printed_and_only_fail_when_denied() {
        assert_eq!(
            lines(SHADOWED),
            [
                "p.yaml:6:5: warning: routes[1].match: route 'b' can never be chosen: routes[0] ('a') matches every \
              request it matches and takes precedence (the same path match, listed earlier)"
            ]
        );
        let dir = std::env::temp_dir().join(format!("tollgate-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.yaml");
        std::fs::write(&file, SHADOWED).unwrap();
        assert_eq!(validate(&file, false), Ok(()));
        let denied = validate(&file, true).unwrap_err();
        assert!(denied.ends_with("1 warning(s), denied by --deny-warnings"), "{denied}");
        std::fs::write(&file, "version: 1\nrealm: \"a\\\"b\"\n").unwrap();
        let refused = validate(&file, false).unwrap_err();
        assert!(refused.ends_with("1 error(s), 0 warning(s)"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_example_policy_has_no_error_or_warning() {
        let text = include_str!("../../wasmplugins/policy.yaml");
        assert_eq!(lines(text), Vec::<String>::new());
    }
}
