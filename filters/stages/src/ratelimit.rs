//! The rate limit stage: counts a request against its route's limits,
//! local ones in shared data (`tollgate_core::ratelimit::bucket`), global
//! ones by one call to the rate limit service, during which the request
//! waits and then resumes here.

use std::cell::RefCell;
use std::rc::Rc;
use tollgate_core::decision::Action;
use tollgate_core::policy::Policy;
use tollgate_core::ratelimit::bucket::{self, Bucket, Counted, SlotStore, Window};
use tollgate_core::ratelimit::key::{self, KeyInputs};
use tollgate_core::ratelimit::{
    self as rl, answer::LimitState, rls, Counter, FailureMode, HeaderStyle, LimitCount, Scope,
};
use tollgate_core::request::RequestDenial;
use tollgate_core::stage::StageName;
use tollgate_core::{state, Mode};
use tollgate_host::{reply, Counters, GrpcCall, Host, Publish, RequestContext, SharedDataError, Stage, Step, Verdict};

const STAGE: &str = "ratelimit";
/// Requests waiting for the service at once, per worker; past it a request
/// is decided by `failure_mode` without a call.
const MAX_PENDING: usize = 10_000;
/// gRPC's `DEADLINE_EXCEEDED`: the service did not answer within `timeout_ms`.
const GRPC_DEADLINE_EXCEEDED: u32 = 4;

/// A global limit asked about: its position, the requests per period
/// sent, its mode.
type Asked = (usize, u64, Mode);

/// The local limits' counts and what to ask the service.
struct Counting {
    counts: Vec<LimitCount>,
    descriptors: Vec<rls::Descriptor>,
    asked: Vec<Asked>,
}

/// A call to the service in flight.
struct Pending {
    token: u32,
    context_id: u32,
    /// The local limits' counts, made before the call.
    counts: Vec<LimitCount>,
    /// The global limits asked about, in descriptor order, with the
    /// requests per period sent and their mode.
    asked: Vec<Asked>,
    /// When the call started (host clock, nanoseconds).
    started: u64,
    tenant: Option<usize>,
}

/// What the service said, or that it failed, for a waiting request.
enum Answer {
    Counts(Vec<LimitCount>),
    Failed(Vec<LimitCount>, Vec<Asked>),
}

pub struct RatelimitStage {
    policy: Rc<Policy>,
    counters: Counters,
    limit_counters: Counters,
    /// Tenant `i` of the policy owns those at `limit_metric_index(i, _)`.
    tenant_counters: Counters,
    pending: RefCell<Vec<Pending>>,
    /// Answers for woken requests: context id, tenant, answer.
    answers: RefCell<Vec<(u32, Option<usize>, Answer)>>,
}

/// Shared data as the buckets see it.
struct Store<'h>(&'h dyn Host);

impl SlotStore for Store<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        self.0.shared_data(key).map_err(|e| e.0)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        match self.0.set_shared_data(key, value, cas) {
            Ok(()) => Ok(true),
            Err(SharedDataError::CasMismatch) => Ok(false),
            Err(SharedDataError::Refused(why)) => Err(why),
        }
    }
}

/// The request's key inputs, read once.
struct Inputs {
    tenant: Option<String>,
    tier: Option<String>,
    subject: Option<String>,
    client_ip: Option<String>,
}

impl RatelimitStage {
    pub fn new(policy: &Rc<Policy>, host: &dyn Host) -> RatelimitStage {
        let store = Store(host);
        let slots = policy.ratelimit.slots_per_limit;
        for limit in policy.limits.iter().filter(|l| l.scope == Scope::Local) {
            if let Err(why) = bucket::init_slots(&store, &limit.name, slots) {
                log::warn!("ratelimit: slots of limit '{}' not prepared: {why}", limit.name);
            }
        }
        // Only a policy with limits counts per tenant.
        let listed = if policy.limits.is_empty() {
            0
        } else {
            policy.tenants.len()
        };
        let mut ids = vec![""; listed];
        for tenant in policy.tenants.values() {
            if let Some(slot) = ids.get_mut(tenant.index) {
                *slot = &tenant.id;
            }
        }
        RatelimitStage {
            policy: policy.clone(),
            counters: Counters::define(host, &rl::metric_names()),
            limit_counters: Counters::define(host, &rl::limit_metric_names(&policy.limits)),
            tenant_counters: Counters::define(host, &rl::tenant_metric_names(&ids)),
            pending: RefCell::new(Vec::new()),
            answers: RefCell::new(Vec::new()),
        }
    }

