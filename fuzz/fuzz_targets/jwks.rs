//! A JWKS body as fetched from an IdP (or a policy's local_jwks).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::jwt::jwk::{Alg, KeySet, MAX_KEYS};
use tollgate_core::jwt::verify::verify_in_rust;

fuzz_target!(|data: &[u8]| {
    let each = KeySet::parse_each(data);
    if let Ok((set, _skipped)) = KeySet::parse(data) {
        assert!(set.keys.len() <= MAX_KEYS);
        assert!(each.is_ok(), "parse accepts what parse_each refuses");
        for key in &set.keys {
            for alg in Alg::ALL {
                let _ = key.accepts(alg);
                let _ = set.select(key.kid.as_deref(), alg);
                // Any key the set holds must take any signature without panicking.
                let _ = verify_in_rust(alg, &key.kind, b"header.payload", &data[..data.len().min(600)]);
            }
            if let Some(kid) = &key.kid {
                assert!(set.has_kid(kid));
            }
        }
    }
});
