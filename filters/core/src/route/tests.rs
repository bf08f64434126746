use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn head<'a>(method: &'a str, host: &'a str, path: &'a str) -> RequestHead<'a> {
    RequestHead { method, host, path }
}

fn path_only(path: PathMatch) -> RouteMatch {
    RouteMatch {
        path,
        methods: vec![],
        hosts: vec![],
    }
}

#[test]
fn prefix_is_segment_aware() {
    let m = path_only(PathMatch::Prefix("/api/datahub".into()));
    for (path, want) in [
        ("/api/datahub", true),
        ("/api/datahub/", true),
        ("/api/datahub/entities", true),
        ("/api/datahubx", false),
        ("/api", false),
    ] {
        assert_eq!(m.rank(&head("GET", "h", path), 0).is_some(), want, "{path}");
    }
    let slash = path_only(PathMatch::Prefix("/api/".into()));
    assert!(slash.rank(&head("GET", "h", "/api/x"), 0).is_some());
    assert!(slash.rank(&head("GET", "h", "/apix"), 0).is_none());
}

#[test]
fn a_slash_ended_prefix_also_matches_the_bare_path() {
    let m = path_only(PathMatch::Prefix("/api/datahub/".into()));
    for (path, want) in [
        ("/api/datahub", true),
        ("/api/datahub/", true),
        ("/api/datahub/x", true),
        ("/api/datahubx", false),
        ("/api", false),
    ] {
        assert_eq!(m.rank(&head("GET", "h", path), 0).is_some(), want, "{path}");
    }
    let root = path_only(PathMatch::Prefix("/".into()));
    assert!(root.rank(&head("GET", "h", "/"), 0).is_some());
    assert!(root.rank(&head("GET", "h", "/x"), 0).is_some());
}

#[test]
fn exact_paths_and_templates_match_with_or_without_a_trailing_slash() {
    let exact = path_only(PathMatch::Exact("/api/admin".into()));
    let exact_slash = path_only(PathMatch::Exact("/api/admin/".into()));
    let root = path_only(PathMatch::Exact("/".into()));
    let template = path_only(PathMatch::Template(parse_template("/api/*").unwrap()));
    for (path, want_exact, want_template) in [
        ("/api/admin", true, true),
        ("/api/admin/", true, true),
        ("/api/admin//", false, false),
        ("/api/adminx", false, true),
        ("/api/admin/x", false, false),
        ("/api", false, false),
        ("/api/", false, false),
    ] {
        let req = head("GET", "h", path);
        assert_eq!(exact.rank(&req, 0).is_some(), want_exact, "exact {path}");
        assert_eq!(exact_slash.rank(&req, 0).is_some(), want_exact, "exact/ {path}");
        assert_eq!(template.rank(&req, 0).is_some(), want_template, "template {path}");
    }
    assert!(root.rank(&head("GET", "h", "/"), 0).is_some());
    assert!(root.rank(&head("GET", "h", "/x"), 0).is_none());
}

#[test]
fn insensitive_matching_ignores_ascii_case_of_literals() {
    let req = head("GET", "h", "/API/DataHub/x");
    for (m, want_sensitive) in [
        (PathMatch::Prefix("/api/datahub".into()), false),
        (PathMatch::Prefix("/api/".into()), false),
        (PathMatch::Template(parse_template("/api/*/x").unwrap()), false),
        (PathMatch::Exact("/api/datahub/x".into()), false),
        (PathMatch::Exact("/API/DataHub/x".into()), true),
    ] {
        let m = path_only(m);
        assert_eq!(m.rank(&req, 0).is_some(), want_sensitive, "{m:?}");
        assert!(m.rank_as(&req, 0, Case::Insensitive).is_some(), "{m:?}");
    }
    let prefix = path_only(PathMatch::Prefix("/api/datahub".into()));
    assert!(prefix
        .rank_as(&head("GET", "h", "/API/DATAHUBX"), 0, Case::Insensitive)
        .is_none());
}

