//! The audit stage: in the log phase of every request, refused ones
//! included, one event from the request context (and, behind separate
//! filters, their filter state), sampled, buffered and sent in batches
//! from the root's tick. It decides nothing and never holds a request.
//!
//! The buffer is per worker, in this VM: a shared queue would add a host
//! call and a copy per event and a cross-worker lock, to gain one flusher
//! per sidecar. It outlives the policy (`Outbox`, by root id), so a reload
//! loses no buffered event; a call dispatched before a reload is answered
//! to the new stage, which finds it there.

use log::{info, warn};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tollgate_core::audit::{self, encode, AuditConfig, Buffer, Decision, Format, Inputs, Queued, RouteAudit};
use tollgate_core::policy::{token_headers, token_params, Policy};
use tollgate_core::ratelimit::key;
use tollgate_core::stage::StageName;
use tollgate_core::state;
use tollgate_core::tenant::{self, TenantRequest};
use tollgate_core::Mode;
use tollgate_host::{first, Counters, Gauges, Host, Publish, RequestContext, Stage, Step};

const STAGE: &str = "audit";
/// Calls to the sink at once, per worker: with `batch_size` events each,
/// what is out of the buffer is bounded too.
const MAX_IN_FLIGHT: usize = 4;
/// The tick while a full batch waits and no call is out to take it.
const FAST_TICK: Duration = Duration::from_millis(10);
/// A call Envoy never answered (it always does, at its timeout) is given
/// up this long after its timeout, and its events go back to the buffer.
const GIVE_UP_SLACK_NANOS: u64 = 5_000_000_000;
/// Random bytes fetched per host call: 64 event ids, or 128 sampling draws.
const RANDOM_POOL: usize = 1024;

/// A POST to the sink in flight, with the events it carries.
struct InFlight {
    token: u32,
    events: Vec<Queued>,
    give_up_at: u64,
}

/// A worker's buffer and calls, kept across policy reloads.
pub struct Outbox {
    buffer: Buffer,
    in_flight: Vec<InFlight>,
    last_flush: u64,
    /// Counter totals already added to the host's counters.
    reported: [u64; 8],
    random: Vec<u8>,
}

impl Outbox {
    fn new(capacity: usize) -> Outbox {
        Outbox {
            buffer: Buffer::new(capacity),
            in_flight: Vec::new(),
            last_flush: 0,
            reported: [0; 8],
            random: Vec::new(),
        }
    }

    fn in_flight_events(&self) -> usize {
        self.in_flight.iter().map(|c| c.events.len()).sum()
    }
}

thread_local! {
    /// One outbox per root id in this VM (one VM per worker).
    static OUTBOXES: RefCell<Vec<(String, Rc<RefCell<Outbox>>)>> = const { RefCell::new(Vec::new()) };
}

fn outbox_for(root_id: &str, capacity: usize) -> Rc<RefCell<Outbox>> {
    OUTBOXES.with(|all| {
        let mut all = all.borrow_mut();
        if let Some((_, outbox)) = all.iter().find(|(id, _)| id == root_id) {
            outbox.borrow_mut().buffer.resize(capacity);
            return outbox.clone();
        }
        let outbox = Rc::new(RefCell::new(Outbox::new(capacity)));
        all.push((root_id.to_string(), outbox.clone()));
        outbox
    })
}

/// The policy no longer audits: events still buffered for this root are
/// dropped, counted (`events_dropped.resized`) and logged.
pub fn retire(host: &dyn Host) {
    let root_id = host.root_id();
    let Some(outbox) = OUTBOXES.with(|all| {
        let mut all = all.borrow_mut();
        let at = all.iter().position(|(id, _)| *id == root_id)?;
        Some(all.swap_remove(at).1)
    }) else {
        return;
    };
    let mut outbox = outbox.borrow_mut();
    let left = outbox.buffer.depth() + outbox.in_flight_events();
    if left > 0 {
        warn!("{root_id}: audit removed from the policy; {left} buffered events dropped");
    }
    outbox.buffer.clear();
    let in_flight: Vec<InFlight> = outbox.in_flight.drain(..).collect();
    for call in in_flight {
        outbox.buffer.requeue_failed(call.events, 0);
        outbox.buffer.clear();
    }
    let counters = Counters::define(host, &audit::metric_names());
    report(&counters, host, &mut outbox);
}

