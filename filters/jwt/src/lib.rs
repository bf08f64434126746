//! The jwt filter: reads the request, asks `tollgate_core::jwt::decide`,
//! applies the answer. JWKS are fetched by the root context (one per worker
//! VM) on its tick; a request that needs keys being fetched waits for them,
//! and the root resumes it when the fetch ends.

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tollgate_core::decision::Action as Verdict;
use tollgate_core::headers;
use tollgate_core::jwt::jwk::KeySet;
use tollgate_core::jwt::jwks::{JwksState, Tick};
use tollgate_core::jwt::verify::HostVerifier;
use tollgate_core::jwt::{self, der, kat, CacheUse, Caches, JwtDenial, JwtRequest, KeyStore, Keys};
use tollgate_core::policy::Policy;
use tollgate_host as host;

pub const ROOT_ID: &str = "tollgate.jwt";
/// Most requests waiting for a JWKS fetch at once, per worker.
const MAX_WAITERS: usize = 4096;
const BUSY_TICK: Duration = Duration::from_millis(100);
const IDLE_TICK: Duration = Duration::from_millis(1000);

#[derive(Default)]
pub struct JwtRoot {
    shared: Option<Rc<Shared>>,
}

/// Per-worker state shared by the root and the HTTP contexts.
struct Shared {
    policy: Rc<Policy>,
    counters: host::Counters,
    host: EnvoyVerifier,
    caches: RefCell<Caches>,
    jwks: RefCell<Vec<JwksState>>,
    waiters: RefCell<Vec<(u32, usize)>>,
    calls: RefCell<Vec<(u32, usize)>>,
    now: Cell<u64>,
    tick: Cell<Duration>,
}

/// Envoy's `verify_signature` foreign function (BoringSSL, native code).
struct EnvoyVerifier {
    enabled: Cell<bool>,
    /// Signatures the host checked, counted into `signature_host`.
    checked: Cell<u64>,
}

impl HostVerifier for EnvoyVerifier {
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        if !self.enabled.get() {
            return None;
        }
        let args = der::verify_arguments(hash, spki, signature, text);
        let answer = match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            Ok(Some(result)) => Some(der::verify_result(&result)),
            Ok(None) => Some(false),
            // Not there, or it refused the key: let the Rust verifier decide.
            Err(_) => None,
        };
        if answer.is_some() {
            self.checked.set(self.checked.get() + 1);
        }
        answer
    }
}

impl KeyStore for Shared {
    fn keys(&self, provider: usize) -> Keys {
        match (self.remote(provider), self.jwks.borrow().get(provider)) {
            (Some(remote), Some(state)) => state.keys(remote, self.now.get()),
            _ => Keys::Unavailable,
        }
    }
}

impl Shared {
    fn remote(&self, provider: usize) -> Option<&jwt::config::RemoteJwks> {
        self.policy.jwt.providers.get(provider)?.remote.as_ref()
    }

    fn has_remote(&self) -> bool {
        self.policy.jwt.providers.iter().any(|p| p.remote.is_some())
    }

    /// Starts due fetches; called on every tick.
    fn tick(&self) {
        let now_ms = host::now_millis();
        let mut busy = false;
        for (p, provider) in self.policy.jwt.providers.iter().enumerate() {
            let Some(remote) = &provider.remote else { continue };
            let Some(tick) = self.jwks.borrow().get(p).map(|s| s.tick(remote, now_ms)) else {
                continue;
            };
            match tick {
                Tick::Fetch => {
                    busy = true;
                    self.start_fetch(p, now_ms);
                }
                Tick::GiveUp(token) => {
                    busy = true;
                    take_call(&mut self.calls.borrow_mut(), token);
                    self.fetch_failed(p, "no answer");
                    self.wake(p);
                }
                Tick::Idle { busy: b } => busy |= b,
            }
        }
        self.set_tick(if busy { BUSY_TICK } else { IDLE_TICK });
    }

    fn set_tick(&self, period: Duration) {
        if self.tick.get() != period && hostcalls::set_tick_period(period).is_ok() {
            self.tick.set(period);
        }
    }

