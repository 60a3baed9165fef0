//! The processor writes every decision it publishes to the audit log.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::publish;
use warden_event::audit::{AuditLog, Kind, Record, verify};
use warden_stream::Processor;

const PIPELINE: &str = r#"
name = "audited"
[source]
batch_max_wait_ms = 10
batch_max_events = 8
provisional_every_ms = 1000
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
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_decisions_are_recorded() {
    let (bus, topics) = common::bus(1).await;
    let now = warden_event::now_ns();
    publish(&*bus, &topics, "dev-audited", 40, |i| {
        now + i64::try_from(i).unwrap_or(0) * 1_000_000
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path, None).expect("open"));
    let pipeline = warden_stream::parse_pipeline(PIPELINE).expect("pipeline");
    let processor = Processor::new(pipeline, topics.clone())
        .expect("processor")
        .with_audit(log.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(processor.run(bus.clone(), async move {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while log.last_seq() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no decision recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    task.await.expect("join").expect("processor");

    let content = std::fs::read(&path).expect("read");
    let summary = verify(&content, None).expect("a sound chain");
    assert_eq!(summary.records, 1);
    let record: Record = serde_json::from_slice(content.trim_ascii_end()).expect("one record");
    assert_eq!(record.kind, Kind::Decision);
    assert_eq!(record.payload["action"], "quarantine");
    assert_eq!(record.payload["subject"]["value"], "dev-audited");
    assert_eq!(record.payload["detector"], "burst");
    assert_eq!(
        common::quarantined(&*bus, &topics).await,
        vec!["dev-audited".to_string()],
        "the recorded decision is the published one"
    );
}
