//! `ShouldRateLimit`, counted in Redis.
//!
//! The service has no configuration of its own besides the Redis URL and the
//! address it listens on: every limit comes with the request.
//!
//! - Each descriptor is one limit, counted on its own (as envoyproxy/ratelimit
//!   does). With a `limit` override it has a counter keyed by the request's
//!   `domain`, the override's unit and the descriptor's entries in order
//!   (keys and values), so each distinct set of entry values has its own
//!   counter; `requests_per_unit` is the maximum it is compared with, not
//!   part of the key (a tenant whose tier changes mid-window keeps its count
//!   and meets the new maximum). Tollgate's descriptors start with
//!   `("limit", <limit name>)`, so two limits never share a counter.
//! - Without an override the descriptor has no limit: its status is `OK`
//!   with no `current_limit`, as envoyproxy/ratelimit answers for a
//!   descriptor no configured limit matches.
//! - Hits: the descriptor's `hits_addend` if set, else the request's; 0 means
//!   1 in both (`is_negative_hits` is not supported and ignored).
//! - Windows are fixed and start at a counter's first admitted hit (not
//!   aligned to the wall clock as envoyproxy/ratelimit's are); units: SECOND,
//!   MINUTE, HOUR, DAY, MONTH (30 days), YEAR (365 days) (the override's
//!   enum has no WEEK); an
//!   UNKNOWN unit fails the call with INVALID_ARGUMENT.
//! - Check and update are one step: one Lua script (atomic in Redis) reads
//!   the count, and adds the hits only if the sum stays within the maximum.
//!   Over-limit hits are not counted (envoyproxy/ratelimit counts them).
//!   N concurrent hits on one key therefore admit exactly
//!   `requests_per_unit` of them, whichever services send them.
//! - Status: `limit_remaining` is exact (maximum minus the count the script
//!   left); `duration_until_reset` is the counter's PTTL as the script read it
//!   (millisecond precision, older by the time it reaches Envoy by the
//!   answer's travel time); for a denied hit on a counter with no window yet
//!   (hits above the maximum), the whole window.
//! - `overall_code` is OVER_LIMIT if any descriptor is, else OK. Redis
//!   failing (down, paused: each command times out after one second) fails
//!   the call with UNAVAILABLE, so Envoy's `failure_mode_deny` decides.

