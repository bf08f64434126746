//! One HTTP context for every stage: the request is read once into one
//! request context (headers, normalized path, host, route), then each
//! stage runs on it in order and hands later ones its facts in memory. The
//! context lives until the log phase: a stage that waits is run again
//! alone when woken, and the stages after it then run; response headers
//! and the log phase see every decision. A separate filter
//! (`tollgate.jwt`, ...) is a pipeline of one stage, so both deliveries
//! run the same stage code.
//!
//! Header edits are applied by each stage as it concludes. That is safe
//! with waits because a stage never runs twice for one request (the stages
//! before a wait are not run again), later stages read the headers as they
//! arrived (`RequestContext::headers`), and a refused request never reaches
//! the application, so its edits are never seen.

use crate::api::{first, Headers, Host};
use crate::context::{Progress, Publish, RequestContext};
use crate::counters::Counters;
use crate::reply;
use log::{debug, info, warn};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tollgate_core::decision::Action;
use tollgate_core::form;
use tollgate_core::headers::strip_removals;
use tollgate_core::policy::Policy;
use tollgate_core::request::{self, RequestDenial, RequestView};
use tollgate_core::state;

/// What a stage tells the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Go on to the next stage.
    Next,
    /// The request waits: the stage keeps its context id and hands it back
    /// from a root event; the stage then runs again with `resumed` set.
    Wait,
    /// The stage answered the request itself.
    Replied,
}

/// A step of the pipeline. Root events return the requests to wake.
pub trait Stage {
    fn name(&self) -> &'static str;
    fn on_request(&self, cx: &mut RequestContext, host: &dyn Host) -> Step;
    /// Response headers of a request every stage let through: add headers
    /// to `cx.extras.response_headers` (or call the host).
    fn on_response_headers(&self, _cx: &mut RequestContext, _host: &dyn Host) {}
    /// The log phase of every request, refused ones included.
    fn on_log(&self, _cx: &RequestContext, _host: &dyn Host) {}
    /// Whether `on_log` wants requests this filter never saw (a filter
    /// before it answered them): the audit stage does.
    fn logs_every_request(&self) -> bool {
        false
    }
    fn on_tick(&self, _host: &dyn Host) -> Vec<u32> {
        Vec::new()
    }
    fn on_http_call_response(&self, _host: &dyn Host, _token: u32, _body_size: usize) -> Vec<u32> {
        Vec::new()
    }
    fn on_grpc_call_response(&self, _host: &dyn Host, _token: u32, _status: u32, _size: usize) -> Vec<u32> {
        Vec::new()
    }
    /// The policy is being replaced: the requests waiting on this stage.
    fn release(&self) -> Vec<u32> {
        Vec::new()
    }
    /// The tick this stage wants now. A root has one timer: the pipeline
    /// sets the shortest period any stage wants, so a stage may be ticked
    /// more often than it asked and must tell by the clock what is due.
    fn tick_period(&self) -> Option<Duration> {
        None
    }
}

/// Builds a pipeline's stages for a policy.
pub type Build = Rc<dyn Fn(&Rc<Policy>, &dyn Host) -> Vec<Box<dyn Stage>>>;

/// A request's context, shared by its HTTP context and, while it waits,
/// the pipeline.
pub type Shared = Rc<RefCell<RequestContext>>;

pub struct Pipeline {
    pub policy: Rc<Policy>,
    stages: Vec<Box<dyn Stage>>,
    /// Counters of refusals made before any stage, under the first stage's
    /// name, as the separate filters count them.
    refusals: Counters,
    label: &'static str,
    publish: Publish,
    /// The sidecar's namespace when the policy's `skip_namespaces` names
    /// it: that namespace has its own plugin, so this one does nothing.
    pub stand_aside: Option<String>,
    /// Requests waiting at a stage. Bounded by the stages' own bounds on
    /// waiters (a stage refuses to wait past them); left by the log phase.
    waiting: RefCell<Vec<Shared>>,
    /// The tick period last set (`None`: not yet by this pipeline).
    tick: Cell<Option<Duration>>,
}

