//! The lifecycle of one provider's remote JWKS, as plain state: when to
//! fetch, when keys are stale or gone, when a request may wait for a fetch.
//! The glue does the host calls and asks this what to do.

use super::config::RemoteJwks;
use super::jwk::KeySet;
use super::Keys;
use std::rc::Rc;

/// A call whose answer has not come this long after its timeout is given up.
const GIVE_UP_GRACE_MS: u64 = 5000;
const MAX_BACKOFF_MS: u64 = 30_000;

#[derive(Debug, Default, Clone)]
pub struct JwksState {
    /// The last good key set and when it was fetched (unix seconds).
    keys: Option<(Rc<KeySet>, u64)>,
    /// A fetch under way: its call token and start (unix ms).
    pending: Option<(u32, u64)>,
    next_attempt_ms: u64,
    failures: u32,
    last_kid_refetch: Option<u64>,
    /// A request waits for keys: fetch on the next tick, backoff allowing.
    wanted: bool,
}

/// What the root's tick should do for one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    Fetch,
    /// The pending call with this token will not answer any more.
    GiveUp(u32),
    /// Nothing now; `busy` asks for the fast tick.
    Idle {
        busy: bool,
    },
}

/// Wait between failed attempts: 1 s, 2 s, 4 s ... at most 30 s.
pub fn backoff_ms(failures: u32) -> u64 {
    (1000u64 << failures.clamp(1, 6).saturating_sub(1)).min(MAX_BACKOFF_MS)
}

/// `wait` spread over its upper half by `random` ("equal jitter"): the
/// workers of every pod that lost the IdP at the same moment do not all
/// come back at the same moment, and none retries sooner than half the wait.
pub fn jittered(wait: u64, random: u64) -> u64 {
    let half = wait / 2;
    half + random % (wait - half + 1)
}

impl JwksState {
    /// The keys for a request at `now` (unix seconds): stale once a refresh
    /// is overdue, gone after `stale_ttl`.
    pub fn keys(&self, remote: &RemoteJwks, now: u64) -> Keys {
        match &self.keys {
            Some((set, at)) if now.saturating_sub(*at) <= remote.stale_ttl => {
                let refresh_due = remote.cache_duration + remote.timeout_ms / 1000 + 1;
                Keys::Ready {
                    set: set.clone(),
                    stale: now.saturating_sub(*at) > refresh_due,
                }
            }
            _ => Keys::Unavailable,
        }
    }

    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    pub fn tick(&self, remote: &RemoteJwks, now_ms: u64) -> Tick {
        if let Some((token, started)) = self.pending {
            if now_ms.saturating_sub(started) > remote.timeout_ms + GIVE_UP_GRACE_MS {
                return Tick::GiveUp(token);
            }
            return Tick::Idle { busy: true };
        }
        let age_due = self
            .keys
            .as_ref()
            .is_none_or(|(_, at)| (now_ms / 1000).saturating_sub(*at) >= remote.cache_duration);
        if (age_due || self.wanted) && now_ms >= self.next_attempt_ms {
            Tick::Fetch
        } else {
            Tick::Idle {
                busy: self.keys.is_none() || self.wanted,
            }
        }
    }

    pub fn started(&mut self, token: u32, now_ms: u64) {
        self.pending = Some((token, now_ms));
    }

    pub fn fetched(&mut self, set: KeySet, now: u64) {
        self.keys = Some((Rc::new(set), now));
        self.pending = None;
        self.wanted = false;
        self.failures = 0;
        self.next_attempt_ms = 0;
    }

    /// A failed attempt: the last good keys stay, the next try backs off
    /// (jittered by `random`, any value from the host's random source).
    pub fn failed(&mut self, now_ms: u64, random: u64) {
        self.pending = None;
        self.wanted = false;
        self.failures = self.failures.saturating_add(1);
        self.next_attempt_ms = now_ms.saturating_add(jittered(backoff_ms(self.failures), random));
    }

    /// A request found no keys: it may wait if a fetch is under way or due.
    pub fn wait_for_keys(&mut self, now_ms: u64) -> bool {
        let may = self.pending.is_some() || now_ms >= self.next_attempt_ms;
        self.wanted |= may;
        may
    }

    /// A token's `kid` is unknown: one refetch per `min_refetch_interval`.
    pub fn wait_for_kid(&mut self, remote: &RemoteJwks, now: u64) -> bool {
        if self
            .last_kid_refetch
            .is_some_and(|t| now.saturating_sub(t) < remote.min_refetch_interval)
        {
            return false;
        }
        self.last_kid_refetch = Some(now);
        self.wanted = true;
        true
    }
}

#[cfg(test)]
mod tests;