use crate::proto::{
    Code, DescriptorStatus, RateLimit, RateLimitDescriptor, RateLimitRequest, RateLimitResponse, RateLimitService,
    RateLimitServiceServer, RateLimitUnit, ResponseUnit,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The time each Redis command may take before the call fails.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// KEYS[1]: the counter; ARGV: maximum, window in ms, hits.
/// Returns {admitted (1/0), count after, ms until the window resets}.
const CHECK_AND_COUNT: &str = r"
local max = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local hits = tonumber(ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
local current = 0
if ttl > 0 then
  current = tonumber(redis.call('GET', KEYS[1])) or 0
end
if current + hits > max then
  if ttl <= 0 then ttl = window end
  return {0, current, ttl}
end
if ttl > 0 then
  redis.call('INCRBY', KEYS[1], hits)
else
  ttl = window
  redis.call('SET', KEYS[1], hits, 'PX', window)
end
return {1, current + hits, ttl}
";

/// The gRPC service on its own runtime (two worker threads) on a thread;
/// dropping it stops it at once, closing its listener and its connections
/// (in-flight calls are abandoned), as a killed service would.
pub struct Service {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    redis: ConnectionManager,
    script: redis::Script,
    delay_ms: AtomicU64,
    calls: AtomicU64,
}

impl Service {
    /// On a free 127.0.0.1 port; panics if it cannot start.
    pub fn start(redis_url: &str) -> Service {
        match Service::try_start(redis_url) {
            Ok(service) => service,
            Err(e) => panic!("{e}"),
        }
    }

    /// On a free 127.0.0.1 port.
    pub fn try_start(redis_url: &str) -> Result<Service, String> {
        Service::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), redis_url)
    }

    /// On `listen` (port 0: a free one). Listening when returned; Redis is
    /// connected on the first call (and reconnected after it fails), so
    /// the service may start before Redis does.
    pub fn start_on(listen: SocketAddr, redis_url: &str) -> Result<Service, String> {
        let client = redis::Client::open(redis_url).map_err(|e| format!("redis URL {redis_url:?}: {e}"))?;
        let listener = std::net::TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("local_addr: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("{addr}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ratelimit-service")
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let (redis, listener) = runtime.block_on(async {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(200));
            let redis = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| format!("redis {redis_url}: {e}"))?;
            let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("{addr}: {e}"))?;
            Ok::<_, String>((redis, listener))
        })?;
        let state = Arc::new(State {
            redis,
            script: redis::Script::new(CHECK_AND_COUNT),
            delay_ms: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let handler = Handler(Arc::clone(&state));
        let thread = std::thread::Builder::new()
            .name(format!("ratelimit-service-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    let server = tonic::transport::Server::builder()
                        .serve_with_incoming(RateLimitServiceServer::new(handler), incoming);
                    tokio::select! {
                        result = server => {
                            if let Err(e) = result {
                                eprintln!("ratelimit service on {addr}: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Drops the connection tasks: their sockets close.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(|e| format!("thread: {e}"))?;
        Ok(Service {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// From now on, each call waits `delay` before it is counted and
    /// answered (a call abandoned by its client during the wait is not
    /// counted). `Duration::ZERO` restores prompt answers.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// `ShouldRateLimit` calls received so far (delayed ones included).
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Handler(Arc<State>);

#[tonic::async_trait]
impl RateLimitService for Handler {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let state = &self.0;
        state.calls.fetch_add(1, Ordering::SeqCst);
        let delay = state.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let request = request.into_inner();
        let mut statuses = Vec::with_capacity(request.descriptors.len());
        for descriptor in &request.descriptors {
            statuses.push(state.count(&request, descriptor).await?);
        }
        let over = statuses.iter().any(|s| s.code == Code::OverLimit as i32);
        Ok(Response::new(RateLimitResponse {
            overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
            statuses,
            ..RateLimitResponse::default()
        }))
    }
}

impl State {
    async fn count(
        &self,
        request: &RateLimitRequest,
        descriptor: &RateLimitDescriptor,
    ) -> Result<DescriptorStatus, Status> {
        let Some(limit) = descriptor.limit else {
            return Ok(DescriptorStatus {
                code: Code::Ok as i32,
                ..DescriptorStatus::default()
            });
        };
        let unit = RateLimitUnit::try_from(limit.unit).unwrap_or(RateLimitUnit::Unknown);
        let window =
            window_of(unit).ok_or_else(|| Status::invalid_argument(format!("descriptor limit unit {}", limit.unit)))?;
        let hits = match descriptor.hits_addend {
            Some(addend) => addend.value,
            None => u64::from(request.hits_addend),
        }
        .max(1);
        let key = counter_key(&request.domain, window, descriptor);
        let window_ms = window.as_millis();
        let mut redis = self.redis.clone();
        let answer: Vec<i64> = self
            .script
            .key(key)
            .arg(limit.requests_per_unit)
            .arg(u64::try_from(window_ms).unwrap_or(u64::MAX))
            .arg(hits)
            .invoke_async(&mut redis)
            .await
            .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        let [admitted, count, ttl_ms] = answer.as_slice() else {
            return Err(Status::internal(format!("counter script answered {answer:?}")));
        };
        let remaining = u64::from(limit.requests_per_unit).saturating_sub(u64::try_from(*count).unwrap_or(0));
        let reset = Duration::from_millis(u64::try_from(*ttl_ms).unwrap_or(0));
        Ok(DescriptorStatus {
            code: if *admitted == 1 { Code::Ok } else { Code::OverLimit } as i32,
            current_limit: Some(RateLimit {
                name: String::new(),
                requests_per_unit: limit.requests_per_unit,
                unit: response_unit(unit) as i32,
            }),
            limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            duration_until_reset: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: i64::try_from(reset.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(reset.subsec_nanos()).unwrap_or(0),
            }),
            ..DescriptorStatus::default()
        })
    }
}

fn window_of(unit: RateLimitUnit) -> Option<Duration> {
    const DAY: u64 = 86_400;
    let seconds = match unit {
        RateLimitUnit::Second => 1,
        RateLimitUnit::Minute => 60,
        RateLimitUnit::Hour => 3_600,
        RateLimitUnit::Day => DAY,
        RateLimitUnit::Month => 30 * DAY,
        RateLimitUnit::Year => 365 * DAY,
        RateLimitUnit::Unknown => return None,
    };
    Some(Duration::from_secs(seconds))
}

/// The request's unit as the response's enum (the same names and numbers,
/// two generated types).
fn response_unit(unit: RateLimitUnit) -> ResponseUnit {
    match unit {
        RateLimitUnit::Second => ResponseUnit::Second,
        RateLimitUnit::Minute => ResponseUnit::Minute,
        RateLimitUnit::Hour => ResponseUnit::Hour,
        RateLimitUnit::Day => ResponseUnit::Day,
        RateLimitUnit::Month => ResponseUnit::Month,
        RateLimitUnit::Year => ResponseUnit::Year,
        RateLimitUnit::Unknown => ResponseUnit::Unknown,
    }
}

/// `tollgate-rl:` then domain, window and each entry's key and value, each
/// as `<length>:<text>`, so no two descriptors share a key by accident
/// (a value containing a separator cannot pass for two entries).
pub fn counter_key(domain: &str, window: Duration, descriptor: &RateLimitDescriptor) -> String {
    let mut key = String::from("tollgate-rl:");
    let mut field = |text: &str| {
        key.push_str(&text.len().to_string());
        key.push(':');
        key.push_str(text);
    };
    field(domain);
    field(&window.as_secs().to_string());
    for entry in &descriptor.entries {
        field(&entry.key);
        field(&entry.value);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Entry;

    fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..RateLimitDescriptor::default()
        }
    }

    #[test]
    fn keys_do_not_collide_when_values_contain_separators() {
        let minute = Duration::from_secs(60);
        let a = counter_key("d", minute, &descriptor(&[("limit", "a"), ("tenant", "x:1")]));
        let b = counter_key("d", minute, &descriptor(&[("limit", "a"), ("tenant", "x"), ("1", "")]));
        assert_ne!(a, b);
        assert_ne!(
            a,
            counter_key(
                "d",
                Duration::from_secs(1),
                &descriptor(&[("limit", "a"), ("tenant", "x:1")])
            )
        );
        assert_ne!(
            a,
            counter_key("e", minute, &descriptor(&[("limit", "a"), ("tenant", "x:1")]))
        );
        assert_eq!(a, "tollgate-rl:1:d2:605:limit1:a6:tenant3:x:1");
    }

    #[test]
    fn every_known_unit_has_a_window() {
        assert_eq!(window_of(RateLimitUnit::Minute), Some(Duration::from_secs(60)));
        assert_eq!(window_of(RateLimitUnit::Day), Some(Duration::from_secs(86_400)));
        assert_eq!(window_of(RateLimitUnit::Unknown), None);
        assert_eq!(response_unit(RateLimitUnit::Year) as i32, RateLimitUnit::Year as i32);
    }
}
