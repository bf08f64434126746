//! The jwt stage: reads the request, asks `tollgate_core::jwt::decide`,
//! applies the answer. JWKS are fetched by the stage (one per worker VM)
//! on its tick; a request that needs keys being fetched waits for them,
//! and the stage hands it back to the pipeline when the fetch ends.

use log::{debug, info, warn};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tollgate_core::decision::Action as Verdict;
use tollgate_core::jwt::jwk::KeySet;
use tollgate_core::jwt::jwks::{JwksState, Tick};
use tollgate_core::jwt::verify::HostVerifier;
use tollgate_core::jwt::{self, der, kat, CacheUse, Caches, Counter, JwtDenial, JwtRequest, KeyStore, Keys};
use tollgate_core::policy::Policy;
use tollgate_host::{
    reply, Counters, Gauges, Host, JwtFacts, Publish, RequestContext, Stage, Step, Verdict as StageVerdict,
};

const STAGE: &str = "jwt";

/// The root id this stage runs under alone, for log lines.
fn root_id() -> &'static str {
    tollgate_core::stage::StageName::Jwt.spec().root_id
}
/// Most requests waiting for a JWKS fetch at once, per worker.
const MAX_WAITERS: usize = 4096;
const BUSY_TICK: Duration = Duration::from_millis(100);
const IDLE_TICK: Duration = Duration::from_millis(1000);

/// Per-worker state: policy, caches, key sets and the requests waiting.
pub struct JwtStage {
    policy: Rc<Policy>,
    counters: Counters,
    /// Cache sizes (`jwt::CACHE_GAUGES`), set after a miss: the bounds
    /// can be watched in Envoy's stats.
    gauges: Gauges,
    /// Envoy's `verify_signature` passed its known-answer test.
    host_verifier: bool,
    caches: RefCell<Caches>,
    jwks: RefCell<Vec<JwksState>>,
    waiters: RefCell<Vec<(u32, usize)>>,
    calls: RefCell<Vec<(u32, usize)>>,
    now: Cell<u64>,
    tick: Cell<Duration>,
}

/// Envoy's `verify_signature` foreign function (BoringSSL, native code).
struct EnvoyVerifier<'h> {
    host: &'h dyn Host,
    enabled: bool,
    /// Signatures the host checked, counted into `signature_host`.
    checked: Cell<u64>,
    /// `Host::skips_signatures`: never for Envoy.
    skip: bool,
}

impl HostVerifier for EnvoyVerifier<'_> {
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        if !self.enabled {
            return None;
        }
        let args = der::verify_arguments(hash, spki, signature, text);
        let answer = match self.host.call_foreign_function("verify_signature", &args) {
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

    fn skips_signatures(&self) -> bool {
        self.skip
    }
}

impl JwtStage {
    pub fn new(policy: &Rc<Policy>, host: &dyn Host) -> JwtStage {
        let probe = EnvoyVerifier {
            host,
            enabled: true,
            checked: Cell::new(0),
            skip: false,
        };
        let host_verifier = policy.jwt.use_host_verifier && kat::host_passes(&probe);
        info!(
            "{}: {} providers; host verify_signature {}",
            root_id(),
            policy.jwt.providers.len(),
            match (host_verifier, policy.jwt.use_host_verifier) {
                (true, _) => "in use for RS256/384/512, ES256/384",
                (false, true) => "not available: Rust only",
                (false, false) => "turned off: Rust only",
            }
        );
        let stage = JwtStage {
            counters: Counters::define(host, &jwt::metric_names()),
            gauges: Gauges::define(host, &jwt::CACHE_GAUGES),
            caches: RefCell::new(Caches::new(policy)),
            jwks: RefCell::new(vec![JwksState::default(); policy.jwt.providers.len()]),
            waiters: RefCell::new(Vec::new()),
            calls: RefCell::new(Vec::new()),
            now: Cell::new(0),
            tick: Cell::new(Duration::ZERO),
            host_verifier,
            policy: policy.clone(),
        };
        if stage.has_remote() {
            stage.tick.set(BUSY_TICK);
        }
        stage
    }

    fn count(&self, host: &dyn Host, counter: Counter) {
        self.counters.add(host, counter.index());
    }
}

impl KeyStore for JwtStage {
    fn keys(&self, provider: usize) -> Keys {
        match (self.remote(provider), self.jwks.borrow().get(provider)) {
            (Some(remote), Some(state)) => state.keys(remote, self.now.get()),
            _ => Keys::Unavailable,
        }
    }
}

impl JwtStage {
    fn remote(&self, provider: usize) -> Option<&jwt::config::RemoteJwks> {
        self.policy.jwt.providers.get(provider)?.remote.as_ref()
    }

    fn has_remote(&self) -> bool {
        self.policy.jwt.providers.iter().any(|p| p.remote.is_some())
    }

