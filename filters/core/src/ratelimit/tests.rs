use super::answer::LimitState;
use super::bucket::{self, Bucket, Counted, Slot, SlotStore, Window};
use super::*;
use crate::decision::Action;
use crate::header_map::HeaderMap;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Shared data as Envoy keeps it: a version per key, bumped on each
/// write; a write with a stale version fails; an absent key is written
/// whatever the version.
#[derive(Default)]
struct Store {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next: Cell<u32>,
    /// Writes that fail as if another worker had written first.
    lose: Cell<u32>,
}

impl SlotStore for Store {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        Ok(match self.map.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        if self.lose.get() > 0 {
            self.lose.set(self.lose.get() - 1);
            return Ok(false);
        }
        let mut map = self.map.borrow_mut();
        if let (Some(cas), Some((_, now))) = (cas, map.get(key)) {
            if cas != *now {
                return Ok(false);
            }
        }
        self.next.set(self.next.get() + 1);
        map.insert(key.to_string(), (value.to_vec(), self.next.get()));
        Ok(true)
    }
}

const SECOND: u64 = 1_000_000_000;

fn admitted(store: &Store, fp: [u8; 16], window: u64, bucket: Bucket, tries: usize) -> usize {
    (0..tries)
        .filter(|_| {
            matches!(
                bucket::count(store, "l", 16, fp, window, bucket),
                Counted::Counted { allowed: true, .. }
            )
        })
        .count()
}

#[test]
fn a_window_admits_requests_plus_burst_then_refills_by_requests_up_to_the_capacity() {
    let store = Store::default();
    bucket::init_slots(&store, "l", 16).unwrap();
    let fp = key::fingerprint("l", &["acme".into()]);
    let b = Bucket::new(5, 2);
    assert_eq!(
        admitted(&store, fp, 10, b, 20),
        7,
        "a fresh bucket holds requests + burst"
    );
    assert_eq!(admitted(&store, fp, 11, b, 20), 5, "a new window adds requests");
    assert_eq!(
        admitted(&store, fp, 20, b, 20),
        7,
        "unused windows refill up to the capacity"
    );
    let other = key::fingerprint("l", &["globex".into()]);
    assert_eq!(admitted(&store, other, 20, b, 3), 3, "another key has its own bucket");
    let none = Bucket::new(0, 0);
    assert_eq!(admitted(&store, key::fingerprint("l", &["z".into()]), 20, none, 3), 0);
}

#[test]
fn a_lost_compare_and_swap_is_retried_and_never_double_counts() {
    let store = Store::default();
    bucket::init_slots(&store, "l", 16).unwrap();
    let fp = key::fingerprint("l", &["a".into()]);
    store.lose.set(3);
    let counted = bucket::count(&store, "l", 16, fp, 1, Bucket::new(2, 0));
    assert_eq!(
        counted,
        Counted::Counted {
            allowed: true,
            remaining: 1
        }
    );
    store.lose.set(bucket::MAX_CAS_RETRIES);
    assert_eq!(
        bucket::count(&store, "l", 16, fp, 1, Bucket::new(2, 0)),
        Counted::CasRetriesExhausted
    );
    assert_eq!(
        admitted(&store, fp, 1, Bucket::new(2, 0), 5),
        1,
        "the lost attempts took nothing"
    );
}

#[test]
fn slots_are_taken_over_only_when_their_key_is_done_and_full_tables_let_requests_through() {
    let store = Store::default();
    let slots = 2;
    bucket::init_slots(&store, "l", slots).unwrap();
    let b = Bucket::new(1, 0);
    let keys: Vec<[u8; 16]> = (0..3).map(|i| key::fingerprint("l", &[i.to_string().into()])).collect();
    let results: Vec<Counted> = keys
        .iter()
        .map(|fp| bucket::count(&store, "l", slots, *fp, 7, b))
        .collect();
    assert_eq!(results.iter().filter(|c| **c == Counted::SlotsFull).count(), 1);
    // Next window: every bucket is full again, so any key may take a slot.
    let later = bucket::count(&store, "l", slots, keys[2], 8, b);
    assert_eq!(
        later,
        Counted::Counted {
            allowed: true,
            remaining: 0
        }
    );
}

