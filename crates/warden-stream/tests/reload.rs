//! Hot reload of the pipeline file in a running processor on a real (embedded) bus: a valid
//! change is swapped in and acts on the next events, an invalid one is refused (reported in
//! the status and counters) and the previous pipeline keeps deciding.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::quarantined;
use warden_bus::Bus;
use warden_config::TopicsConfig;
use warden_stream::Processor;

fn pipeline(name: &str, above: u32) -> String {
    format!(
        r#"
name = "{name}"
[source]
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
above = {above}
[decision]
quarantine_ttl_s = 60
"#
    )
}

async fn burst(bus: &dyn Bus, topics: &TopicsConfig, identity: &str, n: u64) {
    common::publish(bus, topics, identity, n, |_| warden_event::now_ns()).await;
}

/// Wait (up to 10 s) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_changes_are_applied_and_invalid_ones_refused() {
    let (bus, topics) = common::bus(2).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, pipeline("lenient", 1000)).expect("write");
    let p = warden_stream::load_pipeline(&file).expect("pipeline");
    let processor = Processor::new(p, topics.clone())
        .expect("processor")
        .with_reload(file.clone(), Duration::from_millis(50));
    let stats = processor.stats();
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(processor.run(bus.clone(), async move {
        let _ = rx.wait_for(|s| *s).await;
    }));

    // 50 requests: nothing with `above = 1000`.
    burst(&*bus, &topics, "dev-a", 50).await;
    until("50 events", || stats.events.load(Ordering::Relaxed) >= 50).await;
    assert!(quarantined(&*bus, &topics).await.is_empty());

    // A valid change: `above = 20`, and the pipeline renamed.
    std::fs::write(&file, pipeline("strict", 20)).expect("write");
    until("the reload", || stats.reloads.load(Ordering::Relaxed) == 1).await;
    let status = stats.pipeline_status();
    assert_eq!(status.name, "strict");
    assert_eq!(status.reloads, 1);
    assert!(
        status
            .last_reload
            .as_deref()
            .is_some_and(|r| r.contains("reset: burst")),
        "{status:?}"
    );
    burst(&*bus, &topics, "dev-b", 50).await;
    until("100 events", || stats.events.load(Ordering::Relaxed) >= 100).await;
    until("the quarantine", || {
        stats.decisions.load(Ordering::Relaxed) >= 1
    })
    .await;
    assert_eq!(quarantined(&*bus, &topics).await, ["dev-b"]);

    // An invalid change: refused, reported, and `above = 20` keeps deciding.
    std::fs::write(
        &file,
        pipeline("broken", 20).replace("type = \"count\"", "type = \"count\"\ncolour = \"red\""),
    )
    .expect("write");
    until("the refusal", || {
        stats.reload_failures.load(Ordering::Relaxed) == 1
    })
    .await;
    let status = stats.pipeline_status();
    assert_eq!(status.name, "strict", "the running pipeline stays");
    let failure = status.last_failure.expect("failure reported");
    assert!(
        failure
            .problems
            .iter()
            .any(|p| p.contains("pipeline.toml: feature[0]") && p.contains("colour")),
        "{failure:?}"
    );
    burst(&*bus, &topics, "dev-c", 50).await;
    until("the second quarantine", || {
        stats.decisions.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(quarantined(&*bus, &topics).await, ["dev-b", "dev-c"]);
    // The same broken content is not re-reported every second.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats.reload_failures.load(Ordering::Relaxed), 1);

    stop.send(true).expect("stop");
    task.await.expect("join").expect("processor");
}
