//! Rate limits are not re-decided (they depend on the counts at the time):
//! per limit of the candidate policy, a fixed-window replay over the
//! events' timestamps gives the peak count per key in one window and how
//! many recorded requests would have gone over the limit. An estimate:
//! windows are aligned to the period as the local limiter aligns them,
//! `burst` is counted as extra room in every window, and events that
//! arrive out of order count in their key's latest window.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Keys tracked at most, over all limits; requests of other keys are
/// counted as untracked.
pub const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
struct Track {
    period: String,
    /// key -> (window index, count in it, the key's limit in a window)
    keys: HashMap<String, (u64, u64, u64)>,
    peak: u64,
    peak_key: String,
    over: u64,
    counted: u64,
}

#[derive(Debug, Default)]
pub struct Estimator {
    limits: BTreeMap<String, Track>,
    keys: usize,
    untracked: u64,
}

fn period_seconds(period: &str) -> Option<u64> {
    match period {
        "second" => Some(1),
        "minute" => Some(60),
        "hour" => Some(3600),
        "day" => Some(86_400),
        _ => None,
    }
}

impl Estimator {
    /// Counts one request at `time` (Unix seconds) against the limits
    /// explain says it counts against (`explained["limits"]`).
    pub fn count(&mut self, explained: &Value, time: u64) {
        for limit in explained["limits"]["limits"].as_array().into_iter().flatten() {
            let (Some(name), Some(requests), Some(period)) = (
                limit["name"].as_str(),
                limit["requests"].as_u64(),
                limit["period"].as_str(),
            ) else {
                continue;
            };
            let Some(seconds) = period_seconds(period) else {
                continue;
            };
            let Some(key) = key_text(&limit["key"]) else {
                continue;
            };
            let room = requests.saturating_add(limit["burst"].as_u64().unwrap_or(0));
            self.count_one(name, period, &key, time / seconds, room);
        }
    }

    fn count_one(&mut self, name: &str, period: &str, key: &str, window: u64, room: u64) {
        let full = self.keys >= MAX_KEYS;
        let track = self.limits.entry(name.to_string()).or_default();
        track.period = period.to_string();
        let entry = match track.keys.get_mut(key) {
            Some(entry) => entry,
            None if full => {
                self.untracked += 1;
                return;
            }
            None => {
                self.keys += 1;
                track.keys.entry(key.to_string()).or_insert((window, 0, room))
            }
        };
        if window > entry.0 {
            *entry = (window, 0, room);
        }
        entry.1 += 1;
        track.counted += 1;
        if entry.1 > entry.2 {
            track.over += 1;
        }
        if entry.1 > track.peak {
            track.peak = entry.1;
            track.peak_key = key.to_string();
        }
    }

    pub fn json(&self) -> Value {
        let limits: Vec<Value> = self
            .limits
            .iter()
            .map(|(name, t)| {
                json!({
                    "limit": name,
                    "period": t.period,
                    "requests_counted": t.counted,
                    "keys": t.keys.len(),
                    "peak_per_key": t.peak,
                    "peak_key": t.peak_key,
                    "would_go_over": t.over,
                })
            })
            .collect();
        json!({
            "estimate": true,
            "how": "fixed windows over the events' timestamps, per key; burst counted as room in every window",
            "limits": limits,
            "requests_untracked": self.untracked,
        })
    }
}

/// The key's values joined (`a|b`); `None` when a part has no value (the
/// limit does not count the request).
fn key_text(key: &Value) -> Option<String> {
    let parts: Option<Vec<&str>> = key.as_array()?.iter().map(|p| p["value"].as_str()).collect();
    Some(parts?.join("|"))
}

/// The estimate as text lines.
pub fn text(limits: &Value) -> Vec<String> {
    let list = limits["limits"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return vec!["rate limits (estimate): no limit of the policy counts the replayed requests".into()];
    }
    let mut out = vec!["rate limits (ESTIMATE: a window replay over the recorded timestamps, not a decision):".into()];
    for l in list {
        out.push(format!(
            "  {} (per {}): peak {} per key (key {}), {} of {} requests would go over, {} keys",
            l["limit"].as_str().unwrap_or_default(),
            l["period"].as_str().unwrap_or_default(),
            l["peak_per_key"],
            l["peak_key"].as_str().unwrap_or_default(),
            l["would_go_over"],
            l["requests_counted"],
            l["keys"],
        ));
    }
    if limits["requests_untracked"].as_u64().unwrap_or(0) > 0 {
        out.push(format!(
            "  {} requests of keys past the first {MAX_KEYS} were not counted",
            limits["requests_untracked"]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn explained(tenant: &str, requests: u64, burst: u64) -> Value {
        json!({"limits": {"limits": [{
            "name": "per-tenant", "requests": requests, "period": "minute", "burst": burst,
            "key": [{"part": "tenant", "value": tenant}],
        }]}})
    }

    #[test]
    fn a_crafted_timeline_gives_the_peak_and_the_requests_over() {
        let mut est = Estimator::default();
        // Minute 0: acme sends 5 (limit 3: 2 over); beta 1.
        for t in [0, 10, 20, 30, 59] {
            est.count(&explained("acme", 3, 0), 1_800_000_000 / 60 * 60 + t);
        }
        est.count(&explained("beta", 3, 0), 1_800_000_000 / 60 * 60 + 5);
        // Minute 1: acme sends 3, none over; burst 1 gives one more room.
        for t in [60, 61, 62] {
            est.count(&explained("acme", 2, 1), 1_800_000_000 / 60 * 60 + t);
        }
        let out = est.json();
        let limit = &out["limits"][0];
        assert_eq!(out["estimate"], true);
        assert_eq!(limit["limit"], "per-tenant");
        assert_eq!(limit["peak_per_key"], 5);
        assert_eq!(limit["peak_key"], "acme");
        assert_eq!(limit["would_go_over"], 2);
        assert_eq!(limit["requests_counted"], 9);
        assert_eq!(limit["keys"], 2);
        assert!(text(&out)[0].contains("ESTIMATE"));
    }

    #[test]
    fn a_key_without_a_value_is_not_counted() {
        let mut est = Estimator::default();
        let e = json!({"limits": {"limits": [{
            "name": "per-user", "requests": 1, "period": "second",
            "key": [{"part": "sub", "value": null}],
        }]}});
        est.count(&e, 1);
        assert_eq!(est.json()["limits"].as_array().unwrap().len(), 0);
    }
}
