//! The proxy-wasm header map serialization as the host hands it over
//! (`HeaderMap::from_wire`, read by tollgate-envoy's raw ABI call): never a
//! panic, and what it accepts writes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::header_map::HeaderMap;

fuzz_target!(|data: &[u8]| {
    let Ok(map) = HeaderMap::from_wire(data.to_vec()) else {
        return;
    };
    assert!(map.iter().count() == map.len());
    if !data.is_empty() {
        // The host sends nothing after the last field; bytes after it are ignored, as the SDK does.
        assert!(data.starts_with(&map.to_wire()), "an accepted map starts with its own serialization");
    }
});
