//! Which events are kept: a route's `sample` share of the rest, and always
//! every denial, shadow denial and admin operation.

use super::config::EventType;
use super::event::Decision;

/// `random`: a fresh 64-bit random number from the host.
pub fn keep(event_type: EventType, sample: f64, decisions: &[Decision], random: u64) -> bool {
    if event_type == EventType::AdminOperation || decisions.iter().any(Decision::refused) {
        return true;
    }
    if sample >= 1.0 {
        return true;
    }
    // 53 random bits: a uniform f64 in [0, 1).
    let draw = (random >> 11) as f64 / (1u64 << 53) as f64;
    draw < sample
}
