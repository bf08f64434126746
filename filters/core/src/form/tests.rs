use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded");

fn policy() -> Policy {
    let doc = serde_json::json!({
        "version": 1,
        "defaults": {"jwt": {"requirement": "none"}},
        "routes": [
            {"name": "params", "match": {"prefix": "/params"}, "jwt": {"requirement": "required", "providers": ["query"]}},
            {"name": "headers", "match": {"prefix": "/headers"}, "jwt": {"requirement": "optional", "providers": ["header"]}},
            {"name": "rules", "match": {"prefix": "/rules"}, "jwt": {"requirement": "optional", "providers": ["header"], "rules": [
                {"claim": "roles", "contains": "admin", "methods": ["DELETE"]},
            ]}},
            {"name": "open", "match": {"prefix": "/open"}},
        ],
        "jwt": {"providers": [
            {"name": "query", "issuer": "https://q.test", "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
             "from_params": ["access_token", "token"]},
            {"name": "header", "issuer": "https://h.test", "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
             "from_params": []},
        ]},
    });
    Policy::from_json(doc.to_string().as_bytes()).unwrap()
}

fn route<'p>(p: &'p Policy, name: &str) -> &'p Route {
    p.routes.iter().find(|r| r.name == name).unwrap()
}

#[test]
fn form_content_types_are_recognized_by_media_type() {
    for (ct, want) in [
        (&b"application/x-www-form-urlencoded"[..], true),
        (b"Application/X-WWW-Form-URLEncoded; charset=UTF-8", true),
        (b"  application/x-www-form-urlencoded ;charset=utf-8", true),
        (b"application/x-www-form-urlencoded2", false),
        (b"multipart/form-data; boundary=x", false),
        (b"application/json", false),
        (b"", false),
    ] {
        assert_eq!(is_form(ct), want, "{}", String::from_utf8_lossy(ct));
    }
}

#[test]
fn a_token_is_found_under_every_spelling_of_its_name() {
    let names = ["access_token", "token"];
    let found = |body: &str| read_form(&names, FORM, body.as_bytes()).map(|f| f.token);
    let token = |t: &str| Ok(FormToken::Found(t.to_string()));
    assert_eq!(found("a=1&access_token=abc.def.ghi&b=2"), token("abc.def.ghi"));
    assert_eq!(found("ACCESS.TOKEN=abc"), token("abc"));
    assert_eq!(found("access%5Ftoken=abc"), token("abc"));
    assert_eq!(found("x=1;access+token=abc"), token("abc"));
    assert_eq!(found("access_token%00x=abc"), token("abc"));
    assert_eq!(found("token=a%2Bb"), token("a+b"));
    assert_eq!(found("access-token=abc&tokens=x"), Ok(FormToken::Absent));
    assert_eq!(found(""), Ok(FormToken::Absent));
}

#[test]
fn two_token_parameters_are_malformed() {
    let names = ["access_token", "token"];
    for body in [
        "access_token=a&access_token=b",
        "access_token=a&Access_Token=a",
        "access_token=a&token=b",
        "access_token=a;token=b",
        "token=a&token=b&token=c",
    ] {
        let got = read_form(&names, FORM, body.as_bytes()).map(|f| f.token);
        assert_eq!(got, Ok(FormToken::Malformed), "{body}");
    }
    assert_eq!(FormToken::Malformed.into_result(), Err(JwtDenial::Malformed));
    assert_eq!(FormToken::Absent.into_result(), Ok(None));
    assert_eq!(FormToken::Found("t".into()).into_result(), Ok(Some("t".into())));
}

#[test]
fn method_overrides_are_found_as_in_the_query() {
    let got = read_form(&[], FORM, b"_method=delete&a=1;%5FMETHOD=Put&_method_=x");
    assert_eq!(
        got.map(|f| f.method_overrides),
        Ok(vec!["DELETE".to_string(), "PUT".to_string()])
    );
}