    fn count(&self, host: &dyn Host, counter: Counter) {
        self.counters.add(host, rl::counter_index(counter));
    }

    /// The per-tenant counters' index of a request's tenant: one of the
    /// policy's, else none (a tenant the policy does not list is refused
    /// by the tenant stage; a label never takes a client's value).
    fn tenant_index(&self, tenant: Option<&str>) -> Option<usize> {
        let tenant = self.policy.tenants.get(&tenant?.to_ascii_lowercase())?;
        Some(tenant.index)
    }

    /// Tenant, tier and subject from the stages before this one in memory,
    /// or from filter state when they ran as separate filters.
    fn inputs(&self, cx: &RequestContext, host: &dyn Host, needs: Needs) -> Result<Inputs, String> {
        let from_state = cx.publish == Publish::Keys;
        let read = |key: &str| -> Result<Option<String>, String> {
            let value = host.property(key).map_err(|e| e.0)?;
            Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
        };
        let (mut tenant, mut tier) = match &cx.facts.tenant {
            Some(t) => (Some(t.id.clone()), t.tier.clone()),
            None => (None, None),
        };
        let tenant_elsewhere = from_state || !self.policy.stages.contains(&StageName::Tenant);
        if needs.tenant && tenant.is_none() && tenant_elsewhere {
            tenant = read(state::TENANT)?;
            tier = read(state::TENANT_TIER)?;
        }
        let identity = cx.facts.jwt.as_ref().and_then(|j| j.identity.as_deref());
        let mut subject = identity.and_then(|i| {
            let sub = i.state().find(|(k, _)| *k == state::SUB)?.1;
            Some(String::from_utf8_lossy(sub).into_owned())
        });
        let jwt_elsewhere = from_state || !self.policy.stages.contains(&StageName::Jwt);
        if needs.subject && subject.is_none() && jwt_elsewhere {
            subject = read(state::SUB)?;
        }
        let client_ip = if needs.client_ip {
            let hops = self.policy.ratelimit.xff_trusted_hops;
            let peer = host.property_path(&["source", "address"]).map_err(|e| e.0)?;
            key::client_ip(peer.as_deref(), &cx.headers, hops)
        } else {
            None
        };
        Ok(Inputs {
            tenant,
            tier,
            subject,
            client_ip,
        })
    }

    /// Counts the request against the route's local limits and collects
    /// the global ones' descriptors.
    fn count_local(
        &self,
        cx: &RequestContext,
        host: &dyn Host,
        limits: &[usize],
        route_mode: Mode,
        inputs: &Inputs,
    ) -> Counting {
        let policy = &*self.policy;
        let route_name = &cx.view.route(policy).name;
        let key_inputs = KeyInputs {
            tenant: inputs.tenant.as_deref(),
            tier: inputs.tier.as_deref(),
            subject: inputs.subject.as_deref(),
            client_ip: inputs.client_ip.as_deref(),
            route: route_name,
            headers: &cx.headers,
        };
        // A request that waited (for keys, say) is counted now: counted at
        // its arrival, it would reach back into a window others left.
        let now = if cx.waits > 0 {
            host.now_nanos()
        } else {
            cx.started_nanos
        };
        let store = Store(host);
        let mut counts = Vec::with_capacity(limits.len());
        let mut descriptors = Vec::new();
        let mut asked = Vec::new();
        for &i in limits {
            let Some(limit) = policy.limits.get(i) else { continue };
            let mode = if route_mode == Mode::Shadow {
                Mode::Shadow
            } else {
                limit.mode
            };
            let requests = limit.requests_for(inputs.tenant.as_deref(), inputs.tier.as_deref());
            let values = key::values(limit, &key_inputs);
            if limit.scope == Scope::Global {
                let mut entries = vec![("limit".to_string(), limit.name.clone())];
                entries.extend(limit.key.iter().zip(&values).map(|(p, v)| (p.label(), v.to_string())));
                descriptors.push(descriptor(entries, requests, limit.period));
                asked.push((i, requests, mode));
                continue;
            }
            let window = Window::at(now, limit.period);
            let fingerprint = key::fingerprint(&limit.name, &values);
            let counted = bucket::count(
                &store,
                &limit.name,
                policy.ratelimit.slots_per_limit,
                fingerprint,
                window.index,
                Bucket::new(requests, limit.burst),
            );
            let (over, remaining) = match counted {
                Counted::Counted { allowed, remaining } => (!allowed, Some(remaining)),
                Counted::SlotsFull => self.not_counted(host, Counter::SlotsFull, limit),
                Counted::CasRetriesExhausted => self.not_counted(host, Counter::CasRetriesExhausted, limit),
                Counted::StoreFailed => self.not_counted(host, Counter::SharedDataFailed, limit),
            };
            // Only answers read a state: headers, or a refusal's Retry-After.
            let wanted = policy.ratelimit.headers != HeaderStyle::None || remaining == Some(0);
            let state = remaining.filter(|_| wanted).map(|remaining| LimitState {
                name: limit.name.clone(),
                quota: requests,
                window_seconds: limit.period.seconds(),
                remaining,
                reset_seconds: window.reset_seconds(),
            });
            counts.push(LimitCount {
                limit: i,
                mode,
                over,
                state,
            });
        }
        Counting {
            counts,
            descriptors,
            asked,
        }
    }