#[test]
fn methods_ignore_case_and_get_covers_head() {
    for (listed, method, want) in [
        ("GET", "GET", true),
        ("GET", "get", true),
        ("GET", "HEAD", true),
        ("GET", "head", true),
        ("DELETE", "delete", true),
        ("DELETE", "DeLeTe", true),
        ("HEAD", "GET", false),
        ("POST", "GET", false),
        ("GET", "GETX", false),
    ] {
        assert_eq!(method_covers(listed, method), want, "{listed} {method}");
    }
    let m = RouteMatch {
        path: PathMatch::Any,
        methods: vec!["GET".into()],
        hosts: vec![],
    };
    assert!(m.rank(&head("HEAD", "h", "/"), 0).is_some());
    assert!(m.rank(&head("post", "h", "/"), 0).is_none());
}

#[test]
fn templates_match_whole_segments() {
    let one = path_only(PathMatch::Template(parse_template("/api/*/entities").unwrap()));
    let rest = path_only(PathMatch::Template(parse_template("/api/*/**").unwrap()));
    for (path, want_one, want_rest) in [
        ("/api/datahub/entities", true, true),
        ("/api/datahub/entities/x", false, true),
        ("/api//entities", false, false),
        ("/api/datahub", false, true),
        ("/api", false, false),
    ] {
        assert_eq!(one.rank(&head("GET", "h", path), 0).is_some(), want_one, "one {path}");
        assert_eq!(
            rest.rank(&head("GET", "h", path), 0).is_some(),
            want_rest,
            "rest {path}"
        );
    }
}

#[test]
fn bad_templates_say_why() {
    assert_eq!(parse_template("api").unwrap_err(), "must start with '/'");
    assert_eq!(
        parse_template("/a/**/b").unwrap_err(),
        "'**' may only be the last segment"
    );
    assert!(parse_template("/a/b*").unwrap_err().contains("mixes"));
    assert_eq!(parse_template("/a//b").unwrap_err(), "empty segment");
}

#[test]
fn methods_and_hosts_filter() {
    let m = RouteMatch {
        path: PathMatch::Any,
        methods: vec!["POST".into()],
        hosts: vec![
            HostMatch::Exact("api.example.com".into()),
            HostMatch::Suffix(".example.org".into()),
        ],
    };
    assert!(m.rank(&head("POST", "api.example.com", "/"), 0).is_some());
    assert!(m.rank(&head("GET", "api.example.com", "/"), 0).is_none());
    assert!(m.rank(&head("POST", "a.example.org", "/"), 0).is_some());
    assert!(m.rank(&head("POST", "example.org", "/"), 0).is_none());
    assert!(m.rank(&head("POST", "other.com", "/"), 0).is_none());
}

