//! The rate limit service's answer (`ratelimit::rls::decode_response`), bytes
//! from the network: never a panic, at most one status per descriptor
//! bound, and a request Tollgate encodes always reads back as a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::ratelimit::rls;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = rls::decode_response(data) {
        assert!(response.statuses.len() <= 256);
    }
    // Whatever the bytes, as entry values they encode without a panic.
    let text = String::from_utf8_lossy(data).into_owned();
    let d = rls::Descriptor {
        entries: vec![("limit".into(), text.clone()), ("tenant".into(), text)],
        requests_per_unit: u32::from(data.first().copied().unwrap_or(0)),
        unit: tollgate_core::ratelimit::Period::Minute,
    };
    let bytes = rls::encode_request("tollgate", &[d]);
    assert!(rls::decode_response(&bytes).is_ok(), "the request is well-formed protobuf");
});
