//! The pipeline with stages made for the test, on the fake host: order,
//! refusals before any stage, waiting and resuming, the log phase.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::fake::FakeHost;
use crate::{Exchange, Flow, Host, PipelineRoot, Stage, Step};
use std::cell::RefCell;
use std::rc::Rc;
use tollgate_core::policy::Policy;

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

/// `wait` waits once for a request whose path ends in `/wait`, and hands
/// every waiting request back on the tick; `deny` answers `/deny`.
struct Probe {
    name: &'static str,
    waiting: RefCell<Vec<u32>>,
}

impl Stage for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn on_request(&self, ex: &mut Exchange<'_>, host: &dyn Host) -> Step {
        note(format!("{}:request:{}:{}", self.name, ex.context_id, ex.view.path));
        match (self.name, ex.view.path.as_str()) {
            ("wait", "/wait") if !ex.resumed => {
                self.waiting.borrow_mut().push(ex.context_id);
                Step::Wait
            }
            ("deny", "/deny") => {
                host.send_reply(403, &[], b"no").unwrap();
                Step::Replied
            }
            _ => Step::Next,
        }
    }

    fn on_tick(&self, _: &dyn Host) -> Vec<u32> {
        self.waiting.borrow_mut().drain(..).collect()
    }

    fn on_log(&self, _: &dyn Host, context_id: u32) {
        note(format!("{}:log:{context_id}", self.name));
    }
}

fn probes(_: &Rc<Policy>, _: &dyn Host) -> Vec<Box<dyn Stage>> {
    ["wait", "deny", "last"]
        .into_iter()
        .map(|name| -> Box<dyn Stage> {
            Box::new(Probe {
                name,
                waiting: RefCell::new(Vec::new()),
            })
        })
        .collect()
}

fn root(host: &FakeHost) -> PipelineRoot {
    let mut root = PipelineRoot::new("probe", probes, true);
    assert!(root.configure(host, br#"{"version": 1}"#));
    root
}

fn request(host: &FakeHost, root: &PipelineRoot, id: u32, path: &str) -> Flow {
    host.begin(id, &[(":method", "GET"), (":path", path), (":authority", "h")]);
    root.pipeline().unwrap().on_request(host, id, false)
}

#[test]
fn stages_run_in_order_on_the_normalized_path_until_one_answers() {
    let host = FakeHost::default();
    let root = root(&host);
    assert_eq!(request(&host, &root, 1, "/a/./b/../c"), Flow::Continue);
    assert_eq!(
        seen(),
        ["wait:request:1:/a/c", "deny:request:1:/a/c", "last:request:1:/a/c"]
    );
    assert_eq!(host.header(1, ":path"), ["/a/c"], "the served path is the decided one");
    assert_eq!(request(&host, &root, 2, "/deny"), Flow::Pause);
    assert_eq!(seen(), ["wait:request:2:/deny", "deny:request:2:/deny"]);
    assert_eq!(host.request(2).reply.unwrap().status, 403);
}

#[test]
fn a_request_refused_before_any_stage_is_counted_under_the_first_stage() {
    let host = FakeHost::default();
    let root = root(&host);
    assert_eq!(request(&host, &root, 1, "/a/%2e%2e%2fb"), Flow::Pause);
    assert!(seen().is_empty());
    assert_eq!(host.request(1).reply.unwrap().status, 400);
    assert_eq!(host.counter("tollgate.wait.denied.path_invalid"), 1);
}

#[test]
fn a_waiting_request_runs_again_through_every_stage_and_resumes() {
    let host = FakeHost::default();
    let root = root(&host);
    assert_eq!(request(&host, &root, 7, "/wait"), Flow::Pause);
    assert_eq!(seen(), ["wait:request:7:/wait"]);
    root.pipeline().unwrap().on_tick(&host);
    assert_eq!(
        seen(),
        ["wait:request:7:/wait", "deny:request:7:/wait", "last:request:7:/wait"]
    );
    assert_eq!(host.request(7).resumed, 1);
    // A request whose client went away is not run again.
    assert_eq!(request(&host, &root, 8, "/wait"), Flow::Pause);
    host.requests.borrow_mut().remove(&8);
    seen();
    root.pipeline().unwrap().on_tick(&host);
    assert!(seen().is_empty());
}

#[test]
fn every_stage_sees_the_log_phase() {
    let host = FakeHost::default();
    let root = root(&host);
    request(&host, &root, 3, "/deny");
    seen();
    root.pipeline().unwrap().on_log(&host, 3);
    assert_eq!(seen(), ["wait:log:3", "deny:log:3", "last:log:3"]);
}

#[test]
fn envoy_never_skips_signature_checks() {
    assert!(!crate::Envoy.skips_signatures());
    assert!(!crate::fake::FakeHost::default().skips_signatures());
}
