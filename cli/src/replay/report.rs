//! What replay found: counts of events read, re-decided and skipped (with
//! why), and the changes grouped by (route, stage, tenant, old -> new),
//! each with its count and one example request id; newly denied first.
//! Bounded: at most `MAX_GROUPS` groups and `MAX_REASONS` reasons, the
//! rest counted together.

use super::compare::StageChange;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

pub const MAX_GROUPS: usize = 10_000;
pub const MAX_REASONS: usize = 1_000;

/// Counts by reason, bounded.
#[derive(Debug, Default)]
pub struct Reasons {
    pub by_reason: BTreeMap<String, u64>,
    pub other: u64,
}

impl Reasons {
    pub fn add(&mut self, reason: &str) {
        let full = self.by_reason.len() >= MAX_REASONS;
        match self.by_reason.get_mut(reason) {
            Some(n) => *n += 1,
            None if full => self.other += 1,
            None => {
                self.by_reason.insert(reason.to_string(), 1);
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.by_reason.values().sum::<u64>() + self.other
    }

    fn json(&self) -> Value {
        let mut list: Vec<Value> = self
            .by_reason
            .iter()
            .map(|(why, n)| json!({"why": why, "count": n}))
            .collect();
        if self.other > 0 {
            list.push(json!({"why": "other reasons", "count": self.other}));
        }
        Value::Array(list)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub route: String,
    pub stage: String,
    pub tenant: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub count: u64,
    pub newly_denied: bool,
    pub example: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub read: u64,
    pub redecided: u64,
    /// Re-decided with every compared stage as recorded.
    pub unchanged: u64,
    /// Re-decided with some stage changed.
    pub changed: u64,
    /// Lines that are not events this tool reads.
    pub skipped: Reasons,
    /// Events that lack what the candidate's decision needs.
    pub undecidable: Reasons,
    pub groups: HashMap<GroupKey, Group>,
    /// Changes past `MAX_GROUPS` groups.
    pub other_changes: u64,
    pub other_newly_denied: u64,
    pub limits: Value,
}

impl Report {
    /// One re-decided event's changes.
    pub fn add_changes(&mut self, route: &str, tenant: &str, request_id: Option<&str>, changes: &[StageChange]) {
        self.redecided += 1;
        if changes.is_empty() {
            self.unchanged += 1;
            return;
        }
        self.changed += 1;
        for change in changes {
            let key = GroupKey {
                route: route.to_string(),
                stage: change.stage.clone(),
                tenant: tenant.to_string(),
                old: change.old.clone(),
                new: change.new.clone(),
            };
            let full = self.groups.len() >= MAX_GROUPS;
            match self.groups.get_mut(&key) {
                Some(group) => {
                    group.count += 1;
                    if group.example.is_none() {
                        group.example = request_id.map(str::to_string);
                    }
                }
                None if full => {
                    self.other_changes += 1;
                    self.other_newly_denied += u64::from(change.newly_denied());
                }
                None => {
                    let group = Group {
                        count: 1,
                        newly_denied: change.newly_denied(),
                        example: request_id.map(str::to_string),
                    };
                    self.groups.insert(key, group);
                }
            }
        }
    }

    /// Groups newly denied first, then by count (largest first), then key.
    pub fn sorted_groups(&self) -> Vec<(&GroupKey, &Group)> {
        let mut list: Vec<(&GroupKey, &Group)> = self.groups.iter().collect();
        list.sort_by(|a, b| {
            b.1.newly_denied
                .cmp(&a.1.newly_denied)
                .then(b.1.count.cmp(&a.1.count))
                .then(a.0.cmp(b.0))
        });
        list
    }

    pub fn newly_denied(&self) -> u64 {
        let grouped: u64 = self.groups.values().filter(|g| g.newly_denied).map(|g| g.count).sum();
        grouped + self.other_newly_denied
    }

    pub fn any_change(&self) -> bool {
        self.changed > 0
    }

    pub fn json(&self) -> Value {
        let changes: Vec<Value> = self
            .sorted_groups()
            .into_iter()
            .map(|(k, g)| {
                json!({
                    "route": k.route, "stage": k.stage, "tenant": k.tenant,
                    "old": k.old, "new": k.new, "newly_denied": g.newly_denied,
                    "count": g.count, "example_request_id": g.example,
                })
            })
            .collect();
        json!({
            "events": {
                "read": self.read,
                "redecided": self.redecided,
                "unchanged": self.unchanged,
                "changed": self.changed,
                "skipped": self.skipped.total() + self.undecidable.total(),
            },
            "skipped": self.skipped.json(),
            "undecidable": self.undecidable.json(),
            "newly_denied": self.newly_denied(),
            "changes": changes,
            "other_changes": {"count": self.other_changes, "newly_denied": self.other_newly_denied},
            "limits": self.limits,
        })
    }

    pub fn text(&self) -> String {
        let mut out = Vec::new();
        out.push(format!(
            "events: {} read, {} re-decided ({} unchanged, {} changed), {} skipped",
            self.read,
            self.redecided,
            self.unchanged,
            self.changed,
            self.skipped.total() + self.undecidable.total()
        ));
        for (title, reasons) in [("skipped", &self.skipped), ("undecidable", &self.undecidable)] {
            for (why, n) in &reasons.by_reason {
                out.push(format!("  {title} {n}: {why}"));
            }
            if reasons.other > 0 {
                out.push(format!("  {title} {}: other reasons", reasons.other));
            }
        }
        let groups = self.sorted_groups();
        if groups.is_empty() && self.other_changes == 0 {
            out.push("changes: none".into());
        } else {
            out.push(format!("changes ({} requests newly denied):", self.newly_denied()));
        }
        for (k, g) in groups {
            out.push(format!(
                "  {}route {} stage {} tenant {}: {} -> {}: {} (e.g. request {})",
                if g.newly_denied { "NEWLY DENIED " } else { "" },
                k.route,
                k.stage,
                k.tenant,
                k.old,
                k.new,
                g.count,
                g.example.as_deref().unwrap_or("-")
            ));
        }
        if self.other_changes > 0 {
            out.push(format!(
                "  {} more changes past {MAX_GROUPS} groups ({} newly denied)",
                self.other_changes, self.other_newly_denied
            ));
        }
        out.extend(super::limits::text(&self.limits));
        let mut text = out.join("\n");
        text.push('\n');
        text
    }
}

/// `--fail-on`: which changes make replay exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailOn {
    #[default]
    NewDenials,
    AnyChange,
    None,
}

impl std::str::FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<FailOn, String> {
        match s {
            "new-denials" => Ok(FailOn::NewDenials),
            "any-change" => Ok(FailOn::AnyChange),
            "none" => Ok(FailOn::None),
            _ => Err(format!("'{s}': expected new-denials, any-change or none")),
        }
    }
}

impl FailOn {
    /// As `--fail-on` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailOn::NewDenials => "new-denials",
            FailOn::AnyChange => "any-change",
            FailOn::None => "none",
        }
    }
}

