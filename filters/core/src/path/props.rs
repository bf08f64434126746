//! Properties over generated hostile paths: normalization is idempotent, the
//! route decided for a raw path is the route decided for the path served,
//! and other readings of an accepted path (escapes decoded, case ignored, a
//! trailing `/` added or removed) route the same.

use crate::path::{normalize_path, with_slashes_decoded, Normalization, Parameters, PathSettings};
use crate::policy::Policy;
use crate::request::RequestView;
use crate::route::{Case, RequestHead};
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    ".%2e",
    ";",
    ";x",
    "..;x",
    "%2e%2e;",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%3b",
    "%25",
    "%252f",
    "api%2Fdatahub",
    "%5Copen",
    "%252e",
    "?",
    "?a=/../b",
    "#",
    "%",
    "%41",
    "%zz",
    "a",
    "api",
    "datahub",
    "trino",
    "open",
    "t",
    "NED-001",
    "entities",
    "x y",
    "caf\u{e9}",
    "API",
    "DataHub",
    "Trino",
    "T",
    "ned-001",
    "Open",
    "getUser",
    "getuser",
];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(PIECES).prop_map(str::to_string),
        2 => proptest::collection::vec(proptest::sample::select(PIECES), 1..4).prop_map(|p| p.concat()),
        1 => (1usize..3000).prop_map(|n| "s".repeat(n)),
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 0..12).prop_map(|segments| format!("/{}", segments.join("/")))
}

fn policy() -> Policy {
    let doc = serde_json::json!({
        "version": 1,
        "routes": [
            {"name": "datahub", "match": {"prefix": "/api/datahub"}, "tenant": {"required": true}},
            {"name": "trino", "match": {"exact": "/api/trino"}, "tenant": {"required": true}},
            {"name": "entities", "match": {"template": "/api/*/entities/**"}, "tenant": {"required": true}},
            {"name": "open", "match": {"prefix": "/open/"}},
            {"name": "camel", "match": {"template": "/api/getUser/*"}, "tenant": {"required": true}},
        ],
        "tenant": {"sources": ["header", "path"], "path_prefix": "/t/{tenant}"},
    });
    Policy::from_json(doc.to_string().as_bytes()).unwrap()
}

fn all_settings() -> Vec<PathSettings> {
    let mut out = Vec::new();
    for normalization in [Normalization::Rewrite, Normalization::Reject] {
        for parameters in [Parameters::Reject, Parameters::Strip] {
            out.push(PathSettings {
                max_bytes: 16384,
                normalization,
                parameters,
                ..PathSettings::default()
            });
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The shortcut for plain paths gives what every step would.
    #[test]
    fn plain_paths_are_normal_as_they_are(raw in "/[a-zA-Z0-9/_~.;%2eE\\\\-]{0,40}") {
        for parameters in [Parameters::Reject, Parameters::Strip] {
            let stepped = super::normalize_steps(raw.as_bytes(), parameters);
            if super::is_plainly_normal(raw.as_bytes()) {
                prop_assert_eq!(stepped, Ok(raw.clone()));
            }
            prop_assert_eq!(normalize_path(raw.as_bytes(), parameters), super::normalize_steps(raw.as_bytes(), parameters));
        }
    }

    #[test]
    fn normalization_is_idempotent(raw in raw_path()) {
        for parameters in [Parameters::Reject, Parameters::Strip] {
            if let Ok(once) = normalize_path(raw.as_bytes(), parameters) {
                prop_assert_eq!(normalize_path(once.as_bytes(), parameters), Ok(once.clone()), "{:?}", raw);
                prop_assert!(once.starts_with('/') && !once.contains("//"), "{:?} -> {:?}", raw, once);
            }
        }
    }

    #[test]
    fn the_decided_route_is_the_served_route(raw in raw_path()) {
        let policy = policy();
        for settings in all_settings() {
            let Ok(view) = RequestView::new(b"GET", Some(raw.as_bytes()), Some(b"api.example.com"), &settings) else {
                continue;
            };
            let served = view.target(raw.as_bytes());
            if settings.normalization == Normalization::Reject {
                prop_assert_eq!(served, raw.as_bytes());
            }
            let again = RequestView::new(b"GET", Some(served), Some(b"api.example.com"), &settings);
            prop_assert!(again.is_ok(), "{:?} served as {:?}: {:?}", raw, String::from_utf8_lossy(served), again);
            if let Ok(again) = again {
                prop_assert_eq!(&again.path, &view.path);
                prop_assert_eq!(&again.served_path, &None);
                prop_assert_eq!(&policy.route(&again.head()).name, &policy.route(&view.head()).name);
            }
        }
    }

    #[test]
    fn an_app_decoding_escaped_slashes_gets_the_decided_route(raw in raw_path()) {
        let policy = policy();
        let Ok(view) = RequestView::read(b"GET", Some(raw.as_bytes()), Some(b"api.example.com"), &policy) else {
            return Ok(());
        };
        if let Some(decoded) = with_slashes_decoded(&view.path, policy.paths.parameters) {
            let other = crate::route::RequestHead { path: &decoded, ..view.head() };
            prop_assert_eq!(&policy.route(&other).name, &policy.route(&view.head()).name, "{:?}", raw);
        }
    }

    #[test]
    fn case_and_trailing_slash_readings_route_the_same(raw in raw_path()) {
        let policy = policy();
        let Ok(view) = RequestView::read(b"GET", Some(raw.as_bytes()), Some(b"api.example.com"), &policy) else {
            return Ok(());
        };
        let decided = decision(&policy, &view.path, Case::Sensitive);
        let lowered = view.path.to_ascii_lowercase();
        for (path, case) in [(view.path.clone(), Case::Sensitive), (lowered, Case::Insensitive)] {
            prop_assert_eq!(&decision(&policy, &path, case), &decided, "{:?} read as {:?}", raw, path);
            if let Some(toggled) = trailing_slash_toggled(&path) {
                prop_assert_eq!(&decision(&policy, &toggled, case), &decided, "{:?} read as {:?}", raw, toggled);
            }
        }
    }
}

/// The route name and lower-cased path tenant for `path` read as `case`.
fn decision(policy: &Policy, path: &str, case: Case) -> (String, Option<String>) {
    let head = RequestHead {
        method: "GET",
        host: "api.example.com",
        path,
    };
    let tenant = policy.tenant.split_path(path).map(|(id, _)| id.to_ascii_lowercase());
    (policy.route_as(&head, case).name.clone(), tenant)
}

/// The path with its trailing `/` removed, or one added (`/` itself: none).
fn trailing_slash_toggled(path: &str) -> Option<String> {
    match path.strip_suffix('/') {
        Some("") => None,
        Some(bare) => Some(bare.to_string()),
        None => Some(format!("{path}/")),
    }
}
