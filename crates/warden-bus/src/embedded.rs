//! In-process bus: the zero-setup default.
//!
//! Same semantics as the Kafka implementation where Warden relies on them: topics with
//! partitions, records placed by a hash of their key (one key stays ordered on one partition),
//! offsets, consumer groups whose members share a topic's partitions and resume from committed
//! offsets, readers outside any group, and compacted topics. Memory is bounded: a partition
//! holds at most `partition_capacity` records; when it is full, compacted partitions keep the
//! latest record per key, others drop what every group has committed, and a producer waits for
//! the slowest group rather than dropping records a group has not read.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{Bus, BusError, Consumer, Message, Position, Producer, TopicSpec};

/// Settings of the embedded bus.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Records kept per partition before compaction / retention / back-pressure applies.
    pub partition_capacity: usize,
    /// Partitions of topics created implicitly by `ensure_topics` without a count.
    pub default_partitions: i32,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            partition_capacity: 200_000,
            default_partitions: 4,
        }
    }
}

/// The in-process bus. Cloning shares the same topics.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: EmbeddedConfig,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    member_ids: AtomicU64,
}

struct Topic {
    name: String,
    compacted: bool,
    partitions: Vec<Partition>,
    /// Woken on every append to any partition of the topic.
    appended: Notify,
}

struct Partition {
    log: Mutex<Log>,
    /// Woken when records are removed (a waiting producer may proceed).
    freed: Notify,
}

#[derive(Default)]
struct Log {
    next_offset: i64,
    records: VecDeque<Record>,
}

#[derive(Clone)]
struct Record {
    offset: i64,
    key: Bytes,
    payload: Bytes,
}

struct Group {
    state: Mutex<GroupState>,
}

#[derive(Default)]
struct GroupState {
    /// Live members, in join order, with the topics each subscribed to.
    members: BTreeMap<u64, Vec<String>>,
    generation: u64,
    committed: HashMap<(String, i32), i64>,
}

impl EmbeddedBus {
    pub fn new(config: EmbeddedConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                topics: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                member_ids: AtomicU64::new(1),
            }),
        }
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, BusError> {
        self.inner
            .topics
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| BusError::UnknownTopic(name.to_string()))
    }

    /// Lowest committed offset of any group reading `topic`/`partition`, or `None` when no
    /// group reads the topic.
    fn min_committed(&self, topic: &str, partition: i32) -> Option<i64> {
        let groups = self.inner.groups.lock();
        let mut min: Option<i64> = None;
        for group in groups.values() {
            let state = group.state.lock();
            let subscribed = state
                .members
                .values()
                .any(|topics| topics.iter().any(|t| t == topic))
                || state.committed.keys().any(|(t, _)| t == topic);
            if subscribed {
                let c = state
                    .committed
                    .get(&(topic.to_string(), partition))
                    .copied()
                    .unwrap_or(0);
                min = Some(min.map_or(c, |m: i64| m.min(c)));
            }
        }
        min
    }

    async fn append(&self, topic: &Topic, key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        let p = partition_for(key, topic.partitions.len());
        let partition = &topic.partitions[p];
        let capacity = self.inner.config.partition_capacity.max(1);
        loop {
            let freed = partition.freed.notified();
            {
                let mut log = partition.log.lock();
                if log.records.len() >= capacity {
                    if topic.compacted {
                        compact(&mut log.records);
                    } else {
                        let keep_from = self
                            .min_committed(&topic.name, p as i32)
                            .unwrap_or(log.next_offset);
                        while log.records.front().is_some_and(|r| r.offset < keep_from) {
                            log.records.pop_front();
                        }
                    }
                }
                if log.records.len() < capacity {
                    let offset = log.next_offset;
                    log.next_offset += 1;
                    log.records.push_back(Record {
                        offset,
                        key: Bytes::copy_from_slice(key),
                        payload: Bytes::copy_from_slice(payload),
                    });
                    break;
                }
            }
            // Full, and some group has not read the oldest records yet: wait for it.
            if tokio::time::timeout(Duration::from_millis(50), freed)
                .await
                .is_err()
            {
                continue;
            }
        }
        topic.appended.notify_waiters();
        Ok(())
    }

    fn join(&self, group: &str, topics: &[&str]) -> (Arc<Group>, u64) {
        let g = self
            .inner
            .groups
            .lock()
            .entry(group.to_string())
            .or_insert_with(|| {
                Arc::new(Group {
                    state: Mutex::new(GroupState::default()),
                })
            })
            .clone();
        let id = self.inner.member_ids.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = g.state.lock();
            state
                .members
                .insert(id, topics.iter().map(|t| t.to_string()).collect());
            state.generation += 1;
        }
        (g, id)
    }
}

/// Keep the latest record of each key (offsets of the kept records do not change).
fn compact(records: &mut VecDeque<Record>) {
    let mut latest: HashMap<Bytes, i64> = HashMap::with_capacity(records.len());
    for r in records.iter() {
        latest.insert(r.key.clone(), r.offset);
    }
    records.retain(|r| latest.get(&r.key) == Some(&r.offset));
}

/// FNV-1a of the key: stable across processes, unlike `std`'s randomised hasher.
fn partition_for(key: &[u8], partitions: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions.max(1) as u64) as usize
}

