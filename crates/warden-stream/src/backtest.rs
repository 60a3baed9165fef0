//! Backtests: replay archived events through a pipeline at full speed and report what it
//! would have alerted and enforced ([`replay`]); run detectors over `timestamp,value[,label]`
//! metric series and score every row ([`series`]) to compare detectors on public benchmark
//! series.

pub mod scores;
pub mod series;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::TimestampNanosecondType;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use serde::Serialize;
use warden_config::{ConfigErrors, PipelineConfig};
use warden_event::Action;

pub use series::{SeriesError, SeriesReport, series_detector};

use crate::query::{QueryError, session};
use crate::{Engine, EngineError};

/// Errors of a backtest.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("pipeline: {0}")]
    Pipeline(#[from] ConfigErrors),
    #[error("reading the archive: {0}")]
    Query(#[from] QueryError),
    #[error("reading the archive: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("archived events do not have the event schema: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Model(String),
}

/// One alert the pipeline would have raised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Event time of the batch that raised it, nanoseconds since the Unix epoch.
    pub ts: i64,
    pub subject: String,
    pub detector: String,
    pub score: f64,
    /// `quarantine`, `throttle`, or null (alert only).
    pub action: Option<Action>,
    pub message: String,
}

/// Per detector: alerts and enforcements.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectorSummary {
    pub alerts: u64,
    pub quarantines: u64,
    pub throttles: u64,
    pub subjects: BTreeSet<String>,
}

/// What a pipeline would have done over an archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BacktestReport {
    pub pipeline: String,
    pub events: u64,
    pub late_events: u64,
    /// Event time of the first and last events.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Wall-clock time of the replay and its throughput.
    pub elapsed_ms: f64,
    pub events_per_s: f64,
    pub by_detector: BTreeMap<String, DetectorSummary>,
    pub quarantined: BTreeSet<String>,
    pub throttled: BTreeSet<String>,
    pub alerts: Vec<Finding>,
}

/// The columns of the event schema, in order, as a batch of them from any compatible batch
/// (the archive may hold view or plain string types).
fn conform(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = warden_event::request_event_schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch.column_by_name(f.name()).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("missing column {}", f.name()))
            })?;
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<_, _>>()?;
    let batch = RecordBatch::try_new(schema, columns)?;
    infer_reasons(batch)
}

