//! Processors that survive rebalances (issue: durable event pipeline, processor side), against
//! a real Kafka-protocol broker (Tansu, SQLite storage): two processors in one group split the
//! partitions; one dies; the other takes its partitions over with their state (restored from
//! the checkpoint topic) and the quarantines that need the dead one's counts still happen,
//! once each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_config::{BusKind, WardenConfig};
use warden_stream::ProcessorStats;
use warden_tests::processing::{counting_pipeline, publish, quarantines, until};
use warden_tests::tansu::Tansu;

/// Events processed and partitions assigned.
fn load(s: &ProcessorStats) -> (u64, u64) {
    (
        s.events.load(Ordering::Relaxed),
        s.assigned_partitions.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_processor_takes_over_partitions_with_their_state() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,warden_stream=info")
        .try_init();
    let broker = Tansu::start_sqlite();
    let mut config = WardenConfig::default();
    config.gateway.id = "proc-durable".into();
    config.bus.kind = BusKind::Kafka;
    config.bus.brokers = broker.brokers();
    config.bus.partitions = 4;
    let bus = make_bus(&config).expect("bus");
    ensure_topics(&*bus, &config).await.expect("topics");
    let topics = config.bus.topics.clone();
    let pipeline =
        warden_stream::parse_pipeline(&counting_pipeline("durable-group", 20)).expect("pipeline");

    let start = || async {
        Stack::start(
            bus.clone(),
            &config,
            StackParts {
                processor: Some(pipeline.clone()),
                ..StackParts::default()
            },
        )
        .await
        .expect("processor")
    };
    let a = start().await;
    let b = start().await;
    let sa: Arc<ProcessorStats> = a.processor_stats.clone().expect("stats");
    let sb: Arc<ProcessorStats> = b.processor_stats.clone().expect("stats");
    until(
        "both processors sharing the 4 partitions",
        Duration::from_secs(60),
        async || {
            let (pa, pb) = (load(&sa).1, load(&sb).1);
            pa >= 1 && pb >= 1 && pa + pb == 4
        },
    )
    .await;

    // 12 devices × 12 requests: below the threshold (20), spread over both processors.
    let offenders: Vec<String> = (0..12).map(|i| format!("dev-{i}")).collect();
    let quiet: Vec<String> = (0..8).map(|i| format!("quiet-{i}")).collect();
    let mut sent = publish(&*bus, &topics.events, &offenders, 12, Duration::ZERO).await;
    sent += publish(&*bus, &topics.events, &quiet, 3, Duration::ZERO).await;
    until(
        "both processors counting",
        Duration::from_secs(60),
        async || load(&sa).0 + load(&sb).0 == sent,
    )
    .await;
    // Everything committed (and checkpointed).
    until(
        "the commits of every event",
        Duration::from_secs(30),
        async || {
            sa.uncommitted_partitions.load(Ordering::Relaxed) == 0
                && sb.uncommitted_partitions.load(Ordering::Relaxed) == 0
        },
    )
    .await;
    let (ea, eb) = (load(&sa).0, load(&sb).0);
    assert!(
        ea > 0 && eb > 0,
        "both processors got events: {ea} and {eb}"
    );
    assert!(quarantines(&*bus, &topics.decisions).await.is_empty());

    // B dies (its tasks aborted: no final checkpoint, no commit); A takes every partition.
    drop(b);
    until(
        "the survivor owning all partitions",
        Duration::from_secs(60),
        async || load(&sa).1 == 4,
    )
    .await;

    // 12 more requests each: 24 > 20 only with the counts B kept.
    let more = publish(&*bus, &topics.events, &offenders, 12, Duration::ZERO).await;
    let expected: BTreeMap<String, usize> = offenders.iter().map(|o| (o.clone(), 1)).collect();
    until(
        "every offender quarantined",
        Duration::from_secs(60),
        async || quarantines(&*bus, &topics.decisions).await.len() == offenders.len(),
    )
    .await;
    until(
        "the survivor processing everything",
        Duration::from_secs(60),
        async || load(&sa).0 >= ea + more,
    )
    .await;
    assert!(
        sa.restores.load(Ordering::Relaxed) >= 1,
        "the survivor restored the partitions it took over"
    );
    assert_eq!(
        quarantines(&*bus, &topics.decisions).await,
        expected,
        "each offender quarantined exactly once, nobody else"
    );
    assert_eq!(sa.duplicates.load(Ordering::Relaxed), 0);
    a.stop().await.expect("stop");
}
