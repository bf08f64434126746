use super::normalize;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn normalizes_the_dodges() {
    let cases: &[(&str, &str)] = &[
        ("/api/datahub", "/api/datahub"),
        ("/api/trino/../datahub", "/api/datahub"),
        ("/api//datahub", "/api/datahub"),
        ("//api///datahub//x", "/api/datahub/x"),
        ("/api/./datahub", "/api/datahub"),
        ("/api/%64atahub", "/api/datahub"),
        ("/api/trino/%2e%2e/datahub", "/api/datahub"),
        ("/api/trino/%2E%2E/datahub", "/api/datahub"),
        ("/../../api/datahub", "/api/datahub"),
        ("/api/datahub?x=/../trino", "/api/datahub"),
        ("/api/datahub#frag", "/api/datahub"),
        ("/api/datahub/", "/api/datahub/"),
        ("/api/datahub/.", "/api/datahub/"),
        ("/api/datahub/x/..", "/api/datahub/"),
        ("", "/"),
        ("/", "/"),
        ("/..", "/"),
        ("*", "/*"),
        ("api/datahub", "/api/datahub"),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize(raw.as_bytes()), *want, "input {raw:?}");
    }
}

#[test]
fn keeps_reserved_escapes_encoded() {
    assert_eq!(normalize(b"/api%2fdatahub"), "/api%2Fdatahub");
    assert_eq!(normalize(b"/a%3Fb"), "/a%3Fb");
    assert_eq!(normalize(b"/a%zz"), "/a%25zz");
    assert_eq!(normalize(b"/a%"), "/a%25");
    assert_eq!(normalize(b"/a%4"), "/a%254");
}

#[test]
fn escapes_bytes_outside_visible_ascii() {
    assert_eq!(normalize(b"/a b"), "/a%20b");
    assert_eq!(normalize(b"/caf\xc3\xa9"), "/caf%C3%A9");
    assert_eq!(normalize(b"/a\x00b"), "/a%00b");
}

#[test]
fn bounds_the_work_on_huge_paths() {
    let long = "/a".repeat(super::MAX_PATH_LEN);
    assert!(normalize(long.as_bytes()).len() <= super::MAX_PATH_LEN);
}