#[test]
fn precedence_prefers_the_most_specific() {
    let req = head("POST", "api.example.com", "/api/trino/query");
    let prefix_short = path_only(PathMatch::Prefix("/api".into())).rank(&req, 0);
    let prefix_long = path_only(PathMatch::Prefix("/api/trino".into())).rank(&req, 1);
    let exact = path_only(PathMatch::Exact("/api/trino/query".into())).rank(&req, 2);
    let with_method = RouteMatch {
        path: PathMatch::Prefix("/api/trino".into()),
        methods: vec!["POST".into()],
        hosts: vec![],
    }
    .rank(&req, 3);
    assert!(prefix_long > prefix_short);
    assert!(exact > prefix_long);
    assert!(with_method > prefix_long);
    assert!(exact > with_method);
    // The path ranks before the host: a client picks the Host.
    let host_only = RouteMatch {
        path: PathMatch::Any,
        methods: vec![],
        hosts: vec![HostMatch::Exact("api.example.com".into())],
    }
    .rank(&req, 4);
    let host_and_short_prefix = RouteMatch {
        path: PathMatch::Prefix("/api".into()),
        methods: vec![],
        hosts: vec![HostMatch::Exact("api.example.com".into())],
    }
    .rank(&req, 5);
    assert!(prefix_short > host_only);
    assert!(prefix_long > host_and_short_prefix);
    assert!(host_and_short_prefix > prefix_short);
    // The longest literal ranks before the kind: a catch-all template does
    // not take over a longer prefix; at equal length the template wins.
    let catch_all = path_only(PathMatch::Template(parse_template("/**").unwrap())).rank(&req, 6);
    let two_stars = path_only(PathMatch::Template(parse_template("/*/*/**").unwrap())).rank(&req, 7);
    let template_long = path_only(PathMatch::Template(parse_template("/api/trino/**").unwrap())).rank(&req, 8);
    assert!(prefix_short > catch_all);
    assert!(prefix_short > two_stars);
    assert!(template_long > prefix_long);
    assert!(exact > template_long);
    // Same specificity: the earlier route wins.
    assert!(
        path_only(PathMatch::Prefix("/api".into())).rank(&req, 0)
            > path_only(PathMatch::Prefix("/api".into())).rank(&req, 5)
    );
}

