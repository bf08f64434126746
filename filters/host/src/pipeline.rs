//! One HTTP context for every stage: the request is read once into one
//! view (headers, normalized path, host), then each stage runs on it in
//! order and hands later ones its verified facts in memory. A separate
//! filter (`tollgate.jwt`, ...) is a pipeline of one stage, so both
//! deliveries run the same stage code.

use crate::api::{first, Headers, Host};
use crate::counters::Counters;
use crate::envoy::Envoy;
use crate::reply;
use log::{debug, error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;
use tollgate_core::headers::strip_removals;
use tollgate_core::jwt::Identity;
use tollgate_core::policy::Policy;
use tollgate_core::request::{self, RequestDenial, RequestView};

/// What a stage tells the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Go on to the next stage.
    Next,
    /// The request waits (the stage keeps its context id and hands it back
    /// from a root event to be run again).
    Wait,
    /// The stage answered the request itself.
    Replied,
}

/// What the jwt stage verified, for the stages after it.
#[derive(Debug, Clone, Default)]
pub struct JwtFacts {
    /// The verified token's identity (subject, claims, prepared outputs).
    pub identity: Option<Rc<Identity>>,
    /// Let through in shadow mode though it would have been denied.
    pub shadow_denied: bool,
}

impl JwtFacts {
    /// The verified tenant claim (`tollgate.tenant` in filter state).
    pub fn tenant(&self) -> Option<&[u8]> {
        let identity = self.identity.as_deref()?;
        identity.state().find(|(k, _)| *k == "tollgate.tenant").map(|(_, v)| v)
    }
}

/// Facts stages hand each other in memory; `None` where that stage did not
/// run in this pipeline (a separate filter may have left it in filter state).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub jwt: Option<JwtFacts>,
}

/// One request, as every stage sees it.
pub struct Exchange<'a> {
    pub context_id: u32,
    pub headers: &'a [(String, Vec<u8>)],
    pub view: &'a RequestView,
    /// Run again after a wait: a stage must not wait twice.
    pub resumed: bool,
    /// Write outputs to filter state.
    pub publish: bool,
    pub facts: Facts,
}

impl<'a> Exchange<'a> {
    pub fn request_id(&self) -> Option<&'a [u8]> {
        first(self.headers, "x-request-id")
    }

    /// The raw `:path` as it arrived.
    pub fn raw_path(&self) -> &'a [u8] {
        first(self.headers, ":path").unwrap_or_default()
    }
}

/// A step of the pipeline. Root events return the requests to run again.
pub trait Stage {
    fn name(&self) -> &'static str;
    fn on_request(&self, ex: &mut Exchange<'_>, host: &dyn Host) -> Step;
    fn on_tick(&self, _host: &dyn Host) -> Vec<u32> {
        Vec::new()
    }
    fn on_http_call_response(&self, _host: &dyn Host, _token: u32, _body_size: usize) -> Vec<u32> {
        Vec::new()
    }
    /// The policy is being replaced: the requests waiting on this stage.
    fn release(&self) -> Vec<u32> {
        Vec::new()
    }
    /// The log phase of a request (every request, refused ones included):
    /// where the audit stage will read each stage's decision.
    fn on_log(&self, _host: &dyn Host, _context_id: u32) {}
}

/// Builds a pipeline's stages for a policy.
pub type Build = fn(&Rc<Policy>, &dyn Host) -> Vec<Box<dyn Stage>>;

pub struct Pipeline {
    pub policy: Rc<Policy>,
    stages: Vec<Box<dyn Stage>>,
    /// Counters of refusals made before any stage, under the first stage's
    /// name, as the separate filters count them.
    refusals: Counters,
    label: &'static str,
    publish: bool,
    /// The sidecar's namespace when the policy's `skip_namespaces` names
    /// it: that namespace has its own plugin, so this one does nothing.
    pub stand_aside: Option<String>,
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

/// How the pipeline ran for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

impl Pipeline {
    /// `fused`: the `tollgate` filter, which follows the policy's
    /// `filter_state`; a separate filter always publishes.
    pub fn configure(host: &dyn Host, config: &[u8], build: Build, fused: bool) -> Result<Pipeline, String> {
        let policy = Rc::new(Policy::from_json(config).map_err(|errors| errors.to_string())?);
        let stages = build(&policy, host);
        let label = stages.first().map_or("request", |s| s.name());
        let stand_aside = skipped_namespace(host, &policy.skip_namespaces);
        Ok(Pipeline {
            stand_aside,
            refusals: Counters::define(host, &request::metric_names(label)),
            publish: !fused || policy.filter_state,
            label,
            stages,
            policy,
        })
    }

    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// Runs every stage on the current request.
    pub fn on_request(&self, host: &dyn Host, context_id: u32, resumed: bool) -> Flow {
        if self.stand_aside.is_some() {
            return Flow::Continue;
        }
        let headers = match host.request_headers() {
            Ok(headers) => headers,
            Err(e) => return self.refuse(host, context_id, &[], RequestDenial::Unreadable, &e.0),
        };
        let Some(view) = self.read(host, context_id, &headers) else {
            return Flow::Pause;
        };
        let mut ex = Exchange {
            context_id,
            headers: &headers,
            view: &view,
            resumed,
            publish: self.publish,
            facts: Facts::default(),
        };
        for stage in &self.stages {
            match stage.on_request(&mut ex, host) {
                Step::Next => {}
                Step::Wait | Step::Replied => return Flow::Pause,
            }
        }
        let strip = strip_removals(&self.policy.strip_headers, &headers);
        reply::edit_request_headers(host, context_id, &strip);
        if resumed {
            host.resume_request();
        }
        Flow::Continue
    }

