//! A policy as the filters get it (JSON plugin configuration): decoding,
//! compiling and, when it compiles, the lint `tollgate validate` runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::policy::{lint, parse_doc, Policy};

fuzz_target!(|data: &[u8]| {
    let compiled = Policy::from_json(data);
    let doc = parse_doc(data);
    if let (Ok(policy), Ok(doc)) = (&compiled, &doc) {
        let _ = lint::warnings(doc, policy);
    }
    // A policy that compiles decoded without errors.
    if compiled.is_ok() {
        assert!(doc.is_ok(), "compiles but parse_doc refuses it: {:?}", doc.err());
    }
});
