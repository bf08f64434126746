use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn norm(raw: &str) -> Result<String, PathError> {
    normalize_path(raw.as_bytes(), Parameters::Reject)
}

fn strip(raw: &str) -> Result<String, PathError> {
    normalize_path(raw.as_bytes(), Parameters::Strip)
}

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
        ("/api/trino/.%2e/datahub", "/api/datahub"),
        ("/api/trino/%2e./datahub", "/api/datahub"),
        ("/api/%2e/datahub", "/api/datahub"),
        ("/../../api/datahub", "/api/datahub"),
        ("/api/datahub/", "/api/datahub/"),
        ("/api/datahub/.", "/api/datahub/"),
        ("/api/datahub/x/..", "/api/datahub/"),
        ("/", "/"),
        ("/..", "/"),
        ("/.", "/"),
        ("/./", "/"),
        ("//", "/"),
        ("/...", "/..."),
        ("/a/.../b", "/a/.../b"),
        ("/a/..x/b", "/a/..x/b"),
        ("/a/x../b", "/a/x../b"),
        // RFC 3986 5.2.4 first, empty segments counted, then slashes merged.
        ("/a//../b", "/a/b"),
        ("/a///../../b", "/a/b"),
        ("/a/b//../../c", "/a/c"),
        ("/a//..", "/a/"),
        ("//../a", "/a"),
        // `\` is `/`, as in Envoy's normalization.
        ("/api\\datahub", "/api/datahub"),
        ("\\api\\datahub", "/api/datahub"),
        ("/api/trino\\..\\datahub", "/api/datahub"),
        ("/api/trino/..\\datahub", "/api/datahub"),
        ("/api/trino\\%2e%2e/datahub", "/api/datahub"),
        ("/a\\\\b", "/a/b"),
    ];
    for (raw, want) in cases {
        assert_eq!(norm(raw).as_deref(), Ok(*want), "input {raw:?}");
    }
}

#[test]
fn keeps_reserved_escapes_encoded() {
    assert_eq!(norm("/api%2fdatahub").as_deref(), Ok("/api%2Fdatahub"));
    assert_eq!(norm("/api%5cdatahub").as_deref(), Ok("/api%5Cdatahub"));
    assert_eq!(norm("/a%3Fb").as_deref(), Ok("/a%3Fb"));
    assert_eq!(norm("/a%3bb").as_deref(), Ok("/a%3Bb"));
    assert_eq!(norm("/100%25").as_deref(), Ok("/100%25"));
    assert_eq!(norm("/a%2F%2Fb").as_deref(), Ok("/a%2F%2Fb"));
}

#[test]
fn escapes_bytes_outside_visible_ascii() {
    assert_eq!(normalize_path(b"/a b", Parameters::Reject).as_deref(), Ok("/a%20b"));
    assert_eq!(
        normalize_path(b"/caf\xc3\xa9", Parameters::Reject).as_deref(),
        Ok("/caf%C3%A9")
    );
    assert_eq!(
        normalize_path(b"/caf%c3%a9", Parameters::Reject).as_deref(),
        Ok("/caf%C3%A9")
    );
}