/// Adds what the buffer counted since the last report to the host's counters.
fn report(counters: &Counters, host: &dyn Host, outbox: &mut Outbox) {
    let totals = outbox.buffer.counters.totals();
    for (i, (total, reported)) in totals.iter().zip(outbox.reported.iter_mut()).enumerate() {
        if total > reported {
            counters.add_n(host, i, total - *reported);
            *reported = *total;
        }
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
        let outbox = outbox_for(&host.root_id(), config.buffer_events);
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
        report(&self.counters, host, &mut outbox);
        self.gauges.set(host, 0, outbox.buffer.depth() as u64);
        self.gauges.set(host, 1, outbox.in_flight_events() as u64);
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
        // A form body refused after the stages let the request through.
        out.extend(
            cx.decisions
                .iter()
                .filter(|d| d.stage == "form")
                .map(|d| Decision::from_action(d.stage, d.mode, &d.action, d.detail.as_deref())),
        );
        out
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
        let draw = if route_audit.sample >= 1.0 {
            0
        } else {
            u64::from_le_bytes(self.random_bytes(host))
        };
        if !audit::keep(route_audit.event_type, route_audit.sample, &decisions, draw) {
            self.outbox.borrow_mut().buffer.counters.sampled_out += 1;
            return;
        }
        let now = host.now_nanos();
        let facts = self.facts(cx, host);
        let number = |path: &[&str]| {
            host.property_path(path)
                .ok()
                .flatten()
                .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()))
                .map(u64::from_le_bytes)
        };
        let status = number(&["response", "code"]).unwrap_or(0);
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
        let seen = if self.others.contains(&StageName::Tenant) && cx.early.is_none() {
            let request = TenantRequest {
                head: cx.view.head(),
                claim,
                header_values: &header_values,
                jwt_shadow_denied: false,
            };
            tenant::sources_seen(&self.policy.tenant, &request)
        } else {
            Vec::new()
        };
        let token_params: Vec<&str> = self.token_params.iter().map(String::as_str).collect();
        let token_headers: Vec<&str> = self.token_headers.iter().map(String::as_str).collect();
        let random = self.random_bytes(host);
        let inputs = Inputs {
            now_nanos: now,
            random,
            event_type: route_audit.event_type,
            service: self.node.service.as_deref(),
            namespace: self.node.namespace.as_deref(),
            method: first(&cx.headers, ":method").map_or("", |m| std::str::from_utf8(m).unwrap_or("")),
            host: if cx.early.is_some() { "" } else { cx.view.host.as_str() },
            raw_path: cx.raw_path(),
            normalized_path: if cx.early.is_some() { "" } else { cx.view.path.as_str() },
            route,
            status: u16::try_from(status).unwrap_or(0),
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
        self.give_up_stale(now);
        let sink = &self.config.sink;
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
            for (request, events) in encode(sink.format, &sink.path, service, now, batch) {
                let headers = [
                    (":method", "POST"),
                    (":path", request.path.as_str()),
                    (":authority", self.authority.as_str()),
                    ("content-type", request.content_type),
                ];
                match host.dispatch_http_call(&sink.cluster, &headers, Some(&request.body), sink.timeout) {
                    Ok(token) => outbox.in_flight.push(InFlight {
                        token,
                        events,
                        give_up_at: now
                            .saturating_add(sink.timeout.as_nanos() as u64)
                            .saturating_add(GIVE_UP_SLACK_NANOS),
                    }),
                    Err(e) => {
                        warn!("audit: could not call cluster '{}': {}", sink.cluster, e.0);
                        outbox.buffer.requeue_failed(events, now);
                    }
                }
            }
        }
    }

    fn give_up_stale(&self, now: u64) {
        let mut outbox = self.outbox.borrow_mut();
        while let Some(at) = outbox.in_flight.iter().position(|c| c.give_up_at <= now) {
            let call = outbox.in_flight.swap_remove(at);
            warn!("audit: the sink never answered call {}; its events go back", call.token);
            outbox.buffer.requeue_failed(call.events, now);
        }
    }
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
        self.sync_metrics(host);
        Vec::new()
    }

    fn on_http_call_response(&self, host: &dyn Host, token: u32, _body_size: usize) -> Vec<u32> {
        let call = {
            let mut outbox = self.outbox.borrow_mut();
            let Some(at) = outbox.in_flight.iter().position(|c| c.token == token) else {
                return Vec::new();
            };
            outbox.in_flight.swap_remove(at)
        };
        let status = host.http_call_status();
        let ok = status.len() == 3 && status.first() == Some(&b'2');
        {
            let mut outbox = self.outbox.borrow_mut();
            if ok {
                outbox.buffer.sent(call.events.len());
            } else {
                let shown = if status.is_empty() {
                    "no answer".into()
                } else {
                    String::from_utf8_lossy(&status)
                };
                warn!(
                    "audit: the sink answered {shown} to a batch of {}; it will be retried",
                    call.events.len()
                );
                outbox.buffer.requeue_failed(call.events, host.now_nanos());
            }
        }
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
        let waiting = outbox.buffer.depth() >= self.config.batch_size && outbox.in_flight.is_empty();
        Some(if waiting {
            FAST_TICK
        } else {
            self.config.flush_interval.min(Duration::from_secs(1))
        })
    }
}
