//! `tollgate replay POLICY --events FILE|-`: impact analysis. Each recorded
//! audit event (the JSON lines a `jsonl` sink receives, or `tollgate audit
//! tail --json`) is rebuilt into a request and re-decided with the
//! candidate policy by `explain`, the fused filter's own pipeline; each
//! stage's decision is compared with the recorded one. Streaming: one
//! line in memory at a time, and every tally bounded.

pub mod compare;
pub mod limits;
pub mod read;
pub mod rebuild;
pub mod report;

use crate::explain;
use report::{FailOn, Report};
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use tollgate_core::policy::wire::TenantSource;
use tollgate_core::policy::Policy;

pub use report::GATE_EXIT;

/// Events between progress lines on a terminal.
const PROGRESS_EVERY: u64 = 10_000;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub fail_on: FailOn,
    /// Re-decide as the plugin rendered for this namespace runs (explain's `--namespace`).
    pub namespace: Option<String>,
    /// The policy the events were recorded under, when known.
    pub recorded: Option<Recording>,
}

/// What the recording policy read: events hold a claim or tenant source
/// only when it read it, so its absence means "not there" only then.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub claims: Vec<String>,
    pub tenant_sources: Vec<TenantSource>,
    /// The recording policy itself, for the routes it chose.
    pub policy: Option<std::rc::Rc<Policy>>,
}

impl Recording {
    pub fn of(policy_doc: &Value) -> Result<Recording, String> {
        let policy = compile(policy_doc).map_err(|e| format!("--recorded-policy: {e}"))?;
        Ok(Recording {
            claims: tollgate_core::audit::claims_read(&policy),
            tenant_sources: policy.tenant.sources.clone(),
            policy: Some(std::rc::Rc::new(policy)),
        })
    }
}

fn compile(policy_doc: &Value) -> Result<Policy, String> {
    Policy::from_json(policy_doc.to_string().as_bytes()).map_err(|e| format!("the policy does not compile: {e}"))
}

/// `tollgate replay`: prints the report; `Ok(true)` when the gate passes.
pub fn run(policy: &Path, events: &Path, options: &Options, json_out: bool) -> Result<bool, String> {
    let doc = crate::policy_file::load_policy(policy)?;
    let mut progress = Progress::new();
    let report = if events == Path::new("-") {
        replay(&doc, std::io::stdin().lock(), options, &mut |n| progress.show(n))?
    } else {
        let file = std::fs::File::open(events).map_err(|e| format!("{}: {e}", events.display()))?;
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        replay(&doc, reader, options, &mut |n| progress.show(n))?
    };
    progress.done(report.read);
    if json_out {
        let mut out = report.json();
        out["gate"] = serde_json::json!({
            "fail_on": options.fail_on.as_str(),
            "passed": report::gate(&report, options.fail_on).is_none(),
        });
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report.text());
    }
    match report::gate(&report, options.fail_on) {
        Some(why) => {
            eprintln!("tollgate replay: {why}");
            Ok(false)
        }
        None => Ok(true),
    }
}

/// Replays every event of `input` against `policy_doc`; `progress` is told
/// the count of lines read every `PROGRESS_EVERY`.
pub fn replay<R: BufRead>(
    policy_doc: &Value,
    input: R,
    options: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, String> {
    let policy = compile(policy_doc)?;
    let prepared = explain::Prepared::new(&one_slot(policy_doc), options.namespace.as_deref())?;
    let mut events = read::Events::new(input);
    let mut report = Report::default();
    let mut estimator = limits::Estimator::default();
    while let Some(line) = events.next_line()? {
        report.read += 1;
        if report.read % PROGRESS_EVERY == 0 {
            progress(report.read);
        }
        match line {
            read::Line::Skip(why) => report.skipped.add(&why),
            read::Line::Event(event) => one(&policy, &prepared, options, &event, &mut report, &mut estimator)?,
        }
    }
    report.limits = estimator.json();
    Ok(report)
}

/// The policy with one slot per local limit. Each limit's slot table
/// (10,000 slots by default) is copied whenever the host's shared data is
/// read or reset between requests, which cost 30 times the decisions;
/// replay does not decide limits (`limits` estimates them), and nothing
/// else reads the slots.
fn one_slot(policy_doc: &Value) -> Value {
    let mut doc = policy_doc.clone();
    if let Some(fields) = doc.as_object_mut() {
        let section = fields.entry("ratelimit").or_insert_with(|| serde_json::json!({}));
        if let Some(section) = section.as_object_mut() {
            section.insert("slots_per_limit".into(), serde_json::json!(1));
        }
    }
    doc
}

/// Re-decides one event and tallies it.
fn one(
    policy: &Policy,
    prepared: &explain::Prepared,
    options: &Options,
    event: &Value,
    report: &mut Report,
    estimator: &mut limits::Estimator,
) -> Result<(), String> {
    let request = match rebuild::rebuild(policy, options.recorded.as_ref(), event, options.namespace.as_deref()) {
        Ok(request) => request,
        Err(rebuild::Undecidable(why)) => {
            report.undecidable.add(&why);
            return Ok(());
        }
    };
    let explained = match prepared.explain(&request) {
        Ok(e) => e,
        Err(why) => {
            report.undecidable.add(&format!("the rebuilt request: {why}"));
            return Ok(());
        }
    };
    let new = compare::redecided(&explained);
    let changes = compare::changes(&compare::recorded(event), &new);
    let route = explained["route"]["name"]
        .as_str()
        .unwrap_or("(refused before routing)");
    let tenant = event["tenant"].as_str().unwrap_or("-");
    report.add_changes(route, tenant, event["request_id"].as_str(), &changes);
    // Requests the candidate's other stages deny never reach the limits.
    if !new.iter().any(|(_, label)| label.starts_with("deny")) {
        estimator.count(&explained, request.now.unwrap_or_default());
    }
    Ok(())
}

/// Progress on stderr, only when it is a terminal.
struct Progress {
    on: bool,
    started: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
        }
    }

    fn rate(&self, n: u64) -> u64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            (n as f64 / secs) as u64
        } else {
            0
        }
    }

    fn show(&mut self, n: u64) {
        if self.on {
            let mut err = std::io::stderr();
            let _ = write!(err, "\rreplay: {n} events read ({} events/s)", self.rate(n));
            let _ = err.flush();
        }
    }

    fn done(&mut self, n: u64) {
        if self.on {
            eprintln!("\rreplay: {n} events read ({} events/s), done", self.rate(n));
        }
    }
}
