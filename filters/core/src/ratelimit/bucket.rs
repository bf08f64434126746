//! Local limits: one token bucket per key, kept in the host's shared data
//! so that every worker of one Envoy counts against the same bucket.
//!
//! Buckets refill at window boundaries of the wall clock (`now / period`):
//! a fresh bucket holds `requests + burst` tokens, and each new window adds
//! `requests`, up to that capacity (as Envoy's `local_ratelimit` does with
//! `max_tokens`, `tokens_per_fill` and `fill_interval`). In any one window
//! a key is admitted at most `requests + burst` times; with `burst: 0`,
//! exactly `requests`.
//!
//! Envoy never deletes a shared-data key (envoy#28339), so a key per
//! client would grow without end. Each limit has a fixed table of
//! `slots_per_limit` slots instead: a key hashes to a slot and probes
//! `MAX_PROBES` slots from there; a slot records the fingerprint of the key
//! it serves and is taken over by another key once it is full again (its
//! key would start afresh anyway). When every probed slot serves a key
//! still counting, the request is not counted (`Counted::SlotsFull`): no
//! request is refused for lack of space.

use super::Period;

/// Bytes of a slot: fingerprint, window, tokens.
pub const SLOT_BYTES: usize = 32;
/// Slots a key may take, from the one it hashes to.
pub const MAX_PROBES: u32 = 4;
/// Compare-and-swap attempts on one slot before giving up.
pub const MAX_CAS_RETRIES: u32 = 8;
/// Shared data is one namespace for every plugin of a VM id: Tollgate's
/// keys carry this prefix (and a format version).
pub const KEY_PREFIX: &str = "tollgate.ratelimit.v1.";

/// One key's bucket as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot {
    /// Of the key counted here; zero for a slot never used.
    pub fingerprint: [u8; 16],
    /// The window the tokens were counted in (`now / period`).
    pub window: u64,
    pub tokens: u64,
}

impl Slot {
    pub fn encode(&self) -> [u8; SLOT_BYTES] {
        let mut out = [0u8; SLOT_BYTES];
        let (fingerprint, rest) = out.split_at_mut(16);
        let (window, tokens) = rest.split_at_mut(8);
        fingerprint.copy_from_slice(&self.fingerprint);
        window.copy_from_slice(&self.window.to_le_bytes());
        tokens.copy_from_slice(&self.tokens.to_le_bytes());
        out
    }

    /// `None` for anything but a slot's bytes (then the slot is free).
    pub fn decode(bytes: &[u8]) -> Option<Slot> {
        let bytes: &[u8; SLOT_BYTES] = bytes.try_into().ok()?;
        let (fingerprint, rest) = bytes.split_at(16);
        let (window, tokens) = rest.split_at(8);
        Some(Slot {
            fingerprint: fingerprint.try_into().ok()?,
            window: u64::from_le_bytes(window.try_into().ok()?),
            tokens: u64::from_le_bytes(tokens.try_into().ok()?),
        })
    }
}

/// The window a moment falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub index: u64,
    /// Until the next window starts (and buckets refill).
    pub resets_in_nanos: u64,
}

impl Window {
    pub fn at(now_nanos: u64, period: Period) -> Window {
        let period_nanos = period.seconds().saturating_mul(1_000_000_000);
        Window {
            index: now_nanos / period_nanos,
            resets_in_nanos: period_nanos - now_nanos % period_nanos,
        }
    }

    /// Whole seconds until the reset, at least 1 (`Retry-After`, `t=`).
    pub fn reset_seconds(&self) -> u64 {
        self.resets_in_nanos.div_ceil(1_000_000_000).max(1)
    }
}

/// A bucket's size: `requests + burst` tokens, `requests` added per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub capacity: u64,
    pub refill: u64,
}

impl Bucket {
    pub fn new(requests: u64, burst: u64) -> Bucket {
        Bucket {
            capacity: requests.saturating_add(burst),
            refill: requests,
        }
    }

    /// The tokens a slot holds in `window`.
    fn tokens_in(&self, slot: &Slot, window: u64) -> u64 {
        let windows = window.saturating_sub(slot.window);
        slot.tokens
            .saturating_add(self.refill.saturating_mul(windows))
            .min(self.capacity)
    }

