//! What answers say about limits: `Retry-After` on refusals and the rate
//! limit headers `ratelimit.headers` chooses, on refusals and on allowed
//! responses.

use super::HeaderStyle;

/// Where a request left one enforced limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitState {
    pub name: String,
    /// Requests per window for this request (its tier's, its tenant's).
    pub quota: u64,
    pub window_seconds: u64,
    /// Requests left in this window (with `burst`, can exceed `quota`).
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset_seconds: u64,
}

/// The headers for a request's limits, in `style`. IETF: every limit, in
/// order (`RateLimit-Policy: "trino";q=50;w=60`, `RateLimit:
/// "trino";r=0;t=30`); `X-RateLimit-*`: the tightest limit alone (fewest
/// left, then the longest wait).
pub fn headers(style: HeaderStyle, states: &[LimitState]) -> Vec<(String, String)> {
    if states.is_empty() {
        return Vec::new();
    }
    match style {
        HeaderStyle::None => Vec::new(),
        HeaderStyle::Ietf => {
            let policy = list(states, |s| {
                format!("\"{}\";q={};w={}", s.name, s.quota, s.window_seconds)
            });
            let now = list(states, |s| {
                format!("\"{}\";r={};t={}", s.name, s.remaining, s.reset_seconds)
            });
            vec![("ratelimit-policy".into(), policy), ("ratelimit".into(), now)]
        }
        HeaderStyle::XRatelimit => {
            let tightest = states
                .iter()
                .min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset_seconds)));
            let Some(s) = tightest else { return Vec::new() };
            vec![
                ("x-ratelimit-limit".into(), s.quota.to_string()),
                ("x-ratelimit-remaining".into(), s.remaining.to_string()),
                ("x-ratelimit-reset".into(), s.reset_seconds.to_string()),
            ]
        }
    }
}

fn list(states: &[LimitState], item: impl Fn(&LimitState) -> String) -> String {
    states.iter().map(item).collect::<Vec<_>>().join(", ")
}
