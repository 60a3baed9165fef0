use std::sync::Arc;

use warden_bus::{EmbeddedBus, EmbeddedConfig};

use super::*;

fn cp(partition: i32, next_offset: i64, filler: usize) -> PartitionCheckpoint {
    PartitionCheckpoint {
        v: 1,
        group: "g".into(),
        topic: "warden.events".into(),
        partition,
        next_offset,
        written_at: 1,
        engine: EngineSnapshot {
            pipeline: "x".repeat(filler),
            ..EngineSnapshot::default()
        },
        dedup: DedupSnapshot::default(),
    }
}

#[test]
fn the_topic_is_named_after_the_events_topic() {
    assert_eq!(checkpoint_topic("warden.events"), "warden.checkpoints");
    assert_eq!(checkpoint_topic("t1"), "t1.checkpoints");
}

#[tokio::test]
async fn the_latest_complete_checkpoint_of_each_partition_is_read_back() {
    let bus = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    let store = CheckpointStore::new("g", "warden.events");
    store.ensure(&*bus).await.expect("topic");
    let producer = bus.producer();
    // A big checkpoint (3 chunks), then a small one for partition 0; one for partition 1.
    let big = cp(0, 10, 2 * CHUNK_BYTES + 10);
    assert_eq!(store.encode(&big, 1).len(), 3);
    store.write(&*producer, &[big], 1).await.expect("write");
    store
        .write(&*producer, &[cp(0, 20, 10), cp(1, 5, 10)], 2)
        .await
        .expect("write");
    // Another group's checkpoints are not ours.
    let other = CheckpointStore::new("h", "warden.events");
    other
        .write(&*producer, &[cp(0, 99, 1)], 3)
        .await
        .expect("write");
    let wanted: BTreeSet<i32> = [0, 1, 2].into_iter().collect();
    let got = store
        .read(&*bus, &wanted, Duration::from_secs(5))
        .await
        .expect("read");
    assert_eq!(got.len(), 2, "nothing for partition 2");
    assert_eq!(
        got[&0].next_offset, 20,
        "the newer, shorter checkpoint wins"
    );
    assert_eq!(got[&1].next_offset, 5);

    // A checkpoint whose chunk 0 never made it (crash mid-write) leaves the previous one.
    let torn = store.encode(&cp(1, 50, 2 * CHUNK_BYTES), 4);
    for (key, payload) in &torn[..torn.len() - 1] {
        producer
            .send(&store.topic, key.as_bytes(), payload)
            .await
            .expect("send");
    }
    let got = store
        .read(&*bus, &wanted, Duration::from_secs(5))
        .await
        .expect("read");
    assert_eq!(got[&1].next_offset, 5);

    // A multi-chunk checkpoint torn by the next one (its last chunks overwritten, chunk 0
    // never written) is still read back whole from the records before.
    store
        .write(&*producer, &[cp(2, 7, 2 * CHUNK_BYTES + 10)], 5)
        .await
        .expect("write");
    let torn = store.encode(&cp(2, 9, 2 * CHUNK_BYTES + 10), 6);
    for (key, payload) in &torn[..torn.len() - 1] {
        producer
            .send(&store.topic, key.as_bytes(), payload)
            .await
            .expect("send");
    }
    let got = store
        .read(&*bus, &wanted, Duration::from_secs(5))
        .await
        .expect("read");
    assert_eq!(got[&2].next_offset, 7);
    assert_eq!(got[&2].engine.pipeline.len(), 2 * CHUNK_BYTES + 10);
}

/// Each partition's snapshot holds the keys whose last event came from it, and restoring them
/// all into a fresh engine gives back the same state.
#[test]
fn a_snapshot_splits_by_the_partition_of_each_keys_last_event() {
    let pipeline = warden_config::PipelineConfig::from_toml(
        r#"
name = "split"
[[window]]
name = "w"
key = "identity"
size_ms = 10000
slide_ms = 1000
[[window]]
name = "t"
key = "tenant"
size_ms = 10000
slide_ms = 1000
[[feature]]
name = "requests"
window = "w"
type = "count"
[[feature]]
name = "tenant_requests"
window = "t"
type = "count"
[[detector]]
name = "burst"
type = "threshold"
feature = "requests"
above = 1000
[decision]
quarantine_ttl_s = 60
"#,
    )
    .expect("pipeline");
    let mut engine = crate::Engine::new(&pipeline).expect("engine");
    let mut owners = KeyOwners::new(&pipeline);
    let t0 = 1_700_000_000_000_000_000_i64;
    let mut events = Vec::new();
    let mut buf = String::new();
    for (i, (identity, partition)) in [("a", 0), ("b", 1), ("a", 0), ("c", 1)].iter().enumerate() {
        let mut e = processor::event(identity, &format!("e{i}"), t0 + i as i64);
        e.tenant = "shared".into();
        owners.record(*partition, &e, &mut buf);
        events.push(e);
    }
    let batch = warden_event::to_record_batch(&events).expect("batch");
    engine.process(&batch, t0).expect("process");
    let snap = engine.snapshot(|_, _| true);
    let parts: BTreeSet<i32> = [0, 1].into_iter().collect();
    let split = split(snap.clone(), &parts, &owners);
    let keys = |p: i32, w: &str| -> Vec<String> {
        let mut k: Vec<String> = split[&p].windows[w]
            .keys
            .iter()
            .map(|k| k.state.name.to_string())
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(0, "w"), ["a"]);
    assert_eq!(keys(1, "w"), ["b", "c"]);
    // The shared tenant follows its latest event (c, partition 1).
    assert!(keys(0, "t").is_empty());
    assert_eq!(keys(1, "t"), ["shared"]);
    assert_eq!(split[&0].watermark, snap.watermark);

    let mut fresh = crate::Engine::new(&pipeline).expect("engine");
    for s in split.into_values() {
        fresh.restore(s).expect("restore");
    }
    assert_eq!(fresh.snapshot(|_, _| true), snap);
}

