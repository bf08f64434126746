//! What stages do to a request through the host: local replies, header
//! edits and filter-state writes. A failed call is logged, never fatal.

use crate::api::first;
use crate::api::Host;
use crate::context::RequestContext;
use crate::pipeline::Step;
use log::warn;
use tollgate_core::decision::Action;
use tollgate_core::policy::Policy;
use tollgate_core::reply::Reply;
use tollgate_core::Mode;

/// Sends a local reply (the request then ends).
pub fn send(host: &dyn Host, context_id: u32, reply: &Reply) {
    send_with(host, context_id, reply, &[]);
}

/// Sends a local reply with a stage's extra headers.
pub fn send_with(host: &dyn Host, context_id: u32, reply: &Reply, extra: &[(String, String)]) {
    let mut headers: Vec<(&str, &str)> = reply.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Err(e) = host.send_reply(u32::from(reply.status), reply.grpc_status, &headers, &reply.body) {
        warn!("#{context_id} could not send local reply: {}", e.0);
    }
}

/// Fails closed for a filter whose configuration never loaded (503).
pub fn unconfigured(host: &dyn Host, context_id: u32) {
    let headers = host.request_headers().unwrap_or_default();
    let reply = tollgate_core::reply::UNCONFIGURED.reply(first(&headers, "x-request-id"), "tollgate");
    send(host, context_id, &reply);
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
    cx: &mut RequestContext,
    counters: (&crate::Counters, usize),
    policy: &Policy,
    stage: &'static str,
    why: &str,
) -> Step {
    use tollgate_core::request::RequestDenial;
    warn!("#{} {stage}: refused, {why}", cx.context_id);
    counters.0.add(host, counters.1);
    let denial = RequestDenial::Unreadable.denial();
    cx.decide(stage, Mode::Enforce, Action::Deny(denial), None);
    let reply = denial.reply(cx.request_id(), &policy.realm);
    send(host, cx.context_id, &reply);
    Step::Replied
}

/// Records a stage's verdict and what it means for the request: go on
/// (also when only a shadow denial), or answer it with the denial and the
/// extras the stage asked for.
pub fn conclude(host: &dyn Host, cx: &mut RequestContext, verdict: Verdict<'_>, realm: &str) -> Step {
    let context_id = cx.context_id;
    cx.decide(verdict.stage, verdict.mode, verdict.action, verdict.detail);
    match verdict.action {
        Action::Allow => Step::Next,
        Action::ShadowDeny(denial) => {
            log::info!(
                "#{context_id} shadow: would deny {} on route {}",
                denial.reason,
                verdict.route
            );
            Step::Next
        }
        Action::Deny(denial) => {
            log::debug!("#{context_id} deny {} on route {}", denial.reason, verdict.route);
            let mut reply = denial.reply(cx.request_id(), realm);
            reply.add_fields(&cx.extras.reply_fields);
            let extra = &cx.extras.reply_headers;
            send_with(host, context_id, &reply, extra);
            Step::Replied
        }
    }
}

/// A stage's verdict on a request, as `conclude` records it.
#[derive(Debug, Clone)]
pub struct Verdict<'a> {
    pub stage: &'static str,
    pub route: &'a str,
    pub mode: Mode,
    pub action: Action,
    /// A limit's name, or what else the stage's decision was about.
    pub detail: Option<String>,
}
