use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn remote() -> RemoteJwks {
    RemoteJwks {
        cluster: "idp".into(),
        authority: "idp.test".into(),
        path: "/jwks".into(),
        timeout_ms: 1000,
        cache_duration: 300,
        min_refetch_interval: 30,
        stale_ttl: 3600,
        max_body_bytes: 65536,
    }
}

fn keys() -> KeySet {
    KeySet::parse(crate::jwt::tests::JWKS.as_bytes()).unwrap().0
}

fn state(keys: &Keys) -> &'static str {
    match keys {
        Keys::Ready { stale: false, .. } => "fresh",
        Keys::Ready { stale: true, .. } => "stale",
        Keys::Unavailable => "none",
    }
}

#[test]
fn keys_go_stale_then_away() {
    let r = remote();
    let mut s = JwksState::default();
    assert_eq!(state(&s.keys(&r, 1000)), "none");
    s.fetched(keys(), 1000);
    // Refresh due after cache_duration + timeout + 1 s; gone after stale_ttl.
    for (now, want) in [
        (1000, "fresh"),
        (1302, "fresh"),
        (1303, "stale"),
        (4600, "stale"),
        (4601, "none"),
    ] {
        assert_eq!(state(&s.keys(&r, now)), want, "at {now}");
    }
}

#[test]
fn fetches_at_start_on_schedule_and_backs_off() {
    let r = remote();
    let mut s = JwksState::default();
    assert_eq!(s.tick(&r, 1_000_000), Tick::Fetch);
    s.started(7, 1_000_000);
    assert_eq!(s.tick(&r, 1_000_500), Tick::Idle { busy: true });
    // No answer within timeout + 5 s: given up.
    assert_eq!(s.tick(&r, 1_006_001), Tick::GiveUp(7));
    s.failed(1_006_001, FULL_WAIT);
    assert_eq!(s.tick(&r, 1_006_500), Tick::Idle { busy: true }, "backing off");
    assert_eq!(s.tick(&r, 1_007_001), Tick::Fetch);
    s.fetched(keys(), 1_007);
    assert_eq!(s.tick(&r, 1_007_100), Tick::Idle { busy: false });
    assert_eq!(s.tick(&r, 1_307_000), Tick::Fetch, "cache_duration passed");
    let waits: Vec<u64> = (1..=8).map(backoff_ms).collect();
    assert_eq!(waits, vec![1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
}

#[test]
fn requests_wait_only_for_a_fetch_that_will_happen() {
    let r = remote();
    let mut s = JwksState::default();
    assert!(s.wait_for_keys(0), "first fetch is due");
    assert_eq!(s.tick(&r, 0), Tick::Fetch);
    s.failed(10_000, FULL_WAIT);
    assert!(!s.wait_for_keys(10_500), "backing off: answer now");
    assert!(s.wait_for_keys(11_000));
    s.started(1, 11_000);
    assert!(s.wait_for_keys(12_000), "a fetch is under way");
}

#[test]
fn unknown_kids_refetch_once_per_interval() {
    let r = remote();
    let mut s = JwksState::default();
    s.fetched(keys(), 100);
    assert_eq!(s.tick(&r, 100_000), Tick::Idle { busy: false });
    assert!(s.wait_for_kid(&r, 100));
    assert_eq!(s.tick(&r, 100_000), Tick::Fetch, "wanted: fetch now");
    assert!(!s.wait_for_kid(&r, 129));
    assert!(s.wait_for_kid(&r, 130));
}

/// The random value that gives a first retry its whole 1 s wait.
const FULL_WAIT: u64 = 500;

#[test]
fn retries_are_jittered_over_the_upper_half_of_the_backoff() {
    for failures in 1..=8 {
        let wait = backoff_ms(failures);
        let waits: Vec<u64> = (0..2000u64)
            .map(|r| jittered(wait, r.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        assert!(waits.iter().all(|w| (wait / 2..=wait).contains(w)), "{wait}: {waits:?}");
        let distinct: std::collections::BTreeSet<u64> = waits.iter().copied().collect();
        assert!(distinct.len() > 200, "spread, not a few values: {}", distinct.len());
    }
    assert_eq!(jittered(0, 12345), 0);
    assert_eq!(jittered(30_000, u64::MAX), 15_000 + u64::MAX % 15_001);
}

#[test]
fn two_workers_failing_together_retry_apart() {
    let r = remote();
    let (mut a, mut b) = (JwksState::default(), JwksState::default());
    a.failed(0, 17);
    b.failed(0, 401);
    let first_fetch = |s: &JwksState| (0..=1000u64).find(|ms| s.tick(&r, *ms) == Tick::Fetch);
    assert_eq!(first_fetch(&a), Some(517));
    assert_eq!(first_fetch(&b), Some(901));
}
