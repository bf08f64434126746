//! The service against a real Redis, through a real tonic client.

// Tests: a failed expectation panics.
#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tollgate_ratelimit_party::proto::{Code, RateLimitDescriptor, RateLimitResponse, RateLimitUnit, ResponseUnit};
use tollgate_ratelimit_party::{descriptor, request, should_rate_limit, Redis, Service};

const TIMEOUT: Duration = Duration::from_secs(5);

fn call(service: &Service, descriptors: Vec<RateLimitDescriptor>) -> RateLimitResponse {
    should_rate_limit(service.addr(), request("tollgate", descriptors), TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

fn per_minute(limit: &str, parts: &[(&str, &str)], max: u32) -> RateLimitDescriptor {
    descriptor(limit, parts, max, RateLimitUnit::Minute)
}

fn ok(response: &RateLimitResponse) -> bool {
    response.overall_code == Code::Ok as i32
}

/// `calls` concurrent calls, released together, spread over `services`:
/// how many were admitted.
fn admitted_concurrently(services: &[&Service], calls: usize, descriptor: &RateLimitDescriptor) -> usize {
    let barrier = Arc::new(Barrier::new(calls));
    let threads: Vec<_> = (0..calls)
        .map(|i| {
            let addr = services[i % services.len()].addr();
            let barrier = Arc::clone(&barrier);
            let descriptor = descriptor.clone();
            std::thread::spawn(move || {
                barrier.wait();
                should_rate_limit(addr, request("tollgate", vec![descriptor]), TIMEOUT)
            })
        })
        .collect();
    let answers: Vec<RateLimitResponse> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for answer in &answers {
        assert_eq!(answer.statuses.len(), 1);
        assert_eq!(answer.statuses[0].code, answer.overall_code);
    }
    answers.iter().filter(|a| ok(a)).count()
}

#[test]
fn twenty_concurrent_calls_against_seven_per_minute_admit_exactly_seven() {
    let redis = Redis::start();
    let service = Service::start(&redis.url());
    let limit = per_minute("per-tenant", &[("tenant", "acme")], 7);
    assert_eq!(admitted_concurrently(&[&service], 20, &limit), 7);
    assert!(!ok(&call(&service, vec![limit])));
}

#[test]
fn two_services_sharing_one_redis_share_one_exact_count() {
    let redis = Redis::start();
    let one = Service::start(&redis.url());
    let two = Service::start(&redis.url());
    let limit = per_minute("per-ip", &[("client_ip", "10.0.0.1")], 7);
    for round in 0..3 {
        let expected = if round == 0 { 7 } else { 0 };
        assert_eq!(
            admitted_concurrently(&[&one, &two], 20, &limit),
            expected,
            "round {round}"
        );
    }
    assert!(one.calls() >= 30 && two.calls() >= 30);
}

#[test]
fn distinct_values_and_other_limits_have_their_own_counters() {
    let redis = Redis::start();
    let service = Service::start(&redis.url());
    let acme = per_minute("per-tenant", &[("tenant", "acme")], 2);
    for _ in 0..2 {
        assert!(ok(&call(&service, vec![acme.clone()])));
    }
    assert!(!ok(&call(&service, vec![acme.clone()])));
    // Another value of the same limit.
    assert!(ok(&call(
        &service,
        vec![per_minute("per-tenant", &[("tenant", "beta")], 2)]
    )));
    // Another limit with the same key part and value.
    assert!(ok(&call(&service, vec![per_minute("burst", &[("tenant", "acme")], 2)])));
    // A key part more or fewer is another counter too.
    let with_key = per_minute("per-tenant", &[("tenant", "acme"), ("header.x-api-key", "k1")], 2);
    assert!(ok(&call(&service, vec![with_key])));
    // Another domain.
    let other = should_rate_limit(service.addr(), request("other", vec![acme.clone()]), TIMEOUT).unwrap();
    assert!(ok(&other));
    assert!(!ok(&call(&service, vec![acme])));
}

#[test]
fn statuses_tell_limit_remaining_and_reset_per_descriptor_in_order() {
    let redis = Redis::start();
    let service = Service::start(&redis.url());
    let tenant = per_minute("per-tenant", &[("tenant", "acme")], 3);
    let ip = descriptor("per-ip", &[("client_ip", "10.0.0.1")], 100, RateLimitUnit::Hour);
    for remaining in [2, 1, 0] {
        let answer = call(&service, vec![tenant.clone(), ip.clone()]);
        assert!(ok(&answer));
        assert_eq!(answer.statuses.len(), 2);
        let first = &answer.statuses[0];
        assert_eq!(first.code, Code::Ok as i32);
        assert_eq!(first.limit_remaining, remaining);
        let limit = first.current_limit.as_ref().unwrap();
        assert_eq!((limit.requests_per_unit, limit.unit), (3, ResponseUnit::Minute as i32));
        let reset = first.duration_until_reset.unwrap();
        assert!((55..=60).contains(&reset.seconds), "{reset:?}");
        let second = &answer.statuses[1];
        assert_eq!(second.limit_remaining, 97 + remaining);
        assert_eq!(second.current_limit.as_ref().unwrap().unit, ResponseUnit::Hour as i32);
        assert!(second.duration_until_reset.unwrap().seconds > 3_500);
    }
    // One descriptor over: the whole answer is, the other still counted.
    let answer = call(&service, vec![tenant, ip]);
    assert_eq!(answer.overall_code, Code::OverLimit as i32);
    assert_eq!(answer.statuses[0].code, Code::OverLimit as i32);
    assert_eq!(answer.statuses[0].limit_remaining, 0);
    assert!(answer.statuses[0].duration_until_reset.unwrap().seconds <= 60);
    assert_eq!(answer.statuses[1].code, Code::Ok as i32);
    assert_eq!(answer.statuses[1].limit_remaining, 96);
}

#[test]
fn a_descriptor_without_override_is_ok_with_no_limit() {
    let redis = Redis::start();
    let service = Service::start(&redis.url());
    let mut bare = per_minute("per-tenant", &[("tenant", "acme")], 1);
    bare.limit = None;
    for _ in 0..3 {
        let answer = call(&service, vec![bare.clone()]);
        assert!(ok(&answer));
        assert_eq!(answer.statuses[0].code, Code::Ok as i32);
        assert_eq!(answer.statuses[0].current_limit, None);
    }
    let unknown = descriptor("x", &[], 1, RateLimitUnit::Unknown);
    let err = should_rate_limit(service.addr(), request("tollgate", vec![unknown]), TIMEOUT).unwrap_err();
    assert!(err.contains("InvalidArgument"), "{err}");
}

#[test]
fn hits_addend_counts_several_and_zero_counts_one() {
    let redis = Redis::start();
    let service = Service::start(&redis.url());
    let limit = per_minute("bytes", &[("tenant", "acme")], 7);
    let mut three = request("tollgate", vec![limit.clone()]);
    three.hits_addend = 3;
    let answer = should_rate_limit(service.addr(), three.clone(), TIMEOUT).unwrap();
    assert_eq!(answer.statuses[0].limit_remaining, 4);
    assert_eq!(call(&service, vec![limit.clone()]).statuses[0].limit_remaining, 3);
    let answer = should_rate_limit(service.addr(), three.clone(), TIMEOUT).unwrap();
    assert_eq!(answer.statuses[0].limit_remaining, 0);
    // Over: not counted, so one more single hit is still refused only
    // because the count is at the maximum.
    assert!(!ok(&should_rate_limit(service.addr(), three, TIMEOUT).unwrap()));
    assert!(!ok(&call(&service, vec![limit])));
}

#[test]
fn a_window_resets_after_its_unit() {
    let redis = Redis::start();
    let service = Service::start(&redis.url());
    let limit = descriptor("per-second", &[("tenant", "acme")], 1, RateLimitUnit::Second);
    assert!(ok(&call(&service, vec![limit.clone()])));
    let denied = call(&service, vec![limit.clone()]);
    assert!(!ok(&denied));
    let reset = denied.statuses[0].duration_until_reset.unwrap();
    let wait = Duration::new(reset.seconds as u64, reset.nanos as u32) + Duration::from_millis(50);
    assert!(wait <= Duration::from_millis(1_050));
    std::thread::sleep(wait);
    assert!(ok(&call(&service, vec![limit])));
}

#[test]
fn a_delayed_service_answers_late_and_a_dropped_one_not_at_all() {
    let redis = Redis::start();
    let service = Service::start(&redis.url());
    let limit = per_minute("per-tenant", &[("tenant", "acme")], 1);
    service.set_delay(Duration::from_millis(1_500));
    let started = Instant::now();
    let late = should_rate_limit(
        service.addr(),
        request("tollgate", vec![limit.clone()]),
        Duration::from_millis(300),
    );
    assert!(late.is_err(), "{late:?}");
    assert!(started.elapsed() < Duration::from_millis(1_000));
    assert_eq!(service.calls(), 1);
    // The abandoned call was not counted.
    service.set_delay(Duration::ZERO);
    assert!(ok(&call(&service, vec![limit.clone()])));
    let addr = service.addr();
    drop(service);
    let dead = should_rate_limit(addr, request("tollgate", vec![limit]), Duration::from_millis(500));
    assert!(dead.is_err(), "{dead:?}");
}

#[test]
fn without_redis_the_call_fails_unavailable_and_recovers_when_redis_answers_again() {
    let redis = Redis::start();
    let service = Service::start(&redis.url());
    let limit = per_minute("per-tenant", &[("tenant", "acme")], 5);
    assert!(ok(&call(&service, vec![limit.clone()])));
    redis.pause().unwrap();
    let started = Instant::now();
    let paused = should_rate_limit(service.addr(), request("tollgate", vec![limit.clone()]), TIMEOUT);
    assert!(paused.as_ref().is_err_and(|e| e.contains("Unavailable")), "{paused:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    redis.resume().unwrap();
    // The count survived (the paused call may or may not have been counted
    // when Redis resumed and ran it).
    let answer = eventually_ok(&service, &limit);
    assert!(answer.statuses[0].limit_remaining <= 3);
    drop(redis);
    let gone = should_rate_limit(service.addr(), request("tollgate", vec![limit]), TIMEOUT);
    assert!(gone.as_ref().is_err_and(|e| e.contains("Unavailable")), "{gone:?}");
}

fn eventually_ok(service: &Service, limit: &RateLimitDescriptor) -> RateLimitResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match should_rate_limit(service.addr(), request("tollgate", vec![limit.clone()]), TIMEOUT) {
            Ok(answer) => return answer,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn redis_answers_ping_and_is_gone_after_drop() {
    let redis = Redis::start();
    let addr = redis.addr();
    tollgate_ratelimit_party::ping(addr).unwrap();
    drop(redis);
    assert!(tollgate_ratelimit_party::ping(addr).is_err());
}
