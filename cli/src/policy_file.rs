//! Reading a policy file as the filters would, with the line and column of
//! every error: `tollgate validate`, and the first step of every command.

use serde_json::Value;
use std::path::Path;
use tollgate_core::policy::{strict, Policy, MAX_POLICY_BYTES};

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
    let mut depth = 0usize;
    for next in saphyr_parser::Parser::new_from_str(text) {
        let (event, span) = next.map_err(|e| format!("is not YAML: {e}"))?;
        match event {
            saphyr_parser::Event::SequenceStart(..) | saphyr_parser::Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let line = span.start.line();
                    return Err(format!("is nested deeper than {MAX_DEPTH} levels (line {line})"));
                }
            }
            saphyr_parser::Event::SequenceEnd | saphyr_parser::Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

pub fn validate(path: &Path) -> Result<(), String> {
    let policy = load_policy(path)?;
    let count = |k: &str| policy[k].as_array().map_or(0, Vec::len);
    println!(
        "{}: ok ({} routes, {} tenants)",
        path.display(),
        count("routes"),
        count("tenants")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_policy;

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
}