/// The node's namespace, when `skip` lists it. A namespace that cannot be
/// read is not skipped: the plugin then enforces (fails closed).
fn skipped_namespace(host: &dyn Host, skip: &[String]) -> Option<String> {
    if skip.is_empty() {
        return None;
    }
    let namespace = match host.node_metadata("NAMESPACE") {
        Ok(Some(bytes)) => String::from_utf8(bytes).ok()?,
        Ok(None) => return None,
        Err(e) => {
            warn!(
                "skip_namespaces: the node's namespace is unreadable ({}); enforcing",
                e.0
            );
            return None;
        }
    };
    skip.contains(&namespace).then_some(namespace)
}

/// The fused filter's filter state, once its stages have decided:
/// `tollgate.sub`, `tollgate.tenant` and the one `tollgate.decision`.
fn publish_record(host: &dyn Host, cx: &RequestContext) {
    if cx.publish != Publish::Record || cx.records.is_empty() {
        return;
    }
    let identity = cx.facts.jwt.as_ref().and_then(|j| j.identity.as_deref());
    let identity_state = identity.into_iter().flat_map(|i| i.state());
    let tenant = cx.facts.tenant.as_ref();
    let record = state::combined_record(&cx.records, identity_state, tenant.and_then(|t| t.tier.as_deref()));
    reply::set_property(host, cx.context_id, state::DECISION, &record);
    let sub = identity.and_then(|i| i.state().find(|(k, _)| *k == state::SUB).map(|(_, v)| v));
    if let Some(sub) = sub {
        reply::set_property(host, cx.context_id, state::SUB, sub);
    }
    let claimed = || cx.facts.jwt.as_ref().and_then(|j| j.tenant());
    if let Some(tenant) = tenant.map(|t| t.id.as_bytes()).or_else(claimed) {
        reply::set_property(host, cx.context_id, state::TENANT, tenant);
    }
}

/// How the pipeline ran for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

impl Pipeline {
    /// `fused`: the `tollgate` filter, which follows the policy's
    /// `filter_state`; a separate filter always publishes.
    pub fn configure(host: &dyn Host, config: &[u8], build: &Build, fused: bool) -> Result<Pipeline, String> {
        let policy = Rc::new(Policy::from_json(config).map_err(|errors| errors.to_string())?);
        let stages = build(&policy, host);
        let label = stages.first().map_or("request", |s| s.name());
        let stand_aside = skipped_namespace(host, &policy.skip_namespaces);
        Ok(Pipeline {
            stand_aside,
            refusals: Counters::define(host, &request::metric_names(label)),
            publish: match (fused, policy.filter_state) {
                (false, _) => Publish::Keys,
                (true, true) => Publish::Record,
                (true, false) => Publish::Off,
            },
            label,
            stages,
            policy,
            waiting: RefCell::new(Vec::new()),
            tick: Cell::new(None),
        })
    }

    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// The request headers phase: reads the request into its context and
    /// runs the stages. A form body that may hold a token or `_method` is
    /// then checked in the body phase (`end_of_stream`: there is no body).
    /// The context is the HTTP context's to keep.
    pub fn on_request_headers(&self, host: &dyn Host, context_id: u32, end_of_stream: bool) -> (Flow, Shared) {
        let headers = host.request_headers();
        let started = host.now_nanos();
        let (mut cx, unreadable) = match headers {
            Ok(headers) => (RequestContext::new(context_id, headers, started), None),
            Err(e) => (RequestContext::new(context_id, Headers::new(), started), Some(e.0)),
        };
        cx.publish = self.publish;
        if self.stand_aside.is_some() {
            cx.progress = Progress::Skipped;
            return (Flow::Continue, Rc::new(RefCell::new(cx)));
        }
        if let Some(why) = unreadable {
            self.refuse(host, &mut cx, RequestDenial::Unreadable, &why);
            return (Flow::Pause, Rc::new(RefCell::new(cx)));
        }
        if !self.read(host, &mut cx) {
            return (Flow::Pause, Rc::new(RefCell::new(cx)));
        }
        let route = cx.view.route(&self.policy);
        cx.awaits_body = !end_of_stream && form::needs_body(&self.policy, route, first(&cx.headers, "content-type"));
        let shared = Rc::new(RefCell::new(cx));
        let flow = self.run(host, &shared);
        self.sync_tick(host);
        (flow, shared)
    }

