//! The CRD's `x-kubernetes-validations` CEL rules, run as the API server runs
//! them: each rule at its schema node, with `self` bound to every instance of
//! that node, and the Kubernetes CEL library functions the rules call.

use super::go_url;
use super::Finding;
use cel::extractors::This;
use cel::objects::{Key, Opaque};
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The Kubernetes CEL library functions the vendored CRD's rules call, each
/// implemented below after the Kubernetes URL library (`isURL`, `url`,
/// `getScheme`). `has`, `all`, `exists`, `size`, `contains` and `in` are
/// standard CEL.
pub const KUBERNETES_FUNCTIONS: &[&str] = &["isURL", "url", "getScheme"];

/// One rule of the CRD, as written there.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub rule: String,
    pub message: Option<String>,
    pub field_path: Option<String>,
}

impl Rule {
    /// `oldSelf` rules compare an update with the stored object; a manifest
    /// on disk has no stored object.
    pub fn is_transition(&self) -> bool {
        self.rule.contains("oldSelf")
    }

    /// What the API server says when the rule fails.
    pub fn failure(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| format!("failed rule: {}", self.rule))
    }
}

/// The rules at one schema node.
pub fn rules_at(schema: &Value) -> Vec<Rule> {
    let listed = schema["x-kubernetes-validations"].as_array();
    listed
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some(Rule {
                rule: v["rule"].as_str()?.to_string(),
                message: v["message"].as_str().map(str::to_string),
                field_path: v["fieldPath"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// Every rule in a schema, with the schema path it sits at
/// (`spec.targetRefs[*].namespace`: `[*]` for any item or map value).
pub fn all_rules(schema: &Value, at: &str, out: &mut Vec<(String, Rule)>) {
    out.extend(rules_at(schema).into_iter().map(|r| (at.to_string(), r)));
    for (key, sub) in schema["properties"].as_object().into_iter().flatten() {
        all_rules(sub, &super::join_key(at, key), out);
    }
    for nested in ["items", "additionalProperties"] {
        if schema[nested].is_object() {
            all_rules(&schema[nested], &format!("{at}[*]"), out);
        }
    }
}

/// Names one rule of the CRD: where it sits and what it says.
pub fn rule_key(at: &str, rule: &Rule) -> String {
    format!("{at}: {}", rule.rule)
}

/// The rules of one schema, compiled once.
pub struct Rules {
    programs: BTreeMap<String, Program>,
    context: Context<'static, 'static>,
}

impl Rules {
    pub fn compile(schema: &Value) -> Result<Rules, String> {
        let env = Arc::new(Env::stdlib());
        let mut rules = Vec::new();
        all_rules(schema, "", &mut rules);
        let mut programs = BTreeMap::new();
        for (_, rule) in rules.iter().filter(|(_, r)| !r.is_transition()) {
            let program = env
                .compile(&rule.rule)
                .map_err(|e| format!("rule {:?} does not compile: {e}", rule.rule))?;
            programs.insert(rule.rule.clone(), program);
        }
        let mut context = Context::with_env(env);
        kubernetes_library(&mut context)?;
        Ok(Rules { programs, context })
    }

    /// Every failing rule in a document (`schema` is the version's root).
    pub fn check(&self, schema: &Value, doc: &Value, out: &mut Vec<Finding>) {
        self.check_node(schema, doc, "", "", out);
    }

    /// Every failing rule at this node and below, walking the document
    /// alongside the schema (arrays' items and maps' values included); `at`
    /// is the schema path, `path` the document's.
    fn check_node(&self, schema: &Value, value: &Value, path: &str, at: &str, out: &mut Vec<Finding>) {
        if value.is_null() || !matches_type(schema, value) {
            return; // null (nullable) is not validated; a wrong type is the schema's finding
        }
        for rule in rules_at(schema) {
            if let Some(message) = self.evaluate(&rule, schema, value) {
                let field = rule.field_path.as_deref().unwrap_or_default();
                let mut finding = Finding::new(&format!("{path}{field}"), &message);
                finding.rule = Some(rule_key(at, &rule));
                out.push(finding);
            }
        }
        match value {
            Value::Object(map) => {
                let props = schema["properties"].as_object();
                for (key, v) in map {
                    let (sub, sub_at) = match props.and_then(|p| p.get(key)) {
                        Some(sub) => (sub, super::join_key(at, key)),
                        None => (&schema["additionalProperties"], format!("{at}[*]")),
                    };
                    if sub.is_object() {
                        self.check_node(sub, v, &super::join_key(path, key), &sub_at, out);
                    }
                }
            }
            Value::Array(items) if schema["items"].is_object() => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.check_node(&schema["items"], item, &item_path, &format!("{at}[*]"), out);
                }
            }
            _ => {}
        }
    }

    /// None if the rule holds or is a transition rule; else what to report.
    fn evaluate(&self, rule: &Rule, schema: &Value, value: &Value) -> Option<String> {
        let program = self.programs.get(&rule.rule)?;
        let mut scope = self.context.new_inner_scope();
        scope.add_variable_from_value("self", to_cel(schema, value));
        match program.execute(&scope) {
            Ok(Cel::Bool(true)) => None,
            Ok(Cel::Bool(false)) => Some(rule.failure()),
            Ok(other) => Some(format!("rule {:?} gave {other:?}, not a bool", rule.rule)),
            Err(e) => Some(format!("rule {:?} could not be evaluated: {e}", rule.rule)),
        }
    }
}

fn matches_type(schema: &Value, value: &Value) -> bool {
    match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    }
}

/// A JSON value as CEL sees it. Declared properties are fields, named as
/// Kubernetes escapes them; other keys (`additionalProperties` maps) stay
/// as they are.
fn to_cel(schema: &Value, value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(|v| to_cel(&schema["items"], v)).collect())),
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let mut out = HashMap::new();
            for (key, v) in map {
                let (name, sub) = match props.and_then(|p| p.get(key)) {
                    Some(sub) => (escape_property(key), sub),
                    None => (Some(key.clone()), &schema["additionalProperties"]),
                };
                if let Some(name) = name {
                    out.insert(Key::String(Arc::new(name)), to_cel(sub, v));
                }
            }
            Cel::from(out)
        }
    }
}

