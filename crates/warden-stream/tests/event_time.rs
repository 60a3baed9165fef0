//! Event time across partitions, on a real (embedded) bus: a processor that reads one
//! partition's backlog before another's (as after a restart, when partitions are fetched at
//! different paces) must not count the other partition's older events as late. The watermark
//! follows the slowest partition that still has records to read.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{publish, quarantined};
use warden_bus::{Bus, TopicSpec};
use warden_config::{PipelineConfig, TopicsConfig};
use warden_stream::{Processor, ProcessorStats};

/// Quarantine an identity with more than 25 requests in 5 minutes, reading batches of up to
/// `batch` events.
fn pipeline(batch: usize) -> String {
    format!(
        r#"
name = "event-time"
[source]
batch_max_wait_ms = 10
batch_max_events = {batch}
[[window]]
name = "w"
key = "identity"
size_ms = 300000
slide_ms = 5000
[[feature]]
name = "requests"
window = "w"
type = "count"
[[detector]]
name = "burst"
type = "threshold"
feature = "requests"
above = 25
[decision]
quarantine_ttl_s = 600
max_quarantines_per_minute = 1000
"#
    )
}

/// An identity whose events the bus places on `partition` of a two-partition topic (found
/// by publishing probes to a scratch topic and reading back where they went).
async fn identity_on(bus: &dyn Bus, prefix: &str, partition: i32) -> String {
    let topic = format!("probe-{prefix}");
    bus.ensure_topics(&[TopicSpec {
        name: topic.clone(),
        partitions: 2,
        compacted: false,
        retention_ms: None,
    }])
    .await
    .expect("probe topic");
    let candidates: Vec<String> = (0..16).map(|i| format!("{prefix}-{i}")).collect();
    let producer = bus.producer();
    for c in &candidates {
        producer
            .send(&topic, c.as_bytes(), b"probe")
            .await
            .expect("probe");
    }
    let mut found = None;
    warden_bus::read_to_end(bus, &topic, Duration::from_secs(5), |m| {
        if m.partition == partition && found.is_none() {
            found = m
                .key
                .as_ref()
                .and_then(|k| String::from_utf8(k.to_vec()).ok());
        }
    })
    .await
    .expect("read probes");
    found.expect("one of 16 keys lands on each partition")
}

/// A processor running on the bus until [`Running::stop`].
struct Running {
    stats: Arc<ProcessorStats>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), warden_stream::StreamError>>,
}

impl Running {
    fn start(bus: &Arc<dyn Bus>, topics: &TopicsConfig, pipeline: PipelineConfig) -> Self {
        let processor = Processor::new(pipeline, topics.clone()).expect("processor");
        let stats = processor.stats();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(processor.run(bus.clone(), async move {
            let _ = stopped.await;
        }));
        Self { stats, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("join").expect("processor");
    }
}

/// The quarantined subjects once there are `n` of them, or whatever there is after `wait`.
async fn quarantined_within(
    bus: &dyn Bus,
    topics: &TopicsConfig,
    n: usize,
    wait: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = quarantined(bus, topics).await;
    while got.len() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = quarantined(bus, topics).await;
    }
    got
}

/// Small batches: partition 0's events come in batches before partition 1's first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_read_first_does_not_make_another_partitions_backlog_late() {
    backlog_on_two_partitions(16).await;
}

/// One batch: partition 0's events come before partition 1's in the same batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_a_batch_one_partitions_events_do_not_make_anothers_late() {
    backlog_on_two_partitions(1024).await;
}

async fn backlog_on_two_partitions(batch: usize) {
    let (bus, topics) = common::bus(2).await;
    // The embedded bus hands out partition 0's records before partition 1's: the device on
    // partition 0 has recent events, the one on partition 1 a backlog a minute old (a
    // gateway's spool replayed after an outage, or a processor restarted after a pause).
    let fast = identity_on(&*bus, "fast", 0).await;
    let slow = identity_on(&*bus, "slow", 1).await;
    let now = warden_event::now_ns();
    // One event per millisecond of event time.
    let from = |t0: i64| move |i: u64| t0 + i64::try_from(i).unwrap_or(0) * 1_000_000;
    publish(&*bus, &topics, &fast, 64, from(now)).await;
    publish(&*bus, &topics, &slow, 30, from(now - 60_000_000_000)).await;

    let pipeline = warden_stream::parse_pipeline(&pipeline(batch)).expect("pipeline");
    let running = Running::start(&bus, &topics, pipeline);
    let stats = running.stats.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stats.events.load(Ordering::Relaxed) < 94 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the 94 events to be processed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = quarantined_within(&*bus, &topics, 2, Duration::from_secs(10)).await;
    running.stop().await;
    assert_eq!(
        stats.late_events.load(Ordering::Relaxed),
        0,
        "no event of the backlog was late"
    );
    let mut expected = vec![fast, slow];
    expected.sort();
    assert_eq!(got, expected, "both devices quarantined");
}

/// A backlog read in full batches is scored once per `provisional_every_ms` of event time;
/// when it ends on a full batch, the processor's next empty poll scores what that batch
/// deferred, so the quarantine still comes (here only that scoring can decide: the window's
/// first complete sample is minutes of event time away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_ending_on_a_full_batch_is_scored_when_events_stop() {
    let (bus, topics) = common::bus(1).await;
    let now = warden_event::now_ns();
    // 40 requests within 40 ms: five full batches of 8; the first is scored (8 requests, below
    // the threshold), the other four wait for 1 s of event time that never comes.
    publish(&*bus, &topics, "dev-backlog", 40, |i| {
        now + i64::try_from(i).unwrap_or(0) * 1_000_000
    })
    .await;
    let text = pipeline(8).replace("[source]\n", "[source]\nprovisional_every_ms = 1000\n");
    let pipeline = warden_stream::parse_pipeline(&text).expect("pipeline");
    let running = Running::start(&bus, &topics, pipeline);
    let stats = running.stats.clone();
    let got = quarantined_within(&*bus, &topics, 1, Duration::from_secs(20)).await;
    running.stop().await;
    assert_eq!(stats.events.load(Ordering::Relaxed), 40);
    assert_eq!(
        stats.batches.load(Ordering::Relaxed),
        5,
        "five full batches"
    );
    assert_eq!(got, vec!["dev-backlog".to_string()]);
}
