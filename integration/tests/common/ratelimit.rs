//! A Redis and a rate limit service (`tollgate_ratelimit_party`) for the
//! mesh-wide rate limit tests: in-process natively; in container mode (and
//! for tests that always run containers) the `tollgate/redis:dev` and
//! `tollgate/ratelimit:dev` images on the test's network. Readiness is
//! asked in each one's protocol: Redis `PING`, then a real
//! `ShouldRateLimit` through the service (which counts in Redis).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tollgate_integration::docker::{
    self, Container, Network, Spec, RATELIMIT_IMAGE, RATELIMIT_PORT, REDIS_IMAGE, REDIS_PORT,
};
use tollgate_ratelimit_party::proto::{RateLimitRequest, RateLimitResponse, RateLimitUnit};
use tollgate_ratelimit_party::{descriptor, ping, request, should_rate_limit, Redis, Service};

/// Network aliases of the containers.
pub const REDIS_ALIAS: &str = "redis";
pub const RATELIMIT_ALIAS: &str = "ratelimit";

/// How long the containers may take to answer.
const READY_WITHIN: Duration = Duration::from_secs(20);

enum Parts {
    Native {
        service: Option<Service>,
        redis: Redis,
    },
    /// Service before Redis: dropped (removed) in that order.
    Containers {
        service: Option<Container>,
        redis: Container,
    },
}

/// A Redis and a rate limit service counting in it; stopped when dropped
/// (in containers: drop it before its network, i.e. declare the network
/// first).
pub struct RateLimitRig {
    parts: Parts,
    envoy_host: String,
    envoy_port: u16,
    host_addr: SocketAddr,
}

impl RateLimitRig {
    /// Containers on `network` in container mode (`network` must be given
    /// then), else in-process: the service listens where Envoy reaches
    /// in-process parties (`docker::party_host()`: 127.0.0.1 natively).
    pub fn start(network: Option<&Network>) -> RateLimitRig {
        match (docker::container_mode(), network) {
            (Some(_), Some(network)) => RateLimitRig::containers(network),
            (Some(image), None) => panic!("container mode ({image}): the rate limit rig needs the test's network"),
            (None, _) => RateLimitRig::native(),
        }
    }

    /// In-process: `redis-server` on 127.0.0.1 and the service on
    /// `docker::party_host()`.
    pub fn native() -> RateLimitRig {
        let redis = Redis::start();
        let host = docker::party_host();
        let listen: SocketAddr = format!("{host}:0")
            .parse()
            .unwrap_or_else(|e| panic!("party host {host}: {e}"));
        let service = Service::start_on(listen, &redis.url()).unwrap_or_else(|e| panic!("{e}"));
        let host_addr = service.addr();
        let rig = RateLimitRig {
            parts: Parts::Native {
                service: Some(service),
                redis,
            },
            envoy_host: host,
            envoy_port: host_addr.port(),
            host_addr,
        };
        rig.wait_ready().unwrap_or_else(|e| panic!("{e}"));
        rig
    }

    /// `tollgate/redis:dev` as `redis` and `tollgate/ratelimit:dev` as
    /// `ratelimit` on `network`, both ports published on 127.0.0.1.
    pub fn containers(network: &Network) -> RateLimitRig {
        let redis = Container::run(&Spec {
            image: REDIS_IMAGE.into(),
            alias: REDIS_ALIAS.into(),
            network: Some(network.name.clone()),
            publish: vec![REDIS_PORT],
            ..Spec::default()
        })
        .unwrap_or_else(|e| panic!("{e} (images: cargo xtask setup)"));
        let redis_addr = redis.published(REDIS_PORT).unwrap_or_else(|e| panic!("{e}"));
        poll(READY_WITHIN, || ping(redis_addr)).unwrap_or_else(|e| panic!("redis: {e}\n{}", redis.logs()));
        let service = Container::run(&Spec {
            image: RATELIMIT_IMAGE.into(),
            alias: RATELIMIT_ALIAS.into(),
            network: Some(network.name.clone()),
            publish: vec![RATELIMIT_PORT],
            args: vec![
                "--redis".into(),
                format!("redis://{REDIS_ALIAS}:{REDIS_PORT}"),
                "--listen".into(),
                format!("0.0.0.0:{RATELIMIT_PORT}"),
            ],
            ..Spec::default()
        })
        .unwrap_or_else(|e| panic!("{e} (images: cargo xtask setup)"));
        let host_addr = service.published(RATELIMIT_PORT).unwrap_or_else(|e| panic!("{e}"));
        let rig = RateLimitRig {
            parts: Parts::Containers {
                service: Some(service),
                redis,
            },
            envoy_host: RATELIMIT_ALIAS.into(),
            envoy_port: RATELIMIT_PORT,
            host_addr,
        };
        if let Err(e) = rig.wait_ready() {
            panic!("ratelimit: {e}\n{}", rig.logs());
        }
        rig
    }