    /// Starts due fetches; the requests to run again (fetches given up).
    fn tick(&self, host: &dyn Host) -> Vec<u32> {
        let now_ms = host.now_millis();
        let mut busy = false;
        let mut woken = Vec::new();
        for (p, provider) in self.policy.jwt.providers.iter().enumerate() {
            let Some(remote) = &provider.remote else { continue };
            let Some(tick) = self.jwks.borrow().get(p).map(|s| s.tick(remote, now_ms)) else {
                continue;
            };
            match tick {
                Tick::Fetch => {
                    busy = true;
                    woken.extend(self.start_fetch(host, p, now_ms));
                }
                Tick::GiveUp(token) => {
                    busy = true;
                    take_call(&mut self.calls.borrow_mut(), token);
                    self.fetch_failed(host, p, "no answer");
                    woken.extend(self.wake(p));
                }
                Tick::Idle { busy: b } => busy |= b,
            }
        }
        self.tick.set(if busy { BUSY_TICK } else { IDLE_TICK });
        woken
    }

    /// Starts a fetch; a call that fails at once wakes whoever waits.
    fn start_fetch(&self, host: &dyn Host, p: usize, now_ms: u64) -> Vec<u32> {
        let Some(remote) = self.remote(p) else {
            return Vec::new();
        };
        let headers = [
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(remote.timeout_ms);
        match host.dispatch_http_call(&remote.cluster, &headers, None, timeout) {
            Ok(token) => {
                self.calls.borrow_mut().push((token, p));
                if let Some(state) = self.jwks.borrow_mut().get_mut(p) {
                    state.started(token, now_ms);
                }
                Vec::new()
            }
            Err(e) => {
                // An unknown cluster fails here, at once.
                let why = format!("could not call cluster '{}': {}", remote.cluster, e.0);
                self.fetch_failed(host, p, &why);
                self.wake(p)
            }
        }
    }

    fn fetch_done(&self, host: &dyn Host, token: u32, body_size: usize) -> Vec<u32> {
        let Some(p) = take_call(&mut self.calls.borrow_mut(), token) else {
            return Vec::new();
        };
        let Some(remote) = self.remote(p) else {
            return Vec::new();
        };
        let status = host.http_call_status();
        let result = if status != b"200" {
            Err(format!("status {}", String::from_utf8_lossy(&status)))
        } else if body_size > remote.max_body_bytes {
            Err(format!("body of {body_size} bytes is over {}", remote.max_body_bytes))
        } else {
            KeySet::parse(&host.http_call_body(body_size))
        };
        match result {
            Ok((set, skipped)) => {
                info!(
                    "{}: JWKS for provider '{}' fetched: {} keys{}",
                    root_id(),
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
                    state.fetched(set, host.now_millis() / 1000);
                }
                self.count(host, Counter::JwksFetchOk);
            }
            Err(why) => self.fetch_failed(host, p, &why),
        }
        self.wake(p)
    }

    fn fetch_failed(&self, host: &dyn Host, p: usize, why: &str) {
        let had_keys = match self.jwks.borrow_mut().get_mut(p) {
            Some(state) => {
                state.failed(host.now_millis(), host.random());
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
            "{}: JWKS fetch for provider '{}' failed: {why}; {kept}",
            root_id(),
            self.provider_name(p)
        );
        self.count(host, Counter::JwksFetchFailed);
    }

    fn provider_name(&self, p: usize) -> &str {
        self.policy.jwt.providers.get(p).map_or("?", |pr| pr.name.as_str())
    }

    /// Whether a request should wait for a fetch of provider `p`'s keys.
    fn wait_for(&self, host: &dyn Host, decision: &jwt::JwtDecision<'_>, now: u64) -> Option<usize> {
        let unavailable = matches!(decision.verdict, Err(JwtDenial::JwksUnavailable));
        if (!unavailable && decision.refetch.is_none()) || self.waiters.borrow().len() >= MAX_WAITERS {
            return None;
        }
        let mut jwks = self.jwks.borrow_mut();
        if unavailable {
            let p = decision.provider?;
            return jwks.get_mut(p)?.wait_for_keys(host.now_millis()).then_some(p);
        }
        let p = decision.refetch?;
        if !jwks.get_mut(p)?.wait_for_kid(self.remote(p)?, now) {
            return None;
        }
        self.count(host, Counter::JwksRefetchUnknownKid);
        Some(p)
    }

    /// The requests that waited for provider `p`'s keys, removed.
    fn wake(&self, p: usize) -> Vec<u32> {
        let mut waiters = self.waiters.borrow_mut();
        let (now, later): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|(_, wp)| *wp == p);
        *waiters = later;
        now.into_iter().map(|(id, _)| id).collect()
    }

    /// Counters, filter state and header edits of a decision; the
    /// identity for the stages after this one.
    fn apply(
        &self,
        cx: &RequestContext,
        host: &dyn Host,
        decision: &jwt::JwtDecision<'_>,
        request: &JwtRequest<'_>,
    ) -> JwtFacts {
        self.counters.add(host, decision.metric_index());
        match decision.cache {
            CacheUse::Hit => self.count(host, Counter::CacheHit),
            CacheUse::Miss => self.count(host, Counter::CacheMiss),
            CacheUse::None => {}
        }
        if decision.stale_keys {
            self.count(host, Counter::JwksStaleInUse);
        }
        if cx.publish == Publish::Keys {
            for (key, value) in decision.properties() {
                reply::set_property(host, cx.context_id, key, &value);
            }
        }
        let action = decision.action();
        let facts = JwtFacts {
            identity: decision.verdict.as_ref().ok().and_then(Option::clone),
            shadow_denied: matches!(action, Verdict::ShadowDeny(_)),
        };
        // A refused request ends here: its edits would be hostcalls for nothing.
        if !matches!(action, Verdict::Deny(_)) {
            let edits = decision.header_edits(&self.policy, request);
            let edits: Vec<(&str, Option<&str>)> = edits.iter().map(|(k, v)| (*k, v.as_deref())).collect();
            reply::edit_request_headers(host, cx.context_id, &edits);
        }
        facts
    }
}

impl JwtStage {
    /// Decides on the request and applies what goes to the host (counters,
    /// filter state, header edits); `None` when it waits for keys.
    fn decide<'p>(
        &'p self,
        cx: &RequestContext,
        host: &dyn Host,
        request: &JwtRequest<'_>,
    ) -> Option<(StageVerdict<'p>, JwtFacts, Option<Vec<u8>>)> {
        let context_id = cx.context_id;
        let verifier = EnvoyVerifier {
            host,
            enabled: self.host_verifier,
            checked: Cell::new(0),
            skip: host.skips_signatures(),
        };
        let decision = {
            let mut caches = self.caches.borrow_mut();
            jwt::decide(&self.policy, request, self, &verifier, &mut caches)
        };
        if decision.cache == CacheUse::Miss {
            let sizes = self.caches.borrow().sizes();
            for (i, size) in sizes.into_iter().enumerate() {
                self.gauges.set(host, i, size);
            }
        }
        // A request waits at most once for keys: woken, it is decided on
        // what there is.
        if !cx.resumed {
            if let Some(p) = self.wait_for(host, &decision, request.now) {
                self.waiters.borrow_mut().push((context_id, p));
                self.tick.set(BUSY_TICK);
                debug!(
                    "#{context_id} waits for the JWKS of provider '{}'",
                    self.provider_name(p)
                );
                return None;
            }
        }
        if verifier.checked.get() > 0 {
            self.count(host, Counter::SignatureHost);
        }
        let facts = self.apply(cx, host, &decision, request);
        let verdict = StageVerdict {
            stage: STAGE,
            route: &decision.route.name,
            mode: decision.mode(),
            action: decision.action(),
            detail: None,
        };
        let record = (cx.publish == Publish::Record).then(|| decision.record());
        Some((verdict, facts, record))
    }
}

