//! What stages do to a request through the host: local replies, header
//! edits and filter-state writes. A failed call is logged, never fatal.

use crate::api::first;
use crate::api::Host;
use log::warn;
use tollgate_core::reply::Reply;

/// Sends a local reply (the request then ends).
pub fn send(host: &dyn Host, context_id: u32, reply: &Reply) {
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Err(e) = host.send_reply(u32::from(reply.status), &headers, &reply.body) {
        warn!("#{context_id} could not send local reply: {}", e.0);
    }
}

/// Fails closed for a filter whose configuration never loaded (503).
pub fn unconfigured(host: &dyn Host, context_id: u32) -> proxy_wasm::types::Action {
    let headers = host.request_headers().unwrap_or_default();
    let reply = tollgate_core::reply::UNCONFIGURED.reply(first(&headers, "x-request-id"), "tollgate");
    send(host, context_id, &reply);
    proxy_wasm::types::Action::Pause
}

/// Applies header edits in order: `None` removes every copy, `Some` replaces.
pub fn edit_request_headers(host: &dyn Host, context_id: u32, edits: &[(&str, Option<&str>)]) {
    for (name, value) in edits {
        if let Err(e) = host.set_request_header(name, value.map(str::as_bytes)) {
            warn!("#{context_id} could not set header {name}: {}", e.0);
        }
    }
}

pub fn set_property(host: &dyn Host, context_id: u32, path: &str, value: &[u8]) {
    if let Err(e) = host.set_property(path, value) {
        warn!("#{context_id} could not set {path}: {}", e.0);
    }
}

/// Refuses a request a stage could not read from the host (500): it must
/// not be decided on a failed read. `counter`: the stage's index of
/// `request_unreadable`.
pub fn refuse_unreadable(
    host: &dyn Host,
    ex: &crate::Exchange<'_>,
    counters: (&crate::Counters, usize),
    policy: &tollgate_core::policy::Policy,
    stage: &str,
    why: &str,
) -> crate::Step {
    use tollgate_core::request::RequestDenial;
    warn!("#{} {stage}: refused, {why}", ex.context_id);
    counters.0.add(host, counters.1);
    let reply = RequestDenial::Unreadable.denial().reply(ex.request_id(), &policy.realm);
    send(host, ex.context_id, &reply);
    crate::Step::Replied
}

/// What a stage's verdict means for the request: go on (also when only a
/// shadow denial), or answer it with the denial.
pub fn conclude(
    host: &dyn Host,
    ex: &crate::Exchange<'_>,
    action: tollgate_core::decision::Action,
    route: &str,
    realm: &str,
) -> crate::Step {
    use tollgate_core::decision::Action;
    let context_id = ex.context_id;
    match action {
        Action::Allow => crate::Step::Next,
        Action::ShadowDeny(denial) => {
            log::info!("#{context_id} shadow: would deny {} on route {route}", denial.reason);
            crate::Step::Next
        }
        Action::Deny(denial) => {
            log::debug!("#{context_id} deny {} on route {route}", denial.reason);
            send(host, context_id, &denial.reply(ex.request_id(), realm));
            crate::Step::Replied
        }
    }
}
