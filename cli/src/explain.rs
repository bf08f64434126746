//! `tollgate explain POLICY`: what would happen to a request, offline. The
//! request runs through the fused filter's own pipeline and stages
//! (`tollgate_stages::stages` over `tollgate_host::Pipeline`) on the
//! in-memory host the filters' unit tests use, so explain and the filters
//! cannot disagree. What the host saw (the reply, the headers the
//! application would get, counters, the decision records in filter state)
//! is the answer; the route's `why` comes from core's matcher.

use serde_json::{json, Map, Value};
use std::path::Path;
use tollgate_core::jwt::claims;
use tollgate_core::jwt::config::{ClaimTest, TokenSource};
use tollgate_core::policy::{Policy, RouteWhy};
use tollgate_core::request::RequestView;
use tollgate_host::fake::FakeHost;
use tollgate_host::{Flow, Pipeline, PipelineRoot};

mod audit;
mod limits;

/// The request to explain, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// `http://host[:port]/path?query`, or a bare `/path?query`.
    pub url: String,
    /// (name, value) as given with `-H`.
    pub headers: Vec<(String, String)>,
    pub token: Option<String>,
    /// Trust the token's claims without checking its signature.
    pub no_verify: bool,
    /// Unix seconds; `None`: now.
    pub now: Option<u64>,
    /// A JWKS document for the providers that fetch theirs.
    pub jwks: Option<Vec<u8>>,
    /// Answer as the plugin `render` lays over this namespace runs it
    /// (its modes, or standing aside); `None`: the policy as written, as
    /// a local Envoy runs it.
    pub namespace: Option<String>,
    /// The peer's address (`ip` or `ip:port`), which client_ip limits read;
    /// `None`: offline there is none.
    pub source_address: Option<String>,
}

/// The context id the request runs under on the fake host.
const CONTEXT: u32 = 1;
/// Fetches answered at most: one per remote provider, the rate limit
/// service, and a spare.
const MAX_FETCH_ROUNDS: usize = 5;

/// `tollgate explain`: prints the explanation (text, or JSON with `json`).
pub fn run(policy: &Path, request: &Request, json_out: bool) -> Result<(), String> {
    let doc = crate::policy_file::load_policy(policy)?;
    let explained = explain(&doc, request)?;
    if json_out {
        let text = serde_json::to_string_pretty(&explained).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", text(&explained));
    }
    Ok(())
}

/// Reads `--token-file`: the token, without surrounding whitespace or a
/// `Bearer ` scheme.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = text.trim();
    let token = text
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("bearer "))
        .and_then(|_| text.get(7..))
        .unwrap_or(text);
    Ok(token.trim().to_string())
}

/// The explanation of one request over a policy (JSON, as `--json` prints it).
pub fn explain(policy_doc: &Value, request: &Request) -> Result<Value, String> {
    Prepared::new(policy_doc, request.namespace.as_deref())?.explain(request)
}

/// A policy made ready to explain many requests (`tollgate replay`): the
/// plugin's configuration is worked out, and the filter configured on the
/// in-memory host, once; each request then starts from the state the host
/// had right after configuring (no counts, no calls), as a fresh one would.
pub struct Prepared {
    config: String,
    plugin: Option<Value>,
    namespace: Option<String>,
    ready: std::cell::RefCell<Option<Ready>>,
}

/// The configured filter on its host, and the host's shared data then.
struct Ready {
    host: FakeHost,
    root: PipelineRoot,
    shared: std::collections::HashMap<String, (Vec<u8>, u32)>,
}

impl Ready {
    /// Back to the state right after configuring: what one request leaves
    /// (counts in shared data, counters, calls) is not seen by the next.
    fn reset(&self) {
        let host = &self.host;
        *host.shared.borrow_mut() = self.shared.clone();
        for (_, value) in host.counters.borrow_mut().iter_mut() {
            *value = 0;
        }
        host.calls.borrow_mut().clear();
        host.call_bodies.borrow_mut().clear();
        host.grpc_calls.borrow_mut().clear();
        host.requests.borrow_mut().clear();
        host.trace.borrow_mut().clear();
    }
}