    fn not_counted(&self, host: &dyn Host, counter: Counter, limit: &rl::Limit) -> (bool, Option<u64>) {
        log::debug!(
            "ratelimit: limit '{}' not counted ({counter:?}); let through",
            limit.name
        );
        self.count(host, counter);
        (false, None)
    }

    /// Asks the service about the global limits; `None` when the call
    /// could not start.
    fn ask(&self, host: &dyn Host, context_id: u32, descriptors: &[rls::Descriptor]) -> Option<u32> {
        let service = self.policy.ratelimit.service.as_ref()?;
        if self.pending.borrow().len() >= MAX_PENDING {
            log::warn!("ratelimit: {MAX_PENDING} requests already wait for the service");
            return None;
        }
        let message = rls::encode_request(&service.domain, descriptors);
        let call = GrpcCall {
            cluster: &service.cluster,
            service: rls::SERVICE,
            method: rls::METHOD,
            metadata: &[],
            message: &message,
            timeout: service.timeout,
        };
        match host.dispatch_grpc_call(&call) {
            Ok(token) => Some(token),
            Err(e) => {
                log::warn!(
                    "#{context_id} ratelimit: call to '{}' not started: {}",
                    service.cluster,
                    e.0
                );
                None
            }
        }
    }

    /// The global limits' counts when the service failed: `failure_mode`.
    fn failed(&self, host: &dyn Host, asked: &[Asked]) -> (Vec<LimitCount>, Option<Action>) {
        let deny = self
            .policy
            .ratelimit
            .service
            .as_ref()
            .is_some_and(|s| s.failure_mode == FailureMode::Deny);
        let counts = asked
            .iter()
            .map(|&(limit, _, mode)| LimitCount {
                limit,
                mode,
                over: false,
                state: None,
            })
            .collect();
        if !deny {
            self.count(host, Counter::FailureModeAllowed);
            return (counts, None);
        }
        self.count(host, Counter::FailureModeDenied);
        let enforced = asked.iter().any(|(_, _, mode)| *mode == Mode::Enforce);
        let mode = if enforced { Mode::Enforce } else { Mode::Shadow };
        (counts, Some(Action::new(Some(rl::SERVICE_FAILED), mode)))
    }

    /// Records the verdict, counts it, sets the headers and answers.
    fn conclude(
        &self,
        cx: &mut RequestContext,
        host: &dyn Host,
        counts: &[LimitCount],
        failed: Option<Action>,
        tenant: Option<usize>,
    ) -> Step {
        let policy = &*self.policy;
        for c in counts {
            self.limit_counters
                .add(host, rl::limit_metric_index(c.limit, c.outcome()));
        }
        if let (Some(tenant), Some(outcome)) = (tenant, rl::request_outcome(counts)) {
            self.tenant_counters.add(host, rl::limit_metric_index(tenant, outcome));
        }
        let (mut action, deciding) = rl::verdict(counts);
        let deciding_limit = deciding.and_then(|c| policy.limits.get(c.limit));
        if let (Some(failure), false) = (failed, matches!(action, Action::Deny(_))) {
            action = failure;
        }
        let headers = rl::answer_headers(policy.ratelimit.headers, counts);
        match action {
            Action::Deny(_) => {
                if let (Some(c), Some(limit)) = (deciding, deciding_limit) {
                    let retry = rl::retry_after(c, limit.period);
                    cx.extras.reply_headers.push(("retry-after".into(), retry));
                }
                cx.extras.reply_headers.extend(headers);
            }
            _ => cx.extras.response_headers.extend(headers),
        }
        let name = match action {
            Action::Allow => None,
            _ => deciding_limit.map(|l| l.name.clone()),
        };
        if let (Action::Deny(_), Some(name)) = (action, &name) {
            cx.extras.reply_fields.push(("limit".into(), name.clone()));
        }
        let mode = match action {
            Action::ShadowDeny(_) => Mode::Shadow,
            _ => Mode::Enforce,
        };
        match action {
            Action::Allow => self.count(host, Counter::Allowed),
            Action::Deny(d) => self.counters.add(host, rl::denied_index(d, Mode::Enforce)),
            Action::ShadowDeny(d) => self.counters.add(host, rl::denied_index(d, Mode::Shadow)),
        }
        let route = &cx.view.route(policy).name;
        self.publish(cx, host, route, mode, action, name.as_deref());
        let verdict = Verdict {
            stage: STAGE,
            route,
            mode,
            action,
            detail: name,
        };
        reply::conclude(host, cx, verdict, &policy.realm)
    }

