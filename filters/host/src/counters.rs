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
    names: Vec<String>,
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
        Counters {
            ids,
            names: names.iter().map(|n| n.as_ref().to_string()).collect(),
        }
    }

    /// Bumps the counter at `index` of the defined names.
    pub fn add(&self, host: &dyn Host, index: usize) {
        if let Some(Some(id)) = self.ids.get(index) {
            host.increment_counter(*id);
        }
    }

    /// The index of a name; for names fixed at configure time, never per request.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Bumps a counter by name (a linear search: for rare events only).
    pub fn add_named(&self, host: &dyn Host, name: &str) {
        if let Some(i) = self.index(name) {
            self.add(host, i);
        }
    }
}
