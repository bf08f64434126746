//! The pipeline with stages made for the test, on the fake host: order,
//! refusals before any stage, waits that resume at the waiting stage (two
//! in one request, a wait after another stage edited the request, a
//! client gone while waiting), response headers, and the log phase.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::fake::FakeHost;
use crate::{reply, Flow, Host, PipelineRoot, Progress, RequestContext, Shared, Stage, Step, Verdict};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tollgate_core::decision::Action;
use tollgate_core::policy::Policy;
use tollgate_core::reply::Denial;
use tollgate_core::Mode;

thread_local! {
    /// What the test stages saw, in order: "<stage>:<event>:<context>".
    static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn seen() -> Vec<String> {
    SEEN.with(|s| s.borrow_mut().drain(..).collect())
}

fn note(what: String) {
    SEEN.with(|s| s.borrow_mut().push(what));
}

const LIMITED: Denial = Denial {
    status: 429,
    reason: "rate_limited",
    message: "too many requests",
    bearer_error: None,
};

/// A stage made for the test. `wait` (and `wait2`) wait once for a path
/// containing `/wait`, and hand waiting requests back on the tick;
/// `edit` removes `x-secret` and counts; `deny` answers `/deny` with
/// extras, shadow-denies `/shadow`, and adds a response header.
struct Probe {
    name: &'static str,
    waiting: RefCell<Vec<u32>>,
    counted: Cell<u32>,
}

impl Stage for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn on_request(&self, cx: &mut RequestContext, host: &dyn Host) -> Step {
        let path = cx.view.path.clone();
        let resumed = if cx.resumed { ":resumed" } else { "" };
        note(format!("{}:request:{}:{path}{resumed}", self.name, cx.context_id));
        let action = match (self.name, path.as_str()) {
            ("wait" | "wait2", p) if p.contains("/wait") && !cx.resumed => {
                self.waiting.borrow_mut().push(cx.context_id);
                return Step::Wait;
            }
            ("edit", _) => {
                self.counted.set(self.counted.get() + 1);
                host.set_request_header("x-secret", None).unwrap();
                Action::Allow
            }
            ("deny", "/deny") => {
                cx.extras.reply_headers.push(("retry-after".into(), "7".into()));
                cx.extras.reply_fields.push(("limit".into(), "per-tenant".into()));
                Action::Deny(LIMITED)
            }
            ("deny", "/shadow") => Action::ShadowDeny(LIMITED),
            _ => Action::Allow,
        };
        let detail = (self.name == "deny").then(|| "per-tenant".to_string());
        let verdict = Verdict {
            stage: self.name,
            route: "default",
            mode: if matches!(action, Action::ShadowDeny(_)) {
                Mode::Shadow
            } else {
                Mode::Enforce
            },
            action,
            detail,
        };
        reply::conclude(host, cx, verdict, "api")
    }

    fn on_response_headers(&self, cx: &mut RequestContext, _: &dyn Host) {
        if self.name == "deny" {
            cx.extras
                .response_headers
                .push(("ratelimit-remaining".into(), "3".into()));
        }
    }

    /// Wakes its waiters when the tick is for this stage (`WAKE`).
    fn on_tick(&self, _: &dyn Host) -> Vec<u32> {
        if WAKE.with(|w| w.get()) != self.name {
            return Vec::new();
        }
        self.waiting.borrow_mut().drain(..).collect()
    }

    fn on_log(&self, cx: &RequestContext, _: &dyn Host) {
        let decisions: Vec<String> = cx
            .decisions
            .iter()
            .map(|d| format!("{}={}", d.stage, outcome(d.action)))
            .collect();
        note(format!("{}:log:{}:{}", self.name, cx.context_id, decisions.join(",")));
    }
}

fn outcome(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Deny(_) => "deny",
        Action::ShadowDeny(_) => "shadow_deny",
    }
}