    fn start_fetch(&self, p: usize, now_ms: u64) {
        let Some(remote) = self.remote(p) else { return };
        let headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(remote.timeout_ms);
        match hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.calls.borrow_mut().push((token, p));
                if let Some(state) = self.jwks.borrow_mut().get_mut(p) {
                    state.started(token, now_ms);
                }
            }
            Err(status) => {
                // An unknown cluster fails here, at once: answer whoever waits.
                self.fetch_failed(p, &format!("could not call cluster '{}': {status:?}", remote.cluster));
                self.wake(p);
            }
        }
    }

    fn fetch_done(&self, token: u32, body_size: usize) {
        let Some(p) = take_call(&mut self.calls.borrow_mut(), token) else {
            return;
        };
        let Some(remote) = self.remote(p) else { return };
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default();
        let result = if status != b"200" {
            Err(format!("status {}", String::from_utf8_lossy(&status)))
        } else if body_size > remote.max_body_bytes {
            Err(format!("body of {body_size} bytes is over {}", remote.max_body_bytes))
        } else {
            let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            KeySet::parse(&body)
        };
        match result {
            Ok((set, skipped)) => {
                let now = host::now_seconds();
                info!(
                    "{ROOT_ID}: JWKS for provider '{}' fetched: {} keys{}",
                    self.provider_name(p),
                    set.keys.len(),
                    if skipped.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", skipped {}",
                            skipped.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                        )
                    }
                );
                if let Some(state) = self.jwks.borrow_mut().get_mut(p) {
                    state.fetched(set, now);
                }
                self.counters.increment("tollgate.jwt.jwks_fetch_ok");
            }
            Err(why) => self.fetch_failed(p, &why),
        }
        self.wake(p);
    }

    fn fetch_failed(&self, p: usize, why: &str) {
        let had_keys = match self.jwks.borrow_mut().get_mut(p) {
            Some(state) => {
                state.failed(host::now_millis());
                state.has_keys()
            }
            None => return,
        };
        let kept = if had_keys {
            "keeping the last good keys"
        } else {
            "no keys yet"
        };
        warn!(
            "{ROOT_ID}: JWKS fetch for provider '{}' failed: {why}; {kept}",
            self.provider_name(p)
        );
        self.counters.increment("tollgate.jwt.jwks_fetch_failed");
    }

    fn provider_name(&self, p: usize) -> &str {
        self.policy.jwt.providers.get(p).map_or("?", |pr| pr.name.as_str())
    }

    /// Whether a request should wait for a fetch of provider `p`'s keys.
    fn wait_for(&self, decision: &jwt::JwtDecision<'_>, now: u64) -> Option<usize> {
        let unavailable = matches!(decision.verdict, Err(JwtDenial::JwksUnavailable));
        if (!unavailable && decision.refetch.is_none()) || self.waiters.borrow().len() >= MAX_WAITERS {
            return None;
        }
        let mut jwks = self.jwks.borrow_mut();
        if unavailable {
            let p = decision.provider?;
            return jwks.get_mut(p)?.wait_for_keys(host::now_millis()).then_some(p);
        }
        let p = decision.refetch?;
        if !jwks.get_mut(p)?.wait_for_kid(self.remote(p)?, now) {
            return None;
        }
        self.counters.increment("tollgate.jwt.jwks_refetch_unknown_kid");
        Some(p)
    }

    /// Answers every waiting request (the policy is being replaced).
    fn wake_all(&self) {
        for p in 0..self.policy.jwt.providers.len() {
            self.wake(p);
        }
    }

    /// Resumes the requests that waited for provider `p`'s keys.
    fn wake(&self, p: usize) {
        let waiting: Vec<u32> = {
            let mut waiters = self.waiters.borrow_mut();
            let (now, later): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|(_, wp)| *wp == p);
            *waiters = later;
            now.into_iter().map(|(id, _)| id).collect()
        };
        for context_id in waiting {
            // A request whose client went away is no longer there.
            if hostcalls::set_effective_context(context_id).is_ok() {
                process(self, context_id, Stage::Resumed);
            }
        }
    }
}

fn take_call(calls: &mut Vec<(u32, usize)>, token: u32) -> Option<usize> {
    let i = calls.iter().position(|(t, _)| *t == token)?;
    Some(calls.swap_remove(i).1)
}

impl Context for JwtRoot {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(shared) = &self.shared {
            shared.fetch_done(token, body_size);
        }
    }
}