// ── The processor with checkpoints and dedup, on the embedded bus ──────────────────────

mod processor {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
    use warden_config::{PipelineConfig, TopicsConfig, WardenConfig};
    use warden_event::{
        Action, AuthInfo, AuthMethod, AuthResult, Decision, Outcome, Protocol, RequestEvent,
    };

    use crate::{Processor, ProcessorStats};

    /// Quarantine an identity with more than 5 requests in 10 s.
    fn pipeline() -> PipelineConfig {
        PipelineConfig::from_toml(
            r#"
name = "ckpt"
[source]
group = "ckpt-group"
batch_max_wait_ms = 10
[[window]]
name = "w"
key = "identity"
size_ms = 10000
slide_ms = 1000
[[feature]]
name = "requests"
window = "w"
type = "count"
[[detector]]
name = "burst"
type = "threshold"
feature = "requests"
above = 5
[decision]
quarantine_ttl_s = 600
"#,
        )
        .expect("pipeline")
    }

    pub(super) fn event(identity: &str, id: &str, ts: i64) -> RequestEvent {
        RequestEvent {
            v: warden_event::SCHEMA_VERSION,
            id: id.into(),
            gateway: "gw".into(),
            seq: 0,
            ts,
            identity: identity.into(),
            tenant: "t".into(),
            device_type: "sensor".into(),
            auth: AuthInfo {
                method: AuthMethod::ApiKey,
                result: AuthResult::Ok,
            },
            client_ip: "10.0.0.1".into(),
            protocol: Protocol::Http,
            method: "POST".into(),
            route: "telemetry".into(),
            path: "/t".into(),
            status: 200,
            decision: Outcome::Allowed,
            latency_us: 1,
            bytes_in: 1,
            bytes_out: 1,
            user_agent: None,
            tls: None,
            reason: warden_event::Reason::None,
            query: String::new(),
            query_hash: 0,
        }
    }

    async fn bus() -> (Arc<dyn Bus>, TopicsConfig) {
        let topics = WardenConfig::default().bus.topics;
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
        let specs: Vec<TopicSpec> = [&topics.events, &topics.decisions, &topics.alerts]
            .iter()
            .map(|t| TopicSpec {
                name: (*t).clone(),
                partitions: 2,
                compacted: *t == &topics.decisions,
                retention_ms: None,
            })
            .collect();
        bus.ensure_topics(&specs).await.expect("topics");
        (bus, topics)
    }

    async fn send(bus: &dyn Bus, topics: &TopicsConfig, events: &[RequestEvent]) {
        for e in events {
            bus.producer()
                .send(&topics.events, e.key().as_bytes(), &warden_event::encode(e))
                .await
                .expect("send");
        }
    }

    struct Running {
        stats: Arc<ProcessorStats>,
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<(), crate::StreamError>>,
    }

    impl Running {
        async fn stop(self) {
            self.stop.send(true).expect("stop");
            self.task.await.expect("join").expect("processor");
        }
    }