#[async_trait]
impl Producer for EmbeddedBus {
    async fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        let topic = self.topic(topic)?;
        self.append(&topic, key, payload).await
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), BusError> {
        // `send` completes only once the record is in the log.
        Ok(())
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        let mut map = self.inner.topics.lock();
        for spec in topics {
            map.entry(spec.name.clone()).or_insert_with(|| {
                let n = if spec.partitions > 0 {
                    spec.partitions
                } else {
                    self.inner.config.default_partitions
                };
                Arc::new(Topic {
                    name: spec.name.clone(),
                    compacted: spec.compacted,
                    partitions: (0..n)
                        .map(|_| Partition {
                            log: Mutex::new(Log::default()),
                            freed: Notify::new(),
                        })
                        .collect(),
                    appended: Notify::new(),
                })
            });
        }
        Ok(())
    }

    fn producer(&self) -> Arc<dyn Producer> {
        Arc::new(self.clone())
    }

    async fn group_consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, BusError> {
        let resolved = topics
            .iter()
            .map(|t| self.topic(t))
            .collect::<Result<Vec<_>, _>>()?;
        let (g, member) = self.join(group, topics);
        Ok(Box::new(EmbeddedConsumer {
            topics: resolved,
            group: Some((g, member)),
            generation: 0,
            positions: BTreeMap::new(),
        }))
    }

    async fn reader(&self, topic: &str) -> Result<Box<dyn Consumer>, BusError> {
        let t = self.topic(topic)?;
        let positions = (0..t.partitions.len() as i32)
            .map(|p| ((t.name.clone(), p), 0))
            .collect();
        Ok(Box::new(EmbeddedConsumer {
            topics: vec![t],
            group: None,
            generation: 0,
            positions,
        }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, BusError> {
        let t = self.topic(topic)?;
        Ok(t.partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (i as i32, p.log.lock().next_offset))
            .collect())
    }
}

/// A group member or a reader.
struct EmbeddedConsumer {
    topics: Vec<Arc<Topic>>,
    /// The group and this member's id; `None` for readers.
    group: Option<(Arc<Group>, u64)>,
    /// Group generation the current assignment was computed for.
    generation: u64,
    /// Assigned partitions and the next offset to read on each.
    positions: BTreeMap<(String, i32), i64>,
}

impl EmbeddedConsumer {
    /// Recompute this member's partitions when the group changed: partitions of each topic
    /// are dealt round-robin to the members subscribed to it, and reading restarts from the
    /// committed offsets (uncommitted records are delivered again, as with Kafka).
    fn rebalance(&mut self) {
        let Some((group, me)) = &self.group else {
            return;
        };
        let state = group.state.lock();
        if state.generation == self.generation {
            return;
        }
        self.generation = state.generation;
        self.positions.clear();
        for topic in &self.topics {
            let members: Vec<u64> = state
                .members
                .iter()
                .filter(|(_, ts)| ts.iter().any(|t| *t == topic.name))
                .map(|(id, _)| *id)
                .collect();
            let Some(slot) = members.iter().position(|id| id == me) else {
                continue;
            };
            for p in 0..topic.partitions.len() {
                if p % members.len() == slot {
                    let key = (topic.name.clone(), p as i32);
                    let start = state.committed.get(&key).copied().unwrap_or(0);
                    self.positions.insert(key, start);
                }
            }
        }
    }

    fn collect(&mut self, max: usize) -> Vec<Message> {
        let mut out = Vec::new();
        for topic in &self.topics {
            for (p, partition) in topic.partitions.iter().enumerate() {
                if out.len() >= max {
                    return out;
                }
                let Some(pos) = self.positions.get_mut(&(topic.name.clone(), p as i32)) else {
                    continue;
                };
                let log = partition.log.lock();
                let start = log.records.partition_point(|r| r.offset < *pos);
                for r in log.records.range(start..).take(max - out.len()) {
                    out.push(Message {
                        topic: topic.name.clone(),
                        partition: p as i32,
                        offset: r.offset,
                        key: Some(r.key.clone()),
                        payload: r.payload.clone(),
                    });
                    *pos = r.offset + 1;
                }
                // Records below the position may have been removed by retention; keep the
                // position at or above the log start.
                if let Some(first) = log.records.front()
                    && *pos < first.offset
                {
                    *pos = first.offset;
                }
            }
        }
        out
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Message>, BusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.rebalance();
            // Register interest before looking, so an append between the look and the wait
            // is not missed.
            let topics = self.topics.clone();
            let waits: Vec<_> = topics.iter().map(|t| t.appended.notified()).collect();
            let mut waits: Vec<_> = waits.into_iter().map(Box::pin).collect();
            for w in &mut waits {
                w.as_mut().enable();
            }
            let out = self.collect(max.max(1));
            if !out.is_empty() {
                return Ok(out);
            }
            let any = futures::future::select_all(waits);
            // Wake at least every 100 ms to pick up rebalances.
            let step = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_millis(100));
            if step.is_zero() {
                return Ok(Vec::new());
            }
            let _ = tokio::time::timeout(step, any).await;
        }
    }

    async fn commit(&mut self, positions: &[Position]) -> Result<(), BusError> {
        let Some((group, _)) = &self.group else {
            return Ok(());
        };
        {
            let mut state = group.state.lock();
            for pos in positions {
                let entry = state
                    .committed
                    .entry((pos.topic.clone(), pos.partition))
                    .or_insert(0);
                *entry = (*entry).max(pos.offset);
            }
        }
        for pos in positions {
            if let Some(topic) = self.topics.iter().find(|t| t.name == pos.topic)
                && let Some(p) = topic.partitions.get(pos.partition as usize)
            {
                p.freed.notify_waiters();
            }
        }
        Ok(())
    }

    fn assignment(&self) -> Option<Vec<(String, i32)>> {
        self.group.as_ref()?;
        Some(self.positions.keys().cloned().collect())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        if let Some((group, me)) = &self.group {
            let mut state = group.state.lock();
            state.members.remove(me);
            state.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests;
