//! The audit stage: in the log phase of every request, refused ones
//! included, one event from the request context (and, behind separate
//! filters, their filter state), sampled, buffered and sent in batches
//! from the root's tick. It decides nothing and never holds a request.
//!
//! The buffer is per worker, in this VM: a shared queue would add a host
//! call and a copy per event and a cross-worker lock, to gain one flusher
//! per sidecar. It outlives the policy (`Outbox`, by root id and plugin
//! name), so a reload loses no buffered event; a call dispatched before a
//! reload is answered to the new stage, which finds it there.

use log::{info, warn};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tollgate_core::audit::{
    self, encode, AuditConfig, Buffer, Decision, Failure, Format, Inputs, Queued, Refusals, RouteAudit,
};
use tollgate_core::policy::wire::TenantSource;
use tollgate_core::policy::{token_headers, token_params, Policy};
use tollgate_core::ratelimit::key;
use tollgate_core::request;
use tollgate_core::stage::StageName;
use tollgate_core::state;
use tollgate_core::tenant::{self, TenantRequest};
use tollgate_core::Mode;
use tollgate_host::{first, Counters, Gauges, Host, Publish, RequestContext, Stage, Step};

const STAGE: &str = "audit";
/// Calls to the sink at once, per worker (a Kafka REST batch is one per
/// topic in it): with `batch_size` events each, what is out of the buffer
/// is bounded too.
const MAX_IN_FLIGHT: usize = 4;
/// The tick while a full batch waits and no call is out to take it (and
/// the sink has not failed: then the backoff decides).
const FAST_TICK: Duration = Duration::from_millis(10);
/// A call Envoy never answered (it always does, at its timeout) is given
/// up this long after its timeout, and its events go back to the buffer.
const GIVE_UP_SLACK_NANOS: u64 = 5_000_000_000;
/// Random bytes fetched per host call: 64 event ids, or 128 sampling draws.
const RANDOM_POOL: usize = 1024;

/// A POST to the sink in flight, with the events it carries.
struct InFlight {
    token: u32,
    /// The POST's path: it names the topic a refusal is about.
    path: String,
    events: Vec<Queued>,
    /// When it was dispatched (the backoff's attempt it belongs to).
    sent_at: u64,
    give_up_at: u64,
}

/// A worker's buffer and calls, kept across policy reloads.
pub struct Outbox {
    buffer: Buffer,
    in_flight: Vec<InFlight>,
    last_flush: u64,
    /// Counter totals already added to the host's counters.
    reported: [u64; 10],
    /// This worker's share already added to the two gauges.
    reported_gauges: [u64; 2],
    random: Vec<u8>,
    /// Taken out of the list (`retire`): a request the old pipeline still
    /// runs has its event counted as dropped here, as nothing sends it.
    retired: bool,
    /// Events the sink refused for good since the last line logged.
    refusals: Refusals,
}

impl Outbox {
    fn new(capacity: usize) -> Outbox {
        Outbox {
            buffer: Buffer::new(capacity),
            in_flight: Vec::new(),
            last_flush: 0,
            reported: [0; 10],
            reported_gauges: [0; 2],
            random: Vec::new(),
            retired: false,
            refusals: Refusals::default(),
        }
    }

    fn in_flight_events(&self) -> usize {
        self.in_flight.iter().map(|c| c.events.len()).sum()
    }
}

/// Whose outbox: the root id and the plugin's name. Istio's mesh-wide
/// plugin and a namespace's own share a root id and a module, so Envoy
/// runs both in one VM; each keeps its own events and sink. The name stays
/// across reloads of one plugin.
fn outbox_key(host: &dyn Host) -> String {
    format!("{}/{}", host.root_id(), host.plugin_name())
}

thread_local! {
    /// One outbox per plugin (`outbox_key`) in this VM (one VM per worker).
    static OUTBOXES: RefCell<Vec<(String, Rc<RefCell<Outbox>>)>> = const { RefCell::new(Vec::new()) };
}

fn outbox_for(key: &str, capacity: usize) -> Rc<RefCell<Outbox>> {
    OUTBOXES.with(|all| {
        let mut all = all.borrow_mut();
        if let Some((_, outbox)) = all.iter().find(|(id, _)| id == key) {
            outbox.borrow_mut().buffer.resize(capacity);
            return outbox.clone();
        }
        let outbox = Rc::new(RefCell::new(Outbox::new(capacity)));
        all.push((key.to_string(), outbox.clone()));
        outbox
    })
}

