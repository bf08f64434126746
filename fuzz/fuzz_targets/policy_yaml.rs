//! A policy file as `tollgate validate` and `cargo xtask render` read it
//! (YAML, duplicate keys and nulls refused, depth bounded), then compiled
//! by core. Whatever the YAML reader accepts compiles the same as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = tollgate_cli::policy_file::check_policy(text) {
        // What render hands the filters: the same policy as JSON.
        let json = value.to_string();
        assert!(
            Policy::from_json(json.as_bytes()).is_ok(),
            "valid as YAML, refused as JSON: {json}"
        );
    }
});