#[test]
fn refuses_what_another_parser_could_read_differently() {
    let cases: &[(&[u8], PathError)] = &[
        (b"", NOT_ORIGIN_FORM),
        (b"api/datahub", NOT_ORIGIN_FORM),
        (b"*", NOT_ORIGIN_FORM),
        (b"http://evil/api", NOT_ORIGIN_FORM),
        (b"/api/datahub#frag", FRAGMENT),
        (b"/a%zz", BAD_ESCAPE),
        (b"/a%", BAD_ESCAPE),
        (b"/a%4", BAD_ESCAPE),
        (b"/api/datahub%", BAD_ESCAPE),
        (b"/a\x00b", CONTROL),
        (b"/a\x7fb", CONTROL),
        (b"/a\tb", CONTROL),
        (b"/open%00/x", CONTROL),
        (b"/open%0a", CONTROL),
        (b"/open%7F", CONTROL),
        // `;` path parameters (Tomcat and Spring read `..;x` as `..`).
        (b"/api/datahub;x/../trino", PARAMETER),
        (b"/api/..;/trino", PARAMETER),
        (b"/api/%2e%2e;/trino", PARAMETER),
        (b"/api/route;p/x", PARAMETER),
        (b"/;", PARAMETER),
        // Escaped separators next to dot segments.
        (b"/api/datahub/..%2ftrino", HIDDEN_DOT),
        (b"/api/datahub/..%2Ftrino", HIDDEN_DOT),
        (b"/api/datahub/%2e%2e%2ftrino", HIDDEN_DOT),
        (b"/api/datahub/%2e%2e%5ctrino", HIDDEN_DOT),
        (b"/api/datahub/..%5C", HIDDEN_DOT),
        (b"/api/datahub%2f..%2ftrino", HIDDEN_DOT),
        (b"/api/datahub/x%2f..", HIDDEN_DOT),
        (b"/api/.%5ctrino", HIDDEN_DOT),
        (b"/api/.%2f", HIDDEN_DOT),
        (b"/api/a%2f.%2fb", HIDDEN_DOT),
        (b"/api/..%3btrino", HIDDEN_DOT),
        (b"/api/%3b..", HIDDEN_DOT),
        // Double and triple encoding.
        (b"/api/datahub/%252e%252e/trino", HIDDEN_DOT),
        (b"/api/datahub/%252E%252E%252Ftrino", HIDDEN_DOT),
        (b"/api/datahub/%25252e%25252e/trino", HIDDEN_DOT),
        (b"/api/datahub/..%252ftrino", HIDDEN_DOT),
        (b"/open%2500", HIDDEN_DOT),
        // Overlong UTF-8 for `.` and `/`.
        (b"/api/datahub/%c0%ae%c0%ae/trino", HIDDEN_DOT),
        (b"/api/datahub/..%c0%aftrino", HIDDEN_DOT),
        (b"/api/%e0%80%ae", HIDDEN_DOT),
        (b"/api/%f0%80%80%ae", HIDDEN_DOT),
        (b"/api/\xc0\xae\xc0\xae/x", HIDDEN_DOT),
    ];
    for (raw, want) in cases {
        assert_eq!(
            normalize_path(raw, Parameters::Reject),
            Err(*want),
            "input {:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn strip_mode_drops_parameters_per_segment() {
    let cases: &[(&str, Result<&str, PathError>)] = &[
        ("/api/route;p/x", Ok("/api/route/x")),
        ("/api/route;p=1;q=2", Ok("/api/route")),
        ("/api/datahub/..;x/trino", Ok("/api/trino")),
        ("/api/datahub/..;/trino", Ok("/api/trino")),
        ("/api/datahub/%2e%2e;x/trino", Ok("/api/trino")),
        ("/api/datahub/.;x/trino", Ok("/api/datahub/trino")),
        ("/api/;x/datahub", Ok("/api/datahub")),
        ("/api/datahub;", Ok("/api/datahub")),
        ("/api/datahub/..;", Ok("/api/")),
        ("/a;x//../b", Ok("/a/b")),
        ("/api/a;..%2f/x", Ok("/api/a/x")),
        ("/api/..%3b/x", Err(HIDDEN_DOT)),
        ("/api/..;%2f/x", Ok("/x")),
    ];
    for (raw, want) in cases {
        assert_eq!(strip(raw), want.map(String::from), "input {raw:?}");
    }
}

#[test]
fn normal_form_is_a_fixed_point() {
    for raw in [
        "/a//../b",
        "/api\\x/%2e%2e/y/",
        "/caf\u{e9}/%7e/x%2fy",
        "/a b/%41%42",
        "/",
    ] {
        let once = norm(raw).unwrap_or_default();
        assert_eq!(norm(&once).as_deref(), Ok(once.as_str()), "input {raw:?}");
    }
}

#[test]
fn work_is_linear_in_the_length() {
    // 60 KiB of `..` and `//`: quadratic work would take seconds.
    let hostile = format!("/{}", "a/..//%2e%2e/".repeat(5000));
    assert_eq!(norm(&hostile).as_deref(), Ok("/"));
    // A `..` after a long segment is not lost.
    let long = format!("/open/{}/../../api/datahub", "a".repeat(9000));
    assert_eq!(norm(&long).as_deref(), Ok("/api/datahub"));
}
