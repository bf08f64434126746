//! Which events are kept: a route's `sample` share of the rest, and always
//! every denial, shadow denial, admin operation and failed response.

use super::config::EventType;
use super::event::Decision;

/// `status`: the response's (0 when there was none). `random`: a fresh
/// 64-bit random number from the host.
pub fn keep(event_type: EventType, sample: f64, decisions: &[Decision], status: u16, random: u64) -> bool {
    if event_type == EventType::AdminOperation || decisions.iter().any(Decision::refused) {
        return true;
    }
    // Only successful requests are sampled: a refusal by the application
    // or another filter (probing, enumeration) is always kept.
    if !(100..400).contains(&status) {
        return true;
    }
    if sample >= 1.0 {
        return true;
    }
    // 53 random bits: a uniform f64 in [0, 1).
    let draw = (random >> 11) as f64 / (1u64 << 53) as f64;
    draw < sample
}