#[test]
fn slot_tables_are_prepared_once_per_size_and_never_reset() {
    let store = Store::default();
    bucket::init_slots(&store, "l", 4).unwrap();
    let fp = key::fingerprint("l", &["a".into()]);
    bucket::count(&store, "l", 4, fp, 3, Bucket::new(1, 0));
    let writes = store.next.get();
    bucket::init_slots(&store, "l", 4).unwrap();
    assert_eq!(store.next.get(), writes, "a second worker writes nothing");
    let home = bucket::slot_key("l", bucket::home_slot(&fp, 4));
    let before = store.map.borrow().get(&home).cloned();
    bucket::init_slots(&store, "l", 8).unwrap();
    assert_eq!(
        store.map.borrow().get(&home).cloned(),
        before,
        "growing wrote over no slot"
    );
    assert_eq!(store.map.borrow().len(), 8 + 1);
    assert!(store.map.borrow().keys().all(|k| k.starts_with(bucket::KEY_PREFIX)));
}

#[test]
fn slots_and_windows_round_trip() {
    let slot = Slot {
        fingerprint: [7; 16],
        window: u64::MAX - 1,
        tokens: 42,
    };
    assert_eq!(Slot::decode(&slot.encode()), Some(slot));
    assert_eq!(Slot::decode(b"short"), None);
    let w = Window::at(61 * SECOND + 1, Period::Minute);
    assert_eq!(w.index, 1);
    assert_eq!(w.reset_seconds(), 59);
    assert_eq!(Window::at(0, Period::Second).reset_seconds(), 1);
    assert_eq!(Window::at(86_400 * SECOND, Period::Day).index, 1);
}

fn limit(key: &[&str]) -> Limit {
    Limit {
        name: "l".into(),
        key: key.iter().filter_map(|k| KeyPart::parse(k)).collect(),
        requests: 50,
        period: Period::Minute,
        burst: 0,
        tiers: vec![("premium".into(), 500)],
        tenants: vec![("std-001".into(), 1000)],
        scope: Scope::Local,
        mode: Mode::Enforce,
    }
}

#[test]
fn tenant_overrides_beat_tier_overrides_beat_the_default() {
    let l = limit(&["tenant"]);
    assert_eq!(l.requests_for(Some("STD-001"), Some("premium")), 1000);
    assert_eq!(l.requests_for(Some("acme"), Some("premium")), 500);
    assert_eq!(l.requests_for(Some("acme"), Some("standard")), 50);
    assert_eq!(l.requests_for(None, None), 50);
}

#[test]
fn keys_read_each_part_and_missing_values_share_the_empty_bucket() {
    let headers = HeaderMap::from_pairs([("x-api-key", "k1"), ("x-long", &*"v".repeat(300))]);
    let inputs = key::KeyInputs {
        tenant: Some("acme"),
        tier: None,
        subject: Some("ann"),
        client_ip: Some("10.0.0.1"),
        route: "trino",
        headers: &headers,
    };
    let l = limit(&[
        "tenant",
        "tier",
        "subject",
        "client_ip",
        "route",
        "header:X-Api-Key",
        "header:x-long",
    ]);
    let values = key::values(&l, &inputs);
    let texts: Vec<&str> = values.iter().map(|v| v.as_ref()).collect();
    assert_eq!(&texts[..6], ["acme", "", "ann", "10.0.0.1", "trino", "k1"]);
    assert!(texts[6].starts_with("sha256:") && texts[6].len() < 64);
    assert_ne!(
        key::fingerprint("l", &["ab".into(), "c".into()]),
        key::fingerprint("l", &["a".into(), "bc".into()]),
        "parts are length-prefixed"
    );
    assert_ne!(
        key::fingerprint("l", &["a".into()]),
        key::fingerprint("m", &["a".into()])
    );
    for bad in ["header:", "header::path", "ip", "header:a b", "Tenant"] {
        assert_eq!(KeyPart::parse(bad), None, "{bad}");
    }
}