#[test]
fn hosts_are_normalized() {
    for (raw, want) in [
        ("API.Example.com", "api.example.com"),
        ("api.example.com:8080", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("[::1]:10000", "[::1]"),
        ("[::1]", "[::1]"),
        ("[::FFFF:127.0.0.1]", "[::ffff:127.0.0.1]"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("svc_a.ns:65535", "svc_a.ns"),
        ("h:0", "h"),
    ] {
        assert_eq!(normalize_host(raw.as_bytes()), Ok(want.to_string()), "{raw}");
    }
}

#[test]
fn malformed_authorities_are_refused() {
    let long_label = format!("{}.com", "a".repeat(64));
    let long_name = format!("{}com", "abcdefghi.".repeat(26));
    for (raw, why) in [
        ("", "has an empty or over-long host"),
        (".", "has an empty or over-long host"),
        (":80", "has an empty or over-long host"),
        (long_name.as_str(), "has an empty or over-long host"),
        ("api.example.com:", "has a bad port"),
        ("api.example.com:http", "has a bad port"),
        ("api.example.com:65536", "has a bad port"),
        ("api.example.com:123456", "has a bad port"),
        ("api.example.com:-1", "has a bad port"),
        ("api.example.com:80:80", "has a bad port"),
        ("a:b:c", "has a bad port"),
        ("user@api.example.com", "is not a host name"),
        ("user:pw@api.example.com", "has a bad port"),
        ("api.example.com@evil.com", "is not a host name"),
        ("api..example.com", "is not a host name"),
        ("api.example.com..", "is not a host name"),
        (".api.example.com", "is not a host name"),
        ("api example.com", "is not a host name"),
        ("api%2eexample.com", "is not a host name"),
        ("api.example.com/x", "is not a host name"),
        (long_label.as_str(), "is not a host name"),
        ("[::1", "has no closing ']'"),
        ("[]", "is not an IPv6 address in brackets"),
        ("[::1%25eth0]", "is not an IPv6 address in brackets"),
        ("[::1]x", "has text after ']'"),
        ("[::1]:", "has a bad port"),
        ("[::1]:99999", "has a bad port"),
        ("::1", "has a bad port"),
    ] {
        assert_eq!(normalize_host(raw.as_bytes()), Err(why), "{raw}");
    }
    assert_eq!(normalize_host(b"caf\xc3\xa9.com"), Err("is not a host name"));
    assert_eq!(normalize_host(b"\xff.com"), Err("is not ASCII"));
}

/// Small ranks covering every value each field compares on.
fn some_ranks() -> Vec<Rank> {
    let mut all = Vec::new();
    for exact in [false, true] {
        for literal_len in 0..2 {
            for path_kind in 0..4 {
                for host in [(0, 0), (1, 4), (1, 9), (2, 4)] {
                    for method in [false, true] {
                        for order in 0..2 {
                            all.push(Rank {
                                exact,
                                literal_len,
                                path_kind,
                                host,
                                method,
                                order: Reverse(order),
                            });
                        }
                    }
                }
            }
        }
    }
    all
}

#[test]
fn the_deciding_step_is_the_first_field_the_order_compares() {
    let ranks = some_ranks();
    for a in &ranks {
        for b in &ranks {
            let step = a.decided_by(b);
            assert_eq!(step.is_some(), a > b, "{a:?} vs {b:?}");
            let Some(step) = step else { continue };
            // Every field before the deciding one is equal, and the
            // deciding one favours `a`.
            let favours = match step {
                Precedence::ExactPath => a.exact && !b.exact,
                Precedence::LongerPath => a.literal_len > b.literal_len,
                Precedence::PathKind => a.path_kind > b.path_kind,
                Precedence::Host => a.host > b.host,
                Precedence::Method => a.method && !b.method,
                Precedence::FirstInFile => a.order > b.order,
            };
            assert!(favours, "{step:?}: {a:?} vs {b:?}");
            let earlier_equal = |x: &Rank, y: &Rank| match step {
                Precedence::ExactPath => true,
                Precedence::LongerPath => x.exact == y.exact,
                Precedence::PathKind => (x.exact, x.literal_len) == (y.exact, y.literal_len),
                Precedence::Host => (x.exact, x.literal_len, x.path_kind) == (y.exact, y.literal_len, y.path_kind),
                Precedence::Method => {
                    (x.exact, x.literal_len, x.path_kind, x.host) == (y.exact, y.literal_len, y.path_kind, y.host)
                }
                Precedence::FirstInFile => {
                    (x.exact, x.literal_len, x.path_kind, x.host, x.method)
                        == (y.exact, y.literal_len, y.path_kind, y.host, y.method)
                }
            };
            assert!(
                earlier_equal(a, b),
                "{step:?}: an earlier field differs: {a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn real_matches_are_decided_at_the_step_the_docs_name() {
    let exact = path_only(PathMatch::Exact("/api/x".into()));
    let prefix = path_only(PathMatch::Prefix("/api/x".into()));
    let short = path_only(PathMatch::Prefix("/api".into()));
    let template = path_only(PathMatch::Template(parse_template("/api/*").unwrap()));
    let any = path_only(PathMatch::Prefix("/api".into()));
    let get = RouteMatch {
        methods: vec!["GET".into()],
        ..path_only(PathMatch::Prefix("/api".into()))
    };
    let hosted = RouteMatch {
        hosts: vec![HostMatch::Exact("h".into())],
        ..path_only(PathMatch::Prefix("/api".into()))
    };
    let req = head("GET", "h", "/api/x");
    let rank = |m: &RouteMatch, order| m.rank(&req, order).unwrap();
    assert_eq!(
        rank(&exact, 1).decided_by(&rank(&prefix, 0)),
        Some(Precedence::ExactPath)
    );
    assert_eq!(
        rank(&prefix, 1).decided_by(&rank(&short, 0)),
        Some(Precedence::LongerPath)
    );
    assert_eq!(
        rank(&template, 1).decided_by(&rank(&short, 0)),
        Some(Precedence::PathKind)
    );
    assert_eq!(rank(&hosted, 1).decided_by(&rank(&short, 0)), Some(Precedence::Host));
    assert_eq!(rank(&get, 1).decided_by(&rank(&short, 0)), Some(Precedence::Method));
    assert_eq!(
        rank(&short, 0).decided_by(&rank(&any, 1)),
        Some(Precedence::FirstInFile)
    );
    assert_eq!(rank(&any, 1).decided_by(&rank(&short, 0)), None);
}