/// Outboxes no stage holds any more, out of the list: their plugin was
/// removed (or moved to another root id) with events still in them.
fn take_orphans() -> Vec<Rc<RefCell<Outbox>>> {
    OUTBOXES.with(|all| {
        let mut all = all.borrow_mut();
        let mut orphans = Vec::new();
        all.retain(|(_, outbox)| {
            // Only the list holds it: no pipeline, no request in flight.
            let orphan = Rc::strong_count(outbox) == 1;
            if orphan {
                orphans.push(outbox.clone());
            }
            !orphan
        });
        orphans
    })
}

/// The policy no longer audits: events still buffered for this plugin are
/// dropped, counted (`events_dropped.resized`) and logged.
pub fn retire(host: &dyn Host) {
    let key = outbox_key(host);
    let Some(outbox) = OUTBOXES.with(|all| {
        let mut all = all.borrow_mut();
        let at = all.iter().position(|(id, _)| *id == key)?;
        Some(all.swap_remove(at).1)
    }) else {
        return;
    };
    let mut outbox = outbox.borrow_mut();
    outbox.retired = true;
    let left = outbox.buffer.depth() + outbox.in_flight_events();
    if left > 0 {
        warn!("{key}: audit removed from the policy; {left} buffered events dropped");
    }
    outbox.buffer.clear();
    let in_flight: Vec<InFlight> = outbox.in_flight.drain(..).collect();
    for call in in_flight {
        outbox.buffer.requeue_failed(call.events, 0, 0);
        outbox.buffer.clear();
    }
    let counters = Counters::define(host, &audit::metric_names());
    let gauges = Gauges::define(host, &audit::GAUGES);
    report(&counters, &gauges, host, &mut outbox);
}

/// Adds what the buffer counted since the last report to the host's
/// counters, and this worker's change of depth to the gauges (which Envoy
/// then holds summed over workers).
fn report(counters: &Counters, gauges: &Gauges, host: &dyn Host, outbox: &mut Outbox) {
    let totals = outbox.buffer.counters.totals();
    for (i, (total, reported)) in totals.iter().zip(outbox.reported.iter_mut()).enumerate() {
        if total > reported {
            counters.add_n(host, i, total - *reported);
            *reported = *total;
        }
    }
    let now = [outbox.buffer.depth() as u64, outbox.in_flight_events() as u64];
    for (i, (value, reported)) in now.iter().zip(outbox.reported_gauges.iter_mut()).enumerate() {
        let delta = i64::try_from(*value).unwrap_or(i64::MAX) - i64::try_from(*reported).unwrap_or(i64::MAX);
        gauges.add(host, i, delta);
        *reported = *value;
    }
}

/// What Envoy's node metadata says about this sidecar (Istio sets both).
struct Node {
    service: Option<String>,
    namespace: Option<String>,
}

impl Node {
    fn read(host: &dyn Host) -> Node {
        let string = |key: &str| {
            host.node_metadata(key)
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|s| !s.is_empty())
        };
        Node {
            service: string("WORKLOAD_NAME"),
            namespace: string("NAMESPACE"),
        }
    }
}

pub struct AuditStage {
    policy: Rc<Policy>,
    config: AuditConfig,
    outbox: Rc<RefCell<Outbox>>,
    counters: Counters,
    gauges: Gauges,
    node: Node,
    /// For the sink's `:authority`.
    authority: String,
    claims: Vec<String>,
    token_params: Vec<String>,
    token_headers: Vec<String>,
    /// Behind separate filters: the other stages' decisions and facts are
    /// read from their filter state.
    others: Vec<StageName>,
}

impl AuditStage {
    pub fn new(policy: &Rc<Policy>, host: &dyn Host) -> AuditStage {
        let config = policy.audit.clone().unwrap_or_else(|| {
            // `Policy::compile` puts the audit stage in `stages` only with
            // an `audit` section; a log sink then needs nothing else.
            AuditConfig::compile(&Default::default(), "audit", &[], &mut Default::default())
        });
        let outbox = outbox_for(&outbox_key(host), config.buffer_events);
        let authority = sink_authority(&config.sink.cluster);
        let stage = AuditStage {
            counters: Counters::define(host, &audit::metric_names()),
            gauges: Gauges::define(host, &audit::GAUGES),
            node: Node::read(host),
            authority,
            claims: audit::claims_read(policy),
            token_params: token_params(&policy.jwt),
            token_headers: token_headers(&policy.jwt),
            others: policy
                .stages
                .iter()
                .copied()
                .filter(|s| *s != StageName::Audit)
                .collect(),
            outbox,
            config,
            policy: policy.clone(),
        };
        stage.sync_metrics(host);
        stage
    }

