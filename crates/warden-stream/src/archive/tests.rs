use std::time::Duration;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use warden_bus::{EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_event::{AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, RequestEvent};

use super::*;
use crate::query::{Format, query, render};

pub(super) const HOUR: i64 = 3_600_000_000_000;
/// 2026-01-05T09:00Z
pub(super) const T0: i64 = 1_767_603_600 * 1_000_000_000;

pub(super) fn event(i: u64, ts: i64) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("e{i}"),
        gateway: "gw".into(),
        seq: i,
        ts,
        identity: format!("dev-{}", i % 10),
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
        path: format!("/api/devices/dev-{}/telemetry", i % 10),
        status: 200,
        decision: if i % 10 == 3 {
            Outcome::DeniedAuth
        } else {
            Outcome::Allowed
        },
        latency_us: 100,
        bytes_in: 200,
        bytes_out: 20,
        user_agent: Some("fw/1".into()),
        tls: None,
        reason: warden_event::Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

pub(super) fn count(batches: &[RecordBatch]) -> i64 {
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn files_are_hourly_size_bounded_and_queryable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = ArchiveWriter::new(dir.path().to_path_buf(), 64 * 1024).expect("writer");
    // 30 000 events over two hours, written in batches that straddle the hour.
    let events: Vec<RequestEvent> = (0..30_000u64)
        .map(|i| event(i, T0 + HOUR / 2 + i as i64 * 200_000_000))
        .collect();
    let mut closed = 0;
    for chunk in events.chunks(1000) {
        closed += w
            .write(&warden_event::to_record_batch(chunk).expect("batch"))
            .expect("write");
    }
    closed += w.close_all().expect("close");
    assert!(closed >= 4, "size-bounded: {closed} files");
    assert_eq!(w.closed_files().len(), closed);
    let mut hours: Vec<String> = w
        .closed_files()
        .iter()
        .map(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    hours.sort();
    hours.dedup();
    assert_eq!(
        hours,
        [
            "hour=2026-01-05T09",
            "hour=2026-01-05T10",
            "hour=2026-01-05T11"
        ]
    );
    for f in w.closed_files() {
        let len = std::fs::metadata(f).expect("file").len();
        assert!(len < 2 * 64 * 1024, "{} is {len} bytes", f.display());
    }
    let leftovers = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with(".tmp"))
        .count();
    assert_eq!(leftovers, 0);

    let b = query(dir.path(), "select count(*) from events")
        .await
        .expect("query");
    assert_eq!(count(&b), 30_000);
    let b = query(
        dir.path(),
        "select count(*) from events where hour = '2026-01-05T10'",
    )
    .await
    .expect("query");
    assert_eq!(count(&b), 18_000, "one hour of 200 ms events");
    let b = query(
        dir.path(),
        "select identity, count(*) as denied from events where decision = 'denied_auth' \
         group by identity order by denied desc, identity limit 3",
    )
    .await
    .expect("query");
    let table = render(&b, Format::Table).expect("table");
    assert!(table.contains("| dev-3    | 3000   |"), "{table}");
    let csv = render(&b, Format::Csv).expect("csv");
    assert_eq!(csv, "identity,denied\ndev-3,3000\n");
    let json = render(&b, Format::Json).expect("json");
    assert_eq!(json, r#"[{"identity":"dev-3","denied":3000}]"#);
    let err = query(dir.path(), "select nope from events")
        .await
        .expect_err("bad column");
    assert!(err.to_string().contains("nope"), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn retention_deletes_old_hours_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    for h in 0..5 {
        std::fs::create_dir_all(dir.path().join(hour_dir(T0 / HOUR + h))).expect("mkdir");
    }
    std::fs::create_dir_all(dir.path().join("not-an-hour")).expect("mkdir");
    // Now is T0 + 4 h 30: keeping 3 hours keeps hours 1 to 4.
    let now = T0 + 4 * HOUR + HOUR / 2;
    assert_eq!(prune(dir.path(), 3, now, &[]).expect("prune"), 1);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "hour=2026-01-05T10",
            "hour=2026-01-05T11",
            "hour=2026-01-05T12",
            "hour=2026-01-05T13",
            "not-an-hour"
        ]
    );
    assert_eq!(
        prune(&dir.path().join("missing"), 3, now, &[]).expect("missing dir"),
        0
    );
    let open = T0 / HOUR + 1;
    assert_eq!(
        prune(dir.path(), 1, now, &[open]).expect("prune"),
        1,
        "hour 2 goes, open hour 1 stays"
    );
    assert!(dir.path().join(hour_dir(open)).exists());
}

#[tokio::test]
async fn the_archiver_consumes_the_topic_and_commits_after_closing() {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new(EmbeddedConfig::default()));
    bus.ensure_topics(&[TopicSpec {
        name: "events".into(),
        partitions: 4,
        compacted: false,
        retention_ms: None,
    }])
    .await
    .expect("topics");
    let producer = bus.producer();
    for i in 0..500u64 {
        let e = event(i, T0 + i as i64 * 1_000_000);
        // Gateways may write either form; the archive reads both.
        let format = if i % 2 == 0 {
            warden_event::EventFormat::Compact
        } else {
            warden_event::EventFormat::Json
        };
        producer
            .send(
                "events",
                e.key().as_bytes(),
                &warden_event::encode_event(&e, format),
            )
            .await
            .expect("send");
    }
    producer
        .send("events", b"k", b"not json")
        .await
        .expect("send");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ArchiveConfig::new(dir.path().to_path_buf());
    config.max_file_age_s = 3600;
    config.validate().expect("valid");
    let archiver = Archiver::new(config.clone(), "events".into());
    let stats = archiver.stats();
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(archiver.run(bus.clone(), async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.events.load(Ordering::Relaxed) < 500 {
        if tokio::time::Instant::now() >= deadline {
            if task.is_finished() {
                panic!("archiver stopped: {:?}", task.await);
            }
            panic!("archiver stalled");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing is visible (or committed) before the files close…
    assert!(
        query(dir.path(), "select count(*) from events")
            .await
            .map(|b| count(&b))
            .unwrap_or(0)
            == 0
    );
    tx.send(true).expect("stop");
    task.await.expect("join").expect("archiver");
    assert_eq!(stats.undecodable.load(Ordering::Relaxed), 1);
    assert!(stats.commits.load(Ordering::Relaxed) >= 1);
    let b = query(
        dir.path(),
        "select count(*), count(distinct id) from events",
    )
    .await
    .expect("query");
    assert_eq!(count(&b), 500);
    // …and a new archiver of the same group starts after what was committed.
    let again = Archiver::new(config, "events".into());
    let stats2 = again.stats();
    let (tx2, mut rx2) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(again.run(bus.clone(), async move {
        let _ = rx2.wait_for(|s| *s).await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx2.send(true).expect("stop");
    task.await.expect("join").expect("archiver");
    assert_eq!(
        stats2.events.load(Ordering::Relaxed),
        0,
        "nothing re-archived"
    );
    let _ = Int64Array::from(vec![0]);
}

#[tokio::test]
async fn the_archive_holds_refusal_reasons_and_query_shapes_never_query_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = ArchiveWriter::new(dir.path().to_path_buf(), 64 * 1024 * 1024).expect("writer");
    let events: Vec<RequestEvent> = (0..100u64)
        .map(|i| {
            let mut e = event(i, T0 + i as i64 * 1_000_000);
            let q = format!("page={i}&token=s3cr3tvalue");
            e.query = warden_event::query::shape(&q);
            e.query_hash = warden_event::query::hash(b"k", &q);
            if i % 4 == 0 {
                e.status = 403;
                e.decision = Outcome::Quarantined;
                e.reason = warden_event::Reason::Quarantine;
            }
            e
        })
        .collect();
    w.write(&warden_event::to_record_batch(&events).expect("batch"))
        .expect("write");
    w.close_all().expect("close");
    let b = query(
        dir.path(),
        "select count(*) from events where reason = 'quarantine' and query = 'page=int&token=str'",
    )
    .await
    .expect("query");
    assert_eq!(count(&b), 25);
    let b = query(dir.path(), "select count(distinct query_hash) from events")
        .await
        .expect("query");
    assert_eq!(count(&b), 100);
    let all = query(dir.path(), "select * from events")
        .await
        .expect("query");
    let text = render(&all, Format::Csv).expect("csv");
    assert!(
        !text.contains("s3cr3t") && !text.contains("page=7"),
        "{text}"
    );
}