impl Prepared {
    pub fn new(policy_doc: &Value, namespace: Option<&str>) -> Result<Prepared, String> {
        let (config, plugin) = match namespace {
            Some(namespace) => {
                let (config, plugin) = placed(policy_doc, namespace)?;
                (config.to_string(), Some(plugin))
            }
            None => (policy_doc.to_string(), None),
        };
        Ok(Prepared {
            config,
            plugin,
            namespace: namespace.map(str::to_string),
            ready: std::cell::RefCell::new(None),
        })
    }

    /// The explanation of one request (its `namespace` is the one prepared).
    pub fn explain(&self, request: &Request) -> Result<Value, String> {
        let now = request.now.unwrap_or_else(unix_now);
        let mut ready = self.ready.borrow_mut();
        if ready.is_none() {
            // Configured on the first request's clock, as a fresh host would be.
            *ready = Some(self.configure(now)?);
        }
        let ready = ready.as_ref().ok_or("the filters refuse this policy")?;
        ready.reset();
        explain_on(&ready.host, &ready.root, self.plugin.clone(), request, now)
    }

    fn configure(&self, now: u64) -> Result<Ready, String> {
        let host = FakeHost::new(tollgate_stages::FUSED_ROOT_ID, self.config.as_bytes());
        if let Some(namespace) = &self.namespace {
            // Istio's node metadata: the filter decides itself whether it stands aside.
            host.node
                .borrow_mut()
                .insert("NAMESPACE".into(), namespace.as_bytes().to_vec());
        }
        host.now_ms.set(now.saturating_mul(1000));
        // The fused filter's stages; `false` only makes every stage write its
        // decision record to filter state, which explain reads back.
        let mut root = PipelineRoot::new(tollgate_stages::FUSED_ROOT_ID, tollgate_stages::stages, false);
        if !root.configure(&host, self.config.as_bytes()) {
            return Err("the filters refuse this policy".to_string());
        }
        let shared = host.shared.borrow().clone();
        Ok(Ready { host, root, shared })
    }
}

fn explain_on(
    host: &FakeHost,
    root: &PipelineRoot,
    plugin: Option<Value>,
    request: &Request,
    now: u64,
) -> Result<Value, String> {
    host.skip_signatures.set(request.no_verify);
    host.now_ms.set(now.saturating_mul(1000));
    let pipeline = root.pipeline().ok_or("the filters refuse this policy")?;
    let policy = pipeline.policy.clone();
    let plugin = plugin.map(|mut p| {
        p["stands_aside"] = pipeline.stand_aside.is_some().into();
        p
    });
    let sent = request_headers(&policy, request)?;
    let pairs: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    host.begin(CONTEXT, &pairs);
    if let Some(address) = &request.source_address {
        host.set_attribute(CONTEXT, "source.address", address.as_bytes());
    }
    let mut notes = Vec::new();
    if request.no_verify {
        notes.push(
            "SIGNATURE NOT CHECKED (--no-verify): the token's claims are trusted as sent; \
             times, issuer and audience are still checked"
                .to_string(),
        );
    }
    let (flow, _request) = pipeline.on_request_headers(host, CONTEXT, true);
    let flow = answer_fetches(&pipeline, host, request, flow, &mut notes);
    let mut out = Map::new();
    if let Some(plugin) = plugin {
        out.insert("plugin".into(), plugin);
    }
    out.insert("request".into(), request_json(request, &sent, now));
    out.insert("route".into(), route_json(&policy, &sent));
    let outcome = host.request(CONTEXT);
    let stages = stages_json(&pipeline, &policy, &outcome.state, request, &sent);
    check_routes_agree(&out, &stages, &mut notes);
    let limits = limits::limits_json(
        &policy,
        chosen_route(&policy, &sent),
        &stages,
        &sent,
        request.source_address.as_deref(),
    );
    let refused = audit::refused(&out["route"], &stages);
    let audit = if pipeline.stand_aside.is_some() {
        json!({"audited": false, "why": "the plugin stands aside in this namespace"})
    } else {
        audit::audit_json(&policy, chosen_route(&policy, &sent), refused)
    };
    out.insert("stages".into(), Value::Array(stages));
    out.insert("answer".into(), answer_json(&outcome, flow));
    out.insert(
        "upstream".into(),
        upstream_json(&sent, &outcome.headers, outcome.reply.is_some()),
    );
    out.insert("filter_state".into(), filter_state_json(&policy, &outcome.state));
    out.insert("counters".into(), counters_json(host));
    out.insert("limits".into(), limits);
    out.insert("audit".into(), audit);
    out.insert("notes".into(), json!(notes));
    Ok(Value::Object(out))
}