    /// The request body phase. Envoy has sent the headers on (Istio cannot
    /// set Envoy's `allow_on_headers_stop_iteration`), so a form body the
    /// stages let through is held whole (bounded by
    /// `form::MAX_FORM_BODY_BYTES`, a longer one refused with 413) and
    /// judged before any of it reaches the application: a token in it is
    /// refused, its `_method` must keep the route and meet the claim rules.
    /// Other bodies pass untouched.
    pub fn on_request_body(&self, host: &dyn Host, shared: &Shared, body_size: usize, end_of_stream: bool) -> Flow {
        let awaits = shared
            .try_borrow()
            .is_ok_and(|cx| cx.awaits_body && cx.progress == Progress::Forwarded);
        if !awaits {
            return Flow::Continue;
        }
        if body_size > form::MAX_FORM_BODY_BYTES {
            self.refuse_body(host, shared, form::TOO_LARGE);
            return Flow::Pause;
        }
        if let Ok(mut cx) = shared.try_borrow_mut() {
            cx.body_size = body_size;
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        self.body_ends(host, shared, body_size)
    }

    /// The request trailers phase: an HTTP/2 body that ends with trailers
    /// has no body callback at its end, so a held form is judged here.
    pub fn on_request_trailers(&self, host: &dyn Host, shared: &Shared) -> Flow {
        let held = shared
            .try_borrow()
            .ok()
            .filter(|cx| cx.awaits_body && cx.progress == Progress::Forwarded)
            .map(|cx| cx.body_size);
        match held {
            Some(size) => self.body_ends(host, shared, size),
            None => Flow::Continue,
        }
    }

    fn body_ends(&self, host: &dyn Host, shared: &Shared, body_size: usize) -> Flow {
        match self.judge_body(host, shared, body_size) {
            Ok(()) => Flow::Continue,
            Err(denial) => {
                self.refuse_body(host, shared, denial);
                Flow::Pause
            }
        }
    }

    fn judge_body(&self, host: &dyn Host, shared: &Shared, size: usize) -> Result<(), tollgate_core::reply::Denial> {
        let unreadable = RequestDenial::Unreadable.denial();
        let body = host.request_body(size).map_err(|_| unreadable)?;
        let Ok(mut cx) = shared.try_borrow_mut() else {
            return Err(unreadable);
        };
        cx.awaits_body = false;
        let route = cx.view.route(&self.policy);
        let names = form::token_params(&self.policy, route);
        let findings = form::read_form(&names, first(&cx.headers, "content-type"), &body)?;
        cx.view
            .check_method_overrides(&self.policy, &findings.method_overrides)
            .map_err(|d| d.denial())?;
        let identity = cx.facts.jwt.as_ref().and_then(|j| j.identity.clone());
        form::judge_body(route, identity.as_deref().map(|i| &i.claims), &findings)?;
        cx.form = Some(findings);
        Ok(())
    }

    fn refuse_body(&self, host: &dyn Host, shared: &Shared, denial: tollgate_core::reply::Denial) {
        let Ok(mut cx) = shared.try_borrow_mut() else { return };
        debug!("#{} {}: deny {} (form body)", cx.context_id, self.label, denial.reason);
        let reply = denial.reply(cx.request_id(), &self.policy.realm);
        reply::send(host, cx.context_id, &reply);
        cx.awaits_body = false;
        cx.progress = Progress::Replied;
        cx.decide("form", tollgate_core::Mode::Enforce, Action::Deny(denial), None);
    }

    /// Runs the stages from the request's next one until one waits or
    /// answers, or every stage let it through.
    fn run(&self, host: &dyn Host, shared: &Shared) -> Flow {
        // Never re-entered for one request; a busy context is left alone.
        let Ok(mut cx) = shared.try_borrow_mut() else {
            warn!("a request's context was busy; left as it is");
            return Flow::Pause;
        };
        while let Some(stage) = self.stages.get(cx.next) {
            match stage.on_request(&mut cx, host) {
                Step::Next => {
                    cx.next += 1;
                    cx.resumed = false;
                }
                Step::Wait => {
                    cx.waits += 1;
                    drop(cx);
                    self.waiting.borrow_mut().push(shared.clone());
                    return Flow::Pause;
                }
                Step::Replied => {
                    cx.progress = Progress::Replied;
                    publish_record(host, &cx);
                    return Flow::Pause;
                }
            }
        }
        let strip = strip_removals(&self.policy.strip_headers, &cx.headers);
        reply::edit_request_headers(host, cx.context_id, &strip);
        cx.progress = Progress::Forwarded;
        publish_record(host, &cx);
        Flow::Continue
    }

    /// The request view; a path it normalized is written back to `:path`,
    /// so the application is served what was decided. `false` when refused.
    fn read(&self, host: &dyn Host, cx: &mut RequestContext) -> bool {
        let view = RequestView::read(
            first(&cx.headers, ":method").unwrap_or_default(),
            first(&cx.headers, ":path"),
            first(&cx.headers, ":authority"),
            &self.policy,
        );
        let view = match view {
            Ok(view) => view,
            Err(denial) => {
                self.refuse(host, cx, denial, denial.detail());
                return false;
            }
        };
        if let Some(served) = &view.served_path {
            if let Err(e) = host.set_request_header(":path", Some(served)) {
                let why = format!("could not rewrite :path: {}", e.0);
                self.refuse(host, cx, RequestDenial::Unreadable, &why);
                return false;
            }
            debug!("#{} {}: :path rewritten to its normal form", cx.context_id, self.label);
        }
        cx.view = view;
        true
    }

    /// Sends, counts and logs a refusal made before any route is known
    /// (always enforced).
    fn refuse(&self, host: &dyn Host, cx: &mut RequestContext, denial: RequestDenial, why: &str) {
        let reply = denial.denial();
        if denial == RequestDenial::Unreadable {
            warn!("#{} {}: refused, {why}", cx.context_id, self.label);
        } else {
            debug!("#{} {}: deny {}: {why}", cx.context_id, self.label, reply.reason);
        }
        self.refusals.add(host, denial.metric_index());
        let reply = reply.reply(cx.request_id(), &self.policy.realm);
        reply::send(host, cx.context_id, &reply);
        cx.early = Some(denial);
        cx.progress = Progress::Replied;
    }

    /// The response headers phase: stages add headers to a response the
    /// application gave (never to Tollgate's own replies).
    pub fn on_response_headers(&self, host: &dyn Host, shared: &Shared) {
        let Ok(mut cx) = shared.try_borrow_mut() else { return };
        if cx.progress != Progress::Forwarded {
            return;
        }
        for stage in &self.stages {
            stage.on_response_headers(&mut cx, host);
        }
        for (name, value) in &cx.extras.response_headers {
            if let Err(e) = host.add_response_header(name, value.as_bytes()) {
                warn!("#{} could not add response header {name}: {}", cx.context_id, e.0);
            }
        }
    }

    /// The log phase: every stage sees the request's context, in order.
    /// The request is over: it is never resumed after this.
    pub fn on_log(&self, host: &dyn Host, shared: &Shared) {
        self.done(shared);
        if let Ok(cx) = shared.try_borrow() {
            for stage in &self.stages {
                stage.on_log(&cx, host);
            }
        }
        self.sync_tick(host);
    }

    /// The log phase of a request whose headers this filter never saw: a
    /// filter before it answered. Its context is read now (Envoy gives the
    /// request headers to the log phase); a request the view refuses was
    /// refused before any stage, as this filter would have.
    pub fn on_log_unseen(&self, host: &dyn Host, context_id: u32) {
        if self.stand_aside.is_some() || !self.stages.iter().any(|s| s.logs_every_request()) {
            return;
        }
        let Ok(headers) = host.request_headers() else { return };
        // When its first byte came (Envoy's `request.time`, Unix nanoseconds).
        let started = host
            .property_path(&["request", "time"])
            .ok()
            .flatten()
            .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()))
            .map_or_else(|| host.now_nanos(), u64::from_le_bytes);
        let mut cx = RequestContext::new(context_id, headers, started);
        cx.publish = self.publish;
        cx.progress = Progress::Replied;
        cx.done = true;
        let view = RequestView::read(
            first(&cx.headers, ":method").unwrap_or_default(),
            first(&cx.headers, ":path"),
            first(&cx.headers, ":authority"),
            &self.policy,
        );
        match view {
            Ok(view) => cx.view = view,
            Err(denial) => cx.early = Some(denial),
        }
        for stage in self.stages.iter().filter(|s| s.logs_every_request()) {
            stage.on_log(&cx, host);
        }
        self.sync_tick(host);
    }

    /// Sets the root's tick to the shortest period a stage wants, when
    /// that changed (a host call only then).
    pub fn sync_tick(&self, host: &dyn Host) {
        let Some(want) = self.stages.iter().filter_map(|s| s.tick_period()).min() else {
            return;
        };
        if self.tick.get() != Some(want) && host.set_tick_period(want).is_ok() {
            self.tick.set(Some(want));
        }
    }

    /// The request is gone (its client left, or it ended): forget it.
    pub fn done(&self, shared: &Shared) {
        if let Ok(mut cx) = shared.try_borrow_mut() {
            cx.done = true;
        }
        self.waiting.borrow_mut().retain(|w| !Rc::ptr_eq(w, shared));
    }

    pub fn on_tick(&self, host: &dyn Host) {
        for stage in &self.stages {
            let woken = stage.on_tick(host);
            self.resume(host, &woken);
        }
        self.sync_tick(host);
    }

    pub fn on_http_call_response(&self, host: &dyn Host, token: u32, body_size: usize) {
        for stage in &self.stages {
            let woken = stage.on_http_call_response(host, token, body_size);
            self.resume(host, &woken);
        }
        self.sync_tick(host);
    }

    pub fn on_grpc_call_response(&self, host: &dyn Host, token: u32, status: u32, size: usize) {
        for stage in &self.stages {
            let woken = stage.on_grpc_call_response(host, token, status, size);
            self.resume(host, &woken);
        }
        self.sync_tick(host);
    }

    /// Answers every waiting request: this pipeline is being replaced.
    pub fn release(&self, host: &dyn Host) {
        for stage in &self.stages {
            let woken = stage.release();
            self.resume(host, &woken);
        }
    }

    /// How many requests wait at a stage now.
    pub fn waiting(&self) -> usize {
        self.waiting.borrow().len()
    }

    /// Runs woken requests again from the stage that waited; the stages
    /// before it are not run again.
    fn resume(&self, host: &dyn Host, contexts: &[u32]) {
        for &context_id in contexts {
            let shared = {
                let mut waiting = self.waiting.borrow_mut();
                let at = waiting
                    .iter()
                    .position(|w| w.try_borrow().is_ok_and(|cx| cx.context_id == context_id));
                match at {
                    Some(i) => waiting.swap_remove(i),
                    None => continue,
                }
            };
            // A request whose client went away is no longer there.
            let gone = shared.try_borrow().map_or(true, |cx| cx.done);
            if gone || host.set_effective_context(context_id).is_err() {
                continue;
            }
            if let Ok(mut cx) = shared.try_borrow_mut() {
                cx.resumed = true;
            }
            if self.run(host, &shared) == Flow::Continue {
                host.resume_request();
            }
        }
    }
}

