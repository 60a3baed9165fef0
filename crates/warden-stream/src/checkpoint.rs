//! Per-partition checkpoints of a processor's state on a compacted changelog topic.
//!
//! A checkpoint of partition `p` of the events topic holds everything the processor's state
//! owes to the events of `p` up to an offset: the window buckets and detector state of the keys
//! those events touched last ([`Engine::snapshot`]), the event ids of the dedup horizon
//! ([`crate::dedup`]), and that offset. It is written — and acknowledged by the bus — before
//! the offset is committed, so a processor that is assigned `p` (after a restart, or taking it
//! over from another member) restores the checkpoint and continues from the committed offset
//! with the state that offset implies; records below the checkpoint's offset are skipped (their
//! events are in the state already).
//!
//! Records are keyed `GROUP/EVENTS_TOPIC/PARTITION/CHUNK` on a one-partition compacted topic,
//! so the latest record per key is what Kafka keeps, and every record of one checkpoint is read
//! in the order it was written. A checkpoint larger than [`CHUNK_BYTES`] is split in chunks,
//! written last to first: chunk 0 (written last) says how many chunks the checkpoint has and
//! carries its sequence number; chunks of an older, longer checkpoint are ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;
use warden_bus::{Bus, BusError, Producer, TopicSpec};
use warden_config::{PipelineConfig, WindowKey};
use warden_event::{ANONYMOUS, RequestEvent};

use crate::EngineSnapshot;
use crate::dedup::DedupSnapshot;

/// Largest payload of one checkpoint record (below Kafka's 1 MB default record limit).
pub const CHUNK_BYTES: usize = 512 * 1024;
const MAGIC: &[u8; 4] = b"WCP1";
const HEADER: usize = 4 + 8 + 4 + 4;

/// The checkpoint topic of a deployment: `warden.events` → `warden.checkpoints`, otherwise the
/// events topic with `.checkpoints` appended.
pub fn checkpoint_topic(events_topic: &str) -> String {
    match events_topic.strip_suffix(".events") {
        Some(prefix) => format!("{prefix}.checkpoints"),
        None => format!("{events_topic}.checkpoints"),
    }
}

/// The state a processor owes to the events of one partition, up to `next_offset`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub v: u32,
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The events below this offset are in the state (the position committed with it).
    pub next_offset: i64,
    /// When it was written, nanoseconds since the Unix epoch.
    pub written_at: i64,
    pub engine: EngineSnapshot,
    pub dedup: DedupSnapshot,
}

/// The fields of an event that windows are keyed by (see [`KeyOwners::record_fields`]).
#[derive(Debug, Clone, Copy)]
pub struct EventKeys<'a> {
    pub identity: &'a str,
    pub client_ip: &'a str,
    pub tenant: &'a str,
    pub route: &'a str,
    pub ts: i64,
}

/// Which partition each window key belongs to: the partition of the last event that touched
/// it. Keys of identity windows live on one partition (the bus key is the identity); keys
/// shared by partitions (tenants, routes, addresses used by several devices) follow their
/// latest event.
#[derive(Debug, Default)]
pub struct KeyOwners {
    windows: Vec<WindowOwners>,
}

#[derive(Debug)]
struct WindowOwners {
    name: String,
    key: WindowKey,
    /// Key → (partition, event time of its last event).
    owners: HashMap<Box<str>, (i32, i64)>,
}

impl KeyOwners {
    pub fn new(p: &PipelineConfig) -> Self {
        let mut s = Self::default();
        s.reconfigure(p);
        s
    }

    /// Follow a new pipeline: windows kept (same name and key) keep their owners.
    pub fn reconfigure(&mut self, p: &PipelineConfig) {
        let mut old: Vec<WindowOwners> = std::mem::take(&mut self.windows);
        self.windows = p
            .window
            .iter()
            .map(|w| {
                let owners = old
                    .iter_mut()
                    .find(|o| o.name == w.name && o.key == w.key)
                    .map(|o| std::mem::take(&mut o.owners))
                    .unwrap_or_default();
                WindowOwners {
                    name: w.name.clone(),
                    key: w.key,
                    owners,
                }
            })
            .collect();
    }

    /// Record that `e`, read from `partition`, touched its keys.
    pub fn record(&mut self, partition: i32, e: &RequestEvent, buf: &mut String) {
        self.record_fields(
            partition,
            EventKeys {
                identity: &e.identity,
                client_ip: &e.client_ip,
                tenant: &e.tenant,
                route: &e.route,
                ts: e.ts,
            },
            buf,
        );
    }