thread_local! {
    static WAKE: Cell<&'static str> = const { Cell::new("wait") };
    static NAMES: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

fn probes(_: &Rc<Policy>, _: &dyn Host) -> Vec<Box<dyn Stage>> {
    NAMES
        .with(|n| n.borrow().clone())
        .into_iter()
        .map(|name| -> Box<dyn Stage> {
            Box::new(Probe {
                name,
                waiting: RefCell::new(Vec::new()),
                counted: Cell::new(0),
            })
        })
        .collect()
}

fn root(host: &FakeHost, names: &[&'static str]) -> PipelineRoot {
    NAMES.with(|n| *n.borrow_mut() = names.to_vec());
    let mut root = PipelineRoot::new("probe", probes, true);
    assert!(root.configure(host, br#"{"version": 1}"#));
    seen();
    root
}

fn request(host: &FakeHost, root: &PipelineRoot, id: u32, path: &str) -> (Flow, Shared) {
    host.begin(
        id,
        &[
            (":method", "GET"),
            (":path", path),
            (":authority", "h"),
            ("x-secret", "s"),
        ],
    );
    root.pipeline().unwrap().on_request_headers(host, id, true)
}

fn tick(host: &FakeHost, root: &PipelineRoot) {
    wake(host, root, "wait");
}

/// A tick on which only `stage` hands its waiting requests back.
fn wake(host: &FakeHost, root: &PipelineRoot, stage: &'static str) {
    WAKE.with(|w| w.set(stage));
    root.pipeline().unwrap().on_tick(host);
}

#[test]
fn stages_run_in_order_on_the_normalized_path_until_one_answers() {
    let host = FakeHost::default();
    let root = root(&host, &["wait", "deny", "last"]);
    assert_eq!(request(&host, &root, 1, "/a/./b/../c").0, Flow::Continue);
    assert_eq!(
        seen(),
        ["wait:request:1:/a/c", "deny:request:1:/a/c", "last:request:1:/a/c"]
    );
    assert_eq!(host.header(1, ":path"), ["/a/c"], "the served path is the decided one");
    assert_eq!(request(&host, &root, 2, "/deny").0, Flow::Pause);
    assert_eq!(seen(), ["wait:request:2:/deny", "deny:request:2:/deny"]);
    assert_eq!(host.request(2).reply.unwrap().status, 429);
}

#[test]
fn a_local_reply_carries_the_headers_and_fields_the_stage_asked_for() {
    let host = FakeHost::default();
    let root = root(&host, &["deny"]);
    let (flow, cx) = request(&host, &root, 1, "/deny");
    assert_eq!(flow, Flow::Pause);
    let reply = host.request(1).reply.unwrap();
    assert!(reply.headers.contains(&("retry-after".into(), "7".into())), "{reply:?}");
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["limit"], "per-tenant");
    assert_eq!(body["reason"], "rate_limited");
    assert_eq!(cx.borrow().progress, Progress::Replied);
}

#[test]
fn a_request_refused_before_any_stage_is_counted_under_the_first_stage() {
    let host = FakeHost::default();
    let root = root(&host, &["wait", "deny", "last"]);
    let (flow, cx) = request(&host, &root, 1, "/a/%2e%2e%2fb");
    assert_eq!(flow, Flow::Pause);
    assert!(seen().is_empty());
    assert_eq!(host.request(1).reply.unwrap().status, 400);
    assert_eq!(host.counter("tollgate.wait.denied.path_invalid"), 1);
    // The log phase still sees it, with the refusal.
    root.pipeline().unwrap().on_log(&host, &cx);
    assert_eq!(cx.borrow().early.map(|d| d.denial().reason), Some("path_invalid"));
    assert_eq!(seen(), ["wait:log:1:", "deny:log:1:", "last:log:1:"]);
}

#[test]
fn a_woken_request_resumes_at_the_stage_that_waited() {
    let host = FakeHost::default();
    let root = root(&host, &["edit", "wait", "last"]);
    assert_eq!(request(&host, &root, 7, "/wait").0, Flow::Pause);
    assert_eq!(seen(), ["edit:request:7:/wait", "wait:request:7:/wait"]);
    assert_eq!(host.header(7, "x-secret"), Vec::<String>::new());
    tick(&host, &root);
    // `edit` is not run again: nothing counted or edited twice.
    assert_eq!(seen(), ["wait:request:7:/wait:resumed", "last:request:7:/wait"]);
    assert_eq!(host.request(7).resumed, 1);
    assert_eq!(root.pipeline().unwrap().waiting(), 0);
}

#[test]
fn a_request_may_wait_twice_at_two_stages() {
    let host = FakeHost::default();
    let root = root(&host, &["wait", "edit", "wait2", "last"]);
    let (flow, cx) = request(&host, &root, 3, "/wait");
    assert_eq!(flow, Flow::Pause);
    assert_eq!(seen(), ["wait:request:3:/wait"]);
    tick(&host, &root);
    assert_eq!(
        seen(),
        [
            "wait:request:3:/wait:resumed",
            "edit:request:3:/wait",
            "wait2:request:3:/wait"
        ]
    );
    assert_eq!(host.request(3).resumed, 0, "still waiting at wait2");
    wake(&host, &root, "wait2");
    assert_eq!(seen(), ["wait2:request:3:/wait:resumed", "last:request:3:/wait"]);
    assert_eq!(host.request(3).resumed, 1);
    assert_eq!(cx.borrow().waits, 2);
    let stages: Vec<&str> = cx.borrow().decisions.iter().map(|d| d.stage).collect();
    assert_eq!(stages, ["wait", "edit", "wait2", "last"]);
}

#[test]
fn a_client_gone_while_waiting_is_never_resumed() {
    let host = FakeHost::default();
    let root = root(&host, &["wait", "last"]);
    let pipeline = root.pipeline().unwrap();
    let (_, cx) = request(&host, &root, 8, "/wait");
    // Envoy: the stream is destroyed (on_done, then on_log).
    pipeline.done(&cx);
    pipeline.on_log(&host, &cx);
    assert_eq!(pipeline.waiting(), 0);
    seen();
    tick(&host, &root);
    assert!(seen().is_empty());
    // Also when the host no longer knows the context.
    let (_, _cx) = request(&host, &root, 9, "/wait");
    host.forget(9);
    seen();
    tick(&host, &root);
    assert!(seen().is_empty());
    assert_eq!(pipeline.waiting(), 0);
}

#[test]
fn response_headers_are_added_to_allowed_responses_only() {
    let host = FakeHost::default();
    let root = root(&host, &["deny"]);
    let pipeline = root.pipeline().unwrap();
    let (_, allowed) = request(&host, &root, 1, "/ok");
    pipeline.on_response_headers(&host, &allowed);
    assert_eq!(
        host.request(1).response_headers,
        [("ratelimit-remaining".to_string(), b"3".to_vec())]
    );
    let (_, refused) = request(&host, &root, 2, "/deny");
    pipeline.on_response_headers(&host, &refused);
    assert!(host.request(2).response_headers.is_empty());
}

#[test]
fn the_log_phase_sees_every_decision_allowed_refused_and_shadow_denied() {
    let host = FakeHost::default();
    let root = root(&host, &["edit", "deny", "last"]);
    let pipeline = root.pipeline().unwrap();
    for (id, path) in [(1, "/ok"), (2, "/deny"), (3, "/shadow")] {
        let (_, cx) = request(&host, &root, id, path);
        seen();
        pipeline.on_log(&host, &cx);
        let logged = seen();
        assert_eq!(logged.len(), 3, "{logged:?}");
        let expected = match id {
            1 => "edit=allow,deny=allow,last=allow",
            2 => "edit=allow,deny=deny",
            _ => "edit=allow,deny=shadow_deny,last=allow",
        };
        assert!(logged.iter().all(|l| l.ends_with(expected)), "{logged:?}");
    }
}

#[test]
fn the_fake_host_keeps_shared_data_versions_as_envoy_does() {
    use crate::SharedDataError;
    let host = FakeHost::default();
    assert_eq!(host.shared_data("k").unwrap(), (None, None));
    host.set_shared_data("k", b"1", None).unwrap();
    let (value, cas) = host.shared_data("k").unwrap();
    assert_eq!(value.as_deref(), Some(&b"1"[..]));
    host.set_shared_data("k", b"2", cas).unwrap();
    assert_eq!(host.set_shared_data("k", b"3", cas), Err(SharedDataError::CasMismatch));
    assert_eq!(host.shared_data("k").unwrap().0.as_deref(), Some(&b"2"[..]));
}
