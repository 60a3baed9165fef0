//! Runs of scenarios: live over real sockets against the simulated backend (no gateway, so
//! every request gets through), and accelerated to Parquet.

use std::sync::Arc;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden_sim::labels::Labels;
use warden_sim::{
    AcceleratedOptions, LiveOptions, Plan, Recorder, ScenarioConfig, builtin_scenario,
    run_accelerated, run_live,
};

fn scenario(name: &str, devices: usize, duration_s: f64) -> ScenarioConfig {
    let mut s = builtin_scenario(name)
        .expect("built in")
        .unwrap_or_else(|e| panic!("{e}"))
        .with_duration(duration_s);
    s.fleet.devices = devices;
    s.fleet.period_scale = 0.1;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_run_against_the_backend_labels_what_it_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(warden_sim::demo_upstream(listener));
    let mut s = scenario("exfiltration", 60, 6.0);
    // Cameras present client certificates to a gateway's TLS listener; the bare backend has
    // none (the end-to-end scenario tests run them through a gateway).
    s.fleet.mix.camera = 0.0;
    let plan = Plan::new(&s, 3);
    let planned: Vec<_> = Plan::new(&s, 3).collect();
    let recorder = Arc::new(Recorder::new(&plan));
    let labels = run_live(
        &s,
        3,
        plan,
        &LiveOptions::new(format!("http://{addr}")),
        recorder.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("run");
    server.abort();
    assert_eq!(labels.summary.sent, planned.len() as u64);
    assert_eq!(labels.summary.failed, 0, "{:?}", labels.summary);
    assert!(labels.summary.benign_refused.is_empty());
    // Statuses come from the backend: 2xx, plus the played 400s and 5xx.
    for (class, statuses) in &labels.summary.by_class {
        assert!(
            statuses
                .keys()
                .all(|s| matches!(s, 200 | 201 | 202 | 400 | 500 | 502 | 503)),
            "{class}: {statuses:?}"
        );
    }
    let a = &labels.attacks[0];
    let x = &a.attackers[0];
    assert!(
        x.sent >= 1 && x.through == x.sent && x.refused == 0,
        "{x:?}"
    );
    assert!(
        x.first_sent_ns
            .is_some_and(|t| t >= a.start_ns - 50_000_000)
    );
    assert!(labels.ended_at - labels.started_at >= 6_000_000_000);
    // The labels survive a round trip through their file.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l.json");
    labels.write(&path).expect("write");
    assert_eq!(Labels::read(&path).expect("read"), labels);
}

#[test]
fn accelerated_run_writes_the_events_to_parquet() {
    let s = scenario("firmware_probe", 80, 60.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.parquet");
    let mut options = AcceleratedOptions::new(&s);
    options.parquet = Some(path.clone());
    let mut batches = 0;
    let run = run_accelerated(&s, 5, &options, None, |_, _| batches += 1).expect("run");
    assert!(batches > 100, "{batches}");
    assert_eq!(run.parquet_rows, Some(run.events));
    assert_eq!(run.labels.summary.sent, run.events);
    let file = std::fs::File::open(&path).expect("open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut rows = 0;
    let mut statuses = std::collections::BTreeSet::new();
    for batch in reader {
        let batch = batch.expect("batch");
        assert_eq!(batch.schema(), warden_event::request_event_schema());
        rows += batch.num_rows() as u64;
        let status = batch
            .column_by_name("status")
            .expect("status")
            .as_any()
            .downcast_ref::<arrow::array::UInt16Array>()
            .expect("u16")
            .clone();
        statuses.extend(status.iter().flatten());
    }
    assert_eq!(rows, run.events);
    // Probes meet the gateway's method check (405) and the backend's 404s.
    assert!(
        statuses.contains(&405) && statuses.contains(&404) && statuses.contains(&202),
        "{statuses:?}"
    );
    // The same seed gives the same events.
    let again = run_accelerated(&s, 5, &AcceleratedOptions::new(&s), None, |_, _| {}).expect("run");
    assert_eq!(again.labels.summary, run.labels.summary);
}
