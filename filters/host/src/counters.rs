//! Counters defined once at configure time and held as handles: a request
//! bumps one by its index in the stage's `metric_names()` list, so no name
//! is built or hashed per request.

use crate::api::Host;
use log::warn;

#[derive(Debug, Default)]
pub struct Counters {
    /// By index in the names given to `define`; `None` where the host
    /// refused the name, so metrics never fail a request.
    ids: Vec<Option<u32>>,
}

impl Counters {
    pub fn define<S: AsRef<str>>(host: &dyn Host, names: &[S]) -> Counters {
        let ids = names
            .iter()
            .map(|name| match host.define_counter(name.as_ref()) {
                Ok(id) => Some(id),
                Err(e) => {
                    warn!("could not define metric {}: {}", name.as_ref(), e.0);
                    None
                }
            })
            .collect();
        Counters { ids }
    }

    /// Adds `n` to the counter at `index` of the defined names.
    pub fn add_n(&self, host: &dyn Host, index: usize, n: u64) {
        if let (Some(Some(id)), true) = (self.ids.get(index), n > 0) {
            host.add_counter(*id, n);
        }
    }

    /// Bumps the counter at `index` of the defined names.
    pub fn add(&self, host: &dyn Host, index: usize) {
        if let Some(Some(id)) = self.ids.get(index) {
            host.increment_counter(*id);
        }
    }
}

/// Gauges defined once, each set only when its value changed (a host call
/// saved on most requests).
#[derive(Debug, Default)]
pub struct Gauges {
    ids: Vec<Option<u32>>,
    last: std::cell::RefCell<Vec<u64>>,
}

impl Gauges {
    pub fn define<S: AsRef<str>>(host: &dyn Host, names: &[S]) -> Gauges {
        let ids: Vec<Option<u32>> = names
            .iter()
            .map(|name| match host.define_gauge(name.as_ref()) {
                Ok(id) => Some(id),
                Err(e) => {
                    warn!("could not define metric {}: {}", name.as_ref(), e.0);
                    None
                }
            })
            .collect();
        let last = std::cell::RefCell::new(vec![0; ids.len()]);
        Gauges { ids, last }
    }

    /// Adds `delta` to the gauge at `index` of the defined names.
    pub fn add(&self, host: &dyn Host, index: usize, delta: i64) {
        if let (Some(Some(id)), true) = (self.ids.get(index), delta != 0) {
            host.add_gauge(*id, delta);
        }
    }

    /// Sets the gauge at `index` of the defined names.
    pub fn set(&self, host: &dyn Host, index: usize, value: u64) {
        let Some(Some(id)) = self.ids.get(index) else { return };
        let mut last = self.last.borrow_mut();
        if let Some(last) = last.get_mut(index) {
            if *last != value {
                host.set_gauge(*id, value);
                *last = value;
            }
        }
    }
}
