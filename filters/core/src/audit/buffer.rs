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
    /// The sink refused them for good, not to be retried: a whole batch
    /// answered 4xx (not 408 or 429), records a Kafka REST answer marks
    /// non-retriable, OTLP's partial success.
    Rejected,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub buffer_full: u64,
    pub retry_overflow: u64,
    pub resized: u64,
    pub rejected: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.buffer_full + self.retry_overflow + self.resized + self.rejected
    }

    fn count(&mut self, cause: DropCause, n: u64) {
        let counter = match cause {
            DropCause::BufferFull => &mut self.buffer_full,
            DropCause::RetryOverflow => &mut self.retry_overflow,
            DropCause::Resized => &mut self.resized,
            DropCause::Rejected => &mut self.rejected,
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
    /// Batches that failed and came back to be retried.
    pub batches_failed: u64,
    /// Batches the sink refused for good (4xx): their events dropped.
    pub batches_rejected: u64,
}

/// Bytes of event JSON a worker's buffer holds at most, whatever
/// `buffer_events` says: events are bounded by what the request carries
/// (path, captured headers, claims), so a count alone would not bound memory.
pub const MAX_BUFFER_BYTES: usize = 64 << 20;
/// Bytes of event JSON one batch carries at most (one POST body).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct Buffer {
    queue: VecDeque<Queued>,
    capacity: usize,
    /// Bytes of JSON in `queue`.
    bytes: usize,
    max_bytes: usize,
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
        Buffer::with_max_bytes(capacity, MAX_BUFFER_BYTES)
    }

    pub fn with_max_bytes(capacity: usize, max_bytes: usize) -> Buffer {
        Buffer {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
            max_bytes,
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

    /// Bytes of JSON buffered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds an event, dropping the oldest while over either bound.
    pub fn push(&mut self, event: Queued) {
        self.counters.emitted += 1;
        self.bytes += event.json.len();
        self.queue.push_back(event);
        while self.queue.len() > self.capacity || (self.bytes > self.max_bytes && self.queue.len() > 1) {
            self.pop_oldest(DropCause::BufferFull);
        }
    }

    fn pop_oldest(&mut self, cause: DropCause) {
        if let Some(old) = self.queue.pop_front() {
            self.bytes -= old.json.len();
            self.counters.dropped.count(cause, 1);
        }
    }

    /// Whether a flush may be tried now (not backing off after a failure).
    pub fn ready(&self, now_nanos: u64) -> bool {
        now_nanos >= self.retry_at
    }

    /// The last attempt failed: the next waits for its backoff.
    pub fn backing_off(&self) -> bool {
        self.failures > 0
    }

    /// The oldest `batch_size` events, out of the buffer; fewer when they
    /// would carry more than `MAX_BATCH_BYTES` (never none).
    pub fn take_batch(&mut self, batch_size: usize) -> Vec<Queued> {
        let mut batch = Vec::with_capacity(batch_size.min(self.queue.len()));
        let mut size = 0;
        while batch.len() < batch_size {
            let next = self.queue.front().map_or(0, |e| e.json.len());
            if self.queue.is_empty() || (!batch.is_empty() && size + next > MAX_BATCH_BYTES) {
                break;
            }
            let Some(event) = self.queue.pop_front() else { break };
            size += next;
            self.bytes -= next;
            batch.push(event);
        }
        batch
    }

    /// The sink took `n` events.
    pub fn sent(&mut self, n: usize) {
        self.counters.sent += n as u64;
        self.counters.batches_sent += 1;
        self.failures = 0;
        self.retry_at = 0;
    }

    /// The sink took a batch but rejected `n` of its events for good:
    /// dropped, counted.
    pub fn rejected(&mut self, n: usize) {
        self.counters.dropped.count(DropCause::Rejected, n as u64);
    }

    /// The sink refused a whole batch of `n` events for good: dropped,
    /// counted. The backoff stays as it was: the sink answered, and the
    /// next batch (another topic, maybe) may well go through.
    pub fn batch_rejected(&mut self, n: usize) {
        self.counters.batches_rejected += 1;
        self.rejected(n);
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
        self.put_back(batch);
    }

    /// Events taken out and not sent, back at the front, oldest first, as
    /// far as the bounds allow (the oldest left out, counted).
    pub fn put_back(&mut self, batch: Vec<Queued>) {
        // Newest first to the front, while both bounds allow; the oldest
        // of the batch are the ones left out.
        for event in batch.into_iter().rev() {
            let fits = self.queue.len() < self.capacity && self.bytes + event.json.len() <= self.max_bytes;
            if !fits {
                self.counters.dropped.count(DropCause::RetryOverflow, 1);
                continue;
            }
            self.bytes += event.json.len();
            self.queue.push_front(event);
        }
    }

    /// The events of `other` (a buffer no plugin holds any more, which
    /// counted them as emitted), oldest first, after these, as far as both
    /// bounds allow; the rest dropped, counted as `resized` here.
    pub fn adopt(&mut self, other: &mut Buffer) {
        while let Some(event) = other.queue.pop_front() {
            other.bytes -= event.json.len();
            let fits = self.queue.len() < self.capacity && self.bytes + event.json.len() <= self.max_bytes;
            if !fits {
                self.counters.dropped.count(DropCause::Resized, 1);
                continue;
            }
            self.bytes += event.json.len();
            self.queue.push_back(event);
        }
    }

    /// Every buffered event dropped (the policy no longer audits), counted
    /// as `resized`.
    pub fn clear(&mut self) {
        let n = self.queue.len();
        self.queue.clear();
        self.bytes = 0;
        self.counters.dropped.count(DropCause::Resized, n as u64);
    }

    /// A new bound (policy reload); the oldest past it are dropped, counted.
    pub fn resize(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.queue.len() > self.capacity {
            self.pop_oldest(DropCause::Resized);
        }
    }
}
