//! `tollgate check-manifests`: WasmPlugins checked as the API server checks
//! them against Istio's CRD: the OpenAPI schema (types, enums, bounds, regex
//! patterns, formats, required and unknown fields) with a JSON Schema crate,
//! then every `x-kubernetes-validations` CEL rule, plus apiVersion, kind and
//! the metadata names.

mod go_url;
pub mod rules;
mod schema;

use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// Istio's WasmPlugin CRD, vendored (source and version in its header) and
/// built into the tool: nothing outside the binary is read.
pub const CRD: &str = include_str!("../schemas/istio-wasmplugin-crd.yaml");

/// One problem in one document.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub path: String,
    pub message: String,
    /// The CEL rule that failed, as [`rules::rule_key`] names it.
    pub rule: Option<String>,
}

impl Finding {
    pub fn new(path: &str, message: &str) -> Finding {
        Finding {
            path: path.to_string(),
            message: message.to_string(),
            rule: None,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// One served version of the CRD, ready to check documents.
struct Version {
    name: String,
    open_api: Value,
    validator: jsonschema::Validator,
    rules: rules::Rules,
}

/// The vendored CRD, compiled once: its schema validators and CEL programs.
pub struct Checker {
    group: String,
    kind: String,
    versions: Vec<Version>,
}

impl Checker {
    pub fn new() -> Result<Checker, String> {
        let crd = crd()?;
        let mut versions = Vec::new();
        for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
            let open_api = &v["schema"]["openAPIV3Schema"];
            if v["served"] != true || !open_api.is_object() {
                continue;
            }
            versions.push(Version {
                name: v["name"].as_str().unwrap_or_default().to_string(),
                open_api: open_api.clone(),
                validator: schema::validator(open_api)?,
                rules: rules::Rules::compile(open_api)?,
            });
        }
        if versions.is_empty() {
            return Err("the vendored CRD: no served version with a schema".to_string());
        }
        Ok(Checker {
            group: crd["spec"]["group"].as_str().unwrap_or_default().to_string(),
            kind: crd["spec"]["names"]["kind"].as_str().unwrap_or_default().to_string(),
            versions,
        })
    }

    /// The CRD's kind (`WasmPlugin`): documents of other kinds are not ours.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Every problem of one WasmPlugin document.
    pub fn check(&self, doc: &Value) -> Vec<Finding> {
        let mut findings = Vec::new();
        if doc["kind"] != self.kind.as_str() {
            findings.push(Finding::new("kind", &format!("must be {}", self.kind)));
        }
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let version = api_version
            .strip_prefix(&format!("{}/", self.group))
            .and_then(|name| self.versions.iter().find(|v| v.name == name));
        let Some(version) = version else {
            let served: Vec<String> = self
                .versions
                .iter()
                .map(|v| format!("{}/{}", self.group, v.name))
                .collect();
            let message = format!("{api_version:?} is not one of {served:?}; the schema was not checked");
            findings.push(Finding::new("apiVersion", &message));
            return findings;
        };
        findings.extend(metadata_names(&doc["metadata"]));
        findings.extend(schema::check(&version.validator, doc));
        schema::check_list_types(&version.open_api, doc, "", &mut findings);
        version.rules.check(&version.open_api, doc, &mut findings);
        findings
    }
}

/// Every `x-kubernetes-validations` rule of the CRD's served versions, named
/// as a failing [`Finding`] names it.
pub fn crd_rules() -> Result<Vec<(String, rules::Rule)>, String> {
    let crd = crd()?;
    let mut found = Vec::new();
    for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
        if v["served"] == true {
            rules::all_rules(&v["schema"]["openAPIV3Schema"], "", &mut found);
        }
    }
    Ok(found.into_iter().map(|(at, r)| (rules::rule_key(&at, &r), r)).collect())
}

fn crd() -> Result<Value, String> {
    serde_yaml_ng::from_str(CRD).map_err(|e| format!("the vendored CRD: {e}"))
}

/// Every problem of one WasmPlugin against the vendored CRD, as `path: message`.
pub fn check_plugin(doc: &Value) -> Result<Vec<String>, String> {
    Ok(Checker::new()?.check(doc).iter().map(Finding::to_string).collect())
}

/// metadata.name is a DNS-1123 subdomain, metadata.namespace a DNS-1123 label.
fn metadata_names(metadata: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    match metadata["name"].as_str() {
        None => findings.push(Finding::new("metadata.name", "Required value")),
        Some(name) if !dns1123_subdomain(name) => findings.push(Finding::new(
            "metadata.name",
            &format!("{name:?} is not a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', at most 253)"),
        )),
        Some(_) => {}
    }
    if let Some(namespace) = metadata["namespace"].as_str() {
        if !dns1123_label(namespace) {
            findings.push(Finding::new(
                "metadata.namespace",
                &format!("{namespace:?} is not a DNS-1123 label (lowercase alphanumerics and '-', at most 63)"),
            ));
        }
    }
    findings
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn dns1123_label(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    s.len() <= 63
        && edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Labels joined by '.', at most 253 characters.
pub fn dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns1123_label)
}

/// `path.key`, or `path["key"]` where the key is no plain name.
fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, path.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{}]", Value::String(key.to_string())),
    }
}

