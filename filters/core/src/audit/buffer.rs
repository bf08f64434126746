//! The per-worker buffer of encoded events: bounded, oldest dropped first
//! and counted, failed batches put back (within the bound) and retried
//! with exponential backoff. No host: the stage calls it with the clock.

use super::encode::Queued;
use std::collections::VecDeque;

/// First retry after a failure; doubled per further failure up to the cap.
pub const BACKOFF_BASE_NANOS: u64 = 250_000_000;
pub const BACKOFF_CAP_NANOS: u64 = 30_000_000_000;

/// When to try again after `failures` failed attempts in a row (0: now).
pub fn next_attempt_at(now_nanos: u64, failures: u32) -> u64 {
    if failures == 0 {
        return now_nanos;
    }
    let shift = (failures - 1).min(32);
    let delay = BACKOFF_BASE_NANOS.saturating_mul(1u64 << shift).min(BACKOFF_CAP_NANOS);
    now_nanos.saturating_add(delay)
}

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// The buffer was full when a new event came: the oldest went.
    BufferFull,
    /// A failed batch came back to a buffer without room for all of it.
    RetryOverflow,
    /// The buffer shrank (a policy reload with a smaller `buffer_events`).
    Resized,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub buffer_full: u64,
    pub retry_overflow: u64,
    pub resized: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.buffer_full + self.retry_overflow + self.resized
    }

    fn count(&mut self, cause: DropCause, n: u64) {
        let counter = match cause {
            DropCause::BufferFull => &mut self.buffer_full,
            DropCause::RetryOverflow => &mut self.retry_overflow,
            DropCause::Resized => &mut self.resized,
        };
        *counter += n;
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events that entered the buffer (sampled in).
    pub emitted: u64,
    /// Events sampling left out (never buffered).
    pub sampled_out: u64,
    /// Batches the sink accepted.
    pub batches_sent: u64,
    /// Events the sink accepted.
    pub sent: u64,
    pub dropped: Dropped,
    pub batches_failed: u64,
}

#[derive(Debug, Clone)]
pub struct Buffer {
    queue: VecDeque<Queued>,
    capacity: usize,
    /// Failed attempts in a row; 0 after a success.
    failures: u32,
    retry_at: u64,
    /// When the last failure that raised the backoff was counted: a batch
    /// sent before it was part of that attempt.
    failed_at: u64,
    pub counters: Counters,
}

impl Buffer {
    pub fn new(capacity: usize) -> Buffer {
        Buffer {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            failures: 0,
            retry_at: 0,
            failed_at: 0,
            counters: Counters::default(),
        }
    }

    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds an event, dropping the oldest when full.
    pub fn push(&mut self, event: Queued) {
        self.counters.emitted += 1;
        if self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.counters.dropped.count(DropCause::BufferFull, 1);
        }
        self.queue.push_back(event);
    }

    /// Whether a flush may be tried now (not backing off after a failure).
    pub fn ready(&self, now_nanos: u64) -> bool {
        now_nanos >= self.retry_at
    }

    /// The oldest `batch_size` events, out of the buffer.
    pub fn take_batch(&mut self, batch_size: usize) -> Vec<Queued> {
        let n = batch_size.min(self.queue.len());
        self.queue.drain(..n).collect()
    }

    /// The sink took `n` events.
    pub fn sent(&mut self, n: usize) {
        self.counters.sent += n as u64;
        self.counters.batches_sent += 1;
        self.failures = 0;
        self.retry_at = 0;
    }

    /// A batch sent at `sent_nanos` failed: back at the front, oldest
    /// first, as far as the bound allows (its oldest are dropped first),
    /// and the next try backs off. Batches that were out together fail
    /// together (a sink that is down fails every call in flight): the
    /// first of them doubles the backoff, the others, sent before that
    /// failure was known, do not, so an outage of a few seconds is not
    /// taken for `MAX_IN_FLIGHT` times as many failed attempts.
    pub fn requeue_failed(&mut self, batch: Vec<Queued>, now_nanos: u64, sent_nanos: u64) {
        self.counters.batches_failed += 1;
        if self.failures == 0 || sent_nanos >= self.failed_at {
            self.failures = self.failures.saturating_add(1);
            self.retry_at = next_attempt_at(now_nanos, self.failures);
            self.failed_at = now_nanos;
        }
        let room = self.capacity.saturating_sub(self.queue.len());
        let over = batch.len().saturating_sub(room);
        self.counters.dropped.count(DropCause::RetryOverflow, over as u64);
        for event in batch.into_iter().skip(over).rev() {
            self.queue.push_front(event);
        }
    }

    /// Every buffered event dropped (the policy no longer audits), counted
    /// as `resized`.
    pub fn clear(&mut self) {
        let n = self.queue.len();
        self.queue.clear();
        self.counters.dropped.count(DropCause::Resized, n as u64);
    }

    /// A new bound (policy reload); the oldest past it are dropped, counted.
    pub fn resize(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        let over = self.queue.len().saturating_sub(self.capacity);
        self.queue.drain(..over);
        self.counters.dropped.count(DropCause::Resized, over as u64);
    }
}
