//! The rate limit rig the mesh-wide rate limit tests use answers where
//! the tests reach it, and counts exactly: natively, and in container mode
//! (`TOLLGATE_ENVOY_IMAGE`) as containers on the test's network.

// Tests: a failed expectation or fixture panics.
#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ratelimit::RateLimitRig;
use std::sync::{Arc, Barrier};
use tollgate_integration::docker::{self, Network};
use tollgate_ratelimit_party::descriptor;
use tollgate_ratelimit_party::proto::{Code, RateLimitUnit};

#[test]
fn the_rig_answers_where_the_tests_reach_it_and_counts_exactly() {
    let network = docker::container_mode().map(|_| Network::create().unwrap_or_else(|e| panic!("{e}")));
    let rig = Arc::new(RateLimitRig::start(network.as_ref()));
    let limit = descriptor("per-tenant", &[("tenant", "acme")], 3, RateLimitUnit::Minute);
    let barrier = Arc::new(Barrier::new(10));
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let (rig, barrier, limit) = (Arc::clone(&rig), Arc::clone(&barrier), limit.clone());
            std::thread::spawn(move || {
                barrier.wait();
                rig.should_rate_limit(tollgate_ratelimit_party::request("tollgate", vec![limit]))
            })
        })
        .collect();
    let admitted = threads
        .into_iter()
        .map(|t| match t.join() {
            Ok(Ok(answer)) => answer.overall_code == Code::Ok as i32,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("a caller panicked"),
        })
        .filter(|ok| *ok)
        .count();
    assert_eq!(admitted, 3);
    if network.is_some() {
        assert_eq!(rig.envoy_host(), common::ratelimit::RATELIMIT_ALIAS);
    } else {
        assert_eq!(rig.envoy_port(), rig.host_addr().port());
    }
    tollgate_ratelimit_party::ping(rig.redis_addr()).unwrap_or_else(|e| panic!("{e}"));
    drop(rig);
}

#[test]
fn the_rig_can_be_slowed_cut_from_redis_and_killed() {
    use std::time::Duration;
    use tollgate_ratelimit_party::{request, should_rate_limit};
    let network = docker::container_mode().map(|_| Network::create().unwrap_or_else(|e| panic!("{e}")));
    let mut rig = RateLimitRig::start(network.as_ref());
    let call = |rig: &RateLimitRig, timeout: Duration| {
        let limit = descriptor("per-tenant", &[("tenant", "acme")], 100, RateLimitUnit::Minute);
        should_rate_limit(rig.host_addr(), request("tollgate", vec![limit]), timeout)
    };
    assert!(call(&rig, Duration::from_secs(5)).is_ok());

    rig.pause_redis();
    let cut = call(&rig, Duration::from_secs(5));
    assert!(cut.as_ref().is_err_and(|e| e.contains("Unavailable")), "{cut:?}");
    rig.resume_redis();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while call(&rig, Duration::from_secs(5)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no recovery after Redis resumed");
        std::thread::sleep(Duration::from_millis(100));
    }

    rig.slow_service(Duration::from_secs(3));
    assert!(call(&rig, Duration::from_millis(300)).is_err());
    rig.slow_service(Duration::ZERO);
    assert!(call(&rig, Duration::from_secs(5)).is_ok());

    rig.kill_service();
    assert!(call(&rig, Duration::from_millis(500)).is_err());
    drop(rig);
}
