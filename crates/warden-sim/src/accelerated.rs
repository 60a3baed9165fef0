//! Accelerated runs end to end: generate the events of a scenario in simulated time, write
//! them to Parquet, and (optionally) run detection on them as they are generated — typically
//! `warden_stream::Engine::process` — its quarantines enforced by the emulated gateway from
//! then on.

use std::path::PathBuf;

use arrow::record_batch::RecordBatch;
use warden_event::{Alert, Decision};

use crate::offline::{Offline, ParquetSink};
use crate::{Labels, Plan, ScenarioConfig, SimError};

/// How to run accelerated.
#[derive(Debug, Clone)]
pub struct AcceleratedOptions {
    /// Simulated start of the run, epoch nanoseconds.
    pub start_ns: i64,
    /// Simulated time per batch, ns (the processor batches 50 ms by default).
    pub batch_span_ns: i64,
    /// Most events per batch.
    pub batch_max: usize,
    /// Write the events to this Parquet file.
    pub parquet: Option<PathBuf>,
}

/// Detection run on every batch at its simulated time: the alerts it raised, each with the
/// decision published with it (if any). `warden_stream::Engine::process` fits.
pub type Detect<'a> =
    dyn FnMut(&RecordBatch, i64) -> Result<Vec<(Alert, Option<Decision>)>, DetectError> + 'a;

/// An error of the detection plugged into an accelerated run.
pub type DetectError = Box<dyn std::error::Error + Send + Sync>;

impl AcceleratedOptions {
    /// Defaults: start 2026-01-05 00:00 UTC plus the scenario's `start_hour`, 50 ms
    /// batches of at most 2048 events, no Parquet.
    pub fn new(scenario: &ScenarioConfig) -> Self {
        const MONDAY: i64 = 1_767_571_200_000_000_000;
        Self {
            start_ns: MONDAY + (scenario.fleet.start_hour * 3600.0 * 1e9) as i64,
            batch_span_ns: 50_000_000,
            batch_max: 2048,
            parquet: None,
        }
    }
}

/// What an accelerated run produced.
#[derive(Debug)]
pub struct AcceleratedRun {
    pub labels: Labels,
    pub events: u64,
    /// Alerts and decisions of the detection, if it ran.
    pub alerts: Vec<Alert>,
    pub decisions: Vec<Decision>,
    /// Rows written to Parquet, if asked.
    pub parquet_rows: Option<u64>,
}

/// Run `scenario` with `seed` in simulated time, with `detect` on every batch if given.
/// `progress` is called after every batch with the simulated time elapsed (ns) and the
/// events so far.
pub fn run_accelerated(
    scenario: &ScenarioConfig,
    seed: u64,
    options: &AcceleratedOptions,
    mut detect: Option<&mut Detect<'_>>,
    mut progress: impl FnMut(i64, u64),
) -> Result<AcceleratedRun, SimError> {
    let plan = Plan::new(scenario, seed);
    let mut offline = Offline::new(plan, options.start_ns, seed);
    let mut sink = options
        .parquet
        .as_deref()
        .map(ParquetSink::create)
        .transpose()?;
    let mut alerts = Vec::new();
    let mut decisions = Vec::new();
    let mut events = 0u64;
    loop {
        let batch = offline.next_batch(options.batch_span_ns, options.batch_max);
        if batch.is_empty() {
            break;
        }
        events += batch.len() as u64;
        let records = warden_event::to_record_batch(&batch)?;
        if let Some(detect) = detect.as_mut() {
            let now = offline.now_ns();
            for (alert, decision) in detect(&records, now).map_err(SimError::Detection)? {
                if let Some(d) = decision {
                    offline.apply_decision(&d);
                    decisions.push(d);
                }
                alerts.push(alert);
            }
        }
        if let Some(sink) = sink.as_mut() {
            sink.write(&records)?;
        }
        progress(offline.now_ns() - options.start_ns, events);
    }
    let target = sink.as_ref().map(|s| s.path().display().to_string());
    let parquet_rows = sink.map(ParquetSink::close).transpose()?;
    Ok(AcceleratedRun {
        labels: offline.labels(scenario, seed, target),
        events,
        alerts,
        decisions,
        parquet_rows,
    })
}