    /// [`KeyOwners::record`] from the fields windows are keyed by.
    pub fn record_fields(&mut self, partition: i32, e: EventKeys<'_>, buf: &mut String) {
        for w in &mut self.windows {
            buf.clear();
            match w.key {
                WindowKey::Identity => buf.push_str(e.identity),
                WindowKey::ClientIp => buf.push_str(e.client_ip),
                WindowKey::Tenant => buf.push_str(e.tenant),
                WindowKey::Route => buf.push_str(e.route),
                WindowKey::IdentityRoute => {
                    if e.identity.is_empty() || e.identity == ANONYMOUS {
                        continue;
                    }
                    buf.push_str(e.identity);
                    buf.push('|');
                    buf.push_str(e.route);
                }
            }
            if buf.is_empty() {
                continue;
            }
            match w.owners.get_mut(buf.as_str()) {
                Some(o) => *o = (partition, o.1.max(e.ts)),
                None => {
                    w.owners.insert(buf.as_str().into(), (partition, e.ts));
                }
            }
        }
    }

    /// The partition `key` of `window` belongs to.
    pub fn owner(&self, window: &str, key: &str) -> Option<i32> {
        self.windows
            .iter()
            .find(|w| w.name == window)
            .and_then(|w| w.owners.get(key))
            .map(|o| o.0)
    }

    /// Set the owner of a restored key.
    pub fn set(&mut self, window: &str, key: &str, partition: i32, last_ts: i64) {
        if let Some(w) = self.windows.iter_mut().find(|w| w.name == window) {
            w.owners.insert(key.into(), (partition, last_ts));
        }
    }

    /// Forget keys whose last event is older than `before` (the engine has forgotten them).
    pub fn prune(&mut self, before: i64) {
        for w in &mut self.windows {
            w.owners.retain(|_, o| o.1 >= before);
        }
    }

    /// Keys tracked, all windows.
    pub fn len(&self) -> usize {
        self.windows.iter().map(|w| w.owners.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Split a snapshot of several partitions' keys into one snapshot per partition of
/// `partitions` (every one of them gets one, possibly without keys).
pub fn split(
    mut snap: EngineSnapshot,
    partitions: &BTreeSet<i32>,
    owners: &KeyOwners,
) -> BTreeMap<i32, EngineSnapshot> {
    let keys: Vec<(String, Vec<crate::KeySnapshot>)> = snap
        .windows
        .iter_mut()
        .map(|(name, w)| (name.clone(), std::mem::take(&mut w.keys)))
        .collect();
    let mut out: BTreeMap<i32, EngineSnapshot> =
        partitions.iter().map(|p| (*p, snap.clone())).collect();
    for (name, keys) in keys {
        for k in keys {
            let Some(p) = owners.owner(&name, &k.state.name) else {
                continue;
            };
            if let Some(ws) = out.get_mut(&p).and_then(|s| s.windows.get_mut(&name)) {
                ws.keys.push(k);
            }
        }
    }
    out
}

/// Where a processor group's checkpoints live.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    pub topic: String,
    pub group: String,
    pub events_topic: String,
}

impl CheckpointStore {
    pub fn new(group: &str, events_topic: &str) -> Self {
        Self {
            topic: checkpoint_topic(events_topic),
            group: group.to_string(),
            events_topic: events_topic.to_string(),
        }
    }

    fn prefix(&self) -> String {
        format!("{}/{}/", self.group, self.events_topic)
    }

    /// Create the topic (one partition, compacted) when missing.
    pub async fn ensure(&self, bus: &dyn Bus) -> Result<(), BusError> {
        bus.ensure_topics(&[TopicSpec {
            name: self.topic.clone(),
            partitions: 1,
            compacted: true,
            retention_ms: None,
        }])
        .await
    }

    /// The records of a checkpoint: (key, payload), in the order to write them.
    pub fn encode(&self, cp: &PartitionCheckpoint, seq: u64) -> Vec<(String, Vec<u8>)> {
        let body = serde_json::to_vec(cp).unwrap_or_default();
        let chunks: Vec<&[u8]> = if body.is_empty() {
            vec![&[][..]]
        } else {
            body.chunks(CHUNK_BYTES).collect()
        };
        let count = chunks.len() as u32;
        let mut out: Vec<(String, Vec<u8>)> = chunks
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let mut payload = Vec::with_capacity(HEADER + data.len());
                payload.extend_from_slice(MAGIC);
                payload.extend_from_slice(&seq.to_be_bytes());
                payload.extend_from_slice(&(i as u32).to_be_bytes());
                payload.extend_from_slice(&count.to_be_bytes());
                payload.extend_from_slice(data);
                (format!("{}{}/{i}", self.prefix(), cp.partition), payload)
            })
            .collect();
        // Chunk 0 last: once it is there, every chunk it counts is too.
        out.reverse();
        out
    }

