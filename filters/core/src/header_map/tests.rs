use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// proxy-wasm 0.2.5's `hostcalls::utils::deserialize_map_bytes`, as the
/// SDK reads a header map (it panics where we refuse: the reference is
/// only given well-formed input).
fn sdk_reference(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let size = u32::from_le_bytes(<[u8; 4]>::try_from(&bytes[0..4]).unwrap()) as usize;
    let mut map = Vec::with_capacity(size);
    let mut p = 4 + size * 8;
    for n in 0..size {
        let s = 4 + n * 8;
        let size = u32::from_le_bytes(<[u8; 4]>::try_from(&bytes[s..s + 4]).unwrap()) as usize;
        let key = bytes[p..p + size].to_vec();
        p += size + 1;
        let size = u32::from_le_bytes(<[u8; 4]>::try_from(&bytes[s + 4..s + 8]).unwrap()) as usize;
        let value = bytes[p..p + size].to_vec();
        p += size + 1;
        map.push((String::from_utf8(key).unwrap(), value));
    }
    map
}

fn pairs(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect()
}

fn sample() -> HeaderMap {
    HeaderMap::from_pairs([
        (":method", &b"GET"[..]),
        (":path", b"/a?b=1"),
        ("authorization", b"Bearer x.y.z"),
        ("x-empty", b""),
        ("x-binary", b"\xff\x00\x01"),
        ("x-dup", b"1"),
        ("x-dup", b"2"),
    ])
}

#[test]
fn it_reads_what_the_sdk_reads_without_a_copy_per_pair() {
    let wire = sample().to_wire();
    let map = HeaderMap::from_wire(wire.clone()).unwrap();
    assert_eq!(pairs(&map), sdk_reference(&wire));
    assert_eq!(map.first("x-dup"), Some(&b"1"[..]));
    assert_eq!(map.first(":path"), Some(&b"/a?b=1"[..]));
    assert_eq!(map.first("nope"), None);
    assert_eq!(map.len(), 7);
    assert_eq!(map, sample());
    assert_eq!(HeaderMap::from_wire(Vec::new()).unwrap(), HeaderMap::default());
}

#[test]
fn malformed_maps_are_refused_never_a_panic() {
    let wire = sample().to_wire();
    // Every truncation of a valid map is refused (or, at 0 bytes, empty).
    for cut in 1..wire.len() {
        assert!(HeaderMap::from_wire(wire[..cut].to_vec()).is_err(), "cut at {cut}");
    }
    // A count far over the buffer, a length past its end, a missing NUL.
    let mut huge = wire.clone();
    huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(HeaderMap::from_wire(huge), Err(WireError::Truncated));
    let mut long = wire.clone();
    long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(HeaderMap::from_wire(long), Err(WireError::Truncated));
    let mut no_nul = HeaderMap::from_pairs([("a", &b"b"[..])]).to_wire();
    let last = no_nul.len() - 1;
    no_nul[last] = b'x';
    assert_eq!(HeaderMap::from_wire(no_nul), Err(WireError::Truncated));
    let bad_name = HeaderMap::default();
    let mut wire = bad_name.to_wire();
    wire[0..4].copy_from_slice(&1u32.to_le_bytes());
    wire.extend_from_slice(&1u32.to_le_bytes());
    wire.extend_from_slice(&0u32.to_le_bytes());
    wire.extend_from_slice(&[0xff, 0, 0]);
    assert_eq!(HeaderMap::from_wire(wire), Err(WireError::NameNotUtf8));
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any map round-trips through the wire form and reads as the SDK reads it.
        #[test]
        fn round_trips_and_agrees_with_the_sdk(
            headers in proptest::collection::vec(("[a-z:_-]{0,12}", proptest::collection::vec(any::<u8>(), 0..24)), 0..20)
        ) {
            let map = HeaderMap::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            let wire = map.to_wire();
            let read = HeaderMap::from_wire(wire.clone()).unwrap();
            prop_assert_eq!(pairs(&read), sdk_reference(&wire));
            prop_assert_eq!(pairs(&read), headers);
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = HeaderMap::from_wire(bytes);
        }
    }
}