/// The configuration of the plugin that runs in `namespace` once
/// rendered (the namespace's own, else the mesh-wide one), and what to say
/// of it.
fn placed(policy_doc: &Value, namespace: &str) -> Result<(Value, Value), String> {
    tollgate_core::policy::rollout::check_namespace(namespace).map_err(|why| format!("--namespace: {why}"))?;
    let all = crate::mesh::placements(policy_doc)?;
    let own = all.iter().find(|p| !p.mesh_wide && p.namespace == namespace);
    let place = own
        .or_else(|| all.iter().find(|p| p.mesh_wide))
        .ok_or("no plugin is rendered")?;
    let plugin = json!({
        "namespace": namespace,
        "runs": format!(
            "{}/tollgate ({})",
            place.namespace,
            if place.mesh_wide { "mesh-wide" } else { "the namespace's own" }
        ),
        "modes": crate::mesh::describe_modes(place.modes),
        "attaches_to": crate::mesh::attach_words(&place.attach),
    });
    Ok((place.config.clone(), plugin))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Pseudo-headers from the URL (a `host` header becomes `:authority`, as
/// Envoy's HTTP/1 codec makes it), the headers given, then the token where
/// the policy's first provider reads tokens first.
fn request_headers(policy: &Policy, request: &Request) -> Result<Vec<(String, String)>, String> {
    let (scheme, authority, path) = split_url(&request.url)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut authority = authority.map(str::to_string);
    let mut rest = Vec::new();
    for (name, value) in &request.headers {
        let name = name.trim().to_ascii_lowercase();
        if name == "host" || name == ":authority" {
            authority = Some(value.trim().to_string());
        } else {
            rest.push((name, value.trim().to_string()));
        }
    }
    let authority = authority.ok_or("the URL has no host: give http://HOST/PATH, or -H 'host: HOST'")?;
    headers.push((":method".into(), request.method.to_ascii_uppercase()));
    headers.push((":scheme".into(), scheme.to_string()));
    headers.push((":authority".into(), authority));
    headers.push((":path".into(), path.to_string()));
    headers.extend(rest);
    if let Some(token) = &request.token {
        place_token(policy, &mut headers, token);
    }
    Ok(headers)
}

/// (scheme, authority, path with query); the fragment is dropped as
/// clients drop it. The path is kept as written (no dot-segment removal):
/// normalizing it is the filters' work.
fn split_url(url: &str) -> Result<(&str, Option<&str>, &str), String> {
    let url = url.split('#').next().unwrap_or(url);
    if url.starts_with('/') {
        return Ok(("http", None, url));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not a URL: give http://HOST/PATH"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("'{url}': only http and https URLs"));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    let path = if path.is_empty() { "/" } else { path };
    if path.starts_with('?') {
        return Err(format!("'{url}': the path must start with '/'"));
    }
    Ok((scheme, Some(authority), path))
}

/// Puts the token where the first provider reads tokens first (by default
/// `authorization: Bearer`).
fn place_token(policy: &Policy, headers: &mut Vec<(String, String)>, token: &str) {
    let source = policy.jwt.providers.iter().flat_map(|p| p.sources.first()).next();
    match source {
        Some(TokenSource::Param(name)) => {
            if let Some((_, path)) = headers.iter_mut().find(|(k, _)| k == ":path") {
                let sep = if path.contains('?') { '&' } else { '?' };
                path.push_str(&format!("{sep}{name}={token}"));
            }
        }
        Some(TokenSource::Cookie(name)) => headers.push(("cookie".into(), format!("{name}={token}"))),
        Some(TokenSource::Header { name, prefix }) => headers.push((name.clone(), format!("{prefix}{token}"))),
        None => headers.push(("authorization".into(), format!("Bearer {token}"))),
    }
}

/// A request waiting for a provider's remote JWKS: the fetch the stage
/// starts on its tick is answered with `--jwks`, or fails as it would with
/// the IdP out of reach (and a note says the answer is not the live one).
/// A request waiting for the rate limit service gets an OK answer.
fn answer_fetches(
    pipeline: &Pipeline,
    host: &FakeHost,
    request: &Request,
    mut flow: Flow,
    notes: &mut Vec<String>,
) -> Flow {
    let mut answered = (0, 0);
    for _ in 0..MAX_FETCH_ROUNDS {
        if flow == Flow::Continue || host.request(CONTEXT).reply.is_some() {
            break;
        }
        let grpc = answer_rls(pipeline, host, &mut answered.1, notes);
        if !grpc && !answer_jwks(pipeline, host, request, &mut answered.0, notes) {
            break;
        }
        let request_now = host.request(CONTEXT);
        flow = if request_now.reply.is_none() && request_now.resumed > 0 {
            Flow::Continue
        } else {
            Flow::Pause
        };
    }
    flow
}

/// Answers the JWKS fetches started on a tick; `false` when there were none.
fn answer_jwks(
    pipeline: &Pipeline,
    host: &FakeHost,
    request: &Request,
    answered: &mut usize,
    notes: &mut Vec<String>,
) -> bool {
    pipeline.on_tick(host);
    let calls: Vec<(u32, String, String)> = host.calls.borrow().iter().skip(*answered).cloned().collect();
    for (token, cluster, path) in &calls {
        *answered += 1;
        let answer = match &request.jwks {
            Some(jwks) => (b"200".to_vec(), jwks.clone()),
            None => {
                notes.push(format!(
                    "the token cannot be verified offline: the policy fetches its JWKS \
                     (cluster '{cluster}', {path}); give them with --jwks FILE, or trust the \
                     claims with --no-verify. The answer below is the one given while those \
                     keys cannot be had, not a live sidecar's"
                ));
                (b"unreachable (offline)".to_vec(), Vec::new())
            }
        };
        let size = answer.1.len();
        *host.call_answer.borrow_mut() = answer;
        pipeline.on_http_call_response(host, *token, size);
    }
    !calls.is_empty()
}

/// `RateLimitResponse { overall_code: OK }`: what explain takes the rate
/// limit service to answer, as it cannot know the counts.
const RLS_OK: [u8; 2] = [0x08, 0x01];

/// Answers the rate limit service calls; `false` when there were none.
fn answer_rls(pipeline: &Pipeline, host: &FakeHost, answered: &mut usize, notes: &mut Vec<String>) -> bool {
    let calls: Vec<(u32, String)> = host
        .grpc_calls
        .borrow()
        .iter()
        .skip(*answered)
        .map(|c| (c.token, c.cluster.clone()))
        .collect();
    for (token, cluster) in &calls {
        *answered += 1;
        notes.push(format!(
            "global limits are counted by the rate limit service (cluster '{cluster}'): \
             offline, explain takes its answer to be OK, under every limit"
        ));
        *host.grpc_answer.borrow_mut() = RLS_OK.to_vec();
        pipeline.on_grpc_call_response(host, *token, 0, RLS_OK.len());
    }
    !calls.is_empty()
}

fn request_json(request: &Request, sent: &[(String, String)], now: u64) -> Value {
    json!({
        "method": request.method.to_ascii_uppercase(),
        "url": request.url,
        "headers": sent.iter().map(|(k, v)| json!([k, redact(k, v)])).collect::<Vec<_>>(),
        "now": now,
        "signature_checked": !request.no_verify,
    })
}

/// Tokens are long and secret: shown by their first characters only.
fn redact(name: &str, value: &str) -> String {
    if name == "authorization" && value.len() > 24 {
        let head: String = value.chars().take(20).collect();
        return format!("{head}...");
    }
    value.to_string()
}

/// The route and why, from the request view the filters read (the same
/// `RequestView::read`) and core's `route_explained`.
fn route_json(policy: &Policy, sent: &[(String, String)]) -> Value {
    let view = match view_of(policy, sent) {
        Ok(view) => view,
        Err(denial) => {
            return json!({
                "refused_before_routing": denial.denial().reason,
                "detail": denial.detail(),
            })
        }
    };
    let choice = policy.route_explained(&view.head());
    let (why, code, runner_up) = match &choice.why {
        RouteWhy::NoMatch => (
            "no route matched: the policy's defaults apply".to_string(),
            "no_match",
            None,
        ),
        RouteWhy::OnlyMatch => ("the only route that matched".to_string(), "only_match", None),
        RouteWhy::Beat { runner_up, step } => (
            format!("beat route '{runner_up}': {}", step.as_str()),
            step.code(),
            Some(runner_up.clone()),
        ),
    };
    json!({
        "name": choice.route.name,
        "why": why,
        "decided_by": code,
        "runner_up": runner_up,
        "method": view.method,
        "host": view.host,
        "normalized_path": view.path,
        "matched_path": choice.matched_path,
        "served_path": view.served_path.as_ref().map(|p| String::from_utf8_lossy(p).into_owned()),
        "jwt": {"requirement": format!("{:?}", choice.route.jwt.requirement).to_ascii_lowercase(),
                "mode": choice.route.jwt.mode.as_str()},
        "tenant": {"required": choice.route.tenant.required, "mode": choice.route.tenant.mode.as_str()},
    })
}

/// The route the filters give the request; `None` when it is refused
/// before routing.
fn chosen_route<'p>(policy: &'p Policy, sent: &[(String, String)]) -> Option<&'p tollgate_core::policy::Route> {
    let view = view_of(policy, sent).ok()?;
    Some(policy.route(&view.head()))
}

/// The request as the filters read it (`RequestView::read`).
fn view_of(policy: &Policy, sent: &[(String, String)]) -> Result<RequestView, tollgate_core::request::RequestDenial> {
    let get = |name: &str| sent.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_bytes());
    RequestView::read(
        get(":method").unwrap_or_default(),
        get(":path"),
        get(":authority"),
        policy,
    )
}