    fn publish(
        &self,
        cx: &mut RequestContext,
        host: &dyn Host,
        route: &str,
        mode: Mode,
        action: Action,
        limit: Option<&str>,
    ) {
        if cx.publish == Publish::Off {
            return;
        }
        let record = rl::record(route, mode, action, limit);
        match cx.publish {
            Publish::Keys => reply::set_property(host, cx.context_id, state::DECISION_RATELIMIT, &record),
            _ => cx.records.push((STAGE, record)),
        }
    }

    /// The first run of a request: local limits now, global ones by a call.
    fn first_run(&self, cx: &mut RequestContext, host: &dyn Host) -> Step {
        let policy = Rc::clone(&self.policy);
        let route = cx.view.route(&policy);
        let limits = &route.ratelimit.limits;
        let route_mode = route.ratelimit.mode;
        if limits.is_empty() {
            return self.conclude(cx, host, &[], None, None);
        }
        let needs = Needs::of(&self.policy, limits);
        let inputs = match self.inputs(cx, host, needs) {
            Ok(inputs) => inputs,
            Err(why) => {
                let counter = (&self.counters, rl::request_metric_index(RequestDenial::Unreadable));
                return reply::refuse_unreadable(host, cx, counter, &self.policy, STAGE, &why);
            }
        };
        let Counting {
            counts,
            descriptors,
            asked,
        } = self.count_local(cx, host, limits, route_mode, &inputs);
        let tenant = self.tenant_index(inputs.tenant.as_deref());
        let locally_refused = counts.iter().any(|c| c.over && c.mode == Mode::Enforce);
        if asked.is_empty() || locally_refused {
            return self.conclude(cx, host, &counts, None, tenant);
        }
        let started = host.now_nanos();
        match self.ask(host, cx.context_id, &descriptors) {
            Some(token) => {
                self.pending.borrow_mut().push(Pending {
                    token,
                    context_id: cx.context_id,
                    counts,
                    asked,
                    started,
                    tenant,
                });
                Step::Wait
            }
            None => {
                self.count(host, Counter::ServiceError);
                let (mut more, failure) = self.failed(host, &asked);
                let mut all = counts;
                all.append(&mut more);
                self.conclude(cx, host, &all, failure, tenant)
            }
        }
    }

    /// The service's answer (or failure) for a waiting request.
    fn answered(&self, host: &dyn Host, token: u32, status: u32, size: usize) -> Option<u32> {
        let pending = {
            let mut pending = self.pending.borrow_mut();
            let at = pending.iter().position(|p| p.token == token)?;
            pending.swap_remove(at)
        };
        let answer = match self.read_answer(host, status, size, &pending) {
            Ok(counts) => Answer::Counts(counts),
            Err(why) => {
                let counter = if self.late(host, &pending, status) {
                    Counter::ServiceTimeout
                } else {
                    Counter::ServiceError
                };
                log::warn!("#{} ratelimit: service failed: {why}", pending.context_id);
                self.count(host, counter);
                Answer::Failed(pending.counts, pending.asked)
            }
        };
        self.answers
            .borrow_mut()
            .push((pending.context_id, pending.tenant, answer));
        Some(pending.context_id)
    }

    /// Whether a failed call failed by its timeout: Envoy ends a call
    /// past its timeout with UNAVAILABLE as often as DEADLINE_EXCEEDED, so
    /// the clock says (within a tenth: Envoy's timer and the clock read
    /// here are not the same instant).
    fn late(&self, host: &dyn Host, pending: &Pending, status: u32) -> bool {
        let Some(service) = &self.policy.ratelimit.service else {
            return false;
        };
        let timeout = u64::try_from(service.timeout.as_nanos()).unwrap_or(u64::MAX);
        let elapsed = host.now_nanos().saturating_sub(pending.started);
        status == GRPC_DEADLINE_EXCEEDED || elapsed >= timeout - timeout / 10
    }