    fn sync_metrics(&self, host: &dyn Host) {
        let mut outbox = self.outbox.borrow_mut();
        report(&self.counters, &self.gauges, host, &mut outbox);
    }

    /// Every decision on the request, in stage order: a refusal before any
    /// stage, the stages of this pipeline, and (behind separate filters)
    /// the others' records from filter state.
    fn decisions(&self, cx: &RequestContext, host: &dyn Host) -> Vec<Decision> {
        let mut out = Vec::with_capacity(self.others.len() + 1);
        if let Some(early) = cx.early {
            let denial = tollgate_core::decision::Action::Deny(early.denial());
            out.push(Decision::from_action("request", Mode::Enforce, &denial, None));
        }
        for stage in &self.others {
            let key = stage.as_str();
            if let Some(d) = cx.decision(key) {
                out.push(Decision::from_action(key, d.mode, &d.action, d.detail.as_deref()));
            } else if cx.publish == Publish::Keys && cx.early.is_none() {
                let record = host.property(&format!("tollgate.decision.{key}")).ok().flatten();
                out.extend(record.and_then(|r| Decision::from_record(key, &r)));
            }
        }
        out.extend(self.form_decision(cx, host));
        out
    }

    /// A form body refused after the stages let the request through: by
    /// this filter, else (separate filters) by one before it.
    fn form_decision(&self, cx: &RequestContext, host: &dyn Host) -> Option<Decision> {
        if let Some(d) = cx.decision("form") {
            return Some(Decision::from_action(d.stage, d.mode, &d.action, d.detail.as_deref()));
        }
        if cx.publish != Publish::Keys || cx.early.is_some() {
            return None;
        }
        let record = host.property(state::DECISION_FORM).ok().flatten()?;
        Decision::from_record("form", &record)
    }

    fn route_audit(&self, cx: &RequestContext) -> (Option<&str>, RouteAudit) {
        if cx.early.is_some() {
            return (None, self.policy.fallback.audit);
        }
        let route = cx.view.route(&self.policy);
        (Some(route.name.as_str()), route.audit)
    }

