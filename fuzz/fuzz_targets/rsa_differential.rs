//! Our RSA verification against RustCrypto's `rsa` crate (see
//! `tollgate_fuzz::rsa_diff`): both must agree on every input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tollgate_fuzz::rsa_diff::check(data);
});