/// Each deciding stage of the pipeline: its decision record, or that it
/// did not run (an earlier stage answered the request, or it was refused
/// before any).
fn stages_json(
    pipeline: &Pipeline,
    policy: &Policy,
    state: &std::collections::HashMap<String, Vec<u8>>,
    request: &Request,
    sent: &[(String, String)],
) -> Vec<Value> {
    pipeline
        .stage_names()
        .into_iter()
        // Audit decides nothing and records in the log phase: its own part says what.
        .filter(|name| tollgate_core::stage::by_key(name).is_some_and(|s| s.route_mode.is_some()))
        .map(|name| {
            let record = state
                .get(&format!("tollgate.decision.{name}"))
                .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok());
            let Some(mut record) = record else {
                return json!({"stage": name, "ran": false});
            };
            if let Some(fields) = record.as_object_mut() {
                fields.remove("filter");
                fields.insert("stage".into(), json!(name));
                fields.insert("ran".into(), json!(true));
                if let Some(reason) = fields.get("reason").and_then(Value::as_str) {
                    let detail = denial_detail(name, reason);
                    fields.extend(detail);
                }
                if name == "jwt" {
                    fields.insert("claims".into(), jwt_claims(policy, request, sent));
                }
            }
            record
        })
        .collect()
}