#[test]
fn only_forms_are_read_and_only_up_to_the_bound() {
    let names = ["access_token"];
    let json = read_form(&names, Some(b"application/json"), b"access_token=a&_method=DELETE");
    let empty = FormFindings {
        token: FormToken::Absent,
        method_overrides: Vec::new(),
    };
    assert_eq!(json, Ok(empty.clone()));
    assert_eq!(read_form(&names, None, b"access_token=a"), Ok(empty));
    let mut big = vec![b'a'; MAX_FORM_BODY_BYTES];
    assert!(read_form(&names, FORM, &big).is_ok());
    big.push(b'a');
    assert_eq!(read_form(&names, FORM, &big), Err(TOO_LARGE));
    assert_eq!((TOO_LARGE.status, TOO_LARGE.reason), (413, "form_body_too_large"));
}

#[test]
fn the_body_is_needed_for_token_params_or_when_overrides_matter() {
    let p = policy();
    assert_eq!(token_params(&p, route(&p, "params")), ["access_token", "token"]);
    assert!(token_params(&p, route(&p, "headers")).is_empty());
    assert!(token_params(&p, route(&p, "open")).is_empty());
    assert!(needs_body(&p, route(&p, "params"), FORM));
    assert!(!needs_body(&p, route(&p, "params"), Some(b"application/json")));
    assert!(!needs_body(&p, route(&p, "params"), None));
    // No token parameters, no route by method, no method rule.
    assert!(!needs_body(&p, route(&p, "headers"), FORM));
    assert!(!needs_body(&p, route(&p, "open"), FORM));
    // A DELETE rule: a `_method=DELETE` in the body must meet it.
    assert!(method_overrides_matter(&p, route(&p, "rules")));
    assert!(needs_body(&p, route(&p, "rules"), FORM));
}

#[test]
fn a_route_listing_methods_makes_overrides_matter_everywhere() {
    let doc = serde_json::json!({
        "version": 1,
        "routes": [
            {"name": "purge", "match": {"prefix": "/api/purge", "methods": ["DELETE"]}},
            {"name": "other", "match": {"prefix": "/other"}},
        ],
    });
    let p = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    assert!(method_overrides_matter(&p, route(&p, "other")));
    assert!(needs_body(&p, &p.fallback, FORM));
    assert!(!needs_body(&p, &p.fallback, Some(b"text/plain")));
}

#[test]
fn token_parameters_are_removed_keeping_every_other_byte() {
    let names = ["access_token"];
    let strip = |body: &str| without_params(body.as_bytes(), &names).map(|b| String::from_utf8(b).unwrap());
    assert_eq!(strip("a=%41&access_token=x;b=c+d"), Some("a=%41;b=c+d".into()));
    assert_eq!(strip("ACCESS.TOKEN=x&a=1"), Some("a=1".into()));
    assert_eq!(strip("access_token=x"), Some(String::new()));
    assert_eq!(strip("a=1&&access%5Ftoken=x&b"), Some("a=1&&b".into()));
    assert_eq!(strip("a=1&access-token=x"), None);
    assert_eq!(without_params(b"access_token=x", &[]), None);
}

/// A form's `_method` values meet the route's method-scoped rules as the
/// request's own method does; a token is refused whatever else.
#[test]
fn a_judged_body_binds_method_rules_and_refuses_tokens() {
    let policy = crate::policy::Policy::from_json(
        br#"{"version": 1,
        "routes": [{"name": "trino", "match": {"prefix": "/api/trino"}, "jwt": {"requirement": "required",
            "rules": [{"claim": "roles", "contains": "data-engineer", "methods": ["POST"]}]}}],
        "jwt": {"providers": [{"name": "p", "issuer": "https://idp.test", "from_params": ["access_token"],
            "hmac_secret_base64": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]}}"#,
    )
    .unwrap();
    let route = &policy.routes[0];
    let analyst: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"roles": ["analyst"]}"#).unwrap();
    let engineer: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"roles": ["data-engineer"]}"#).unwrap();
    let form = |body: &str| {
        read_form(
            &["access_token"],
            Some(b"application/x-www-form-urlencoded"),
            body.as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(judge_body(route, Some(&analyst), &form("a=1")), Ok(()));
    let as_post = form("_method=post");
    assert_eq!(
        judge_body(route, Some(&analyst), &as_post).map_err(|d| d.reason),
        Err("insufficient_scope")
    );
    assert_eq!(judge_body(route, Some(&engineer), &as_post), Ok(()));
    let with_token = form("access_token=x.y.z");
    assert_eq!(judge_body(route, Some(&engineer), &with_token), Err(TOKEN_IN_BODY));
}