const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Kubernetes' property-name escaping for CEL (`namespace` is
/// `__namespace__`, `a-b` is `a__dash__b`); None where no CEL name exists.
fn escape_property(name: &str) -> Option<String> {
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "_.-/".contains(c));
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c)) {
        return None;
    }
    let escaped = name
        .replace("__", "__underscores__")
        .replace('.', "__dot__")
        .replace('-', "__dash__")
        .replace('/', "__slash__");
    Some(escaped)
}

/// A parsed URL, as Kubernetes' `url(string)` returns it.
#[derive(Debug, PartialEq, Eq)]
struct KubeUrl {
    scheme: String,
}

impl Opaque for KubeUrl {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

fn kubernetes_library(context: &mut Context<'static, 'static>) -> Result<(), String> {
    let declare = |e: cel::DeclarationError| e.to_string();
    // isURL(string) bool: whether Go's url.ParseRequestURI accepts it.
    context
        .add_function("isURL", |s: Arc<String>| go_url::parse_request_uri(&s).is_ok())
        .map_err(declare)?;
    // url(string) URL: an error (the rule fails to evaluate) where isURL is false.
    context
        .add_function("url", |s: Arc<String>| -> Result<Cel, ExecutionError> {
            match go_url::parse_request_uri(&s) {
                Ok(scheme) => Ok(Cel::Opaque(Arc::new(KubeUrl { scheme }))),
                Err(e) => Err(ExecutionError::function_error(
                    "url",
                    format!("URL parse error during conversion from string: {e}"),
                )),
            }
        })
        .map_err(declare)?;
    // <URL>.getScheme() string: the scheme, lowercased, "" for a path.
    context
        .add_function(
            "getScheme",
            |This(url): This<Arc<dyn Opaque>>| -> Result<Cel, ExecutionError> {
                match url.downcast_ref::<KubeUrl>() {
                    Some(url) => Ok(Cel::String(Arc::new(url.scheme.clone()))),
                    None => Err(ExecutionError::function_error("getScheme", "not a URL")),
                }
            },
        )
        .map_err(declare)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn escaping_follows_kubernetes() {
        assert_eq!(escape_property("namespace").unwrap(), "__namespace__");
        assert_eq!(
            escape_property("a-b.c/d__e").unwrap(),
            "a__dash__b__dot__c__slash__d__underscores__e"
        );
        assert_eq!(escape_property("valueFrom").unwrap(), "valueFrom");
        assert_eq!(escape_property("9lives"), None);
    }

    #[test]
    fn url_functions() {
        let schema = json!({"type": "string", "x-kubernetes-validations": [
            {"rule": "isURL(self) && url(self).getScheme() == 'oci'", "message": "not oci"}]});
        let rules = Rules::compile(&schema).unwrap();
        let mut out = Vec::new();
        rules.check(&schema, &json!("OCI://ghcr.io/x:1"), &mut out);
        assert!(out.is_empty(), "{out:?}");
        rules.check(&schema, &json!("https://ghcr.io/x"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].rule.as_deref(),
            Some(": isURL(self) && url(self).getScheme() == 'oci'")
        );
        // url() of a non-URL is an evaluation error, reported as such.
        let schema = json!({"type": "string", "x-kubernetes-validations": [{"rule": "url(self).getScheme() == ''"}]});
        let rules = Rules::compile(&schema).unwrap();
        let mut out = Vec::new();
        rules.check(&schema, &json!("not a url"), &mut out);
        assert!(out[0].message.contains("could not be evaluated"), "{out:?}");
    }

    #[test]
    fn transition_rules_are_skipped() {
        let schema = json!({"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]});
        let rules = Rules::compile(&schema).unwrap();
        let mut out = Vec::new();
        rules.check(&schema, &json!("x"), &mut out);
        assert!(out.is_empty());
    }
}