#[test]
fn the_client_address_is_the_peer_or_the_trusted_hop_of_x_forwarded_for() {
    let xff = HeaderMap::from_pairs([
        ("x-forwarded-for", "203.0.113.9, 10.1.1.1"),
        ("x-forwarded-for", "10.2.2.2"),
    ]);
    let peer = Some(&b"192.0.2.7:51000"[..]);
    assert_eq!(key::client_ip(peer, &xff, 0).as_deref(), Some("192.0.2.7"));
    assert_eq!(key::client_ip(peer, &xff, 1).as_deref(), Some("10.2.2.2"));
    assert_eq!(key::client_ip(peer, &xff, 3).as_deref(), Some("203.0.113.9"));
    assert_eq!(
        key::client_ip(peer, &xff, 4).as_deref(),
        Some("192.0.2.7"),
        "too few hops: the peer"
    );
    let v6 = Some(&b"[2001:db8::0:1]:443"[..]);
    assert_eq!(
        key::client_ip(v6, &HeaderMap::default(), 0).as_deref(),
        Some("2001:db8::1")
    );
    let junk = HeaderMap::from_pairs([("x-forwarded-for", "not-an-ip")]);
    assert_eq!(key::client_ip(peer, &junk, 1), None);
}

#[test]
fn requests_encode_as_the_service_reads_them_and_answers_decode() {
    let d = rls::Descriptor {
        entries: vec![("limit".into(), "trino".into()), ("tenant".into(), "acme".into())],
        requests_per_unit: 300,
        unit: Period::Minute,
    };
    let bytes = rls::encode_request("tollgate", &[d]);
    // domain(1) "tollgate", descriptor(2){entry(1){1:"limit",2:"trino"}, ...}, hits_addend(3)=1
    assert_eq!(&bytes[..10], b"\x0a\x08tollgate");
    assert!(bytes
        .windows(7)
        .any(|w| w == b"\x12\x05trino"[..7].as_ref() || w == b"\x0a\x05limit"));
    assert_eq!(&bytes[bytes.len() - 2..], [0x18, 1]);
    // The override: {1: 300 (varint ac 02), 2: MINUTE (2)}.
    assert!(bytes
        .windows(7)
        .any(|w| w == [0x12, 0x05, 0x08, 0xac, 0x02, 0x10, 0x02]));

    // overall OVER_LIMIT, one status {code 2, limit {1: 10}, remaining 0, reset {1: 4, 2: 5}}.
    let answer = [
        0x08, 0x02, 0x12, 0x0e, 0x08, 0x02, 0x12, 0x02, 0x08, 0x0a, 0x18, 0x00, 0x22, 0x04, 0x08, 0x04, 0x10, 0x05,
    ];
    let response = rls::decode_response(&answer).unwrap();
    assert_eq!(response.overall, rls::Code::OverLimit);
    assert_eq!(
        response.statuses,
        [rls::Status {
            code: rls::Code::OverLimit,
            requests_per_unit: Some(10),
            limit_remaining: 0,
            reset_seconds: Some(5),
        }]
    );
    for bad in [&[0x12, 0x30][..], &[0xff; 11], &[0x0b], &[0x12]] {
        assert!(rls::decode_response(bad).is_err(), "{bad:?}");
    }
}

fn count(limit: usize, mode: Mode, over: bool, remaining: u64) -> LimitCount {
    LimitCount {
        limit,
        mode,
        over,
        state: Some(LimitState {
            name: format!("l{limit}"),
            quota: 10,
            window_seconds: 60,
            remaining,
            reset_seconds: 30 + limit as u64,
        }),
    }
}