/// One problem, where it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based, in the file.
    pub document: usize,
    pub name: String,
    pub finding: Finding,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, n, name) = (self.file.display(), self.document, &self.name);
        write!(f, "{file}: document {n} ({name}): {}", self.finding)
    }
}

/// What a check of files found.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub plugins: usize,
    /// Documents of other kinds (ServiceEntry, ...), not checked.
    pub skipped: usize,
    /// Documents with no `kind` (not Kubernetes objects: a policy file), not checked.
    pub kindless: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    /// Checks every document of one YAML file.
    pub fn check_text(&mut self, checker: &Checker, file: &Path, text: &str) {
        self.files += 1;
        for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let n = i + 1;
            let doc = match Value::deserialize(document) {
                Ok(Value::Null) => continue, // an empty document (a trailing `---`)
                Ok(doc) => doc,
                Err(e) => {
                    let finding = Finding::new("(document)", &format!("not YAML: {e}"));
                    self.push(file, n, "?", finding);
                    break; // the parser cannot resume after an error
                }
            };
            if !doc["kind"].is_string() {
                self.kindless += 1;
                continue;
            }
            if doc["kind"] != checker.kind() {
                self.skipped += 1;
                continue;
            }
            self.plugins += 1;
            let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_string();
            for finding in checker.check(&doc) {
                self.push(file, n, &name, finding);
            }
        }
    }

    fn push(&mut self, file: &Path, document: usize, name: &str, finding: Finding) {
        self.problems.push(Problem {
            file: file.to_path_buf(),
            document,
            name: name.to_string(),
            finding,
        });
    }
}

/// Checks every `.yaml`/`.yml` file under `dir` (subdirectories included,
/// in name order); `dir` may also be one file (`check_paths`).
pub fn check_dir(dir: &Path) -> Result<Report, String> {
    check_paths(&[dir.to_path_buf()])
}

/// Checks what `kubectl apply -f` would read from each path, in order: a
/// folder's `.yaml`/`.yml` files (subdirectories included, in name order),
/// a file whatever its name, and `-` standard input.
pub fn check_paths(paths: &[PathBuf]) -> Result<Report, String> {
    let checker = Checker::new()?;
    let mut report = Report::default();
    for path in paths {
        for file in files_of(path)? {
            let text = read(&file)?;
            report.check_text(&checker, &file, &text);
        }
    }
    Ok(report)
}

