//! Which events are kept: a route's `sample` share of the rest, and always
//! every denial, shadow denial, admin operation and failed response.

use super::config::EventType;
use super::event::Decision;

/// `succeeded`: `succeeded(...)` of the response. `random`: a fresh 64-bit
/// random number from the host.
pub fn keep(event_type: EventType, sample: f64, decisions: &[Decision], succeeded: bool, random: u64) -> bool {
    if event_type == EventType::AdminOperation || decisions.iter().any(Decision::refused) {
        return true;
    }
    // Only successful requests are sampled: a refusal by the application
    // or another filter (probing, enumeration) is always kept.
    if !succeeded {
        return true;
    }
    if sample >= 1.0 {
        return true;
    }
    // 53 random bits: a uniform f64 in [0, 1).
    let draw = (random >> 11) as f64 / (1u64 << 53) as f64;
    draw < sample
}

/// Whether a response is a success: HTTP 1xx to 3xx (0: there was none)
/// and, for a gRPC request (`grpc_status` given), gRPC status 0: a gRPC
/// service refuses with HTTP 200.
pub fn succeeded(status: u16, grpc_status: Option<u64>) -> bool {
    (100..400).contains(&status) && grpc_status.is_none_or(|s| s == 0)
}