/// Status, message and RFC 6750 error of a denial by its reason, from the
/// stage's own table (the registry's).
fn denial_detail(stage: &str, reason: &str) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(d) = tollgate_core::stage::denial(stage, reason) {
        out.insert("message".into(), json!(d.message));
        if let Some(error) = d.bearer_error {
            out.insert("rfc6750_error".into(), json!(error));
        }
    }
    out
}

/// The claims the jwt stage looks at, as the token carries them: issuer,
/// audience, times, subject, the tenant and roles claims and every claim a
/// rule of the route tests. Shown for reading only: the decision is the
/// stage's.
fn jwt_claims(policy: &Policy, request: &Request, sent: &[(String, String)]) -> Value {
    let Some(token) = &request.token else {
        return Value::Null;
    };
    let Ok(parsed) = tollgate_core::jwt::token::parse(token) else {
        return json!({"unreadable": "the token is not a JWS this filter reads"});
    };
    let iss = parsed.claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    let provider = policy.jwt.providers.iter().find(|p| p.issuer == iss);
    let mut names: Vec<String> = ["iss", "sub", "aud", "exp", "nbf", "iat"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(p) = provider {
        names.extend(p.tenant_claim.clone());
        names.push(p.roles_claim.clone());
        names.extend(p.claim_to_headers.iter().map(|(claim, _)| claim.clone()));
    }
    let get = |name: &str| sent.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_bytes());
    let route = RequestView::read(
        get(":method").unwrap_or_default(),
        get(":path"),
        get(":authority"),
        policy,
    )
    .ok()
    .map(|view| {
        // Every method the application may act on (`_method`, override
        // headers the policy leaves in), as the jwt stage judges rules.
        let headers: tollgate_core::header_map::HeaderMap =
            sent.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
        let target = get(":path").unwrap_or_default();
        let methods = tollgate_core::request::acted_methods(&view.method, target, &headers, &policy.strip_headers);
        (methods, policy.route(&view.head()).clone())
    });
    let mut rules = Vec::new();
    if let Some((acted, route)) = &route {
        for rule in &route.jwt.rules {
            names.push(rule.claim.clone());
            let test = match &rule.test {
                ClaimTest::Equals(v) => format!("equals {v}"),
                ClaimTest::Contains(v) => format!("contains {v}"),
                ClaimTest::AnyOf(v) => format!("any of {}", v.join(", ")),
            };
            let applies = claims::applies_any(rule, acted);
            let methods = if rule.methods.is_empty() {
                "every method".to_string()
            } else {
                rule.methods.join(", ")
            };
            let holds = claims::check_rules_any(std::slice::from_ref(rule), acted, &parsed.claims).is_ok();
            rules.push(json!({
                "claim": rule.claim, "test": test, "methods": methods,
                "applies": applies, "holds": applies && holds,
            }));
        }
    }
    let mut used = Map::new();
    for name in names {
        if !used.contains_key(&name) {
            let value = claims::lookup(&parsed.claims, &name).cloned().unwrap_or(Value::Null);
            used.insert(name, value);
        }
    }
    json!({
        "provider": provider.map(|p| p.name.clone()),
        "alg": format!("{:?}", parsed.alg),
        "kid": parsed.kid,
        "values": used,
        "rules": rules,
    })
}