    /// The request view; a path it normalized is written back to `:path`,
    /// so the application is served what was decided. `None` when refused.
    fn read(&self, host: &dyn Host, context_id: u32, headers: &Headers) -> Option<RequestView> {
        let view = RequestView::read(
            first(headers, ":method").unwrap_or_default(),
            first(headers, ":path"),
            first(headers, ":authority"),
            &self.policy,
        );
        let view = match view {
            Ok(view) => view,
            Err(denial) => {
                self.refuse(host, context_id, headers, denial, denial.detail());
                return None;
            }
        };
        if let Some(served) = &view.served_path {
            if let Err(e) = host.set_request_header(":path", Some(served)) {
                let why = format!("could not rewrite :path: {}", e.0);
                self.refuse(host, context_id, headers, RequestDenial::Unreadable, &why);
                return None;
            }
            debug!("#{context_id} {}: :path rewritten to its normal form", self.label);
        }
        Some(view)
    }

    /// Sends, counts and logs a refusal made before any route is known
    /// (always enforced).
    fn refuse(
        &self,
        host: &dyn Host,
        context_id: u32,
        headers: &[(String, Vec<u8>)],
        denial: RequestDenial,
        why: &str,
    ) -> Flow {
        let reply = denial.denial();
        if denial == RequestDenial::Unreadable {
            warn!("#{context_id} {}: refused, {why}", self.label);
        } else {
            debug!("#{context_id} {}: deny {}: {why}", self.label, reply.reason);
        }
        self.refusals.add(host, denial.metric_index());
        let reply = reply.reply(first(headers, "x-request-id"), &self.policy.realm);
        reply::send(host, context_id, &reply);
        Flow::Pause
    }

    pub fn on_tick(&self, host: &dyn Host) {
        for stage in &self.stages {
            let woken = stage.on_tick(host);
            self.resume(host, &woken);
        }
    }

    pub fn on_http_call_response(&self, host: &dyn Host, token: u32, body_size: usize) {
        for stage in &self.stages {
            let woken = stage.on_http_call_response(host, token, body_size);
            self.resume(host, &woken);
        }
    }

    /// The log phase: every stage sees it, in order.
    pub fn on_log(&self, host: &dyn Host, context_id: u32) {
        for stage in &self.stages {
            stage.on_log(host, context_id);
        }
    }

    /// Answers every waiting request: this pipeline is being replaced.
    pub fn release(&self, host: &dyn Host) {
        for stage in &self.stages {
            let woken = stage.release();
            self.resume(host, &woken);
        }
    }

    /// Runs waiting requests again, from the start: nothing was applied to
    /// them before they waited, and reading a served path again is a no-op.
    fn resume(&self, host: &dyn Host, contexts: &[u32]) {
        for &context_id in contexts {
            // A request whose client went away is no longer there.
            if host.set_effective_context(context_id).is_ok() {
                self.on_request(host, context_id, true);
            }
        }
    }
}

/// A root context over a pipeline: one per plugin (root id).
pub struct PipelineRoot {
    name: &'static str,
    build: Build,
    fused: bool,
    pipeline: Option<Rc<Pipeline>>,
}

impl PipelineRoot {
    pub fn new(name: &'static str, build: Build, fused: bool) -> PipelineRoot {
        PipelineRoot {
            name,
            build,
            fused,
            pipeline: None,
        }
    }

    /// `on_configure` over any host: `false` keeps the previous policy.
    pub fn configure(&mut self, host: &dyn Host, config: &[u8]) -> bool {
        match Pipeline::configure(host, config, self.build, self.fused) {
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
                if let Some(old) = self.pipeline.replace(Rc::new(pipeline)) {
                    old.release(host);
                }
                true
            }
            Err(errors) => {
                // Refuse to start rather than run on part of a policy; a
                // previous good policy, if any, stays in force.
                error!("{} rejected its configuration: {errors}", self.name);
                false
            }
        }
    }

    pub fn pipeline(&self) -> Option<Rc<Pipeline>> {
        self.pipeline.clone()
    }
}

impl Context for PipelineRoot {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(pipeline) = &self.pipeline {
            pipeline.on_http_call_response(&Envoy, token, body_size);
        }
    }
}

impl RootContext for PipelineRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = crate::api::Host::plugin_config(&Envoy, size);
        self.configure(&Envoy, &config)
    }

    fn on_tick(&mut self) {
        if let Some(pipeline) = &self.pipeline {
            pipeline.on_tick(&Envoy);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PipelineHttp {
            context_id,
            pipeline: self.pipeline.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PipelineHttp {
    context_id: u32,
    pipeline: Option<Rc<Pipeline>>,
}

impl Context for PipelineHttp {}

impl HttpContext for PipelineHttp {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(pipeline) = &self.pipeline else {
            return reply::unconfigured(&Envoy, self.context_id);
        };
        match pipeline.on_request(&Envoy, self.context_id, false) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }

    fn on_log(&mut self) {
        if let Some(pipeline) = &self.pipeline {
            pipeline.on_log(&Envoy, self.context_id);
        }
    }
}
