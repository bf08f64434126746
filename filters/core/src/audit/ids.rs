//! Times and ids of an event: RFC 3339 time from Unix nanoseconds, UUID v4
//! event ids from random bytes, and the trace id of a W3C `traceparent`.

use std::fmt::Write;

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`, proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], from March
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// `2024-02-29T12:34:56.123456789Z`: always nine fraction digits, UTC.
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let nanos = unix_nanos % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(30);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    out
}

/// A UUID v4 (RFC 9562) from 16 random bytes: version 4, variant 10.
pub fn uuid_v4(random: [u8; 16]) -> String {
    let mut b = random;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn lower_hex(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn all_zero(s: &[u8]) -> bool {
    s.iter().all(|b| *b == b'0')
}

/// The trace id of a W3C Trace Context `traceparent`
/// (`00-<32 hex>-<16 hex>-<2 hex>`), or `None` when it is not one: ids of
/// lower-case hex and not all zeros, version `ff` refused, version 00
/// exactly 55 bytes, later versions may add `-`-led fields.
pub fn trace_id(traceparent: &[u8]) -> Option<String> {
    let version = traceparent.get(0..2)?;
    let trace = traceparent.get(3..35)?;
    let parent = traceparent.get(36..52)?;
    let flags = traceparent.get(53..55)?;
    let dashes = [2, 35, 52].iter().all(|i| traceparent.get(*i) == Some(&b'-'));
    let tail = traceparent.get(55..).unwrap_or_default();
    let tail_ok = match version {
        b"00" => tail.is_empty(),
        _ => tail.is_empty() || tail.first() == Some(&b'-'),
    };
    let valid = dashes
        && tail_ok
        && version != b"ff"
        && [version, trace, parent, flags].iter().all(|f| lower_hex(f))
        && !all_zero(trace)
        && !all_zero(parent);
    valid.then(|| String::from_utf8_lossy(trace).into_owned())
}
