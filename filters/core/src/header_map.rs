//! Request headers as the host serializes them, read without a copy per
//! pair. The proxy-wasm ABI hands a header map over as one buffer:
//! `count: u32`, then `count` pairs of `(name_len: u32, value_len: u32)`,
//! then each name and value followed by a NUL (all little-endian). The
//! SDK turns that into a `String` and a `Vec` per header (about 2.5 µs a
//! request); this keeps the buffer for the values and one `String` for
//! all the names, checked once.

use std::ops::Range;

/// Request headers in order, names as the host gives them (lower-case in
/// Envoy). Equal when they hold the same headers in the same order.
#[derive(Debug, Clone, Default)]
pub struct HeaderMap {
    /// Every name, one after the other (UTF-8, checked when read).
    names: String,
    /// The values (the host's buffer, or built by `from_pairs`).
    values: Vec<u8>,
    /// Where each header's name lies in `names` and its value in `values`.
    pairs: Vec<(Range<u32>, Range<u32>)>,
}

/// Why a serialized header map was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its counts and lengths say, or a missing NUL.
    Truncated,
    /// A name that is not UTF-8 (Envoy never sends one).
    NameNotUtf8,
    /// Over 4 GiB: offsets would not fit.
    TooLarge,
}

impl HeaderMap {
    pub const fn new() -> HeaderMap {
        HeaderMap {
            names: String::new(),
            values: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// Reads the ABI's serialization; `Err` for anything malformed (never
    /// a panic: the bytes come from the host, the parser is fuzzed).
    pub fn from_wire(buf: Vec<u8>) -> Result<HeaderMap, WireError> {
        if buf.is_empty() {
            return Ok(HeaderMap::default());
        }
        if u32::try_from(buf.len()).is_err() {
            return Err(WireError::TooLarge);
        }
        let count = read_u32(&buf, 0).ok_or(WireError::Truncated)? as usize;
        let table_end = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .ok_or(WireError::Truncated)?;
        if table_end > buf.len() {
            return Err(WireError::Truncated);
        }
        let mut names = String::new();
        let mut pairs = Vec::with_capacity(count);
        let mut at = table_end;
        for n in 0..count {
            let name_len = read_u32(&buf, 4 + n * 8).ok_or(WireError::Truncated)? as usize;
            let value_len = read_u32(&buf, 8 + n * 8).ok_or(WireError::Truncated)? as usize;
            let name = field(&buf, at, name_len)?;
            let name = std::str::from_utf8(name).map_err(|_| WireError::NameNotUtf8)?;
            let name_start = offset(names.len())?;
            names.push_str(name);
            let name_range = name_start..offset(names.len())?;
            at += name_len + 1;
            field(&buf, at, value_len)?;
            let value_range = offset(at)?..offset(at + value_len)?;
            at += value_len + 1;
            pairs.push((name_range, value_range));
        }
        Ok(HeaderMap {
            names,
            values: buf,
            pairs,
        })
    }

    /// Builds a map from pairs (tests, the in-memory host).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (K, V)>) -> HeaderMap {
        let mut map = HeaderMap::default();
        for (name, value) in pairs {
            map.push(name.as_ref(), value.as_ref());
        }
        map
    }

    /// Adds a header at the end (a map over 4 GiB keeps what fits).
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let (Ok(n0), Ok(v0)) = (offset(self.names.len()), offset(self.values.len())) else {
            return;
        };
        let (Ok(n1), Ok(v1)) = (
            offset(self.names.len() + name.len()),
            offset(self.values.len() + value.len()),
        ) else {
            return;
        };
        self.names.push_str(name);
        self.values.extend_from_slice(value);
        self.pairs.push((n0..n1, v0..v1));
    }

    /// Every header, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            map: self,
            pairs: self.pairs.iter(),
        }
    }

    /// The first value of a header.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The ABI's serialization of this map (tests and the fuzz target).
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(self.len()).unwrap_or(u32::MAX).to_le_bytes());
        for (name, value) in self.iter() {
            out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        }
        for (name, value) in self.iter() {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }
}

/// The headers of a map, in order, as (name, value).
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    map: &'a HeaderMap,
    pairs: std::slice::Iter<'a, (Range<u32>, Range<u32>)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<(&'a str, &'a [u8])> {
        let (name, value) = self.pairs.next()?;
        let name = self
            .map
            .names
            .get(name.start as usize..name.end as usize)
            .unwrap_or_default();
        let value = self
            .map
            .values
            .get(value.start as usize..value.end as usize)
            .unwrap_or_default();
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pairs.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a HeaderMap {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for HeaderMap {
    fn eq(&self, other: &HeaderMap) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

impl<K: AsRef<str>, V: AsRef<[u8]>> FromIterator<(K, V)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> HeaderMap {
        HeaderMap::from_pairs(iter)
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// `len` bytes at `at`, followed by the NUL the ABI puts after each field.
fn field(buf: &[u8], at: usize, len: usize) -> Result<&[u8], WireError> {
    let end = at.checked_add(len).ok_or(WireError::Truncated)?;
    if buf.get(end) != Some(&0) {
        return Err(WireError::Truncated);
    }
    buf.get(at..end).ok_or(WireError::Truncated)
}

fn offset(n: usize) -> Result<u32, WireError> {
    u32::try_from(n).map_err(|_| WireError::TooLarge)
}

#[cfg(test)]
mod tests;