    /// The host of Envoy's rate limit cluster: 127.0.0.1 (or the party
    /// host) natively, the alias `ratelimit` on the network.
    pub fn envoy_host(&self) -> &str {
        &self.envoy_host
    }

    /// The port of Envoy's rate limit cluster.
    pub fn envoy_port(&self) -> u16 {
        self.envoy_port
    }

    /// Where the tests reach the service (a published port in containers).
    pub fn host_addr(&self) -> SocketAddr {
        self.host_addr
    }

    /// Where the tests reach Redis.
    pub fn redis_addr(&self) -> SocketAddr {
        match &self.parts {
            Parts::Native { redis, .. } => redis.addr(),
            Parts::Containers { redis, .. } => redis.published(REDIS_PORT).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// One `ShouldRateLimit` from the host.
    pub fn should_rate_limit(&self, request: RateLimitRequest) -> Result<RateLimitResponse, String> {
        should_rate_limit(self.host_addr, request, Duration::from_secs(5))
    }

    /// Polls until a real call answers (counted under its own domain,
    /// `tollgate-probe`, so no test's counter moves).
    fn wait_ready(&self) -> Result<(), String> {
        let probe = || {
            let limit = descriptor("probe", &[], u32::MAX, RateLimitUnit::Second);
            should_rate_limit(
                self.host_addr,
                request("tollgate-probe", vec![limit]),
                Duration::from_secs(1),
            )
            .map(drop)
        };
        poll(READY_WITHIN, probe)
    }

    /// Service answers late (native: each call waits `delay` first) or not
    /// at all (containers: `docker pause` for any nonzero `delay`, until
    /// called with `Duration::ZERO`).
    pub fn slow_service(&self, delay: Duration) {
        match &self.parts {
            Parts::Native { service, .. } => {
                if let Some(service) = service {
                    service.set_delay(delay);
                }
            }
            Parts::Containers { service, .. } => {
                if let Some(service) = service {
                    let done = if delay.is_zero() {
                        service.unpause()
                    } else {
                        service.pause()
                    };
                    done.unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    }

    /// Redis stops answering (SIGSTOP / `docker pause`): the service fails
    /// each call UNAVAILABLE after its one-second Redis timeout.
    pub fn pause_redis(&self) {
        let done = match &self.parts {
            Parts::Native { redis, .. } => redis.pause(),
            Parts::Containers { redis, .. } => redis.pause(),
        };
        done.unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn resume_redis(&self) {
        let done = match &self.parts {
            Parts::Native { redis, .. } => redis.resume(),
            Parts::Containers { redis, .. } => redis.unpause(),
        };
        done.unwrap_or_else(|e| panic!("{e}"));
    }

    /// The service is gone (its process ended / container removed); Redis
    /// stays.
    pub fn kill_service(&mut self) {
        match &mut self.parts {
            Parts::Native { service, .. } => drop(service.take()),
            Parts::Containers { service, .. } => drop(service.take()),
        }
    }

    /// `ShouldRateLimit` calls the in-process service received (`None` in
    /// containers or once killed).
    pub fn calls(&self) -> Option<u64> {
        match &self.parts {
            Parts::Native { service, .. } => service.as_ref().map(Service::calls),
            Parts::Containers { .. } => None,
        }
    }

    /// The containers' logs (empty natively).
    pub fn logs(&self) -> String {
        match &self.parts {
            Parts::Native { .. } => String::new(),
            Parts::Containers { service, redis } => format!(
                "--- ratelimit ---\n{}\n--- redis ---\n{}",
                service.as_ref().map(Container::logs).unwrap_or_default(),
                redis.logs()
            ),
        }
    }
}

/// Calls `probe` every 50 ms until it succeeds or `within` has passed.
fn poll(within: Duration, mut probe: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(format!("not ready within {within:?}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
