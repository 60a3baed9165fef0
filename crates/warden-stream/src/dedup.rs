//! Event-id deduplication in front of the engine, per partition of the events topic.
//!
//! Duplicates reach the processor two ways: a record redelivered after a crash or a rebalance
//! (same offset: the processor skips offsets its state already holds, see the runner), and an
//! event sent twice by a gateway — acknowledged by Kafka but not yet in its spool cursor when it
//! died, so replayed after the restart at a *new* offset with its original `id` and event time.
//! The second kind is what [`Dedup`] catches.
//!
//! Per partition, the ids seen are kept in one set per event-time bucket ([`BUCKET_NS`], 1 s).
//! A bucket is kept while it is within the horizon of the newest event time seen on its
//! partition; the horizon is the pipeline's largest `allowed_lateness_ms` plus two buckets
//! (at least [`MIN_HORIZON_NS`]). An event older than that is late for every window of the
//! engine (its watermark is at least the partition's newest event time), so the engine skips
//! it anyway: forgetting its id cannot make it count twice. Ids are kept as 64-bit FNV-1a
//! hashes (8 bytes plus the set's overhead, ~16 bytes per id); the chance that a fresh id is
//! taken for a duplicate is below 10⁻¹² with a million ids held.
//!
//! Memory is bounded by [`DedupConfig::max_ids`] per partition: past it the oldest bucket is
//! dropped early (counted in `evicted`; events of that bucket replayed later would then count
//! twice). The sets of a partition go into its checkpoint, so a processor that takes the
//! partition over still recognises replays of events processed before.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use warden_config::PipelineConfig;

/// Width of an event-time bucket.
pub const BUCKET_NS: i64 = 1_000_000_000;
/// Smallest horizon, whatever the pipeline's lateness.
pub const MIN_HORIZON_NS: i64 = 10 * BUCKET_NS;

/// Settings of a [`Dedup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupConfig {
    /// How far behind the newest event time of a partition ids are remembered.
    pub horizon_ns: i64,
    /// Most ids remembered per partition.
    pub max_ids: usize,
}

impl DedupConfig {
    /// Most ids per partition by default (~16 MB per partition when full).
    pub const DEFAULT_MAX_IDS: usize = 1_000_000;

    /// The horizon a pipeline needs: its largest allowed lateness plus two buckets.
    pub fn for_pipeline(p: &PipelineConfig) -> Self {
        let lateness = p
            .window
            .iter()
            .map(|w| i64::try_from(w.allowed_lateness_ms).unwrap_or(i64::MAX / 4_000_000))
            .max()
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        Self {
            horizon_ns: lateness.saturating_add(2 * BUCKET_NS).max(MIN_HORIZON_NS),
            max_ids: Self::DEFAULT_MAX_IDS,
        }
    }
}

/// What [`Dedup::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: process it.
    Fresh,
    /// Already processed: skip it.
    Duplicate,
    /// Older than the horizon: cannot tell, and the engine will count it late.
    TooOld,
}

/// Ids seen on one partition, by event-time bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionDedup {
    buckets: BTreeMap<i64, HashSet<u64>>,
    newest_bucket: Option<i64>,
    len: usize,
}

/// Serialised form of a [`PartitionDedup`] (in checkpoints): per bucket, its ids as
/// concatenated 16-hex-digit hashes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DedupSnapshot {
    pub bucket_ns: i64,
    pub buckets: Vec<(i64, String)>,
}

impl PartitionDedup {
    /// Ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&mut self, config: &DedupConfig, id: &str, ts: i64) -> (Seen, u64) {
        let bucket = ts.div_euclid(BUCKET_NS);
        let horizon = (config.horizon_ns / BUCKET_NS).max(1);
        let newest = self.newest_bucket.map_or(bucket, |n| n.max(bucket));
        if bucket < newest - horizon {
            return (Seen::TooOld, 0);
        }
        let hash = fnv1a(id.as_bytes());
        if self.buckets.get(&bucket).is_some_and(|s| s.contains(&hash)) {
            return (Seen::Duplicate, 0);
        }
        self.newest_bucket = Some(newest);
        self.buckets.entry(bucket).or_default().insert(hash);
        self.len += 1;
        let mut evicted = 0;
        // Buckets past the horizon, then (when over the cap) the oldest ones.
        while let Some((&oldest, set)) = self.buckets.first_key_value() {
            let expired = oldest < newest - horizon;
            let over = self.len > config.max_ids && oldest != bucket;
            if !(expired || over) {
                break;
            }
            self.len -= set.len();
            if !expired {
                evicted += set.len() as u64;
            }
            self.buckets.remove(&oldest);
        }
        (Seen::Fresh, evicted)
    }

    pub fn snapshot(&self) -> DedupSnapshot {
        DedupSnapshot {
            bucket_ns: BUCKET_NS,
            buckets: self
                .buckets
                .iter()
                .map(|(b, ids)| {
                    let mut hex = String::with_capacity(ids.len() * 16);
                    for id in ids {
                        hex.push_str(&format!("{id:016x}"));
                    }
                    (*b, hex)
                })
                .collect(),
        }
    }

    /// Rebuild from a snapshot; a snapshot with other buckets or unreadable ids gives what
    /// could be read.
    pub fn restore(snap: &DedupSnapshot) -> Self {
        let mut out = Self::default();
        if snap.bucket_ns != BUCKET_NS {
            return out;
        }
        for (b, hex) in &snap.buckets {
            let set: HashSet<u64> = hex
                .as_bytes()
                .chunks(16)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .filter_map(|c| u64::from_str_radix(c, 16).ok())
                .collect();
            out.len += set.len();
            out.newest_bucket = Some(out.newest_bucket.map_or(*b, |n| n.max(*b)));
            out.buckets.insert(*b, set);
        }
        out
    }
}

