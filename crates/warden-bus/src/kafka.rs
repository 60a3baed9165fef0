//! The bus on any Kafka-protocol cluster, through rdkafka (bundled librdkafka).
//!
//! - one shared idempotent producer (`acks=all`, lz4, a long delivery timeout so records
//!   survive a broker restart): [`Producer::send`] resolves on the delivery report;
//! - group consumers subscribe and commit exactly the positions they are given, synchronously
//!   (no automatic commits or offset stores); dropping one leaves its group at once, so its
//!   partitions move to the other members (or the next one to join) right away, and a member
//!   that vanished without leaving loses them after [`KafkaConfig::GROUP_SESSION_TIMEOUT`];
//! - readers `assign` every partition of a topic from the beginning and never commit;
//! - topics are created with the admin API when missing (`cleanup.policy=compact` for
//!   compacted topics), unless [`KafkaConfig::create_topics`] is off.
//!
//! librdkafka calls that block (metadata, watermarks, synchronous commits, flushes, closing
//! a group consumer) run on tokio's blocking threads, never on the async workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt as _;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;

use crate::{Bus, BusError, Consumer, Message, Position, Producer, TopicSpec};

/// How long a metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Bus::ensure_topics`] waits for created topics to show up in metadata.
const CREATE_WAIT: Duration = Duration::from_secs(10);