    fn start(bus: &Arc<dyn Bus>, topics: &TopicsConfig, checkpoints: bool) -> Running {
        let p = Processor::new(pipeline(), topics.clone())
            .expect("processor")
            .with_checkpoints(checkpoints)
            .with_checkpoint_interval(Duration::ZERO);
        let stats = p.stats();
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(p.run(bus.clone(), async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Running { stats, stop, task }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn quarantined(bus: &dyn Bus, topics: &TopicsConfig) -> Vec<String> {
        let mut out = Vec::new();
        warden_bus::read_to_end(bus, &topics.decisions, Duration::from_secs(5), |m| {
            if let Ok(d) = warden_event::decode::<Decision>(&m.payload)
                && d.action == Action::Quarantine
            {
                out.push(d.subject.value);
            }
        })
        .await
        .expect("read decisions");
        out.sort();
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replayed_event_is_counted_once() {
        let (bus, topics) = bus().await;
        let run = start(&bus, &topics, false);
        let now = warden_event::now_ns();
        // One event delivered 20 times (a gateway replaying its spool): one request.
        let same: Vec<RequestEvent> = (0..20).map(|_| event("dup", "id-1", now)).collect();
        send(&*bus, &topics, &same).await;
        until("the replays", || {
            run.stats.duplicates.load(Ordering::Relaxed) == 19
        })
        .await;
        until("the commit", || {
            run.stats.commits.load(Ordering::Relaxed) >= 1
        })
        .await;
        assert_eq!(run.stats.events.load(Ordering::Relaxed), 1);
        assert!(quarantined(&*bus, &topics).await.is_empty());
        // Six distinct requests do cross the threshold: the detector works.
        let distinct: Vec<RequestEvent> = (0..6)
            .map(|i| event("flood", &format!("f-{i}"), now))
            .collect();
        send(&*bus, &topics, &distinct).await;
        until("the quarantine", || {
            run.stats.decisions.load(Ordering::Relaxed) >= 1
        })
        .await;
        assert_eq!(quarantined(&*bus, &topics).await, ["flood"]);
        run.stop().await;
    }

    /// Four requests, a restart, two more: the second processor quarantines only if it got the
    /// first four back from the checkpoint (and it recognises a replay of one of them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_survives_a_restart_through_the_checkpoint() {
        for checkpoints in [true, false] {
            let (bus, topics) = bus().await;
            let now = warden_event::now_ns();
            let first = start(&bus, &topics, checkpoints);
            let four: Vec<RequestEvent> = (0..4)
                .map(|i| event("dev", &format!("a-{i}"), now + i))
                .collect();
            send(&*bus, &topics, &four).await;
            until("four events", || {
                first.stats.events.load(Ordering::Relaxed) == 4
                    && first.stats.commits.load(Ordering::Relaxed) >= 1
            })
            .await;
            if checkpoints {
                until("a checkpoint", || {
                    first.stats.checkpoints.load(Ordering::Relaxed) >= 1
                })
                .await;
            }
            first.stop().await;

            let second = start(&bus, &topics, checkpoints);
            let mut more: Vec<RequestEvent> = (4..6)
                .map(|i| event("dev", &format!("a-{i}"), now + i))
                .collect();
            // A replay of an event the first processor counted.
            more.push(four[0].clone());
            send(&*bus, &topics, &more).await;
            until("the new events", || {
                second.stats.events.load(Ordering::Relaxed)
                    + second.stats.duplicates.load(Ordering::Relaxed)
                    == 3
                    && second.stats.commits.load(Ordering::Relaxed) >= 1
            })
            .await;
            let q = quarantined(&*bus, &topics).await;
            if checkpoints {
                assert_eq!(second.stats.restores.load(Ordering::Relaxed), 1);
                assert_eq!(second.stats.duplicates.load(Ordering::Relaxed), 1);
                assert_eq!(second.stats.redelivered.load(Ordering::Relaxed), 0);
                assert_eq!(q, ["dev"], "6 requests in 10 s once the state is restored");
            } else {
                // Without the checkpoint the restarted processor saw 2 (+1 replay) requests.
                assert!(q.is_empty(), "{q:?}");
            }
            second.stop().await;
        }
    }

    /// Records below a checkpoint's offset (a crash after the checkpoint, before the commit)
    /// are skipped, not counted again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_already_in_the_checkpoint_are_skipped() {
        let (bus, topics) = bus().await;
        let now = warden_event::now_ns();
        let five: Vec<RequestEvent> = (0..5)
            .map(|i| event("dev", &format!("b-{i}"), now + i))
            .collect();
        send(&*bus, &topics, &five).await;
        // Checkpoints saying the five records are in the state, nothing committed.
        let store = super::super::CheckpointStore::new("ckpt-group", &topics.events);
        store.ensure(&*bus).await.expect("topic");
        let cps: Vec<super::super::PartitionCheckpoint> = (0..2)
            .map(|p| super::super::PartitionCheckpoint {
                v: 1,
                group: "ckpt-group".into(),
                topic: topics.events.clone(),
                partition: p,
                next_offset: 5,
                ..Default::default()
            })
            .collect();
        store.write(&*bus.producer(), &cps, 1).await.expect("write");
        let run = start(&bus, &topics, true);
        until("the skipped records", || {
            run.stats.redelivered.load(Ordering::Relaxed) == 5
        })
        .await;
        send(&*bus, &topics, &[event("dev", "b-5", now + 5)]).await;
        until("the new record", || {
            run.stats.events.load(Ordering::Relaxed) == 1
        })
        .await;
        assert!(quarantined(&*bus, &topics).await.is_empty());
        run.stop().await;
    }
}
