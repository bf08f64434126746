//! The CRD's OpenAPI v3 schema as JSON Schema (draft 2020-12), with what the
//! API server adds: the implicit apiVersion/kind/metadata, and unknown fields
//! refused where the schema does not preserve them (its pruning with strict
//! field validation).

use super::Finding;
use jsonschema::error::ValidationErrorKind;
use jsonschema::{PatternOptions, Validator};
use serde_json::{json, Map, Value};

/// A validator for whole documents of one CRD version.
pub fn validator(open_api: &Value) -> Result<Validator, String> {
    let mut root = open_api.clone();
    if let Some(props) = root["properties"].as_object_mut() {
        props.insert("apiVersion".into(), json!({"type": "string"}));
        props.insert("kind".into(), json!({"type": "string"}));
        props.insert("metadata".into(), object_meta());
    }
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        // Kubernetes matches `pattern`s with Go's RE2; the regex crate is RE2-like.
        .with_pattern_options(PatternOptions::regex())
        .build(&convert(&root))
        .map_err(|e| format!("the CRD's schema does not build: {e}"))
}

/// The fields of ObjectMeta a manifest may set (the API server owns the rest,
/// but accepts them).
fn object_meta() -> Value {
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({"type": "object", "properties": {
        "name": {"type": "string"}, "generateName": {"type": "string"}, "namespace": {"type": "string"},
        "labels": strings, "annotations": strings,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "uid": {"type": "string"}, "resourceVersion": {"type": "string"}, "generation": {"type": "integer"},
        "creationTimestamp": {"nullable": true}, "deletionTimestamp": {"type": "string"},
        "deletionGracePeriodSeconds": {"type": "integer"}, "selfLink": {"type": "string"},
        "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
    }})
}

/// One OpenAPI node as JSON Schema.
pub fn convert(node: &Value) -> Value {
    let Some(obj) = node.as_object() else {
        return node.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), convert(v)))
                    .collect(),
            ),
            "items" | "additionalProperties" | "not" => convert(value),
            "allOf" | "anyOf" | "oneOf" => Value::Array(value.as_array().into_iter().flatten().map(convert).collect()),
            // Annotations, OpenAPI-only keywords and Kubernetes extensions.
            "nullable" | "description" | "title" | "example" | "externalDocs" | "default" | "format" => continue,
            "exclusiveMinimum" | "exclusiveMaximum" => continue, // booleans in OpenAPI 3.0: below
            k if k.starts_with("x-kubernetes-") => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    exclusive_bounds(obj, &mut out);
    formats(obj, &mut out);
    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.remove("type");
        if !out.contains_key("anyOf") {
            out.insert("type".into(), json!(["integer", "string"]));
        }
    }
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.get("type") == Some(&json!("object")) && !preserve && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    if obj.get("nullable") == Some(&Value::Bool(true)) {
        nullable(&mut out);
    }
    Value::Object(out)
}

/// OpenAPI 3.0's `exclusiveMaximum: true` beside `maximum` is 2020-12's
/// `exclusiveMaximum: N`.
fn exclusive_bounds(obj: &Map<String, Value>, out: &mut Map<String, Value>) {
    for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        if obj.get(flag) == Some(&Value::Bool(true)) {
            if let Some(limit) = out.remove(bound) {
                out.insert(flag.into(), limit);
            }
        }
    }
}

/// The formats Kubernetes checks: int32/int64 ranges (which recent API
/// servers enforce, kubernetes/kubernetes#136582, and Istio's int32 fields
/// need), and the string formats both it and the JSON Schema crate know.
/// Other formats are not checked.
fn formats(obj: &Map<String, Value>, out: &mut Map<String, Value>) {
    let format = obj.get("format").and_then(Value::as_str).unwrap_or_default();
    let range = match format {
        "int32" => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
        "int64" => Some((i64::MIN, i64::MAX)),
        _ => None,
    };
    if let Some((min, max)) = range {
        let below = |v: &Value| v.as_i64().is_some_and(|v| v > min);
        let above = |v: &Value| v.as_i64().is_some_and(|v| v < max);
        if !out.get("minimum").is_some_and(below) {
            out.insert("minimum".into(), json!(min));
        }
        if !out.get("maximum").is_some_and(above) {
            out.insert("maximum".into(), json!(max));
        }
    }
    if ["date-time", "date", "ipv4", "ipv6", "uuid", "email", "hostname"].contains(&format) {
        out.insert("format".into(), json!(format));
    }
}