impl RootContext for JwtRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let policy = match Policy::from_json(&host::plugin_config(size)) {
            Ok(policy) => Rc::new(policy),
            Err(errors) => {
                error!("{ROOT_ID} rejected its configuration: {errors}");
                return false;
            }
        };
        let host = EnvoyVerifier {
            enabled: Cell::new(true),
            checked: Cell::new(0),
        };
        host.enabled
            .set(policy.jwt.use_host_verifier && kat::host_passes(&host));
        info!(
            "{ROOT_ID} configured: {} providers; host verify_signature {}",
            policy.jwt.providers.len(),
            match (host.enabled.get(), policy.jwt.use_host_verifier) {
                (true, _) => "in use for RS256/384/512, ES256/384",
                (false, true) => "not available: Rust only",
                (false, false) => "turned off: Rust only",
            }
        );
        let shared = Shared {
            counters: host::Counters::define(&jwt::metric_names()),
            caches: RefCell::new(Caches::new(&policy)),
            jwks: RefCell::new(vec![JwksState::default(); policy.jwt.providers.len()]),
            waiters: RefCell::new(Vec::new()),
            calls: RefCell::new(Vec::new()),
            now: Cell::new(0),
            tick: Cell::new(Duration::ZERO),
            host,
            policy,
        };
        if shared.has_remote() {
            shared.set_tick(BUSY_TICK);
        }
        if let Some(old) = self.shared.replace(Rc::new(shared)) {
            old.wake_all();
        }
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            shared.tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(JwtHttp {
            context_id,
            shared: self.shared.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct JwtHttp {
    context_id: u32,
    shared: Option<Rc<Shared>>,
}

impl Context for JwtHttp {}

impl HttpContext for JwtHttp {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        match &self.shared {
            Some(shared) => process(shared, self.context_id, Stage::First),
            None => host::reply_unconfigured(self.context_id),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// From `on_http_request_headers`: may wait for keys.
    First,
    /// Woken by the root after a fetch: decides now, and resumes.
    Resumed,
}

fn process(shared: &Shared, context_id: u32, stage: Stage) -> Action {
    let policy = &shared.policy;
    // Refusals here are final, also for a request resumed after a wait.
    let (headers, view) = match host::read_request(context_id, "jwt", policy, &shared.counters) {
        Ok(read) => read,
        Err(action) => return action,
    };
    let now = host::now_seconds();
    shared.now.set(now);
    let request = JwtRequest {
        head: view.head(),
        // The served `:path`: a query-token strip edits the rewritten path.
        raw_path: view.target(host::first(&headers, ":path").unwrap_or_default()),
        headers: &headers,
        now,
    };
    let decision = {
        let mut caches = shared.caches.borrow_mut();
        jwt::decide(policy, &request, shared, &shared.host, &mut caches)
    };
    if stage == Stage::First {
        if let Some(p) = shared.wait_for(&decision, now) {
            shared.waiters.borrow_mut().push((context_id, p));
            shared.set_tick(BUSY_TICK);
            debug!(
                "#{context_id} waits for the JWKS of provider '{}'",
                shared.provider_name(p)
            );
            return Action::Pause;
        }
    }
    shared.counters.increment(&decision.metric());
    if shared.host.checked.replace(0) > 0 {
        shared.counters.increment("tollgate.jwt.signature_host");
    }
    match decision.cache {
        CacheUse::Hit => shared.counters.increment("tollgate.jwt.cache_hit"),
        CacheUse::Miss => shared.counters.increment("tollgate.jwt.cache_miss"),
        CacheUse::None => {}
    }
    if decision.stale_keys {
        shared.counters.increment("tollgate.jwt.jwks_stale_in_use");
    }
    for (key, value) in decision.properties() {
        host::set_property(context_id, key, &value);
    }
    // A refused request ends here: its edits would be hostcalls for nothing.
    if !matches!(decision.action(), Verdict::Deny(_)) {
        let edits = decision.header_edits(policy, &request);
        let edits: Vec<(&str, Option<&str>)> = edits.iter().map(|(k, v)| (*k, v.as_deref())).collect();
        host::edit_request_headers(context_id, &edits);
        host::edit_request_headers(context_id, &headers::strip_removals(&policy.strip_headers, &headers));
    }
    let go_on = || {
        if stage == Stage::Resumed {
            let _ = hostcalls::resume_http_request();
        }
        Action::Continue
    };
    match decision.action() {
        Verdict::Allow => go_on(),
        Verdict::ShadowDeny(denial) => {
            info!(
                "#{context_id} shadow: would deny {} on route {}",
                denial.reason, decision.route.name
            );
            go_on()
        }
        Verdict::Deny(denial) => {
            debug!("#{context_id} deny {} on route {}", denial.reason, decision.route.name);
            let reply = denial.reply(host::first(&headers, "x-request-id"), &policy.realm);
            host::send_reply(context_id, &reply)
        }
    }
}