/// Events archived before schema version 2 have no `reason` (null): infer it from the
/// decision and status, as readers of version 1 payloads do (`Reason::infer`).
fn infer_reasons(batch: RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::datatypes::{DataType, UInt16Type};
    let Some(at) = batch.schema().index_of("reason").ok() else {
        return Ok(batch);
    };
    if batch.column(at).null_count() == 0 {
        return Ok(batch);
    }
    let reasons = cast(batch.column(at), &DataType::Utf8)?;
    let reasons = reasons.as_string::<i32>();
    let decisions = cast(
        batch
            .column_by_name("decision")
            .ok_or_else(|| arrow::error::ArrowError::SchemaError("missing decision".into()))?,
        &DataType::Utf8,
    )?;
    let decisions = decisions.as_string::<i32>();
    let status = batch
        .column_by_name("status")
        .ok_or_else(|| arrow::error::ArrowError::SchemaError("missing status".into()))?
        .as_primitive::<UInt16Type>();
    let filled: arrow::array::StringArray = (0..batch.num_rows())
        .map(|i| {
            if reasons.is_valid(i) {
                return Some(reasons.value(i));
            }
            let decision = warden_event::Outcome::ALL
                .into_iter()
                .find(|o| o.as_str() == decisions.value(i))?;
            Some(warden_event::Reason::infer(decision, status.value(i)).as_str())
        })
        .collect();
    let field = batch.schema().field(at).clone();
    let mut columns = batch.columns().to_vec();
    columns[at] = cast(&filled, field.data_type())?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// Replay every event of the archive in `dir` (in event-time order) through `pipeline`.
/// Processing time is the event time of each batch, so TTLs and cooldowns play out as they
/// would have.
pub async fn replay(
    pipeline: &PipelineConfig,
    dir: &Path,
) -> Result<BacktestReport, BacktestError> {
    replay_through(Engine::new(pipeline)?, pipeline, dir).await
}

/// [`replay`] through an engine built by the caller (e.g. one recording an ML detector's
/// samples for training, see [`crate::ml::Models`]).
pub async fn replay_through(
    engine: Engine,
    pipeline: &PipelineConfig,
    dir: &Path,
) -> Result<BacktestReport, BacktestError> {
    replay_with(engine, pipeline, dir, |_| {}).await
}

/// [`replay_through`], calling `after_batch` with the engine after every batch (e.g. to
/// take what a recording detector saw while the engine still names its keys).
pub async fn replay_with(
    mut engine: Engine,
    pipeline: &PipelineConfig,
    dir: &Path,
    mut after_batch: impl FnMut(&mut Engine),
) -> Result<BacktestReport, BacktestError> {
    let ctx = session(dir).await?;
    let columns: Vec<String> = warden_event::request_event_schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    let df = ctx
        .sql(&format!(
            "select {} from events order by ts",
            columns.join(", ")
        ))
        .await?;
    let mut stream = df.execute_stream().await?;
    let mut report = BacktestReport {
        pipeline: pipeline.name.clone(),
        ..BacktestReport::default()
    };
    let started = Instant::now();
    while let Some(batch) = stream.next().await {
        let batch = conform(&batch?)?;
        // Batches as a live processor sees them (at most `batch_max_events`, spanning at
        // most `batch_max_wait_ms` of event time): samples are taken between batches, and
        // alerts are timed at the end of their batch.
        let ts: Vec<i64> = batch
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .map(|a| a.values().to_vec())
            .unwrap_or_default();
        let span = i64::try_from(pipeline.source.batch_max_wait_ms.max(1))
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        let max = pipeline.source.batch_max_events.max(1);
        let mut start = 0;
        for i in 1..=ts.len() {
            if i == ts.len() || i - start >= max || ts[i] - ts[start] >= span {
                replay_batch(&mut engine, &batch.slice(start, i - start), &mut report)?;
                after_batch(&mut engine);
                start = i;
            }
        }
    }
    // Keys whose provisional scoring the last full batches deferred.
    let now = report.to.unwrap_or_default();
    record(engine.flush(now)?, now, &mut report);
    after_batch(&mut engine);
    report.late_events = engine.stats().late_events;
    let secs = started.elapsed().as_secs_f64();
    report.elapsed_ms = secs * 1e3;
    report.events_per_s = if secs > 0.0 {
        report.events as f64 / secs
    } else {
        0.0
    };
    Ok(report)
}

fn replay_batch(
    engine: &mut Engine,
    batch: &RecordBatch,
    report: &mut BacktestReport,
) -> Result<(), BacktestError> {
    let ts = batch
        .column_by_name("ts")
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .map(|a| a.values().clone())
        .unwrap_or_default();
    let (first, last) = (ts.first().copied(), ts.last().copied());
    report.from = report.from.or(first);
    report.to = last.or(report.to);
    report.events += batch.num_rows() as u64;
    let now = last.unwrap_or_default();
    let outputs = engine.process(batch, now)?;
    record(outputs, now, report);
    Ok(())
}

/// Count a batch's outputs, timed `now`, in the report.
fn record(outputs: Vec<crate::engine::Output>, now: i64, report: &mut BacktestReport) {
    for out in outputs {
        let a = &out.alert;
        let s = report.by_detector.entry(a.detector.clone()).or_default();
        s.alerts += 1;
        s.subjects.insert(a.subject.to_string());
        match a.action {
            Some(Action::Quarantine) => {
                s.quarantines += 1;
                report.quarantined.insert(a.subject.to_string());
            }
            Some(Action::Throttle) => {
                s.throttles += 1;
                report.throttled.insert(a.subject.to_string());
            }
            _ => {}
        }
        report.alerts.push(Finding {
            ts: now,
            subject: a.subject.to_string(),
            detector: a.detector.clone(),
            score: a.score,
            action: a.action,
            message: a.message.clone(),
        });
    }
}

impl BacktestReport {
    /// A human-readable report: a summary, a table per detector and the alerts.
    pub fn table(&self) -> String {
        let mut out = format!(
            "pipeline {}: {} events ({} late), replayed in {:.0} ms ({:.0} events/s)\n",
            self.pipeline, self.events, self.late_events, self.elapsed_ms, self.events_per_s
        );
        out.push_str(&format!(
            "would quarantine {} subject(s), throttle {}, raise {} alert(s)\n\n",
            self.quarantined.len(),
            self.throttled.len(),
            self.alerts.len()
        ));
        out.push_str(&format!(
            "{:<24} {:>7} {:>11} {:>9} {:>9}\n",
            "detector", "alerts", "quarantines", "throttles", "subjects"
        ));
        for (name, s) in &self.by_detector {
            out.push_str(&format!(
                "{:<24} {:>7} {:>11} {:>9} {:>9}\n",
                name,
                s.alerts,
                s.quarantines,
                s.throttles,
                s.subjects.len()
            ));
        }
        if !self.alerts.is_empty() {
            out.push_str(&format!(
                "\n{:<20} {:<12} {:<20} {:>8}  message\n",
                "event time (ns)", "action", "detector", "score"
            ));
            for a in &self.alerts {
                out.push_str(&format!(
                    "{:<20} {:<12} {:<20} {:>8.2}  {}\n",
                    a.ts,
                    a.action
                        .map_or("alert".to_string(), |x| format!("{x:?}").to_lowercase()),
                    a.detector,
                    a.score,
                    a.message
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