/// `nullable: true`: null is a value too.
fn nullable(out: &mut Map<String, Value>) {
    match out.get("type").cloned() {
        Some(Value::String(t)) => {
            out.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(mut types)) => {
            types.push(json!("null"));
            out.insert("type".into(), Value::Array(types));
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = out.get_mut("enum") {
        allowed.push(Value::Null);
    }
}

/// Every schema problem of a document, with its path in the document.
pub fn check(validator: &Validator, doc: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    for error in validator.iter_errors(doc) {
        let path = dotted(doc, error.instance_path().as_str());
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    findings.push(Finding::new(&super::join_key(&path, key), "unknown field"));
                }
            }
            ValidationErrorKind::Required { property } => {
                let key = property.as_str().unwrap_or_default();
                findings.push(Finding::new(&super::join_key(&path, key), "Required value"));
            }
            _ => findings.push(Finding::new(&path, &message(&error))),
        }
    }
    findings
}

/// `x-kubernetes-list-type: map` (items unique by their
/// `x-kubernetes-list-map-keys`) and `set` (items unique), which the API
/// server checks beside the schema.
pub fn check_list_types(schema: &Value, value: &Value, path: &str, out: &mut Vec<Finding>) {
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            for (key, v) in map {
                let sub = props
                    .and_then(|p| p.get(key))
                    .unwrap_or(&schema["additionalProperties"]);
                check_list_types(sub, v, &super::join_key(path, key), out);
            }
        }
        Value::Array(items) => {
            let keys = schema["x-kubernetes-list-map-keys"].as_array();
            let identity = |item: &Value| -> Option<Value> {
                match schema["x-kubernetes-list-type"].as_str() {
                    Some("map") => {
                        let names = keys.into_iter().flatten().filter_map(Value::as_str);
                        Some(Value::Object(names.map(|k| (k.to_string(), item[k].clone())).collect()))
                    }
                    Some("set") => Some(item.clone()),
                    _ => None,
                }
            };
            let mut seen = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if let Some(id) = identity(item) {
                    if seen.contains(&id) {
                        out.push(Finding::new(&item_path, &format!("Duplicate value: {id}")));
                    }
                    seen.push(id);
                }
                check_list_types(&schema["items"], item, &item_path, out);
            }
        }
        _ => {}
    }
}

/// The crate's message, which quotes the value unless that is long (a whole
/// list or object).
fn message(error: &jsonschema::ValidationError) -> String {
    let text = error.to_string();
    match text.len() > 160 {
        true => error.masked_with("the value").to_string(),
        false => text,
    }
}

/// A JSON pointer into `doc` as `spec.targetRefs[0].kind`.
fn dotted(doc: &Value, pointer: &str) -> String {
    let mut path = String::new();
    let mut node = doc;
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match node {
            Value::Array(items) => {
                path.push_str(&format!("[{segment}]"));
                node = segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .unwrap_or(&Value::Null);
            }
            _ => {
                path = super::join_key(&path, &segment);
                node = &node[segment.as_str()];
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn openapi_becomes_json_schema() {
        let node = json!({"type": "object", "properties": {
            "n": {"type": "integer", "format": "int32", "nullable": true, "minimum": 1, "exclusiveMinimum": true},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "ios": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}});
        let want = json!({"type": "object", "additionalProperties": false, "properties": {
            "n": {"type": ["integer", "null"], "exclusiveMinimum": 1, "minimum": i32::MIN, "maximum": i32::MAX},
            "free": {"type": "object"},
            "ios": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}});
        assert_eq!(convert(&node), want);
    }

    #[test]
    fn paths_follow_the_document() {
        let doc = json!({"spec": {"targetRefs": [{"kind": "x"}], "m": {"0": 1, "a/b": 2}}});
        assert_eq!(dotted(&doc, "/spec/targetRefs/0/kind"), "spec.targetRefs[0].kind");
        assert_eq!(dotted(&doc, "/spec/m/0"), "spec.m.0");
        assert_eq!(dotted(&doc, "/spec/m/a~1b"), "spec.m[\"a/b\"]");
    }
}
