//! A bounded table of GCRA states (the "virtual scheduling" form of the generic cell rate
//! algorithm: one theoretical arrival time, TAT, per key).
//!
//! **Memory** is allocated once: keys live in sets of [`WAYS`] slots, each slot a 64-bit key
//! hash and a 64-bit TAT (16 bytes), plus one 8-byte eviction floor and a one-word lock per set,
//! i.e. [`BYTES_PER_KEY`] bytes per tracked key, whatever the traffic.
//!
//! **Eviction never gives a key a fuller bucket than it had.** A new key takes the slot of its
//! set with the smallest TAT. If that TAT is in the past the victim's bucket was full anyway and
//! nothing is lost; otherwise the set's *floor* is raised to the victim's TAT, and every key
//! that enters the set afterwards starts from `max(now, floor)`. An evicted key that returns
//! therefore starts at least as throttled as it left; the cost of a full table falls on new
//! keys of that set (they may start less than full), never in an attacker's favour.
//!
//! Keys are SipHash-1-3 hashes with a random key per table, so collisions cannot be aimed at.

use std::hash::{BuildHasher, Hash};

use parking_lot::Mutex;
use warden_config::Rate;

/// Slots per set.
pub const WAYS: usize = 8;

/// Bytes of table memory per tracked key (see the module docs; checked by a test).
pub const BYTES_PER_KEY: usize = 18;

#[derive(Debug, Default)]
struct Set {
    /// Key hashes; 0 marks a free slot (a real hash of 0 is stored as 1).
    keys: [u64; WAYS],
    /// Theoretical arrival times, nanoseconds on the limiter's clock.
    tats: [u64; WAYS],
    /// Keys entering this set start no earlier than this TAT.
    floor: u64,
}

/// A GCRA rate as intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Emission interval: nanoseconds per request at the sustained rate.
    pub interval_ns: u64,
    /// Burst tolerance: how far ahead of `now` the TAT may run (`interval × (burst − 1)`).
    pub tolerance_ns: u64,
    pub burst: u32,
}

impl Params {
    pub fn new(rate: Rate) -> Self {
        let interval_ns = (1e9 / rate.rate_per_s).round().clamp(1.0, 1e18) as u64;
        let burst = rate.burst.max(1);
        Self {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst - 1)),
            burst,
        }
    }
}

/// The result of one request against one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed {
        /// Requests that would still pass right now.
        remaining: u32,
        /// Nanoseconds until the bucket is full again.
        reset_ns: u64,
    },
    Limited {
        /// Nanoseconds until one request would pass.
        retry_after_ns: u64,
        /// Nanoseconds until the bucket is full again.
        reset_ns: u64,
    },
}

/// GCRA states of at most `capacity()` keys.
#[derive(Debug)]
pub struct GcraTable {
    sets: Box<[Mutex<Set>]>,
    mask: u64,
    hasher: std::hash::RandomState,
    /// New keys that took the slot of a key whose bucket was not full yet (the table is
    /// too small for the keys it sees: see the module docs).
    evictions: std::sync::atomic::AtomicU64,
}

impl GcraTable {
    /// A table tracking at least `max_keys` keys (rounded up to a power of two of sets).
    pub fn new(max_keys: usize) -> Self {
        let sets = max_keys.div_ceil(WAYS).max(1).next_power_of_two();
        Self {
            sets: (0..sets).map(|_| Mutex::new(Set::default())).collect(),
            mask: sets as u64 - 1,
            hasher: std::hash::RandomState::new(),
            evictions: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Slots in use and, of those, keys whose bucket is not full at `now` (a key with a
    /// full bucket is as good as forgotten). Walks every set: for metrics, not requests.
    pub fn occupancy(&self, now: u64) -> (usize, usize) {
        let (mut used, mut active) = (0, 0);
        for set in self.sets.iter() {
            let set = set.lock();
            for (k, t) in set.keys.iter().zip(&set.tats) {
                if *k != 0 {
                    used += 1;
                    active += usize::from(*t > now);
                }
            }
        }
        (used, active)
    }

    /// See [`GcraTable::evictions`].
    pub fn evictions(&self) -> u64 {
        self.evictions.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Bytes the table occupies (allocated up front).
    pub fn memory_bytes(&self) -> usize {
        self.sets.len() * std::mem::size_of::<Mutex<Set>>()
    }

    /// The table's hash of a key.
    pub fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key).max(1)
    }

    fn set(&self, key: u64) -> &Mutex<Set> {
        // Low bits pick the set; the stored key is the whole hash.
        &self.sets[(key & self.mask) as usize]
    }

    /// Count one request of `key` at `now` (nanoseconds, monotonic).
    pub fn acquire(&self, key: u64, p: Params, now: u64) -> Outcome {
        let mut set = self.set(key).lock();
        let slot = set.keys.iter().position(|k| *k == key);
        let tat = match slot {
            Some(i) => set.tats[i],
            None => set.floor,
        };
        let t = tat.max(now);
        if t - now > p.tolerance_ns {
            return Outcome::Limited {
                retry_after_ns: t - now - p.tolerance_ns,
                reset_ns: t - now,
            };
        }
        let new_tat = t + p.interval_ns;
        match slot {
            Some(i) => set.tats[i] = new_tat,
            None => {
                if set.insert(key, new_tat, now) {
                    self.evictions
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        let debt = new_tat - now;
        let headroom = (p.tolerance_ns + p.interval_ns).saturating_sub(debt);
        Outcome::Allowed {
            remaining: u32::try_from(headroom / p.interval_ns).unwrap_or(u32::MAX),
            reset_ns: debt,
        }
    }

    /// Give back one request of `key` (a later limit refused the request).
    pub fn refund(&self, key: u64, p: Params, now: u64) {
        let mut set = self.set(key).lock();
        if let Some(i) = set.keys.iter().position(|k| *k == key) {
            set.tats[i] = set.tats[i].saturating_sub(p.interval_ns).max(now);
        }
    }
}

impl Set {
    /// Whether a key whose bucket was not full had to make room.
    fn insert(&mut self, key: u64, tat: u64, now: u64) -> bool {
        // The victim: a free slot (TAT 0), else the fullest bucket (smallest TAT).
        let (i, victim_tat) = self
            .tats
            .iter()
            .enumerate()
            .map(|(i, t)| if self.keys[i] == 0 { (i, 0) } else { (i, *t) })
            .min_by_key(|(_, t)| *t)
            .unwrap_or((0, 0));
        let evicted = self.keys[i] != 0 && victim_tat > now;
        if evicted {
            self.floor = self.floor.max(victim_tat);
        }
        self.keys[i] = key;
        self.tats[i] = tat;
        evicted
    }
}

#[cfg(test)]
mod tests;
