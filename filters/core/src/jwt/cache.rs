//! Bounded per-worker caches keyed by a SHA-256 of the token: a repeated
//! valid token skips the signature check, a repeated bad one is refused
//! without a second check. Oldest entries go first when full.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

pub type TokenHash = [u8; 32];

pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug)]
pub struct Cache<V> {
    entries: HashMap<TokenHash, (V, u64, usize)>,
    order: VecDeque<TokenHash>,
    max_entries: usize,
    max_bytes: usize,
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
    pub fn get(&mut self, key: &TokenHash, now: u64) -> Option<V> {
        match self.entries.get(key) {
            Some((value, expires_at, _)) if now <= *expires_at => Some(value.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&mut self, key: TokenHash, value: V, expires_at: u64, size: usize) {
        if self.max_entries == 0 || size > self.max_bytes {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((_, _, old_size)) = self.entries.remove(&oldest) {
                self.bytes -= old_size;
            }
        }
        self.entries.insert(key, (value, expires_at, size));
        self.order.push_back(key);
        self.bytes += size;
        // Removed keys stay in `order` until popped; keep it bounded.
        if self.order.len() > 2 * self.max_entries {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    fn remove(&mut self, key: &TokenHash) {
        if let Some((_, _, size)) = self.entries.remove(key) {
            self.bytes -= size;
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
