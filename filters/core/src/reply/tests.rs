use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const FORBIDDEN: Denial = Denial {
    status: 403,
    reason: "tenant_unknown",
    message: "tenant is not known",
    bearer_error: None,
};

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

#[test]
fn body_is_the_documented_json() {
    let reply = FORBIDDEN.reply(Some(b"abc-123"), "tollgate");
    assert_eq!(reply.status, 403);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "tenant is not known", "reason": "tenant_unknown", "request_id": "abc-123"})
    );
    assert_eq!(header(&reply, "content-type"), Some("application/json"));
    assert_eq!(header(&reply, "x-request-id"), Some("abc-123"));
    assert_eq!(header(&reply, "www-authenticate"), None);
}

#[test]
fn hostile_request_ids_are_not_echoed() {
    for id in [&b"a\r\nset-cookie: x"[..], &[b'a'; 200][..], &b"\xff\xfe"[..]] {
        let reply = FORBIDDEN.reply(Some(id), "tollgate");
        assert_eq!(header(&reply, "x-request-id"), None);
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["request_id"], "");
    }
}

#[test]
fn a_401_always_challenges() {
    let missing = Denial {
        status: 401,
        reason: "tenant_required",
        message: "a tenant is required",
        bearer_error: None,
    };
    let reply = missing.reply(None, "tollgate");
    assert_eq!(header(&reply, "www-authenticate"), Some("Bearer realm=\"tollgate\""));
    let invalid = Denial {
        bearer_error: Some("invalid_token"),
        message: "token expired",
        ..missing
    };
    assert_eq!(
        header(&invalid.reply(None, "api"), "www-authenticate"),
        Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\"")
    );
}

#[test]
fn a_stage_adds_fields_after_the_standard_ones_as_valid_json() {
    let mut reply = FORBIDDEN.reply(Some(b"r1"), "api");
    reply.add_fields(&[("limit".into(), "per-\"tenant\"".into())]);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["limit"], "per-\"tenant\"");
    assert_eq!(body["request_id"], "r1");
    let text = String::from_utf8(reply.body).unwrap();
    assert!(text.ends_with(r#","limit":"per-\"tenant\""}"#), "{text}");
}