/// Exit code when the gate trips (1 is an error: bad input, unreadable policy).
pub const GATE_EXIT: i32 = 3;

/// Why the gate refuses the candidate; `None` when it passes.
pub fn gate(report: &Report, fail_on: FailOn) -> Option<String> {
    match fail_on {
        FailOn::NewDenials if report.newly_denied() > 0 => Some(format!(
            "{} recorded requests would be newly denied (--fail-on new-denials)",
            report.newly_denied()
        )),
        FailOn::AnyChange if report.any_change() => Some(format!(
            "{} recorded requests would be decided differently (--fail-on any-change)",
            report.changed
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn change(stage: &str, old: &str, new: &str) -> StageChange {
        StageChange {
            stage: stage.into(),
            old: old.into(),
            new: new.into(),
        }
    }

    #[test]
    fn changes_group_by_route_stage_tenant_and_outcomes_with_one_example() {
        let mut r = Report::default();
        let suspended = change("tenant", "allow", "deny (tenant_suspended)");
        r.add_changes("datahub", "ACME", Some("id-1"), std::slice::from_ref(&suspended));
        r.add_changes("datahub", "ACME", Some("id-2"), std::slice::from_ref(&suspended));
        // Each key part on its own makes another group.
        r.add_changes("trino", "ACME", Some("id-3"), std::slice::from_ref(&suspended));
        r.add_changes("datahub", "BETA", Some("id-4"), std::slice::from_ref(&suspended));
        r.add_changes(
            "datahub",
            "ACME",
            Some("id-5"),
            &[change("jwt", "allow", "deny (insufficient_scope)")],
        );
        r.add_changes(
            "datahub",
            "ACME",
            None,
            &[change("tenant", "allow", "shadow_deny (tenant_suspended)")],
        );
        r.add_changes("datahub", "ACME", Some("id-7"), &[]);
        assert_eq!((r.redecided, r.unchanged, r.changed), (7, 1, 6));
        assert_eq!(r.groups.len(), 5);
        let sorted = r.sorted_groups();
        assert_eq!(sorted[0].0.route, "datahub");
        assert_eq!((sorted[0].1.count, sorted[0].1.example.as_deref()), (2, Some("id-1")));
        assert!(sorted[..4].iter().all(|(_, g)| g.newly_denied), "newly denied first");
        assert!(!sorted[4].1.newly_denied, "a shadow denial is not a denial");
        assert_eq!(r.newly_denied(), 5);
        let json = r.json();
        assert_eq!(json["changes"][0]["example_request_id"], "id-1");
        assert_eq!(json["changes"][4]["new"], "shadow_deny (tenant_suspended)");
        assert!(r.text().contains("NEWLY DENIED route datahub stage tenant tenant ACME: allow -> deny (tenant_suspended): 2 (e.g. request id-1)"));
    }

    #[test]
    fn groups_past_the_bound_are_counted_together() {
        let mut r = Report::default();
        for i in 0..MAX_GROUPS + 3 {
            r.add_changes(&format!("r{i}"), "-", None, &[change("jwt", "allow", "deny (x)")]);
        }
        assert_eq!(r.groups.len(), MAX_GROUPS);
        assert_eq!((r.other_changes, r.other_newly_denied), (3, 3));
        assert_eq!(r.newly_denied(), MAX_GROUPS as u64 + 3);
    }

    #[test]
    fn each_fail_on_trips_on_its_own_changes() {
        let none = Report::default();
        let mut relaxed = Report::default();
        relaxed.add_changes("r", "t", None, &[change("jwt", "deny (token_missing)", "allow")]);
        let mut denying = Report::default();
        denying.add_changes("r", "t", None, &[change("tenant", "shadow_deny (x)", "deny (x)")]);
        let trips = |r: &Report, f: FailOn| gate(r, f).is_some();
        assert!(!trips(&none, FailOn::NewDenials) && !trips(&none, FailOn::AnyChange));
        assert!(!trips(&relaxed, FailOn::NewDenials), "allowing more denies none");
        assert!(trips(&relaxed, FailOn::AnyChange));
        assert!(trips(&denying, FailOn::NewDenials) && trips(&denying, FailOn::AnyChange));
        assert!(!trips(&denying, FailOn::None));
        for f in [FailOn::NewDenials, FailOn::AnyChange, FailOn::None] {
            assert_eq!(f.as_str().parse::<FailOn>(), Ok(f));
        }
        assert!("all".parse::<FailOn>().is_err());
    }

    #[test]
    fn reasons_are_bounded() {
        let mut r = Reasons::default();
        for i in 0..MAX_REASONS + 2 {
            r.add(&format!("why {i}"));
        }
        r.add("why 0");
        assert_eq!(
            (r.by_reason.len(), r.other, r.total()),
            (MAX_REASONS, 2, MAX_REASONS as u64 + 3)
        );
    }
}