/// The files one argument names: a named file is read as given (kubectl
/// filters extensions only inside folders).
fn files_of(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_dir() {
        let mut files = Vec::new();
        yaml_files(path, &mut files)?;
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

fn read(file: &Path) -> Result<String, String> {
    if file == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).map_err(|e| format!("standard input: {e}"));
    }
    std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// `tollgate check-manifests PATH...`: every problem, then a summary; an
/// error (a non-zero exit) if there was any problem or no WasmPlugin at all.
pub fn run(paths: &[PathBuf]) -> Result<(), String> {
    let report = check_paths(paths)?;
    for problem in &report.problems {
        println!("{problem}");
    }
    let mut summary = format!(
        "{} WasmPlugin(s) in {} file(s), skipped {} other kinds",
        report.plugins, report.files, report.skipped
    );
    if report.kindless > 0 {
        summary.push_str(&format!(" and {} document(s) without a kind", report.kindless));
    }
    if !report.problems.is_empty() {
        return Err(format!("{} problem(s); {summary}", report.problems.len()));
    }
    if report.plugins == 0 {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(format!("no WasmPlugin found in {}; {summary}", names.join(", ")));
    }
    println!("ok: {summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn plugin(spec: Value) -> Value {
        json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "tollgate-jwt", "namespace": "istio-system"}, "spec": spec})
    }

    #[test]
    fn a_good_plugin_passes() {
        let doc = plugin(
            json!({"url": "oci://x/y:1", "pluginName": "tollgate.jwt", "phase": "AUTHN", "priority": 100,
            "failStrategy": "FAIL_RELOAD", "type": "HTTP", "pluginConfig": {"version": 1, "anything": [1, 2]}}),
        );
        assert_eq!(check_plugin(&doc).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_named() {
        let doc = plugin(json!({"url": 7, "phase": "EARLY", "failStrategy": "FAIL_SOMETIMES", "prioriti": 1}));
        let errors = check_plugin(&doc).unwrap();
        for want in [
            "spec.url: 7 is not",
            "spec.phase: \"EARLY\"",
            "spec.failStrategy: \"FAIL_SOMETIMES\"",
            "spec.prioriti: unknown field",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(want)), "{want} not in {errors:?}");
        }
        assert_eq!(errors.len(), 4, "{errors:?}");
        let mut bad = plugin(json!({"url": "oci://x/y:1"}));
        bad["metadata"] = json!({"name": "Tollgate.JWT", "namespace": "a.b"});
        let errors = check_plugin(&bad).unwrap();
        assert!(errors.iter().any(|e| e.starts_with("metadata.name: ")), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("metadata.namespace: ")),
            "{errors:?}"
        );
    }

    #[test]
    fn names() {
        assert!(dns1123_label("istio-system") && !dns1123_label("-a") && !dns1123_label("a.b") && !dns1123_label(""));
        assert!(dns1123_subdomain("a.b-c.d") && !dns1123_subdomain("a..b") && !dns1123_subdomain("A"));
        assert!(!dns1123_label(&"a".repeat(64)) && dns1123_label(&"a".repeat(63)));
    }

    #[test]
    fn documents_are_numbered_other_kinds_skipped_and_bad_yaml_reported() {
        let checker = Checker::new().unwrap();
        let text =
            "kind: ServiceEntry\n---\nversion: 1\n---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n\
                    metadata: {name: a}\nspec: {url: 'ftp://x'}\n---\n---\nkind: [unclosed\n";
        let mut report = Report::default();
        report.check_text(&checker, Path::new("m.yaml"), text);
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            (report.files, report.plugins, report.skipped, report.kindless),
            (1, 1, 1, 1)
        );
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0],
            "m.yaml: document 3 (a): spec.url: url must have schema one of [http, https, file, oci]"
        );
        assert!(
            lines[1].starts_with("m.yaml: document 5 (?): (document): not YAML: "),
            "{lines:?}"
        );
    }

    #[test]
    fn wrong_api_version_or_kind() {
        let mut doc = plugin(json!({"url": "oci://x/y:1"}));
        doc["apiVersion"] = json!("extensions.istio.io/v1");
        let errors = check_plugin(&doc).unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("apiVersion: \"extensions.istio.io/v1\" is not one of"));
    }
}