/// Per-partition id sets.
#[derive(Debug, Clone)]
pub struct Dedup {
    config: DedupConfig,
    partitions: HashMap<i32, PartitionDedup>,
    /// Ids dropped early because a partition hit `max_ids`.
    evicted: u64,
}

impl Dedup {
    pub fn new(config: DedupConfig) -> Self {
        Self {
            config,
            partitions: HashMap::new(),
            evicted: 0,
        }
    }

    pub fn config(&self) -> DedupConfig {
        self.config
    }

    pub fn set_config(&mut self, config: DedupConfig) {
        self.config = config;
    }

    /// Whether the event `id` with event time `ts` on `partition` was seen before; records it
    /// when not. Events without an id are always fresh.
    pub fn check(&mut self, partition: i32, id: &str, ts: i64) -> Seen {
        if id.is_empty() {
            return Seen::Fresh;
        }
        let (seen, evicted) =
            self.partitions
                .entry(partition)
                .or_default()
                .check(&self.config, id, ts);
        self.evicted += evicted;
        seen
    }

    /// Ids dropped early because of the per-partition cap, since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Ids held in all partitions.
    pub fn len(&self) -> usize {
        self.partitions.values().map(PartitionDedup::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn partition(&self, partition: i32) -> Option<&PartitionDedup> {
        self.partitions.get(&partition)
    }

    /// Replace a partition's ids (restored from a checkpoint).
    pub fn set_partition(&mut self, partition: i32, state: PartitionDedup) {
        self.partitions.insert(partition, state);
    }

    /// Forget a partition (revoked).
    pub fn remove(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }
}

/// 64-bit FNV-1a: stable across processes and versions (ids in checkpoints are hashed with it).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = BUCKET_NS;

    fn config() -> DedupConfig {
        DedupConfig {
            horizon_ns: 10 * S,
            max_ids: 1_000,
        }
    }

    #[test]
    fn a_repeated_id_is_a_duplicate_on_its_partition_only() {
        let mut d = Dedup::new(config());
        assert_eq!(d.check(0, "a", 100 * S), Seen::Fresh);
        assert_eq!(d.check(0, "b", 100 * S), Seen::Fresh);
        assert_eq!(d.check(0, "a", 100 * S), Seen::Duplicate);
        // Another partition keeps its own ids.
        assert_eq!(d.check(1, "a", 100 * S), Seen::Fresh);
        // Events without an id cannot be deduplicated.
        assert_eq!(d.check(0, "", 100 * S), Seen::Fresh);
        assert_eq!(d.check(0, "", 100 * S), Seen::Fresh);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn ids_are_kept_for_the_horizon_then_forgotten() {
        let mut d = Dedup::new(config());
        assert_eq!(d.check(0, "old", 100 * S), Seen::Fresh);
        // 9 s later: still within the horizon.
        assert_eq!(d.check(0, "x", 109 * S), Seen::Fresh);
        assert_eq!(d.check(0, "old", 100 * S), Seen::Duplicate);
        // 12 s later: the bucket of `old` is gone and an event that old is too old to judge.
        assert_eq!(d.check(0, "y", 112 * S), Seen::Fresh);
        assert_eq!(d.check(0, "old", 100 * S), Seen::TooOld);
        assert_eq!(d.len(), 2, "only x and y remain");
        assert_eq!(d.evicted(), 0, "expiry is not eviction");
    }

    #[test]
    fn memory_is_capped_per_partition_by_dropping_the_oldest_buckets() {
        let mut d = Dedup::new(DedupConfig {
            horizon_ns: 1_000 * S,
            max_ids: 100,
        });
        for s in 0..10 {
            for i in 0..20 {
                assert_eq!(d.check(0, &format!("{s}-{i}"), s * S), Seen::Fresh);
            }
        }
        let held = d.partition(0).map(PartitionDedup::len).unwrap_or(0);
        assert!(held <= 100, "held {held}");
        assert_eq!(d.evicted() as usize + held, 200);
        // The newest ids are still recognised.
        assert_eq!(d.check(0, "9-19", 9 * S), Seen::Duplicate);
    }

    #[test]
    fn a_snapshot_restores_the_same_ids() {
        let mut d = Dedup::new(config());
        for i in 0..50 {
            d.check(3, &format!("id-{i}"), 100 * S + i * 100_000_000);
        }
        let snap = d
            .partition(3)
            .map(PartitionDedup::snapshot)
            .unwrap_or_default();
        let json = serde_json::to_string(&snap).expect("serialise");
        let back: DedupSnapshot = serde_json::from_str(&json).expect("parse");
        let restored = PartitionDedup::restore(&back);
        assert_eq!(Some(&restored), d.partition(3));
        let mut other = Dedup::new(config());
        other.set_partition(3, restored);
        assert_eq!(
            other.check(3, "id-7", 100 * S + 700_000_000),
            Seen::Duplicate
        );
        assert_eq!(other.check(3, "id-50", 105 * S), Seen::Fresh);
    }

    #[test]
    fn the_horizon_covers_the_pipelines_lateness() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../pipelines/default.toml"
        ))
        .expect("default pipeline");
        let p = PipelineConfig::from_toml(&text).expect("pipeline");
        let c = DedupConfig::for_pipeline(&p);
        let lateness = p
            .window
            .iter()
            .map(|w| w.allowed_lateness_ms as i64 * 1_000_000)
            .max()
            .unwrap_or(0);
        assert!(c.horizon_ns >= lateness + BUCKET_NS);
        assert!(c.horizon_ns >= MIN_HORIZON_NS);
    }
}