/// How long the producer keeps trying to deliver a record (`message.timeout.ms`): long enough
/// to survive a broker restart instead of failing the send.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings of the Kafka bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]` (librdkafka `bootstrap.servers`).
    pub brokers: String,
    /// Client id reported to the brokers (`client.id`).
    pub client_id: String,
    /// Create missing topics in [`Bus::ensure_topics`]; when off, a missing topic is a
    /// [`BusError::UnknownTopic`].
    pub create_topics: bool,
    /// Replication factor of created topics; `-1` lets the broker choose its default.
    pub replication_factor: i32,
    /// Raw librdkafka properties applied last to every client (producer, admin, consumers),
    /// overriding Warden's defaults.
    pub extra: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// `session.timeout.ms` of group consumers: how long a group waits for a member that
    /// stopped without leaving it (a crash, a lost connection) before handing its partitions to
    /// the other members. A member that is dropped leaves at once; librdkafka's default (45 s)
    /// would keep the partitions of a crashed processor unread that long.
    pub const GROUP_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
    /// `heartbeat.interval.ms` of group consumers: how soon members notice a rebalance (a
    /// member joined or left) and rejoin. librdkafka's default is 3 s.
    pub const GROUP_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
    /// `max.poll.interval.ms` of group consumers: a member that does not poll for that long
    /// leaves its group. As long as the producer's delivery timeout, so a member waiting for its
    /// sends through a broker outage keeps its partitions (librdkafka's default, made explicit).
    pub const GROUP_MAX_POLL_INTERVAL: Duration = DELIVERY_TIMEOUT;
    /// `fetch.wait.max.ms` of readers (how every gateway follows the decisions topic): how
    /// long the broker may hold a fetch on an idle partition. librdkafka's default (500 ms) is
    /// added to the time a decision takes to reach the gateways on brokers that answer a
    /// fetch only when it expires; readers cost one fetch per 50 ms per broker while idle.
    pub const READER_FETCH_WAIT: Duration = Duration::from_millis(50);

    /// Settings for the cluster at `brokers`: client id `warden`, missing topics created with
    /// the broker's default replication factor, no overrides.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "warden".into(),
            create_topics: true,
            replication_factor: -1,
            extra: BTreeMap::new(),
        }
    }

    /// The settings shared by every client, then `overrides`, then [`KafkaConfig::extra`].
    fn client_config(&self, overrides: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        for (key, value) in overrides {
            config.set(*key, *value);
        }
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// The bus on a Kafka-protocol cluster. Cloning shares the producer and the admin client.
///
/// Dropping the last clone discards records not acknowledged yet: [`Producer::flush`] first.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: Arc<KafkaProducer>,
    admin: Arc<AdminClient<LogContext>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Create the shared producer and the admin client. Does not wait for the cluster: an
    /// unreachable cluster shows up as errors of the first operations.
    pub fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        let producer: FutureProducer<LogContext> = config
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "lz4"),
                ("linger.ms", "5"),
                // Keep retrying through a broker restart instead of failing the send.
                ("message.timeout.ms", &millis(DELIVERY_TIMEOUT)),
                ("allow.auto.create.topics", "false"),
            ])
            .create_with_context(LogContext)
            .map_err(kafka_error)?;
        let admin: AdminClient<LogContext> = config
            .client_config(&[("allow.auto.create.topics", "false")])
            .create_with_context(LogContext)
            .map_err(kafka_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer: Arc::new(KafkaProducer {
                    producer: Arc::new(producer),
                }),
                admin: Arc::new(admin),
            }),
        })
    }

    /// The settings the bus was created with.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// Partition ids of each of `topics` that exists (missing topics are absent).
    async fn partitions(
        &self,
        topics: Vec<String>,
    ) -> Result<BTreeMap<String, Vec<i32>>, BusError> {
        let admin = self.inner.admin.clone();
        blocking(move || {
            let mut out = BTreeMap::new();
            for topic in topics {
                let metadata = admin
                    .inner()
                    .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                    .map_err(kafka_error)?;
                if let Some(partitions) = topic_partitions(&metadata, &topic)? {
                    out.insert(topic, partitions);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Partition ids of `topic`, or [`BusError::UnknownTopic`].
    async fn partitions_of(&self, topic: &str) -> Result<Vec<i32>, BusError> {
        self.partitions(vec![topic.to_string()])
            .await?
            .remove(topic)
            .ok_or_else(|| BusError::UnknownTopic(topic.to_string()))
    }

    /// Configuration of a consumer: never commits or stores offsets by itself, starts at the
    /// beginning when the group has nothing committed; group members use
    /// [`KafkaConfig::GROUP_SESSION_TIMEOUT`] and its siblings. [`KafkaConfig::extra`]
    /// overrides any of it.
    fn consumer_config(&self, group: &str) -> ClientConfig {
        self.consumer_config_with(group, &[])
    }

    /// [`KafkaBus::consumer_config`] with `more` settings (still overridden by
    /// [`KafkaConfig::extra`]).
    fn consumer_config_with(&self, group: &str, more: &[(&str, &str)]) -> ClientConfig {
        let session_timeout = millis(KafkaConfig::GROUP_SESSION_TIMEOUT);
        let heartbeat_interval = millis(KafkaConfig::GROUP_HEARTBEAT_INTERVAL);
        let max_poll_interval = millis(KafkaConfig::GROUP_MAX_POLL_INTERVAL);
        let mut settings = vec![
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("allow.auto.create.topics", "false"),
            ("session.timeout.ms", &session_timeout),
            ("heartbeat.interval.ms", &heartbeat_interval),
            ("max.poll.interval.ms", &max_poll_interval),
        ];
        settings.extend_from_slice(more);
        self.inner.config.client_config(&settings)
    }
}

/// The partitions of `topic` in `metadata`: `None` when the topic does not exist.
fn topic_partitions(metadata: &Metadata, topic: &str) -> Result<Option<Vec<i32>>, BusError> {
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            return Ok(None);
        }
        Some(code) => return Err(BusError::Kafka(format!("metadata of `{topic}`: {code}"))),
    }
    if t.partitions().is_empty() {
        // Being created: not usable yet.
        return Ok(None);
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(Some(ids))
}

#[async_trait]
impl Bus for KafkaBus {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        if topics.is_empty() {
            return Ok(());
        }
        let existing = self
            .partitions(topics.iter().map(|t| t.name.clone()).collect())
            .await?;
        let missing: Vec<&TopicSpec> = topics
            .iter()
            .filter(|t| !existing.contains_key(&t.name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !self.inner.config.create_topics {
            return Err(BusError::UnknownTopic(missing[0].name.clone()));
        }

        let retention: Vec<Option<String>> = missing
            .iter()
            .map(|spec| spec.retention_ms.map(|ms| ms.to_string()))
            .collect();
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let partitions = if spec.partitions > 0 {
                    spec.partitions
                } else {
                    -1
                };
                let topic = NewTopic::new(
                    &spec.name,
                    partitions,
                    TopicReplication::Fixed(self.inner.config.replication_factor),
                );
                let topic = if spec.compacted {
                    topic.set("cleanup.policy", "compact")
                } else {
                    topic
                };
                match &retention[i] {
                    Some(ms) => topic.set("retention.ms", ms),
                    None => topic,
                }
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .operation_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .inner
            .admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(kafka_error)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Kafka(format!("creating topic `{name}`: {code}")));
                }
            }
        }

        // Creation is asynchronous on the cluster: wait until every created topic has its
        // partitions in metadata, so producers and readers see it right away.
        let deadline = tokio::time::Instant::now() + CREATE_WAIT;
        let mut waiting: Vec<(String, i32)> = missing
            .iter()
            .map(|spec| (spec.name.clone(), spec.partitions.max(1)))
            .collect();
        loop {
            let found = self
                .partitions(waiting.iter().map(|(name, _)| name.clone()).collect())
                .await?;
            waiting.retain(|(name, wanted)| {
                found
                    .get(name)
                    .is_none_or(|ids| (ids.len() as i32) < *wanted)
            });
            if waiting.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BusError::Timeout(format!(
                    "created topics {:?} did not appear in metadata within {CREATE_WAIT:?}",
                    waiting.iter().map(|(name, _)| name).collect::<Vec<_>>()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn producer(&self) -> Arc<dyn Producer> {
        self.inner.producer.clone()
    }

    async fn group_consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Consumer>, BusError> {
        // Fail like the embedded bus on a missing topic, rather than with errors in `poll`.
        let existing = self
            .partitions(topics.iter().map(|t| t.to_string()).collect())
            .await?;
        if let Some(missing) = topics.iter().find(|t| !existing.contains_key(**t)) {
            return Err(BusError::UnknownTopic(missing.to_string()));
        }
        let consumer: StreamConsumer<LogContext> = self
            .consumer_config(group)
            .create_with_context(LogContext)
            .map_err(kafka_error)?;
        consumer.subscribe(topics).map_err(kafka_error)?;
        Ok(Box::new(KafkaConsumer {
            consumer: Some(Arc::new(consumer)),
            group: true,
            pending_error: None,
        }))
    }

    async fn reader(&self, topic: &str) -> Result<Box<dyn Consumer>, BusError> {
        let partitions = self.partitions_of(topic).await?;
        // librdkafka wants a group id even for `assign`; this one is never joined nor
        // committed to.
        let wait = millis(KafkaConfig::READER_FETCH_WAIT);
        let consumer: StreamConsumer<LogContext> = self
            .consumer_config_with(&unique_group_id(), &[("fetch.wait.max.ms", &wait)])
            .create_with_context(LogContext)
            .map_err(kafka_error)?;
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(kafka_error)?;
        }
        consumer.assign(&assignment).map_err(kafka_error)?;
        Ok(Box::new(KafkaConsumer {
            consumer: Some(Arc::new(consumer)),
            group: false,
            pending_error: None,
        }))
    }

    fn durable(&self) -> bool {
        true
    }

    async fn end_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, BusError> {
        let partitions = self.partitions_of(topic).await?;
        let admin = self.inner.admin.clone();
        let topic = topic.to_string();
        blocking(move || {
            partitions
                .into_iter()
                .map(|p| {
                    admin
                        .inner()
                        .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                        .map(|(_low, high)| (p, high))
                        .map_err(|e| topic_error(&topic, e))
                })
                .collect()
        })
        .await
    }
}

/// The shared producer.
struct KafkaProducer {
    producer: Arc<FutureProducer<LogContext>>,
}

#[async_trait]
impl Producer for KafkaProducer {
    async fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        // `Never`: wait for room when librdkafka's queue is full (back-pressure).
        self.producer
            .send(record, Timeout::Never)
            .await
            .map(|_delivery| ())
            .map_err(|(e, _message)| topic_error(topic, e))
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        let producer = self.producer.clone();
        blocking(move || {
            producer.flush(timeout).map_err(|e| match e {
                KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => {
                    BusError::Timeout(format!("records still unacknowledged after {timeout:?}"))
                }
                e => kafka_error(e),
            })
        })
        .await
    }
}

/// A group member (subscribed) or a reader (assigned every partition).
struct KafkaConsumer {
    /// `None` only while being dropped.
    consumer: Option<Arc<StreamConsumer<LogContext>>>,
    /// Whether commits go to the group (readers ignore them).
    group: bool,
    /// An error met after a batch was already collected, reported by the next poll.
    pending_error: Option<BusError>,
}

impl KafkaConsumer {
    fn consumer(&self) -> Result<Arc<StreamConsumer<LogContext>>, BusError> {
        self.consumer.clone().ok_or(BusError::Closed)
    }
}

fn to_message(m: &BorrowedMessage<'_>) -> Message {
    Message {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(Bytes::copy_from_slice),
        payload: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Message>, BusError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let consumer = self.consumer()?;
        let max = max.max(1);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        // Wait for the first record, passing over errors librdkafka recovers from by itself.
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, consumer.recv()).await {
                Err(_elapsed) => return Ok(out),
                Ok(Ok(m)) => {
                    out.push(to_message(&m));
                    break;
                }
                Ok(Err(e)) if is_transient(&e) => {
                    tracing::warn!(error = %e, "kafka consumer: transient error");
                }
                Ok(Err(e)) => return Err(kafka_error(e)),
            }
        }
        // Then whatever librdkafka already has, without waiting.
        while out.len() < max {
            match consumer.recv().now_or_never() {
                None => break,
                Some(Ok(m)) => out.push(to_message(&m)),
                Some(Err(e)) if is_transient(&e) => {
                    tracing::warn!(error = %e, "kafka consumer: transient error");
                }
                Some(Err(e)) => {
                    self.pending_error = Some(kafka_error(e));
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn commit(&mut self, positions: &[Position]) -> Result<(), BusError> {
        if !self.group || positions.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer()?;
        let positions = positions.to_vec();
        blocking(move || {
            let mut offsets = TopicPartitionList::new();
            for pos in &positions {
                offsets
                    .add_partition_offset(&pos.topic, pos.partition, Offset::Offset(pos.offset))
                    .map_err(kafka_error)?;
            }
            consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(kafka_error)
        })
        .await
    }

    fn assignment(&self) -> Option<Vec<(String, i32)>> {
        if !self.group {
            return None;
        }
        let tpl = self.consumer.as_ref()?.assignment().ok()?;
        Some(
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect(),
        )
    }
}

impl Drop for KafkaConsumer {
    /// Closing a consumer blocks until it has left its group (librdkafka's consumer close:
    /// partitions revoked, then a LeaveGroup request): do it off the async workers.
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                // Synchronous, so a consumer created right after this one is dropped does not
                // race with its leaving.
                tokio::task::block_in_place(move || drop(consumer));
            }
            Ok(handle) => {
                handle.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}

/// Consumer errors librdkafka recovers from by itself (lost connections, timeouts, moving
/// leaders or coordinators): logged, not returned from [`Consumer::poll`].
fn is_transient(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::WaitingForCoordinator
                | RDKafkaErrorCode::NodeUpdate
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
        )
    )
}

/// Sends librdkafka's logs, global errors and consumer rebalances to `tracing`.
struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{log_message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{log_message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{log_message}");
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            // Already in the log lines, and retried by librdkafka.
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!(target: "librdkafka", %error, "{reason}");
            }
            _ => tracing::warn!(target: "librdkafka", %error, "{reason}"),
        }
    }
}

impl ConsumerContext for LogContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| -> Vec<String> {
            tpl.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "kafka consumer: partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "kafka consumer: partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka consumer: rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "kafka consumer: commit failed");
        }
    }
}

/// Run blocking librdkafka calls on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BusError::Kafka(format!("blocking kafka call failed: {e}")))?
}

/// A duration as a librdkafka `*.ms` property value.
fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

fn kafka_error(e: KafkaError) -> BusError {
    BusError::Kafka(e.to_string())
}

/// Like [`kafka_error`], with unknown-topic errors as [`BusError::UnknownTopic`].
fn topic_error(topic: &str, e: KafkaError) -> BusError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            BusError::UnknownTopic(topic.to_string())
        }
        _ => kafka_error(e),
    }
}

/// A group id no other consumer uses (for readers, which never join nor commit).
fn unique_group_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "warden-reader-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
