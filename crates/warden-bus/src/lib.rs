//! The bus Warden's components talk over: keyed records on topics, consumed with offsets.
//!
//! One trait ([`Bus`]) with two implementations:
//! - [`EmbeddedBus`]: in-process, bounded, per-key order, consumer groups sharing partitions,
//!   compacted topics; what `warden up` runs on with zero setup;
//! - [`KafkaBus`]: any Kafka-protocol cluster through rdkafka (idempotent producer with
//!   `acks=all`, consumer groups with manual commits).

mod embedded;
mod kafka;
mod read;
pub mod spool;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use embedded::{EmbeddedBus, EmbeddedConfig};
pub use kafka::{KafkaBus, KafkaConfig};
pub use read::read_to_end;

/// Names of Warden's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub events: String,
    pub decisions: String,
    pub alerts: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            events: "warden.events".into(),
            decisions: "warden.decisions".into(),
            alerts: "warden.alerts".into(),
        }
    }
}

/// A topic to create if missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Keep only the latest record per key (Kafka `cleanup.policy=compact`).
    pub compacted: bool,
    /// How long records are kept (Kafka `retention.ms`; `None`: the broker's default). Set
    /// only when Warden creates the topic; an existing topic's settings are left alone.
    pub retention_ms: Option<i64>,
}

/// A record read from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub payload: Bytes,
}

impl Message {
    /// The position to commit once this message is processed (the next offset to read).
    pub fn next_position(&self) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset + 1,
        }
    }
}

/// A read position: the next offset to read on a topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Bus errors.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "topic `{0}` does not exist (create it, or let Warden create it with `create_topics = true`)"
    )]
    UnknownTopic(String),
    #[error("the bus is closed")]
    Closed,
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("kafka: {0}")]
    Kafka(String),
}

impl BusError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, BusError::Timeout(_) | BusError::Kafka(_))
    }
}

/// Publishes keyed records.
#[async_trait]
pub trait Producer: Send + Sync + 'static {
    /// Publish one record. Resolves once the bus has acknowledged it (Kafka: written to all
    /// in-sync replicas); records with the same key keep their order.
    async fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), BusError>;

    /// Wait until every record sent so far is acknowledged, or `timeout` passes.
    async fn flush(&self, timeout: Duration) -> Result<(), BusError>;
}

/// Reads records with offsets.
#[async_trait]
pub trait Consumer: Send + 'static {
    /// Up to `max` records, waiting at most `timeout` for the first one (an empty vector
    /// means nothing arrived in time). Records of one partition come in offset order.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Message>, BusError>;

    /// Record that everything before each position has been processed. Group consumers resume
    /// from committed positions after a restart or rebalance; readers ignore commits.
    async fn commit(&mut self, positions: &[Position]) -> Result<(), BusError>;

    /// The partitions this consumer reads now, as `(topic, partition)`, for group members
    /// whose bus knows them (they change on rebalances; call it after [`Consumer::poll`]).
    /// `None` when the bus cannot tell: callers must then not rely on it.
    fn assignment(&self) -> Option<Vec<(String, i32)>> {
        None
    }
}

/// A bus: producers, group consumers, and whole-topic readers.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Create the topics that do not exist yet (existing ones are left as they are).
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError>;

    /// The shared producer.
    fn producer(&self) -> Arc<dyn Producer>;

    /// A member of consumer group `group` on `topics`: the group's members share the
    /// partitions, and a partition is read from the group's committed position (the beginning
    /// when nothing is committed).
    async fn group_consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, BusError>;

    /// A reader of every partition of `topic` from the beginning, outside any group (how each
    /// gateway reads every decision).
    async fn reader(&self, topic: &str) -> Result<Box<dyn Consumer>, BusError>;

    /// The next offset to be written on each partition of `topic` (its high watermark).
    async fn end_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, BusError>;

    /// Whether records outlive this process (Kafka: yes; the embedded bus: no). Processors
    /// checkpoint their state to the bus only when it is durable.
    fn durable(&self) -> bool {
        false
    }
}

/// How long [`Consumer::poll`] waits by default.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);