fn take_call(calls: &mut Vec<(u32, usize)>, token: u32) -> Option<usize> {
    let i = calls.iter().position(|(t, _)| *t == token)?;
    Some(calls.swap_remove(i).1)
}

impl Stage for JwtStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn on_request(&self, cx: &mut RequestContext, host: &dyn Host) -> Step {
        // The request's start (one clock read per request, by the
        // pipeline); after a wait, the clock again.
        let nanos = if cx.resumed { host.now_nanos() } else { cx.started_nanos };
        let now = nanos / 1_000_000_000;
        self.now.set(now);
        let request = JwtRequest {
            head: cx.view.head(),
            route: cx.view.route,
            // The served `:path`: a query-token strip edits the rewritten path.
            raw_path: cx.view.target(cx.raw_path()),
            headers: &cx.headers,
            now,
        };
        let Some((verdict, facts, record)) = self.decide(cx, host, &request) else {
            return Step::Wait;
        };
        cx.facts.jwt = Some(facts);
        cx.records.extend(record.map(|r| (STAGE, r)));
        reply::conclude(host, cx, verdict, &self.policy.realm)
    }

    fn on_tick(&self, host: &dyn Host) -> Vec<u32> {
        self.tick(host)
    }

    /// Fast while a fetch is due or running, slow otherwise; none without
    /// remote JWKS.
    fn tick_period(&self) -> Option<Duration> {
        Some(self.tick.get()).filter(|t| !t.is_zero())
    }

    fn on_http_call_response(&self, host: &dyn Host, token: u32, body_size: usize) -> Vec<u32> {
        self.fetch_done(host, token, body_size)
    }

    fn release(&self) -> Vec<u32> {
        self.waiters.borrow_mut().drain(..).map(|(id, _)| id).collect()
    }
}
