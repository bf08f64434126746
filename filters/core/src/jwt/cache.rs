//! Bounded per-worker caches keyed by the token: a repeated valid token
//! skips the signature check, a repeated bad one is refused without a
//! second check. Oldest entries go first when full.
//!
//! The key is the token itself, shared (`Rc<str>`) by the map and the
//! eviction order: a lookup compares it whole, so two tokens never share an
//! entry, whatever their hashes. The hash is std's SipHash-1-3 with a
//! per-map random key: about 1/20 of the SHA-256 of the token it replaces,
//! and a client cannot compute which tokens fall in one bucket, so chains
//! stay short (and never longer than the entry bound).

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// Unix seconds.
    expires_at: u64,
    /// Bytes of the value; the key's are counted apart.
    size: usize,
}

#[derive(Debug)]
pub struct Cache<V> {
    entries: HashMap<Rc<str>, Entry<V>>,
    /// Keys, oldest first. A key stays after its entry went (expired or
    /// replaced) until popped or swept; it is live while it is the very
    /// `Rc` the map holds.
    order: VecDeque<Rc<str>>,
    max_entries: usize,
    max_bytes: usize,
    /// Values and every key still held (dead ones in `order` too): what the
    /// cache keeps in memory.
    bytes: usize,
}

impl<V: Clone> Cache<V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Cache<V> {
        Cache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            max_entries,
            max_bytes,
            bytes: 0,
        }
    }

    /// The value, unless it expired (`expires_at` is a unix time).
    pub fn get(&mut self, token: &str, now: u64) -> Option<V> {
        match self.entries.get(token) {
            Some(entry) if now <= entry.expires_at => Some(entry.value.clone()),
            Some(_) => {
                self.remove(token);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `token` until `expires_at`; `size` is the value's
    /// bytes (the token's are added).
    pub fn insert(&mut self, token: &str, value: V, expires_at: u64, size: usize) {
        let total = token.len().saturating_add(size);
        if self.max_entries == 0 || total > self.max_bytes {
            return;
        }
        self.remove(token);
        while self.entries.len() >= self.max_entries || self.bytes + total > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else { break };
            self.bytes = self.bytes.saturating_sub(oldest.len());
            if is_live(&self.entries, &oldest) {
                if let Some(entry) = self.entries.remove(&oldest) {
                    self.bytes = self.bytes.saturating_sub(entry.size);
                }
            }
        }
        let key: Rc<str> = Rc::from(token);
        self.order.push_back(key.clone());
        self.entries.insert(
            key,
            Entry {
                value,
                expires_at,
                size,
            },
        );
        self.bytes += total;
        // Dead keys wait in `order` until popped; keep it bounded.
        if self.order.len() > 2 * self.max_entries {
            let (entries, mut freed) = (&self.entries, 0);
            self.order.retain(|k| {
                let live = is_live(entries, k);
                if !live {
                    freed += k.len();
                }
                live
            });
            self.bytes = self.bytes.saturating_sub(freed);
        }
    }

    /// Drops the entry; its key stays counted while `order` holds it.
    fn remove(&mut self, token: &str) {
        if let Some(entry) = self.entries.remove(token) {
            self.bytes = self.bytes.saturating_sub(entry.size);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Whether this key in `order` is the one the map holds (not a replaced or
/// expired entry's).
fn is_live<V>(entries: &HashMap<Rc<str>, Entry<V>>, key: &Rc<str>) -> bool {
    entries.get_key_value(&**key).is_some_and(|(k, _)| Rc::ptr_eq(k, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn entries_and_bytes_are_bounded_oldest_first() {
        let mut c: Cache<u32> = Cache::new(2, 100);
        c.insert("a.b.one", 1, 10, 3);
        c.insert("a.b.two", 2, 10, 3);
        c.insert("a.b.three", 3, 10, 3);
        assert_eq!(
            (c.get("a.b.one", 0), c.get("a.b.two", 0), c.get("a.b.three", 0)),
            (None, Some(2), Some(3))
        );
        assert_eq!(c.bytes(), 7 + 3 + 9 + 3);
        // 50 + 50 bytes: the whole budget.
        let big = "x".repeat(50);
        c.insert(&big, 4, 10, 50);
        assert_eq!((c.len(), c.bytes()), (1, 100));
        c.insert("y", 5, 10, 0);
        assert_eq!((c.get(&big, 0), c.get("y", 0)), (None, Some(5)));
        // Too large for the cache at all: not kept, nothing evicted.
        c.insert(&"z".repeat(101), 6, 10, 0);
        assert_eq!((c.len(), c.get("y", 0)), (1, Some(5)));
    }

    #[test]
    fn lookups_compare_the_whole_token() {
        let mut c: Cache<u32> = Cache::new(10, 1000);
        c.insert("header.payload.sig", 1, 10, 0);
        assert_eq!(c.get("header.payload.sig", 0), Some(1));
        assert_eq!(c.get("header.payload.siG", 0), None);
        assert_eq!(c.get("header.payload.si", 0), None);
        assert_eq!(c.get("header.payload.sig.", 0), None);
    }

    #[test]
    fn expired_and_replaced_entries_go_and_their_keys_are_freed() {
        let mut c: Cache<u32> = Cache::new(3, 1000);
        c.insert("t1", 1, 10, 5);
        assert_eq!(c.get("t1", 11), None);
        assert!(c.is_empty());
        // The expired entry's key waits in the order until popped.
        assert_eq!(c.bytes(), 2);
        c.insert("t2", 2, 10, 5);
        c.insert("t2", 3, 10, 5);
        assert_eq!((c.len(), c.get("t2", 0)), (1, Some(3)));
        assert_eq!(c.bytes(), 2 + 2 + 7);
        // The replaced t2's key comes out of the order before the live one:
        // it must not take the live entry with it.
        c.insert("t3", 4, 10, 5);
        c.insert("t4", 5, 10, 5);
        c.insert("t5", 6, 10, 5);
        assert_eq!(c.get("t2", 0), None);
        assert_eq!(
            (c.get("t3", 0), c.get("t4", 0), c.get("t5", 0)),
            (Some(4), Some(5), Some(6))
        );
        // Many replacements: the dead keys are swept, the bytes come back.
        for i in 0..20 {
            c.insert("t5", i, 10, 5);
        }
        assert!(c.order.len() <= 6, "{}", c.order.len());
        let keys: usize = c.order.iter().map(|k| k.len()).sum();
        assert_eq!(c.bytes(), keys + 5 * c.len());
    }

    #[test]
    fn a_zero_sized_cache_keeps_nothing() {
        let mut c: Cache<u32> = Cache::new(0, 1000);
        c.insert("t", 1, 10, 0);
        assert_eq!((c.len(), c.bytes(), c.get("t", 0)), (0, 0, None));
    }
}
