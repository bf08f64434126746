//! A stage's counters, laid out once: its own counters, then
//! `denied.<reason>` and `shadow_denied.<reason>` for each of its denials,
//! then the refusals made before any stage (`request::metric_names`). The
//! names and every index come from the two lists' lengths, so no stage
//! keeps offsets by hand; hosts define the names once and bump by index.

use crate::decision::Action;
use crate::reply::Denial;
use crate::request::{self, RequestDenial};
use crate::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricTable {
    /// The stage's own counters (`allowed`, `cache_hit`, ...).
    own: usize,
    /// The stage's denials.
    denials: usize,
}

impl MetricTable {
    pub const fn new(own: usize, denials: usize) -> MetricTable {
        MetricTable { own, denials }
    }

    /// `tollgate.<stage>.<own>`, then the denied, shadow-denied and request
    /// counters, in index order.
    pub fn names(&self, stage: &str, own: &[&str], denials: &[Denial]) -> Vec<String> {
        let mut names: Vec<String> = own.iter().map(|n| format!("tollgate.{stage}.{n}")).collect();
        for mode in [Mode::Enforce, Mode::Shadow] {
            names.extend(denials.iter().map(|d| Action::new(Some(*d), mode).metric(stage, "")));
        }
        names.extend(request::metric_names(stage));
        names
    }

    /// Index of the stage's own counter `i`.
    pub const fn own(&self, i: usize) -> usize {
        i
    }

    /// Index of the counter for denial `i` (its position in the stage's
    /// list) in `mode`.
    pub const fn denied(&self, i: usize, mode: Mode) -> usize {
        match mode {
            Mode::Enforce => self.own + i,
            Mode::Shadow => self.own + self.denials + i,
        }
    }

    /// Index of a refusal made before any stage.
    pub fn request(&self, denial: RequestDenial) -> usize {
        self.own + 2 * self.denials + denial.metric_index()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_index_names_its_counter() {
        let denials = [crate::form::TOO_LARGE, crate::form::TOKEN_IN_BODY];
        let table = MetricTable::new(2, denials.len());
        let names = table.names("x", &["allowed", "other"], &denials);
        let at = |i: usize| names.get(i).cloned().unwrap_or_default();
        assert_eq!(at(table.own(1)), "tollgate.x.other");
        assert_eq!(
            at(table.denied(1, Mode::Enforce)),
            "tollgate.x.denied.token_in_form_body"
        );
        assert_eq!(
            at(table.denied(0, Mode::Shadow)),
            "tollgate.x.shadow_denied.form_body_too_large"
        );
        assert_eq!(
            at(table.request(RequestDenial::Unreadable)),
            "tollgate.x.denied.request_unreadable"
        );
        assert_eq!(names.len(), 2 + 2 * 2 + RequestDenial::ALL.len());
    }
}