    /// `N` bytes from the worker's pool, refilled by one host call per
    /// `RANDOM_POOL` bytes: a host call per request (Envoy's `random_get`)
    /// was most of what a sampled-out request cost.
    fn random_bytes<const N: usize>(&self, host: &dyn Host) -> [u8; N] {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.random.len() < N {
            let mut pool = vec![0u8; RANDOM_POOL];
            if host.fill_random(&mut pool).is_err() {
                // No secure source: the clock and a counter keep ids unique.
                let seed = host.now_nanos() ^ outbox.buffer.counters.emitted.rotate_left(32);
                for (i, chunk) in pool.chunks_mut(8).enumerate() {
                    let v = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i as u64);
                    chunk.copy_from_slice(&v.to_le_bytes());
                }
            }
            outbox.random = pool;
        }
        let at = outbox.random.len().saturating_sub(N);
        let mut bytes = [0u8; N];
        for (slot, byte) in bytes.iter_mut().zip(outbox.random.drain(at..)) {
            *slot = byte;
        }
        bytes
    }

    /// Builds the event for a request and buffers it (or logs it).
    fn record(&self, cx: &RequestContext, host: &dyn Host) {
        let decisions = self.decisions(cx, host);
        let (route, route_audit) = self.route_audit(cx);
        let number = |path: &[&str]| {
            host.property_path(path)
                .ok()
                .flatten()
                .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()))
                .map(u64::from_le_bytes)
        };
        let status = u16::try_from(number(&["response", "code"]).unwrap_or(0)).unwrap_or(0);
        let succeeded = route_audit.sample >= 1.0 || audit::succeeded(status, grpc_status(cx, &number));
        let draw = if route_audit.sample >= 1.0 {
            0
        } else {
            u64::from_le_bytes(self.random_bytes(host))
        };
        if !audit::keep(route_audit.event_type, route_audit.sample, &decisions, succeeded, draw) {
            self.outbox.borrow_mut().buffer.counters.sampled_out += 1;
            return;
        }
        let now = host.now_nanos();
        let facts = self.facts(cx, host);
        let peer = host.property_path(&["source", "address"]).ok().flatten();
        let source_ip = key::client_ip(peer.as_deref(), &cx.headers, self.policy.ratelimit.xff_trusted_hops);
        let principal = host
            .property_path(&["connection", "uri_san_peer_certificate"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty());
        let header_values = tenant::header_values(&self.policy.tenant, &cx.headers);
        let claim = facts.tenant_claim.as_deref();
        let published = self.published_sources(cx, host);
        let seen = match &published {
            Some(list) => list.iter().map(|(source, value)| (*source, value.as_bytes())).collect(),
            None if self.others.contains(&StageName::Tenant) && cx.early.is_none() => {
                let request = TenantRequest {
                    head: cx.view.head(),
                    claim,
                    header_values: &header_values,
                    jwt_shadow_denied: false,
                };
                tenant::sources_seen(&self.policy.tenant, &request)
            }
            None => Vec::new(),
        };
        let token_params: Vec<&str> = self.token_params.iter().map(String::as_str).collect();
        let token_headers: Vec<&str> = self.token_headers.iter().map(String::as_str).collect();
        let random = self.random_bytes(host);
        let method = first(&cx.headers, ":method").map_or("", |m| std::str::from_utf8(m).unwrap_or(""));
        let overrides = self.method_overrides(cx, method);
        let inputs = Inputs {
            now_nanos: now,
            random,
            event_type: route_audit.event_type,
            service: self.node.service.as_deref(),
            namespace: self.node.namespace.as_deref(),
            method,
            method_overrides: &overrides,
            host: if cx.early.is_some() { "" } else { cx.view.host.as_str() },
            raw_path: cx.raw_path(),
            normalized_path: if cx.early.is_some() { "" } else { cx.view.path.as_str() },
            route,
            status,
            // A request logged unseen starts at Envoy's `request.time`
            // (`Pipeline::on_log_unseen`).
            duration_nanos: now.saturating_sub(cx.started_nanos),
            request_bytes: number(&["request", "total_size"]).unwrap_or(0),
            response_bytes: number(&["response", "total_size"]).unwrap_or(0),
            request_id: cx.request_id(),
            traceparent: first(&cx.headers, "traceparent"),
            source_principal: principal.as_deref(),
            source_ip: source_ip.as_deref(),
            subject: facts.subject.as_deref(),
            tenant: facts.tenant.as_deref(),
            tier: facts.tier.as_deref(),
            roles: &facts.roles,
            claims: &facts.claims,
            decisions: &decisions,
            tenant_sources: &seen,
            headers: &cx.headers,
            token_params: &token_params,
            token_headers: &token_headers,
        };
        let queued = Queued::from_inputs(&inputs, &self.config);
        let mut outbox = self.outbox.borrow_mut();
        if self.config.sink.format == Format::Log {
            info!("audit {}", String::from_utf8_lossy(&queued.json));
            outbox.buffer.counters.emitted += 1;
            outbox.buffer.counters.sent += 1;
            return;
        }
        outbox.buffer.push(queued);
        if outbox.retired {
            outbox.buffer.clear();
            report(&self.counters, &self.gauges, host, &mut outbox);
        }
    }

    /// The other methods the application may act on, as the decisions
    /// read them: the query's `_method`, a form body's, and method headers
    /// the policy does not strip.
    fn method_overrides(&self, cx: &RequestContext, method: &str) -> Vec<String> {
        if cx.early.is_some() {
            return Vec::new();
        }
        let headers = request::header_method_overrides(&cx.headers, &self.policy.strip_headers);
        let form = cx.form.iter().flat_map(|f| f.method_overrides.iter().cloned());
        let mut out: Vec<String> = Vec::new();
        for m in cx.view.method_overrides.iter().cloned().chain(form).chain(headers) {
            if !m.eq_ignore_ascii_case(method) && !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    /// Behind separate filters, the tenant sources the tenant filter read
    /// (`tollgate.tenant_sources`): by now it has overwritten
    /// `tollgate.tenant` and set the tenant header for the application.
    /// `None` where it did not decide (a filter before it answered).
    fn published_sources(&self, cx: &RequestContext, host: &dyn Host) -> Option<Vec<(TenantSource, String)>> {
        if cx.publish != Publish::Keys || cx.early.is_some() || !self.others.contains(&StageName::Tenant) {
            return None;
        }
        let json = host.property(state::TENANT_SOURCES).ok().flatten()?;
        audit::read_tenant_sources(&json)
    }

    /// Identity and tenant facts: from the stages in memory, else from
    /// filter state (separate filters).
    fn facts(&self, cx: &RequestContext, host: &dyn Host) -> EventFacts {
        let mut facts = EventFacts::default();
        let from_state = cx.publish == Publish::Keys;
        let property = |key: &str| {
            if from_state {
                host.property(key).ok().flatten()
            } else {
                None
            }
        };
        let text = |b: Vec<u8>| String::from_utf8(b).ok();
        match cx.facts.jwt.as_ref().and_then(|j| j.identity.as_deref()) {
            Some(identity) => {
                for (key, value) in identity.state() {
                    match key {
                        state::SUB => facts.subject = text(value.to_vec()),
                        state::TENANT => facts.tenant_claim = Some(value.to_vec()),
                        state::ROLES => facts.roles = serde_json::from_slice(value).unwrap_or_default(),
                        _ => {}
                    }
                }
                for claim in &self.claims {
                    if let Some(v) = tollgate_core::jwt::claims::lookup(&identity.claims, claim) {
                        facts.claims.insert(claim.clone(), v.clone());
                    }
                }
            }
            None if self.others.contains(&StageName::Jwt) => {
                facts.subject = property(state::SUB).and_then(text);
                facts.roles = property(state::ROLES)
                    .and_then(|r| serde_json::from_slice(&r).ok())
                    .unwrap_or_default();
                facts.claims = property(state::CLAIMS)
                    .and_then(|r| serde_json::from_slice(&r).ok())
                    .unwrap_or_default();
            }
            None => {}
        }
        match &cx.facts.tenant {
            Some(t) => {
                facts.tenant = Some(t.id.clone());
                facts.tier = t.tier.clone();
            }
            None if from_state && !self.others.is_empty() => {
                let tenant = property(state::TENANT);
                facts.tenant_claim = tenant.clone();
                facts.tenant = tenant.and_then(text);
                facts.tier = property(state::TENANT_TIER).and_then(text);
            }
            None => {
                facts.tenant = facts.tenant_claim.clone().and_then(text);
            }
        }
        facts
    }

    /// Sends what is due: full batches, or whatever waits once
    /// `flush_interval` passed; never past `MAX_IN_FLIGHT` calls, and not
    /// while backing off after a failure.
    fn flush(&self, host: &dyn Host) {
        let now = host.now_nanos();
        self.adopt_orphans(host);
        self.give_up_stale(now);
        let sink = &self.config.sink;
        if sink.format == Format::Log {
            self.log_buffered();
            return;
        }
        loop {
            let mut outbox = self.outbox.borrow_mut();
            let depth = outbox.buffer.depth();
            let interval = self.config.flush_interval.as_nanos() as u64;
            let due =
                depth >= self.config.batch_size || (depth > 0 && now.saturating_sub(outbox.last_flush) >= interval);
            if !due || outbox.in_flight.len() >= MAX_IN_FLIGHT || !outbox.buffer.ready(now) {
                return;
            }
            outbox.last_flush = now;
            let batch = outbox.buffer.take_batch(self.config.batch_size);
            let service = self.node.service.as_deref().unwrap_or("tollgate");
            let mut waiting: Vec<Vec<Queued>> = Vec::new();
            for (request, events) in encode(sink.format, &sink.path, service, now, batch) {
                // A Kafka REST batch is a call per topic: past the bound the
                // rest waits for an answer.
                if outbox.in_flight.len() >= MAX_IN_FLIGHT {
                    waiting.push(events);
                    continue;
                }
                let headers = [
                    (":method", "POST"),
                    (":path", request.path.as_str()),
                    (":authority", self.authority.as_str()),
                    ("content-type", request.content_type),
                ];
                match host.dispatch_http_call(&sink.cluster, &headers, Some(&request.body), sink.timeout) {
                    Ok(token) => outbox.in_flight.push(InFlight {
                        token,
                        path: request.path.clone(),
                        events,
                        sent_at: now,
                        give_up_at: now
                            .saturating_add(sink.timeout.as_nanos() as u64)
                            .saturating_add(GIVE_UP_SLACK_NANOS),
                    }),
                    Err(e) => {
                        warn!("audit: could not call cluster '{}': {}", sink.cluster, e.0);
                        outbox.buffer.requeue_failed(events, now, now);
                    }
                }
            }
            if !waiting.is_empty() {
                // Each topic's events in order, the first topic in front.
                for events in waiting.into_iter().rev() {
                    outbox.buffer.put_back(events);
                }
                return;
            }
        }
    }

    /// Events buffered for a sink before a reload to `format: log` (or
    /// failed calls that came back since): logged as new ones are, so
    /// none leaves the buffer uncounted.
    fn log_buffered(&self) {
        let mut outbox = self.outbox.borrow_mut();
        while outbox.buffer.depth() > 0 {
            for event in outbox.buffer.take_batch(usize::MAX) {
                info!("audit {}", String::from_utf8_lossy(&event.json));
                outbox.buffer.counters.sent += 1;
            }
        }
    }

    /// Takes over what removed plugins left: their counts not yet reported
    /// are reported, their events (in flight too: no root will hear the
    /// answers) go to this buffer, so none is lost uncounted.
    fn adopt_orphans(&self, host: &dyn Host) {
        for orphan in take_orphans() {
            let mut orphan = orphan.borrow_mut();
            let orphan = &mut *orphan;
            // What was in flight left the buffer first: back at its front.
            for call in orphan.in_flight.drain(..) {
                orphan.buffer.put_back(call.events);
            }
            warn!("audit: a removed plugin's buffer taken over");
            self.outbox.borrow_mut().buffer.adopt(&mut orphan.buffer);
            report(&self.counters, &self.gauges, host, orphan);
        }
    }

    /// What the sink made of a batch it answered 2xx. Kafka REST names
    /// each failed record under a 200, retriable or not; OTLP counts the
    /// records it rejected, which must not come again.
    fn accepted(&self, host: &dyn Host, call: InFlight, body_size: usize) -> Taken {
        let total = call.events.len();
        match self.config.sink.format {
            Format::KafkaRest => {
                let body = host.http_call_body(body_size);
                let failed = audit::kafka_failed_records(&body);
                let mut taken = Taken::default();
                for (i, event) in call.events.into_iter().enumerate() {
                    match failed.get(i).copied().flatten() {
                        None => taken.sent += 1,
                        Some(Failure::Retry) => taken.retry.push(event),
                        Some(Failure::Reject) => taken.rejected += 1,
                    }
                }
                if taken.rejected > 0 {
                    taken.reason = Some(audit::refusal_reason(&call.path, b"", &body));
                }
                taken
            }
            Format::Otlp => {
                let body = host.http_call_body(body_size);
                let rejected = audit::otlp_rejected(&body);
                let rejected = usize::try_from(rejected).unwrap_or(usize::MAX).min(total);
                // Counted, not logged: a collector logs what it rejects.
                Taken {
                    sent: total - rejected,
                    rejected,
                    ..Taken::default()
                }
            }
            Format::Jsonl | Format::Log => Taken {
                sent: total,
                ..Taken::default()
            },
        }
    }

    /// A batch answered 2xx: its events taken, retried or dropped.
    fn on_accepted(&self, host: &dyn Host, call: InFlight, body_size: usize) {
        let sent_at = call.sent_at;
        let taken = self.accepted(host, call, body_size);
        let mut outbox = self.outbox.borrow_mut();
        outbox.buffer.sent(taken.sent);
        outbox.buffer.rejected(taken.rejected);
        if let Some(reason) = taken.reason {
            outbox.refusals.add(taken.rejected as u64, false, reason);
        }
        if !taken.retry.is_empty() {
            warn!(
                "audit: the sink refused {} records of a batch; they will be retried",
                taken.retry.len()
            );
            outbox.buffer.requeue_failed(taken.retry, host.now_nanos(), sent_at);
        }
    }

    /// A batch answered otherwise, or not at all: retried, unless the
    /// answer is one retrying cannot change (4xx but 408 and 429), then
    /// dropped, counted, and summed into the next refusal line.
    fn on_failed(&self, host: &dyn Host, call: InFlight, status: &[u8], body_size: usize) {
        let mut outbox = self.outbox.borrow_mut();
        let n = call.events.len();
        if audit::batch_failure(status) == Failure::Reject {
            let reason = audit::refusal_reason(&call.path, status, &host.http_call_body(body_size));
            outbox.buffer.batch_rejected(n);
            outbox.refusals.add(n as u64, true, reason);
            return;
        }
        let shown = if status.is_empty() {
            "no answer".into()
        } else {
            String::from_utf8_lossy(status)
        };
        warn!("audit: the sink answered {shown} to a batch of {n}; it will be retried");
        outbox
            .buffer
            .requeue_failed(call.events, host.now_nanos(), call.sent_at);
    }

    /// The refusal line, when one is due (at most one per interval).
    fn log_refusals(&self, host: &dyn Host) {
        let line = self.outbox.borrow_mut().refusals.due(host.now_nanos());
        if let Some(line) = line {
            warn!("{line}");
        }
    }

    fn give_up_stale(&self, now: u64) {
        let mut outbox = self.outbox.borrow_mut();
        while let Some(at) = outbox.in_flight.iter().position(|c| c.give_up_at <= now) {
            let call = outbox.in_flight.swap_remove(at);
            warn!("audit: the sink never answered call {}; its events go back", call.token);
            outbox.buffer.requeue_failed(call.events, now, call.sent_at);
        }
    }
}

/// A gRPC request's gRPC status (`None` for others: Envoy maps any HTTP
/// status to one, 2 for a plain 200).
fn grpc_status(cx: &RequestContext, number: &dyn Fn(&[&str]) -> Option<u64>) -> Option<u64> {
    let grpc = first(&cx.headers, "content-type").is_some_and(|t| t.starts_with(b"application/grpc"));
    if !grpc {
        return None;
    }
    Some(number(&["response", "grpc_status"]).unwrap_or(0))
}

/// What became of a batch the sink answered 2xx.
#[derive(Default)]
struct Taken {
    sent: usize,
    retry: Vec<Queued>,
    rejected: usize,
    reason: Option<String>,
}

#[derive(Default)]
struct EventFacts {
    subject: Option<String>,
    tenant: Option<String>,
    /// The verified tenant claim, a tenant source.
    tenant_claim: Option<Vec<u8>>,
    tier: Option<String>,
    roles: Vec<String>,
    claims: serde_json::Map<String, serde_json::Value>,
}

/// The sink's `:authority`: an Istio cluster's host, else the cluster name.
fn sink_authority(cluster: &str) -> String {
    match tollgate_core::jwt::config::istio_cluster(cluster) {
        Some((port, host)) => format!("{host}:{port}"),
        None => cluster.to_string(),
    }
}

impl Stage for AuditStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn on_request(&self, _cx: &mut RequestContext, _host: &dyn Host) -> Step {
        Step::Next
    }

    /// No metric host call per request: counters and gauges catch up on
    /// the tick (at most a second late) and on the sink's answers.
    fn on_log(&self, cx: &RequestContext, host: &dyn Host) {
        self.record(cx, host);
    }

    fn logs_every_request(&self) -> bool {
        true
    }

    fn on_tick(&self, host: &dyn Host) -> Vec<u32> {
        self.flush(host);
        self.log_refusals(host);
        self.sync_metrics(host);
        Vec::new()
    }

    fn on_http_call_response(&self, host: &dyn Host, token: u32, body_size: usize) -> Vec<u32> {
        let call = {
            let mut outbox = self.outbox.borrow_mut();
            let Some(at) = outbox.in_flight.iter().position(|c| c.token == token) else {
                return Vec::new();
            };
            outbox.in_flight.swap_remove(at)
        };
        let status = host.http_call_status();
        let ok = status.len() == 3 && status.first() == Some(&b'2');
        if ok {
            self.on_accepted(host, call, body_size);
        } else {
            self.on_failed(host, call, &status, body_size);
        }
        self.log_refusals(host);
        // The next batch goes at once: a busy worker is not held to the tick.
        self.flush(host);
        self.sync_metrics(host);
        Vec::new()
    }

    fn tick_period(&self) -> Option<Duration> {
        if self.config.sink.format == Format::Log {
            return Some(Duration::from_secs(1));
        }
        let outbox = self.outbox.borrow();
        // Not while backing off: a dead sink would tick every worker at 100 Hz.
        let waiting = outbox.buffer.depth() >= self.config.batch_size
            && outbox.in_flight.is_empty()
            && !outbox.buffer.backing_off();
        Some(if waiting {
            FAST_TICK
        } else {
            self.config.flush_interval.min(Duration::from_secs(1))
        })
    }
}