    /// A woken request: its answer, or (released by a policy reload)
    /// none, which counts as the service failing.
    fn resumed_run(&self, cx: &mut RequestContext, host: &dyn Host) -> Step {
        let answer = {
            let mut answers = self.answers.borrow_mut();
            let at = answers.iter().position(|(id, _, _)| *id == cx.context_id);
            at.map(|i| {
                let (_, tenant, answer) = answers.swap_remove(i);
                (answer, tenant)
            })
        };
        let pending = {
            let mut pending = self.pending.borrow_mut();
            let at = pending.iter().position(|p| p.context_id == cx.context_id);
            at.map(|i| pending.swap_remove(i))
        };
        match (answer, pending) {
            (Some((Answer::Counts(counts), tenant)), _) => self.conclude(cx, host, &counts, None, tenant),
            (Some((Answer::Failed(mut counts, asked), tenant)), _)
            | (
                None,
                Some(Pending {
                    mut counts,
                    asked,
                    tenant,
                    ..
                }),
            ) => {
                let (mut more, failure) = self.failed(host, &asked);
                counts.append(&mut more);
                self.conclude(cx, host, &counts, failure, tenant)
            }
            (None, None) => self.conclude(cx, host, &[], None, None),
        }
    }
}

impl RatelimitStage {
    /// The global limits' counts from the service's answer.
    fn read_answer(
        &self,
        host: &dyn Host,
        status: u32,
        size: usize,
        pending: &Pending,
    ) -> Result<Vec<LimitCount>, String> {
        if status != 0 {
            return Err(format!("gRPC status {status}"));
        }
        let response = rls::decode_response(&host.grpc_call_response(size))?;
        let statuses = rls::over_limits(&response, pending.asked.len())?;
        let mut counts = pending.counts.clone();
        for (&(limit, requests, mode), (status, over)) in pending.asked.iter().zip(statuses) {
            let Some(def) = self.policy.limits.get(limit) else {
                continue;
            };
            let state = status.reset_seconds.map(|reset| LimitState {
                name: def.name.clone(),
                quota: status.requests_per_unit.map_or(requests, u64::from),
                window_seconds: def.period.seconds(),
                remaining: u64::from(status.limit_remaining),
                reset_seconds: reset,
            });
            counts.push(LimitCount {
                limit,
                mode,
                over,
                state,
            });
        }
        Ok(counts)
    }
}

fn descriptor(entries: Vec<(String, String)>, requests: u64, period: rl::Period) -> rls::Descriptor {
    rls::Descriptor {
        entries,
        requests_per_unit: u32::try_from(requests).unwrap_or(u32::MAX),
        unit: period,
    }
}

/// Which inputs a route's limits read (host reads only for those).
#[derive(Debug, Clone, Copy, Default)]
struct Needs {
    tenant: bool,
    subject: bool,
    client_ip: bool,
}

impl Needs {
    fn of(policy: &Policy, limits: &[usize]) -> Needs {
        use tollgate_core::ratelimit::KeyPart;
        let mut needs = Needs {
            tenant: !policy.tenants.is_empty(),
            ..Needs::default()
        };
        for limit in limits.iter().filter_map(|&i| policy.limits.get(i)) {
            needs.tenant |= !limit.tiers.is_empty() || !limit.tenants.is_empty();
            for part in &limit.key {
                match part {
                    KeyPart::Tenant | KeyPart::Tier => needs.tenant = true,
                    KeyPart::Subject => needs.subject = true,
                    KeyPart::ClientIp => needs.client_ip = true,
                    KeyPart::Route | KeyPart::Header(_) => {}
                }
            }
        }
        needs
    }
}

impl Stage for RatelimitStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn on_request(&self, cx: &mut RequestContext, host: &dyn Host) -> Step {
        if cx.resumed {
            self.resumed_run(cx, host)
        } else {
            self.first_run(cx, host)
        }
    }

    fn on_grpc_call_response(&self, host: &dyn Host, token: u32, status: u32, size: usize) -> Vec<u32> {
        self.answered(host, token, status, size).into_iter().collect()
    }

    fn on_log(&self, cx: &RequestContext, _host: &dyn Host) {
        // A request that ended while it waited leaves nothing behind.
        self.answers.borrow_mut().retain(|(id, _, _)| *id != cx.context_id);
        self.pending.borrow_mut().retain(|p| p.context_id != cx.context_id);
    }

    fn release(&self) -> Vec<u32> {
        self.pending.borrow().iter().map(|p| p.context_id).collect()
    }
}
