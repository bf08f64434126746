//! The request context: what one request is to every stage, from its
//! request headers to its log phase. The pipeline keeps it for the whole
//! exchange, so a stage after a wait, a response-headers edit and the
//! audit record all see the same request, facts and decisions.

use crate::api::{first, Headers};
use std::rc::Rc;
use tollgate_core::decision::Action;
use tollgate_core::jwt::Identity;
use tollgate_core::request::{RequestDenial, RequestView};
use tollgate_core::state;
use tollgate_core::Mode;

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
        identity.state().find(|(k, _)| *k == state::TENANT).map(|(_, v)| v)
    }
}

/// The tenant the tenant stage decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantFacts {
    pub id: String,
    pub tier: Option<String>,
}

/// Facts stages hand each other in memory; `None` where that stage did not
/// run in this pipeline (a separate filter may have left it in filter state).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub jwt: Option<JwtFacts>,
    pub tenant: Option<TenantFacts>,
}

/// One stage's decision on a request, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDecision {
    pub stage: &'static str,
    pub mode: Mode,
    pub action: Action,
    /// What the decision was about, where a stage names it (a limit's name).
    pub detail: Option<String>,
}

/// Headers and body fields a stage adds to the local reply it asks for
/// (`Retry-After`, the limit's name), or to an allowed response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    pub reply_headers: Vec<(String, String)>,
    pub reply_fields: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
}

/// What goes to filter state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Every stage writes its keys (`tollgate_core::state`): a separate
    /// filter, which the next Tollgate filter reads.
    Keys,
    /// The fused filter: stages leave their records in the context and the
    /// pipeline writes `tollgate.sub`, `tollgate.tenant` and one
    /// `tollgate.decision` (three host calls instead of seven).
    Record,
    /// `filter_state: false`: nothing.
    Off,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Stages are running, or the request waits at `next`.
    Running,
    /// Every stage let it through: it went to the application.
    Forwarded,
    /// Answered by Tollgate (a stage, or a refusal before any stage).
    Replied,
    /// The filter stood aside (`skip_namespaces`): nothing was decided.
    Skipped,
}

/// One request, from its headers to its log phase.
#[derive(Debug)]
pub struct RequestContext {
    pub context_id: u32,
    /// The request headers as read once, before any edit.
    pub headers: Headers,
    pub view: RequestView,
    /// Refused before any stage (the view is then empty).
    pub early: Option<RequestDenial>,
    /// What goes to filter state.
    pub publish: Publish,
    /// A form body's findings (`form::read_form`), once it was read.
    pub form: Option<tollgate_core::form::FormFindings>,
    /// The request body is held and judged (a form that may hold a token
    /// or `_method`).
    pub awaits_body: bool,
    /// How much of that body is held so far.
    pub body_size: usize,
    /// Each stage's decision record, kept for `Publish::Record`.
    pub records: Vec<(&'static str, Vec<u8>)>,
    pub facts: Facts,
    /// Each stage's decision, in stage order.
    pub decisions: Vec<StageDecision>,
    pub extras: Extras,
    /// The stage to run next: the one that waited, after a wait.
    pub(crate) next: usize,
    /// The current stage runs again after its own wait.
    pub resumed: bool,
    /// How often this request waited.
    pub waits: u32,
    pub progress: Progress,
    /// When the request headers arrived (host clock, Unix nanoseconds).
    pub started_nanos: u64,
    /// The client went away, or the log phase ran: never resume it.
    pub(crate) done: bool,
}

impl RequestContext {
    pub fn new(context_id: u32, headers: Headers, started_nanos: u64) -> RequestContext {
        RequestContext {
            context_id,
            headers,
            view: RequestView::default(),
            early: None,
            publish: Publish::Keys,
            records: Vec::new(),
            form: None,
            awaits_body: false,
            body_size: 0,
            facts: Facts::default(),
            decisions: Vec::new(),
            extras: Extras::default(),
            next: 0,
            resumed: false,
            waits: 0,
            progress: Progress::Running,
            started_nanos,
            done: false,
        }
    }

    pub fn request_id(&self) -> Option<&[u8]> {
        first(&self.headers, "x-request-id")
    }

    /// The raw `:path` as it arrived.
    pub fn raw_path(&self) -> &[u8] {
        first(&self.headers, ":path").unwrap_or_default()
    }

    /// Records a stage's decision (one per stage and request).
    pub fn decide(&mut self, stage: &'static str, mode: Mode, action: Action, detail: Option<String>) {
        self.decisions.push(StageDecision {
            stage,
            mode,
            action,
            detail,
        });
    }

    /// A stage's decision, when it made one.
    pub fn decision(&self, stage: &str) -> Option<&StageDecision> {
        self.decisions.iter().find(|d| d.stage == stage)
    }
}