    /// The slot as this key finds it in `window`: its own bucket refilled,
    /// a fresh one when the slot is free, `None` when another key is still
    /// counting there.
    pub fn claim(&self, stored: Option<&Slot>, fingerprint: [u8; 16], window: u64) -> Option<Slot> {
        let fresh = Slot {
            fingerprint,
            window,
            tokens: self.capacity,
        };
        let Some(stored) = stored else { return Some(fresh) };
        // More than a window ahead of the clock: the limit's period changed
        // or the clock went back. Its count says nothing about now, and
        // kept, it would hold the slot until the clock caught up.
        if stored.window > window.saturating_add(1) {
            return Some(fresh);
        }
        let tokens = self.tokens_in(stored, window);
        if stored.fingerprint == fingerprint {
            return Some(Slot {
                window: window.max(stored.window),
                tokens,
                ..*stored
            });
        }
        let free = stored.window < window && tokens >= self.capacity;
        (free || stored.fingerprint == [0; 16]).then_some(fresh)
    }
}

/// What counting one request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Counted: `allowed` when a token was taken; what is left.
    Counted { allowed: bool, remaining: u64 },
    /// Every probed slot serves another key: not counted, let through.
    SlotsFull,
    /// The slot changed under every attempt: not counted, let through.
    CasRetriesExhausted,
    /// Shared data refused a read or write: not counted, let through.
    StoreFailed,
}

/// The host's shared data, as the buckets use it.
pub trait SlotStore {
    /// The value and its compare-and-swap version; `(None, None)` when absent.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String>;
    /// Writes if `cas` is still the version (`None`: always). `Ok(false)`:
    /// the value changed since it was read.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String>;
}

/// Where a limit keeps slot `i`.
pub fn slot_key(limit: &str, i: u32) -> String {
    format!("{KEY_PREFIX}{limit}.{i}")
}

/// The slot a fingerprint hashes to.
pub fn home_slot(fingerprint: &[u8; 16], slots: u32) -> u32 {
    let mut first = [0u8; 8];
    first.copy_from_slice(fingerprint.get(..8).unwrap_or(&[0; 8]));
    (u64::from_le_bytes(first) % u64::from(slots.max(1))) as u32
}

/// Counts one request of a key against its limit's slots.
pub fn count(
    store: &dyn SlotStore,
    limit: &str,
    slots: u32,
    fingerprint: [u8; 16],
    window: u64,
    bucket: Bucket,
) -> Counted {
    let home = home_slot(&fingerprint, slots);
    for probe in 0..MAX_PROBES.min(slots.max(1)) {
        let key = slot_key(limit, (home + probe) % slots.max(1));
        match count_in(store, &key, fingerprint, window, bucket) {
            Some(counted) => return counted,
            None => continue,
        }
    }
    Counted::SlotsFull
}

/// Counts in one slot; `None` when another key holds it.
fn count_in(store: &dyn SlotStore, key: &str, fingerprint: [u8; 16], window: u64, bucket: Bucket) -> Option<Counted> {
    for _ in 0..MAX_CAS_RETRIES {
        let Ok((value, cas)) = store.get(key) else {
            return Some(Counted::StoreFailed);
        };
        let stored = value.as_deref().and_then(Slot::decode);
        let mut slot = bucket.claim(stored.as_ref(), fingerprint, window)?;
        if slot.tokens == 0 {
            // Nothing taken, nothing to write.
            return Some(Counted::Counted {
                allowed: false,
                remaining: 0,
            });
        }
        slot.tokens -= 1;
        match store.set(key, &slot.encode(), cas) {
            Ok(true) => {
                return Some(Counted::Counted {
                    allowed: true,
                    remaining: slot.tokens,
                })
            }
            Ok(false) => continue,
            Err(_) => return Some(Counted::StoreFailed),
        }
    }
    Some(Counted::CasRetriesExhausted)
}

/// Writes every slot of a limit that is absent, once per table size (a
/// marker key says it was done), so that the request path always finds a
/// slot with a version to compare and swap against: Envoy writes an
/// absent key whatever version is given, which would let two workers both
/// create one bucket and lose a count.
pub fn init_slots(store: &dyn SlotStore, limit: &str, slots: u32) -> Result<(), String> {
    // Not `<prefix><limit>`: limit `a.1` would then be slot 1 of limit `a`
    // (names may hold '.' and digits); no slot key holds ':'.
    let marker = format!("{KEY_PREFIX}{limit}:slots");
    let size = slots.to_string();
    if store.get(&marker)?.0.as_deref() == Some(size.as_bytes()) {
        return Ok(());
    }
    let empty = Slot::default().encode();
    for i in 0..slots {
        let key = slot_key(limit, i);
        if store.get(&key)?.0.is_none() {
            store.set(&key, &empty, None)?;
        }
    }
    store.set(&marker, size.as_bytes(), None).map(|_| ())
}
