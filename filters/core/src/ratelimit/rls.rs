//! Envoy's rate limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), the
//! few messages Tollgate sends and reads, in protobuf wire format written
//! by hand: a protobuf crate would cost the module more than these
//! hundred lines.
//!
//! One descriptor per global limit: `("limit", <name>)`, then one entry per
//! key part, and the requests per period as the descriptor's `limit`
//! override, so the service needs no copy of the policy (tiers and tenant
//! overrides decide the number per request).

use super::Period;

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// One descriptor of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub entries: Vec<(String, String)>,
    pub requests_per_unit: u32,
    pub unit: Period,
}

/// `envoy.type.v3.RateLimitUnit` (and `RateLimitResponse.RateLimit.Unit`).
fn unit_number(period: Period) -> u64 {
    match period {
        Period::Second => 1,
        Period::Minute => 2,
        Period::Hour => 3,
        Period::Day => 4,
    }
}

/// `RateLimitRequest { domain = 1; descriptors = 2; hits_addend = 3 }`.
pub fn encode_request(domain: &str, descriptors: &[Descriptor]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 48 * descriptors.len());
    bytes_field(&mut out, 1, domain.as_bytes());
    for d in descriptors {
        bytes_field(&mut out, 2, &encode_descriptor(d));
    }
    varint_field(&mut out, 3, 1);
    out
}

/// `RateLimitDescriptor { entries = 1 {key = 1; value = 2}; limit = 2
/// {requests_per_unit = 1; unit = 2} }`.
fn encode_descriptor(d: &Descriptor) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    for (key, value) in &d.entries {
        let mut entry = Vec::with_capacity(key.len() + value.len() + 4);
        bytes_field(&mut entry, 1, key.as_bytes());
        bytes_field(&mut entry, 2, value.as_bytes());
        bytes_field(&mut out, 1, &entry);
    }
    let mut limit = Vec::with_capacity(8);
    varint_field(&mut limit, 1, u64::from(d.requests_per_unit));
    varint_field(&mut limit, 2, unit_number(d.unit));
    bytes_field(&mut out, 2, &limit);
    out
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, value);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Code {
    #[default]
    Unknown,
    Ok,
    OverLimit,
}

impl Code {
    fn from_number(n: u64) -> Code {
        match n {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// A descriptor's status, as far as Tollgate reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    pub code: Code,
    /// `current_limit.requests_per_unit`, when the service said.
    pub requests_per_unit: Option<u32>,
    pub limit_remaining: u32,
    /// `duration_until_reset`, in whole seconds rounded up.
    pub reset_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub overall: Code,
    pub statuses: Vec<Status>,
}

/// Most statuses read from one answer: one per descriptor sent, and a
/// policy has far fewer limits per route.
const MAX_STATUSES: usize = 256;

/// Reads a `RateLimitResponse`; unknown fields are skipped.
pub fn decode_response(bytes: &[u8]) -> Result<Response, String> {
    let mut response = Response::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(code)) => response.overall = Code::from_number(code),
            (2, Value::Bytes(status)) if response.statuses.len() < MAX_STATUSES => {
                response.statuses.push(decode_status(status)?)
            }
            _ => {}
        }
    }
    Ok(response)
}

fn decode_status(bytes: &[u8]) -> Result<Status, String> {
    let mut status = Status::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(code)) => status.code = Code::from_number(code),
            (2, Value::Bytes(limit)) => {
                for inner in Fields(limit) {
                    if let (1, Value::Varint(n)) = inner? {
                        status.requests_per_unit = Some(u32::try_from(n).unwrap_or(u32::MAX));
                    }
                }
            }
            (3, Value::Varint(n)) => status.limit_remaining = u32::try_from(n).unwrap_or(u32::MAX),
            (4, Value::Bytes(duration)) => {
                let (mut seconds, mut nanos) = (0u64, 0u64);
                for inner in Fields(duration) {
                    match inner? {
                        (1, Value::Varint(s)) => seconds = s,
                        (2, Value::Varint(n)) => nanos = n,
                        _ => {}
                    }
                }
                status.reset_seconds = Some(seconds.saturating_add(u64::from(nanos > 0)));
            }
            _ => {}
        }
    }
    Ok(status)
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a message, in order; an `Err` ends it.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = self.read();
        if item.is_err() {
            self.0 = &[];
        }
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<(u64, Value<'a>), String> {
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.skip(8)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                let (bytes, rest) = self.0.split_at_checked(len).ok_or("truncated field")?;
                self.0 = rest;
                Value::Bytes(bytes)
            }
            5 => self.skip(4)?,
            wire => return Err(format!("wire type {wire} not read")),
        };
        Ok((tag >> 3, value))
    }

    fn skip(&mut self, n: usize) -> Result<Value<'a>, String> {
        self.0 = self.0.get(n..).ok_or("truncated field")?;
        Ok(Value::Fixed)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for (i, byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = self.0.get(i + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        Err("bad varint".into())
    }
}

/// Each asked descriptor's status and whether it is over. The overall code
/// decides, as in Envoy's `ratelimit` filter: envoyproxy/ratelimit in
/// global shadow mode answers OK over statuses that say OVER_LIMIT. The
/// statuses say which limit; an OVER_LIMIT that names none (a service that
/// sends no statuses) puts every one over. `Err`: neither OK nor
/// OVER_LIMIT, and not one status per descriptor.
pub fn over_limits(response: &Response, asked: usize) -> Result<Vec<(Status, bool)>, String> {
    let given = response.statuses.len();
    if response.overall == Code::Unknown && given != asked {
        return Err(format!("{given} statuses for {asked} descriptors"));
    }
    let status = |n: usize| response.statuses.get(n).copied().unwrap_or_default();
    let over = response.overall == Code::OverLimit;
    let named = (0..asked).any(|n| status(n).code == Code::OverLimit);
    Ok((0..asked)
        .map(|n| {
            let s = status(n);
            (s, over && (!named || s.code == Code::OverLimit))
        })
        .collect())
}
