//! Checks rendered WasmPlugins against Istio's CRD schema (the structural
//! OpenAPI v3 subset Kubernetes applies: types, properties, enums, required,
//! bounds). CEL `x-kubernetes-validations` and regex `pattern`s are not run.

use serde_json::Value;

/// Istio's WasmPlugin CRD, vendored (source and version in its header) and
/// built into the tool: nothing outside the binary is read.
pub const CRD: &str = include_str!("../schemas/istio-wasmplugin-crd.yaml");

/// Every problem of one WasmPlugin against the vendored CRD.
pub fn check_plugin(doc: &Value) -> Result<Vec<String>, String> {
    Ok(check(&load()?, doc))
}

/// The `spec` schema of version `v1alpha1`.
pub fn load() -> Result<Value, String> {
    let path = "the vendored CRD";
    let crd: Value = serde_yaml_ng::from_str(CRD).map_err(|e| format!("{path}: {e}"))?;
    crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == "v1alpha1"))
        .map(|v| v["schema"]["openAPIV3Schema"]["properties"]["spec"].clone())
        .filter(|s| s.is_object())
        .ok_or_else(|| format!("{path}: no v1alpha1 spec schema"))
}

/// Every problem of one WasmPlugin document, with its path.
pub fn check(spec_schema: &Value, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if doc["apiVersion"] != "extensions.istio.io/v1alpha1" || doc["kind"] != "WasmPlugin" {
        errors.push("apiVersion/kind: not extensions.istio.io/v1alpha1 WasmPlugin".to_string());
    }
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !dns(name) {
        errors.push(format!("metadata.name: '{name}' is not a DNS-1123 name"));
    }
    walk(spec_schema, &doc["spec"], "spec", &mut errors);
    errors
}

fn walk(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    match schema["type"].as_str() {
        Some("object") => {
            let Some(map) = value.as_object() else {
                errors.push(format!("{path}: must be an object"));
                return;
            };
            let props = schema["properties"].as_object();
            for (key, v) in map {
                match props.and_then(|p| p.get(key)) {
                    Some(sub) => walk(sub, v, &format!("{path}.{key}"), errors),
                    None if preserve || props.is_none() => {}
                    None => errors.push(format!("{path}.{key}: unknown field")),
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(r) = required.as_str() {
                    if !map.contains_key(r) {
                        errors.push(format!("{path}.{r}: required"));
                    }
                }
            }
        }
        Some("string") => match value.as_str() {
            None => errors.push(format!("{path}: must be a string")),
            Some(s) => {
                if let Some(allowed) = schema["enum"].as_array() {
                    if !allowed.iter().any(|a| a == s) {
                        errors.push(format!("{path}: '{s}' is not one of {}", Value::Array(allowed.clone())));
                    }
                }
                let len = s.chars().count() as u64;
                if schema["maxLength"].as_u64().is_some_and(|max| len > max)
                    || schema["minLength"].as_u64().is_some_and(|min| len < min)
                {
                    errors.push(format!("{path}: length {len} out of bounds"));
                }
            }
        },
        Some("integer") => match value.as_i64() {
            None => errors.push(format!("{path}: must be an integer")),
            Some(n) => {
                let low = schema["minimum"].as_i64().is_some_and(|min| n < min);
                let high = schema["maximum"].as_i64().is_some_and(|max| n > max);
                if low || high {
                    errors.push(format!("{path}: {n} out of bounds"));
                }
            }
        },
        Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: must be a boolean")),
        Some("array") => match value.as_array() {
            None => errors.push(format!("{path}: must be a list")),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&schema["items"], item, &format!("{path}[{i}]"), errors);
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        load().unwrap()
    }

    fn plugin(spec: Value) -> Value {
        json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "tollgate-jwt"}, "spec": spec})
    }

    #[test]
    fn a_good_plugin_passes() {
        let doc = plugin(
            json!({"url": "oci://x/y:1", "pluginName": "tollgate.jwt", "phase": "AUTHN", "priority": 100,
            "failStrategy": "FAIL_RELOAD", "type": "HTTP", "pluginConfig": {"version": 1, "anything": [1, 2]}}),
        );
        assert_eq!(check(&schema(), &doc), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_named() {
        let doc = plugin(json!({"url": 7, "phase": "EARLY", "failStrategy": "FAIL_SOMETIMES", "prioriti": 1}));
        let errors = check(&schema(), &doc);
        for want in [
            "spec.url: must be a string",
            "spec.phase: 'EARLY'",
            "spec.failStrategy: 'FAIL_SOMETIMES'",
            "spec.prioriti: unknown field",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(want)), "{want} not in {errors:?}");
        }
        let bad_name = json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "Tollgate.JWT"}, "spec": {}});
        assert!(check(&schema(), &bad_name)
            .iter()
            .any(|e| e.starts_with("metadata.name")));
    }
}