    /// Write checkpoints, each record acknowledged before the next is sent. Returns the bytes
    /// written.
    pub async fn write(
        &self,
        producer: &dyn Producer,
        cps: &[PartitionCheckpoint],
        seq: u64,
    ) -> Result<usize, BusError> {
        let mut bytes = 0;
        for cp in cps {
            for (key, payload) in self.encode(cp, seq) {
                producer.send(&self.topic, key.as_bytes(), &payload).await?;
                bytes += payload.len();
            }
        }
        Ok(bytes)
    }

    /// The latest complete checkpoint of each of `partitions` that has one (read from the
    /// beginning of the topic to its current end).
    pub async fn read(
        &self,
        bus: &dyn Bus,
        partitions: &BTreeSet<i32>,
        timeout: Duration,
    ) -> Result<BTreeMap<i32, PartitionCheckpoint>, BusError> {
        let prefix = self.prefix();
        // Latest record per (partition, chunk).
        // The two latest records per (partition, chunk): a checkpoint torn by a crash while
        // its chunks were written leaves the previous one readable (until compaction).
        let mut latest: BTreeMap<(i32, u32), [Option<Vec<u8>>; 2]> = BTreeMap::new();
        warden_bus::read_to_end(bus, &self.topic, timeout, |m| {
            let Some(key) = m.key.as_ref().and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            let Some(rest) = key.strip_prefix(&prefix) else {
                return;
            };
            let Some((p, i)) = rest.split_once('/') else {
                return;
            };
            let (Ok(p), Ok(i)) = (p.parse::<i32>(), i.parse::<u32>()) else {
                return;
            };
            if partitions.contains(&p) {
                let slot = latest.entry((p, i)).or_default();
                slot[0] = slot[1].take();
                slot[1] = Some(m.payload.to_vec());
            }
        })
        .await?;
        let mut out = BTreeMap::new();
        for p in partitions {
            let Some(firsts) = latest.get(&(*p, 0)) else {
                continue;
            };
            // The newest chunk 0 first, then the one before it.
            let cp = firsts
                .iter()
                .rev()
                .flatten()
                .find_map(|first| assemble(&latest, *p, first));
            match cp {
                Some(cp) => {
                    out.insert(*p, cp);
                }
                None => warn!(
                    partition = p,
                    "Ignoring an incomplete or unreadable checkpoint."
                ),
            }
        }
        Ok(out)
    }
}

/// The checkpoint whose chunk 0 is `first`, when all its chunks are there and it parses.
fn assemble(
    latest: &BTreeMap<(i32, u32), [Option<Vec<u8>>; 2]>,
    p: i32,
    first: &[u8],
) -> Option<PartitionCheckpoint> {
    let (seq, _, count) = header(first)?;
    let mut body = Vec::new();
    for i in 0..count {
        let chunk =
            latest.get(&(p, i))?.iter().flatten().find(|r| {
                header(r).is_some_and(|(s, idx, n)| s == seq && idx == i && n == count)
            })?;
        body.extend_from_slice(&chunk[HEADER..]);
    }
    match serde_json::from_slice::<PartitionCheckpoint>(&body) {
        Ok(cp) => Some(cp),
        Err(e) => {
            warn!(partition = p, error = %e, "Ignoring an unreadable checkpoint.");
            None
        }
    }
}

/// (sequence, index, count) of a checkpoint record.
fn header(r: &[u8]) -> Option<(u64, u32, u32)> {
    if r.len() < HEADER || &r[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(r[4..12].try_into().ok()?);
    let idx = u32::from_be_bytes(r[12..16].try_into().ok()?);
    let count = u32::from_be_bytes(r[16..20].try_into().ok()?);
    Some((seq, idx, count))
}

#[cfg(test)]
mod tests;
