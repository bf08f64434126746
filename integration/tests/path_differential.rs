//! Our path normalization (`tollgate_core::path`) against Envoy 1.40's own
//! `normalize_path` + `merge_slashes` on thousands of generated hostile
//! paths: Envoy alone (no filter) in front of the echo upstream, which says
//! what path it received. Where the two differ, the difference must be one
//! documented below, with its reason; anything else fails the test.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::require_artefacts;
use std::collections::BTreeMap;
use tollgate_core::path::{normalize_path, Parameters, PathError};
use tollgate_integration::http::KeepAlive;
use tollgate_integration::{Bootstrap, Echo, Envoy, Request};

const PATHS: usize = 3000;
const MAX_PIECES: u64 = 8;

/// Pieces the generated paths are made of: separators and their escapes,
/// dot segments and theirs (once and twice encoded), parameters, bad and
/// overlong escapes, unreserved characters escaped, non-ASCII bytes.
const PIECES: &[&str] = &[
    "/", "//", "\\", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%2f", "%2F", "%5c", "%5C", "a", "api", "datahub",
    "%41", "%7e", "~", "%25", "%252e", "%252F", ";", ";x=1", "%3b", "%3B", "%zz", "%", "%C0%AE", "%c0%af", "\u{e9}",
    "-", "_", "*", "%20", "'", "(", "!", "$", "@", ":", "+", ",", "=",
];

/// Why our answer may differ from Envoy's, for each kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Difference {
    /// Both serve, and our normalization of what Envoy serves is what we
    /// decide on for the raw path: spelling only (escape case, unreserved
    /// characters decoded, bytes escaped), never another route.
    SameAfterOurs,
    /// We refuse `;` (servlet containers strip `;param` from segments:
    /// `/admin;x/..` is `/` to them and not to Envoy).
    RefusedParameter,
    /// We refuse segments that become a dot segment when decoded again
    /// (`%252e%252e`, `..%2F`, `%C0%AE`): Envoy decodes once, a framework
    /// behind it may decode again.
    RefusedHiddenDot,
    /// We refuse a `%` not followed by two hex digits: Envoy passes it on,
    /// and applications read it differently (some fail, some keep it).
    RefusedBadEscape,
    /// We refuse escaped control characters (`%00`): Envoy passes them.
    RefusedControl,
    /// Envoy refuses before any filter runs (its codec or normalizer):
    /// Tollgate never sees the request.
    EnvoyRefused,
}

/// What happened to one path on each side.
#[derive(Debug)]
enum Seen {
    Same,
    Allowed(Difference),
    Undocumented(String),
}

fn compare(raw: &str, envoy: Result<String, u16>, ours: Result<String, PathError>) -> Seen {
    use tollgate_core::path::{BAD_ESCAPE, CONTROL, HIDDEN_DOT, PARAMETER};
    match (envoy, ours) {
        (Ok(served), Ok(decided)) if served == decided => Seen::Same,
        (Ok(served), Ok(decided)) => match normalize_path(served.as_bytes(), Parameters::Reject) {
            Ok(again) if again == decided => Seen::Allowed(Difference::SameAfterOurs),
            again => Seen::Undocumented(format!(
                "{raw:?}: Envoy serves {served:?}, we decide {decided:?}, ours of Envoy's {again:?}"
            )),
        },
        (Err(_), Err(_)) => Seen::Same,
        (Err(_), Ok(_)) => Seen::Allowed(Difference::EnvoyRefused),
        (Ok(served), Err(why)) => {
            let kind = match why {
                w if w == PARAMETER => Difference::RefusedParameter,
                w if w == HIDDEN_DOT => Difference::RefusedHiddenDot,
                w if w == BAD_ESCAPE => Difference::RefusedBadEscape,
                w if w == CONTROL => Difference::RefusedControl,
                other => {
                    return Seen::Undocumented(format!("{raw:?}: Envoy serves {served:?}, we refuse: {}", other.0))
                }
            };
            Seen::Allowed(kind)
        }
    }
}

/// Deterministic paths: `/` then 1 to `MAX_PIECES` pieces (xorshift).
fn generated() -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..PATHS)
        .map(|_| {
            let n = 1 + next() % MAX_PIECES;
            let mut path = String::from("/");
            for _ in 0..n {
                path.push_str(PIECES[usize::try_from(next() % PIECES.len() as u64).unwrap()]);
            }
            path
        })
        .collect()
}

#[test]
fn our_normalization_agrees_with_envoys_or_differs_only_as_documented() {
    require_artefacts();
    let echo = Echo::start();
    let mut bootstrap = Bootstrap::new(echo.port());
    bootstrap.envoy_normalizes = true;
    let envoy = Envoy::start(&bootstrap.to_json());
    let mut conn = KeepAlive::new(envoy.addr());
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut undocumented = Vec::new();
    for raw in generated() {
        let response = conn
            .send(&Request::get(&raw))
            .unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        let envoy_side = if response.status == 200 {
            Ok(response.json()["path"].as_str().unwrap_or_default().to_string())
        } else {
            Err(response.status)
        };
        let ours = normalize_path(raw.as_bytes(), Parameters::Reject);
        let seen = compare(&raw, envoy_side, ours);
        let key = match &seen {
            Seen::Same => "same".to_string(),
            Seen::Allowed(d) => format!("{d:?}"),
            Seen::Undocumented(_) => "UNDOCUMENTED".to_string(),
        };
        let kind = samples.entry(key.clone()).or_default();
        if kind.len() < 2 {
            kind.push(format!("{raw:?} (Envoy {})", response.status));
        }
        *tally.entry(key).or_default() += 1;
        if let Seen::Undocumented(what) = seen {
            undocumented.push(what);
        }
    }
    println!("{PATHS} generated paths: {tally:?}");
    for (kind, examples) in &samples {
        println!("  {kind}: {}", examples.join(", "));
    }
    assert!(
        undocumented.is_empty(),
        "{} undocumented differences, first ones:\n{}",
        undocumented.len(),
        undocumented.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    // The generator reaches every kind: a test that saw no hostile path proves nothing.
    for kind in ["same", "SameAfterOurs", "RefusedParameter", "RefusedHiddenDot"] {
        assert!(
            tally.get(kind).copied().unwrap_or(0) > 0,
            "no path of kind {kind}: {tally:?}"
        );
    }
}
