//! Scoring throughput with the ML detectors, and training time.
//!
//! Two benign simulated fleets of `ML_BENCH_DEVICES` devices (default 1000) are generated:
//! `sparse`, the simulator's own pace (a device sends every half minute on average) for
//! `ML_BENCH_HOURS` (default 1), and `dense`, the same fleet twenty times as chatty
//! (`period_scale = 0.05`) for a sixth of that time. The processor's cost has a part per
//! event and a part per key and slide (every key's window is sampled every slide whether or
//! not it sent anything), so events/s depends on how often each device sends: the two fleets
//! bracket it. Each fleet's events are written to Parquet and the three models of
//! `pipelines/ml.toml` are trained on them with `warden train`'s code path (timed, printed).
//! Then criterion measures events/s through the engine, batches of 2048 events, for the
//! default pipeline and for `ml.toml` (the default pipeline plus k-means, Gaussian mixture
//! and isolation forest), each on a fresh engine per iteration.
//!
//! `cargo bench -p warden-benches --bench ml_scoring`

// The allocator the `warden` binary runs on (crates/warden/src/main.rs), so the figures are
// what ships; `--features system-alloc` measures the same on glibc's.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use warden_stream::Engine;

fn env(k: &str, d: f64) -> f64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fleet's events as 2048-event batches, also written to `dir/benign.parquet`.
fn fleet(dir: &Path, hours: f64, period_scale: f64) -> Vec<RecordBatch> {
    let mut s = warden_sim::builtin_scenario("benign")
        .expect("built in")
        .unwrap_or_else(|e| panic!("{e}"))
        .with_duration(hours * 3600.0);
    s.fleet.devices = env("ML_BENCH_DEVICES", 1000.0) as usize;
    s.fleet.period_scale = period_scale;
    let mut o = warden_sim::AcceleratedOptions::new(&s);
    o.parquet = Some(dir.join("benign.parquet"));
    let mut batches = Vec::new();
    let mut keep =
        |b: &RecordBatch, _now: i64| -> Result<_, warden_sim::accelerated::DetectError> {
            batches.push(b.clone());
            Ok(Vec::new())
        };
    warden_sim::run_accelerated(&s, s.seed, &o, Some(&mut keep), |_, _| {})
        .unwrap_or_else(|e| panic!("{e}"));
    // Re-cut into processor-sized batches.
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    (0..all.num_rows())
        .step_by(2048)
        .map(|i| all.slice(i, 2048.min(all.num_rows() - i)))
        .collect()
}

fn ml_pipeline(models: &Path) -> warden_config::PipelineConfig {
    let text = std::fs::read_to_string(repo().join("pipelines/ml.toml")).expect("ml.toml");
    let text = text.replace("\"models/", &format!("\"{}/", models.display()));
    warden_stream::parse_pipeline(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn train(pipeline: &warden_config::PipelineConfig, events: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for d in pipeline.detector.iter().filter(|d| d.ml().is_some()) {
        let t = Instant::now();
        let set = rt
            .block_on(warden_stream::ml::train::collect(
                pipeline,
                Some(d.name()),
                events,
            ))
            .unwrap_or_else(|e| panic!("{e}"));
        let replay = t.elapsed();
        let opts = set.options(&pipeline.name, 0.001, 1).expect("ml detector");
        let t = Instant::now();
        let m = warden_ml::train(&set.rows, &opts, |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let fit = t.elapsed();
        m.save(Path::new(&d.ml().expect("ml").model)).expect("save");
        println!(
            "train {}: {} events → {} rows; replay {replay:?}, fit + calibrate {fit:?} ({} groups)",
            d.name(),
            set.events,
            set.rows.len(),
            m.body.groups.len()
        );
    }
}

fn run(engine: &mut Engine, batches: &[RecordBatch]) -> usize {
    let mut n = 0;
    for b in batches {
        let now = warden_event::now_ns();
        n += engine.process(b, now).expect("process").len();
    }
    n + engine.flush(warden_event::now_ns()).expect("flush").len()
}

fn bench(c: &mut Criterion) {
    let default = warden_stream::load_pipeline(&repo().join("pipelines/default.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let hours = env("ML_BENCH_HOURS", 1.0);
    for (fleet_name, hours, period_scale) in [("sparse", hours, 1.0), ("dense", hours / 6.0, 0.05)]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Instant::now();
        let batches = fleet(dir.path(), hours, period_scale);
        let events: usize = batches.iter().map(RecordBatch::num_rows).sum();
        println!(
            "{fleet_name} fleet: {events} events over {hours} h generated in {:?}",
            t.elapsed()
        );
        let ml = ml_pipeline(&dir.path().join("models"));
        train(&ml, dir.path());
        let mut group = c.benchmark_group(format!("ml_scoring/{fleet_name}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(events as u64));
        for (label, p) in [("default", &default), ("default_plus_ml", &ml)] {
            group.bench_function(label, |b| {
                b.iter_batched(
                    || Engine::new(p).unwrap_or_else(|e| panic!("{e}")),
                    |mut e| run(&mut e, &batches),
                    BatchSize::PerIteration,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
