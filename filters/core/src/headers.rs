//! Header names as applications read them. CGI/WSGI-style servers
//! (gunicorn, PHP, Rack) turn `x-user-id`, `x_user_id` and `x-user_id` into
//! one variable, so a managed header must be removed in every spelling.

/// Whether two header names are one variable to a CGI-style server: equal
/// once `_` is read as `-` and case is ignored.
pub fn same_variable(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// The names, as sent, of every request header a CGI-style server would
/// read as `managed`, `managed` itself included, each once.
pub fn spellings<'h>(headers: &'h crate::header_map::HeaderMap, managed: &str) -> Vec<&'h str> {
    let mut out: Vec<&str> = Vec::new();
    for (name, _) in headers {
        if same_variable(name, managed) && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Removals for every spelling of `managed` the client sent other than
/// `managed` itself, added to `edits` unless already there.
pub fn remove_other_spellings(
    edits: &mut Vec<(String, Option<String>)>,
    headers: &crate::header_map::HeaderMap,
    managed: &str,
) {
    for name in spellings(headers, managed) {
        if name != managed && !edits.iter().any(|(h, v)| h == name && v.is_none()) {
            edits.push((name.to_string(), None));
        }
    }
}

/// Removals for every header the client sent whose name is one of `strip`
/// in some spelling, each once: only names actually sent cost a hostcall.
pub fn strip_removals<'h>(
    strip: &[String],
    headers: &'h crate::header_map::HeaderMap,
) -> Vec<(&'h str, Option<&'h str>)> {
    let mut out: Vec<(&str, Option<&str>)> = Vec::new();
    for (name, _) in headers {
        let listed = strip.iter().any(|s| same_variable(name, s));
        if listed && !out.iter().any(|(n, _)| *n == name) {
            out.push((name, None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn underscore_and_dash_spellings_are_one_variable() {
        let cases = [
            ("x-user-id", "x-user-id", true),
            ("x_user_id", "x-user-id", true),
            ("x-user_id", "x-user-id", true),
            ("X_USER-ID", "x-user-id", true),
            ("x-user-idx", "x-user-id", false),
            ("x.user.id", "x-user-id", false),
            ("xuser-id", "x-user-id", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(same_variable(a, b), want, "{a} {b}");
        }
    }

    #[test]
    fn other_spellings_become_removals_once() {
        let h = |n: &str| (n.to_string(), b"v".to_vec());
        let headers: crate::header_map::HeaderMap = [
            h("x_user_id"),
            h("x-user-id"),
            h("x_user_id"),
            h("x-user_id"),
            h("host"),
        ]
        .into_iter()
        .collect();
        let mut edits = vec![("x-user-id".to_string(), None)];
        remove_other_spellings(&mut edits, &headers, "x-user-id");
        assert_eq!(
            edits,
            vec![
                ("x-user-id".to_string(), None),
                ("x_user_id".to_string(), None),
                ("x-user_id".to_string(), None),
            ]
        );
        assert_eq!(
            spellings(&headers, "x-user-id"),
            vec!["x_user_id", "x-user-id", "x-user_id"]
        );
    }

    #[test]
    fn stripped_headers_are_removed_in_every_spelling_sent_once() {
        let h = |n: &str| (n.to_string(), b"v".to_vec());
        let headers: crate::header_map::HeaderMap = [
            h("x-original-url"),
            h("X_Original_URL"),
            h("x-original-url"),
            h("x-original-urls"),
            h("forwarded"),
        ]
        .into_iter()
        .collect();
        let strip = vec!["x-original-url".to_string(), "x-http-method".to_string()];
        assert_eq!(
            strip_removals(&strip, &headers),
            vec![("x-original-url", None), ("X_Original_URL", None)]
        );
        assert!(strip_removals(&[], &headers).is_empty());
    }
}
