//! Compact JWS parsing, then every verifier on what it parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::jwt::token::parse;
use tollgate_core::jwt::verify::{verify, NoHost};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(token) = parse(text) else {
        return;
    };
    // What the signature covers is the token up to its last dot.
    let last_dot = text.rfind('.').expect("a parsed token has dots");
    assert_eq!(token.signing_input, &text.as_bytes()[..last_dot]);
    assert!(!token.signature.is_empty());
    if let Some(provider) = tollgate_fuzz::example().jwt.providers.first() {
        if let Some(set) = &provider.local {
            for key in &set.keys {
                let _ = verify(token.alg, key, token.signing_input, &token.signature, &NoHost);
            }
        }
    }
});