#[test]
fn the_first_enforced_limit_over_decides_and_shadow_limits_only_observe() {
    let counts = [
        count(0, Mode::Shadow, true, 0),
        count(1, Mode::Enforce, false, 3),
        count(2, Mode::Enforce, true, 0),
        count(3, Mode::Enforce, true, 0),
    ];
    let (action, deciding) = verdict(&counts);
    assert_eq!(action, Action::Deny(RATE_LIMITED));
    assert_eq!(deciding.map(|c| c.limit), Some(2));
    assert_eq!(retry_after(&counts[2], Period::Minute), "32");
    let (action, deciding) = verdict(&counts[..2]);
    assert_eq!(
        (action, deciding.map(|c| c.limit)),
        (Action::ShadowDeny(RATE_LIMITED), Some(0))
    );
    assert_eq!(verdict(&counts[1..2]).0, Action::Allow);
    assert_eq!(verdict(&[]).0, Action::Allow);
}

#[test]
fn headers_follow_the_chosen_style() {
    let counts = [
        count(0, Mode::Enforce, false, 4),
        count(1, Mode::Enforce, false, 2),
        count(2, Mode::Shadow, true, 0),
    ];
    let ietf = answer_headers(HeaderStyle::Ietf, &counts);
    assert_eq!(
        ietf,
        [
            (
                "ratelimit-policy".to_string(),
                "\"l0\";q=10;w=60, \"l1\";q=10;w=60".to_string()
            ),
            ("ratelimit".to_string(), "\"l0\";r=4;t=30, \"l1\";r=2;t=31".to_string()),
        ]
    );
    let x = answer_headers(HeaderStyle::XRatelimit, &counts);
    assert_eq!(
        x,
        [
            ("x-ratelimit-limit".to_string(), "10".to_string()),
            ("x-ratelimit-remaining".to_string(), "2".to_string()),
            ("x-ratelimit-reset".to_string(), "31".to_string()),
        ]
    );
    assert!(answer_headers(HeaderStyle::None, &counts).is_empty());
}

#[test]
fn every_limit_has_its_counters_and_the_tag_regex_finds_its_name() {
    let limits = [
        limit(&["tenant"]),
        Limit {
            name: "b.c".into(),
            ..limit(&["route"])
        },
    ];
    let names = limit_metric_names(&limits);
    assert_eq!(names.len(), 6);
    assert_eq!(
        names
            .get(limit_metric_index(1, Outcome::ShadowLimited))
            .map(String::as_str),
        Some("tollgate.ratelimit.limit.b.c.shadow_limited")
    );
    let all = metric_names();
    assert_eq!(
        all.get(counter_index(Counter::SlotsFull)).map(String::as_str),
        Some("tollgate.ratelimit.slots_full")
    );
    assert_eq!(
        all.get(denied_index(RATE_LIMITED, Mode::Shadow)).map(String::as_str),
        Some("tollgate.ratelimit.shadow_denied.rate_limited")
    );
    assert!(LIMIT_TAG_REGEX.starts_with("^wasmcustom\\.tollgate\\.ratelimit\\.limit\\."));
}

#[test]
fn a_tenant_counts_the_worst_outcome_of_its_request() {
    let count = |over, mode| LimitCount {
        limit: 0,
        mode,
        over,
        state: None,
    };
    assert_eq!(request_outcome(&[]), None);
    let allowed = count(false, Mode::Enforce);
    let shadow = count(true, Mode::Shadow);
    let limited = count(true, Mode::Enforce);
    assert_eq!(request_outcome(std::slice::from_ref(&allowed)), Some(Outcome::Allowed));
    assert_eq!(
        request_outcome(&[allowed.clone(), shadow.clone()]),
        Some(Outcome::ShadowLimited)
    );
    assert_eq!(request_outcome(&[shadow, limited, allowed]), Some(Outcome::Limited));
    let names = tenant_metric_names(&["ACME", "globex-2"]);
    assert_eq!(
        names
            .get(limit_metric_index(1, Outcome::ShadowLimited))
            .map(String::as_str),
        Some("tollgate.ratelimit.tenant.globex-2.shadow_limited")
    );
    assert_eq!(names.len(), 6);
}

