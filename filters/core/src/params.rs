//! Query parameter and cookie names as the stacks behind a proxy read them:
//! a token or `_method` parameter is found, and removed, under every name
//! some framework reads as it.

use std::borrow::Cow;

/// Whether a decoded parameter or cookie name reads as `source` to some
/// stack: PHP drops leading spaces, ends the name at a NUL (`strlen`) and
/// turns `.`, ` ` (`+`) and `[` into `_`; ASP.NET compares names without
/// regard to case.
pub fn same_param(sent: &str, source: &str) -> bool {
    let fold = |b: u8| match b {
        b'.' | b' ' | b'[' => b'_',
        _ => b.to_ascii_lowercase(),
    };
    let sent = sent.trim_start_matches(' ');
    let sent = sent.split_once('\0').map_or(sent, |(head, _)| head);
    sent.len() == source.len() && sent.bytes().zip(source.bytes()).all(|(a, b)| fold(a) == fold(b))
}

/// A raw name url-decoded as PHP decodes `$_GET` and `$_COOKIE` names. A
/// name with `&` reads as its part before it: more is found, never less.
pub fn decoded_name(raw: &[u8]) -> Cow<'_, str> {
    form_urlencoded::parse(raw).next().map_or(Cow::Borrowed(""), |(k, _)| k)
}

/// Every parameter of a query as PHP reads it (split on `&`) and as Rack 2
/// and Python < 3.9.2 do (split on `;` too): each `&` piece whole, then
/// each of its `;` pieces after the first. Linear: every byte is read twice.
pub fn query_params(query: &[u8]) -> impl Iterator<Item = &[u8]> {
    query
        .split(|b| *b == b'&')
        .flat_map(|piece| std::iter::once(piece).chain(piece.split(|b| *b == b';').skip(1)))
}

/// The `&`/`;` pieces of a query or form, each with the separator sent
/// before it (the first has none), but those whose decoded name reads as
/// one of `names` (`same_param`). `None` when no piece is named.
pub fn unnamed_pieces<'q>(query: &'q [u8], names: &[&str]) -> Option<Vec<(Option<u8>, &'q [u8])>> {
    let named = |piece: &[u8]| names.iter().any(|n| same_param(&decoded_name(piece), n));
    // Most carry no such name: nothing is built for them.
    if !query.split(|b| *b == b'&' || *b == b';').any(named) {
        return None;
    }
    let mut sep = None;
    let mut pieces: Vec<(Option<u8>, &[u8])> = Vec::new();
    let mut rest = query;
    while let Some(i) = rest.iter().position(|b| *b == b'&' || *b == b';') {
        pieces.push((sep, rest.get(..i)?));
        sep = rest.get(i).copied();
        rest = rest.get(i + 1..)?;
    }
    pieces.push((sep, rest));
    Some(pieces.into_iter().filter(|(_, p)| !named(p)).collect())
}