/// The stages' records name the route they decided on: it must be the one
/// explained.
fn check_routes_agree(out: &Map<String, Value>, stages: &[Value], notes: &mut Vec<String>) {
    let explained = out.get("route").and_then(|r| r.get("name")).and_then(Value::as_str);
    for stage in stages {
        let decided = stage.get("route").and_then(Value::as_str);
        if let (Some(decided), Some(explained)) = (decided, explained) {
            if decided != explained {
                notes.push(format!(
                    "internal disagreement: stage {} decided on route '{decided}', explained '{explained}'",
                    stage["stage"]
                ));
            }
        }
    }
}

fn answer_json(outcome: &tollgate_host::fake::FakeRequest, flow: Flow) -> Value {
    match &outcome.reply {
        Some(reply) => {
            let body = String::from_utf8_lossy(&reply.body).into_owned();
            let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            json!({
                "kind": "local_reply",
                "status": reply.status,
                "reason": parsed.get("reason"),
                "headers": reply.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "body": body,
            })
        }
        None if flow == Flow::Continue => json!({"kind": "forwarded"}),
        None => json!({"kind": "waiting", "detail": "the request still waits (for signing keys)"}),
    }
}

/// What the application receives, against what the client sent.
fn upstream_json(sent: &[(String, String)], after: &[(String, Vec<u8>)], replied: bool) -> Value {
    if replied {
        return json!({"receives": Value::Null, "added": [], "removed": [], "changed": []});
    }
    let after: Vec<(String, String)> = after
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let values = |list: &[(String, String)], name: &str| -> Vec<String> {
        list.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    };
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in sent.iter().chain(after.iter()) {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for name in names {
        let (before, now) = (values(sent, name), values(&after, name));
        match (before.is_empty(), now.is_empty()) {
            (true, false) => added.push(json!([name, now.join(", ")])),
            (false, true) => removed.push(json!([name, redact(name, &before.join(", "))])),
            _ if before != now => changed.push(json!([name, before.join(", "), now.join(", ")])),
            _ => {}
        }
    }
    json!({
        "receives": after.iter().map(|(k, v)| json!([k, redact(k, v)])).collect::<Vec<_>>(),
        "added": added,
        "removed": removed,
        "changed": changed,
    })
}

/// Filter-state writes other filters and audit read, when the policy
/// writes them (`filter_state`).
fn filter_state_json(policy: &Policy, state: &std::collections::HashMap<String, Vec<u8>>) -> Value {
    if !policy.filter_state {
        return json!({"written": false});
    }
    let mut entries: Vec<(&String, String)> = state
        .iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned()))
        .collect();
    entries.sort();
    let values: Map<String, Value> = entries.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({"written": true, "values": values})
}