/// A root context's state over a pipeline: one per plugin (root id).
pub struct PipelineRoot {
    name: &'static str,
    build: Build,
    fused: bool,
    pipeline: Option<Rc<Pipeline>>,
}

impl PipelineRoot {
    pub fn new(
        name: &'static str,
        build: impl Fn(&Rc<Policy>, &dyn Host) -> Vec<Box<dyn Stage>> + 'static,
        fused: bool,
    ) -> PipelineRoot {
        PipelineRoot {
            name,
            build: Rc::new(build),
            fused,
            pipeline: None,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `on_configure` over any host: `false` keeps the previous policy.
    pub fn configure(&mut self, host: &dyn Host, config: &[u8]) -> bool {
        match Pipeline::configure(host, config, &self.build, self.fused) {
            Ok(pipeline) => {
                info!(
                    "{} configured: stages {:?}, {} routes, {} providers, {} tenants",
                    self.name,
                    pipeline.stage_names(),
                    pipeline.policy.routes.len(),
                    pipeline.policy.jwt.providers.len(),
                    pipeline.policy.tenants.len(),
                );
                if let Some(namespace) = &pipeline.stand_aside {
                    info!(
                        "{} stands aside: namespace {namespace} has its own plugin (skip_namespaces)",
                        self.name
                    );
                }
                pipeline.sync_tick(host);
                if let Some(old) = self.pipeline.replace(Rc::new(pipeline)) {
                    old.release(host);
                }
                true
            }
            Err(errors) => {
                // Refuse to start rather than run on part of a policy; a
                // previous good policy, if any, stays in force.
                log::error!("{} rejected its configuration: {errors}", self.name);
                false
            }
        }
    }

    pub fn pipeline(&self) -> Option<Rc<Pipeline>> {
        self.pipeline.clone()
    }
}
