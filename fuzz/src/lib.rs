//! What the fuzz targets share: the example policy, the reading of a fuzz
//! input as a request, and the RSA differential check.
//!
//! Every target gets raw bytes. The request targets read them as text
//! lines, so the committed seeds are readable and libFuzzer's mutations
//! (insert, erase, splice) keep their shape:
//!
//! ```text
//! METHOD
//! :path
//! :authority
//! name: value        (any number of header lines)
//! ```

pub mod rsa_diff;

use serde_json::{json, Value};
use tollgate_core::policy::Policy;

/// The repository's example policy, read as `tollgate validate` and
/// `cargo xtask render` read it.
const EXAMPLE_POLICY: &str = include_str!("../../wasmplugins/policy.yaml");

/// Unix seconds every decision is taken at; the seed tokens are minted
/// around it (tests/fixtures/keys, `fuzz/make_seeds.py`).
pub const NOW: u64 = 1_800_000_000;

fn example_value() -> Value {
    match tollgate_cli::policy_file::check_policy(EXAMPLE_POLICY) {
        Ok(value) => value,
        Err(e) => panic!("wasmplugins/policy.yaml: {e}"),
    }
}

fn compile(value: &Value) -> &'static Policy {
    match Policy::from_json(value.to_string().as_bytes()) {
        Ok(policy) => Box::leak(Box::new(policy)),
        Err(e) => panic!("fuzz policy variant does not compile: {e:?}"),
    }
}

/// The example policy, then the same routes under the other path settings:
/// rejecting what is not normal, stripping `;` parameters, refusing every
/// escaped slash, case-sensitive paths.
fn variants() -> Vec<&'static Policy> {
    let base = example_value();
    let mut strict = base.clone();
    strict["paths"] = json!({
        "normalization": "reject",
        "parameters": "strip",
        "escaped_slashes": "reject",
        "case": "sensitive",
        "max_bytes": 2048,
    });
    let mut lenient = base.clone();
    lenient["paths"] = json!({
        "normalization": "rewrite",
        "parameters": "strip",
        "escaped_slashes": "reject_rerouting",
        "case": "reject_rerouting",
    });
    vec![compile(&base), compile(&strict), compile(&lenient)]
}

thread_local! {
    static POLICIES: Vec<&'static Policy> = variants();
}

/// The example policy and its variants (compiled once per process; the
/// policy holds `Rc`s, so once per thread, and libFuzzer runs one).
pub fn policies() -> Vec<&'static Policy> {
    POLICIES.with(|p| p.clone())
}

/// The example policy as written.
pub fn example() -> &'static Policy {
    POLICIES.with(|p| p[0])
}

/// A fuzz input read as a request.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub path: Option<&'a [u8]>,
    pub authority: Option<&'a [u8]>,
    pub headers: tollgate_core::header_map::HeaderMap,
}

/// Lines as described at the top; a missing `:path` or `:authority` line
/// is an absent pseudo-header. Header names are lower-cased as Envoy
/// hands them over; a line without `:` is a header with an empty value.
pub fn request(data: &[u8]) -> Request<'_> {
    let mut lines = data.split(|b| *b == b'\n');
    let method = lines.next().unwrap_or_default();
    let path = lines.next();
    let authority = lines.next();
    let headers = lines
        .take(64)
        .map(|line| {
            let at = line.iter().position(|b| *b == b':').unwrap_or(line.len());
            let (name, value) = line.split_at(at);
            let value = value.strip_prefix(b":").unwrap_or_default();
            let value = value.strip_prefix(b" ").unwrap_or(value);
            (String::from_utf8_lossy(name).to_ascii_lowercase(), value.to_vec())
        })
        .collect();
    Request {
        method,
        path,
        authority,
        headers,
    }
}