/// Counters the request would bump (names as the filter defines them;
/// Istio/Envoy show them with their own prefix).
fn counters_json(host: &FakeHost) -> Value {
    let mut bumped: Vec<(String, u64)> = host.counters.borrow().iter().filter(|(_, v)| *v > 0).cloned().collect();
    bumped.sort();
    json!(bumped.into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>())
}

/// The explanation as text.
pub fn text(e: &Value) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    for note in e["notes"].as_array().into_iter().flatten() {
        if let Some(note) = note.as_str() {
            line(format!("!! {note}"));
        }
    }
    let plugin = &e["plugin"];
    if let Some(runs) = plugin["runs"].as_str() {
        let what = if plugin["stands_aside"] == true {
            "stands aside (skip_namespaces): no Tollgate stage runs here".to_string()
        } else {
            plugin["modes"].as_str().unwrap_or_default().to_string()
        };
        line(format!(
            "plugin in namespace {}: {runs} on {}, {what}",
            plugin["namespace"].as_str().unwrap_or_default(),
            plugin["attaches_to"].as_str().unwrap_or_default()
        ));
    }
    let req = &e["request"];
    line(format!(
        "request: {} {}",
        req["method"].as_str().unwrap_or_default(),
        req["url"].as_str().unwrap_or_default()
    ));
    let route = &e["route"];
    if let Some(reason) = route["refused_before_routing"].as_str() {
        line(format!(
            "route: none; refused before routing: {reason} ({})",
            route["detail"].as_str().unwrap_or_default()
        ));
    } else {
        line(format!(
            "route: {} ({})",
            route["name"].as_str().unwrap_or_default(),
            route["why"].as_str().unwrap_or_default()
        ));
        line(format!(
            "  normalized path: {}; matched on: {}{}",
            route["normalized_path"].as_str().unwrap_or_default(),
            route["matched_path"].as_str().unwrap_or_default(),
            route["served_path"]
                .as_str()
                .map(|p| format!("; :path rewritten to {p}"))
                .unwrap_or_default()
        ));
        line(format!(
            "  jwt: {} ({}); tenant: {} ({})",
            route["jwt"]["requirement"].as_str().unwrap_or_default(),
            route["jwt"]["mode"].as_str().unwrap_or_default(),
            if route["tenant"]["required"] == true {
                "required"
            } else {
                "optional"
            },
            route["tenant"]["mode"].as_str().unwrap_or_default(),
        ));
    }
    for stage in e["stages"].as_array().into_iter().flatten() {
        line(stage_text(stage));
        if let Some(values) = stage["claims"]["values"].as_object() {
            let shown: Vec<String> = values
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line(format!("  claims used: {}", shown.join(" ")));
            for rule in stage["claims"]["rules"].as_array().into_iter().flatten() {
                let state = match (rule["applies"] == true, rule["holds"] == true) {
                    (false, _) => "does not apply",
                    (true, true) => "holds",
                    (true, false) => "FAILS",
                };
                line(format!(
                    "  rule: {} {} ({}): {state}",
                    rule["claim"].as_str().unwrap_or_default(),
                    rule["test"].as_str().unwrap_or_default(),
                    rule["methods"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    let answer = &e["answer"];
    match answer["kind"].as_str() {
        Some("local_reply") => {
            line(format!(
                "answer: {} local reply, reason {}",
                answer["status"],
                answer["reason"].as_str().unwrap_or("-")
            ));
            for h in answer["headers"].as_array().into_iter().flatten() {
                line(format!(
                    "  {}: {}",
                    h[0].as_str().unwrap_or_default(),
                    h[1].as_str().unwrap_or_default()
                ));
            }
            line(format!("  body: {}", answer["body"].as_str().unwrap_or_default()));
        }
        Some("forwarded") => line("answer: forwarded to the application".to_string()),
        _ => line(format!("answer: {}", answer["detail"].as_str().unwrap_or("unknown"))),
    }
    let up = &e["upstream"];
    if up["receives"].is_null() {
        line("application: receives nothing (answered locally)".to_string());
    } else {
        line("application headers:".to_string());
        let pairs = |key: &str| up[key].as_array().cloned().unwrap_or_default();
        for h in pairs("added") {
            line(format!(
                "  + {}: {}",
                h[0].as_str().unwrap_or_default(),
                h[1].as_str().unwrap_or_default()
            ));
        }
        for h in pairs("changed") {
            line(format!(
                "  ~ {}: {} -> {}",
                h[0].as_str().unwrap_or_default(),
                h[1].as_str().unwrap_or_default(),
                h[2].as_str().unwrap_or_default()
            ));
        }
        for h in pairs("removed") {
            line(format!(
                "  - {} (was {})",
                h[0].as_str().unwrap_or_default(),
                h[1].as_str().unwrap_or_default()
            ));
        }
        if pairs("added").is_empty() && pairs("changed").is_empty() && pairs("removed").is_empty() {
            line("  (as sent)".to_string());
        }
    }
    if e["filter_state"]["written"] == true {
        line("filter state:".to_string());
        for (k, v) in e["filter_state"]["values"].as_object().into_iter().flatten() {
            line(format!("  {k} = {}", v.as_str().unwrap_or_default()));
        }
    } else {
        line("filter state: not written (filter_state: false)".to_string());
    }
    line("counters:".to_string());
    for c in e["counters"].as_array().into_iter().flatten() {
        line(format!("  {} +{}", c[0].as_str().unwrap_or_default(), c[1]));
    }
    for limit_line in limits::text(&e["limits"]) {
        line(limit_line);
    }
    for audit_line in audit::text(&e["audit"]) {
        line(audit_line);
    }
    if e["request"]["signature_checked"] == false {
        line("!! SIGNATURE NOT CHECKED (--no-verify)".to_string());
    }
    out
}

fn stage_text(stage: &Value) -> String {
    let name = stage["stage"].as_str().unwrap_or_default();
    if stage["ran"] != true {
        return format!("stage {name}: did not run (the request was answered before it)");
    }
    let outcome = stage["outcome"].as_str().unwrap_or_default();
    let mode = stage["mode"].as_str().unwrap_or_default();
    let mut s = format!("stage {name}: {outcome} ({mode})");
    if let Some(reason) = stage["reason"].as_str() {
        s.push_str(&format!(", reason {reason}"));
        if let Some(message) = stage["message"].as_str() {
            s.push_str(&format!(": {message}"));
        }
        if let Some(error) = stage["rfc6750_error"].as_str() {
            s.push_str(&format!(" [RFC 6750 error={error}]"));
        }
    }
    for key in ["provider", "sub", "tenant", "source"] {
        if let Some(value) = stage[key].as_str() {
            s.push_str(&format!("; {key} {value}"));
        }
    }
    s
}