#[test]
fn the_decision_record_names_the_limit() {
    let json: serde_json::Value =
        serde_json::from_slice(&record("trino", Mode::Enforce, Action::Deny(RATE_LIMITED), Some("t"))).unwrap();
    assert_eq!(json["filter"], "ratelimit");
    assert_eq!(json["reason"], "rate_limited");
    assert_eq!(json["limit"], "t");
    let allow: serde_json::Value = serde_json::from_slice(&record("r", Mode::Enforce, Action::Allow, None)).unwrap();
    assert!(allow.get("limit").is_none());
}

#[test]
fn a_slot_counted_in_a_window_far_ahead_of_the_clock_is_not_held_forever() {
    // A limit's period changed from second to day under the same name, or
    // the wall clock stepped back: slots carry windows far ahead of now.
    let store = Store::default();
    bucket::init_slots(&store, "l", 4).unwrap();
    let b = Bucket::new(1, 0);
    let by_second = 1_700_000_000;
    let keys: Vec<[u8; 16]> = (0..4).map(|i| key::fingerprint("l", &[i.to_string().into()])).collect();
    let fill = |fp: [u8; 16]| bucket::count(&store, "l", 4, fp, by_second, b);
    assert!(keys.iter().all(|fp| matches!(fill(*fp), Counted::Counted { .. })));
    let by_day = by_second / 86_400;
    assert_eq!(
        admitted(&store, keys[0], by_day, b, 2),
        1,
        "the key is counted afresh, not held until the clock catches up"
    );
    let newcomer = key::fingerprint("l", &["new".into()]);
    assert!(
        matches!(
            bucket::count(&store, "l", 4, newcomer, by_day, b),
            Counted::Counted { .. }
        ),
        "a new key may take a slot"
    );
    // One window ahead is a worker that read the clock a moment later.
    let fp = keys[1];
    let next = by_day + 7;
    assert_eq!(admitted(&store, fp, next + 1, b, 1), 1);
    assert_eq!(admitted(&store, fp, next, b, 1), 0, "still counted in its window");
}

#[test]
fn a_limit_named_like_another_limits_slot_leaves_that_slot_alone() {
    let store = Store::default();
    bucket::init_slots(&store, "a", 4).unwrap();
    let fp = (0..)
        .map(|i| key::fingerprint("a", &[i.to_string().into()]))
        .find(|fp| bucket::home_slot(fp, 4) == 1)
        .unwrap();
    let b = Bucket::new(1, 0);
    assert_eq!(admitted_in(&store, "a", fp, 5, b), 1);
    // Limit "a.1" is a legal name: its marker must not be slot 1 of "a".
    bucket::init_slots(&store, "a.1", 4).unwrap();
    assert_eq!(admitted_in(&store, "a", fp, 5, b), 0, "a's count survived");
}

fn admitted_in(store: &Store, limit: &str, fp: [u8; 16], window: u64, bucket: Bucket) -> usize {
    let counted = bucket::count(store, limit, 4, fp, window, bucket);
    usize::from(matches!(counted, Counted::Counted { allowed: true, .. }))
}

#[test]
fn the_overall_code_decides_and_statuses_say_which_limit() {
    let status = |code| rls::Status {
        code,
        ..rls::Status::default()
    };
    let over = |overall, statuses: Vec<rls::Status>, asked| {
        let response = rls::Response { overall, statuses };
        rls::over_limits(&response, asked).map(|v| v.iter().map(|(_, over)| *over).collect::<Vec<_>>())
    };
    use rls::Code::{OverLimit, Unknown};
    // envoyproxy/ratelimit in global shadow mode: OK over OVER_LIMIT statuses.
    assert_eq!(over(rls::Code::Ok, vec![status(OverLimit)], 1), Ok(vec![false]));
    assert_eq!(
        over(OverLimit, vec![status(rls::Code::Ok), status(OverLimit)], 2),
        Ok(vec![false, true])
    );
    // OVER_LIMIT that names no descriptor (a service that sends no
    // statuses): every limit asked about is over, not a failed call.
    assert_eq!(over(OverLimit, vec![], 2), Ok(vec![true, true]));
    assert_eq!(over(OverLimit, vec![status(rls::Code::Ok)], 1), Ok(vec![true]));
    assert!(over(Unknown, vec![], 1).is_err(), "an answer that says nothing");
}
