//! The stream processor: consume request events as Arrow record batches, compute windowed
//! features per key incrementally, run the pipeline's detectors, combine their firings into
//! quarantines, throttles and alerts, and publish them. Offsets are committed only after the
//! decisions and alerts a batch caused are acknowledged by the bus (at-least-once).
//!
//! Also here: the Parquet archive of events ([`archive`]), backtests of pipelines and
//! detectors over archived events or metric series ([`backtest`]), and DataFusion SQL over the
//! archive ([`query`]).

pub mod archive;
pub mod backtest;
pub mod checkpoint;
mod columns;
pub mod dedup;
mod engine;
mod feature;
pub mod ml;
mod policy;
pub mod query;
mod runner;
mod sketch;
mod window;

use std::path::Path;

use warden_config::{ConfigErrors, PipelineConfig};

pub use engine::{
    DetectorWarmup, Engine, EngineError, EngineSnapshot, EngineStats, KeySnapshot, Output,
    ReloadReport, ScoreBoard, ScoreSeries, check, warmups,
};
pub use runner::{
    FiringLabels, PipelineStatus, Processor, ProcessorHistograms, ProcessorStats, ReloadFailure,
    StreamError,
};

/// Load a pipeline file and check everything the processor will need: the structural and
/// semantic checks of [`PipelineConfig::load`] plus the compilation of SQL features. Every
/// problem is reported with the file and key.
pub fn load_pipeline(path: &Path) -> Result<PipelineConfig, ConfigErrors> {
    let p = PipelineConfig::load(path)?;
    check(&p).map_err(|mut e| {
        for x in &mut e.0 {
            x.file.get_or_insert_with(|| path.to_path_buf());
        }
        e
    })?;
    Ok(p)
}

/// Parse pipeline TOML and check it like [`load_pipeline`].
pub fn parse_pipeline(text: &str) -> Result<PipelineConfig, ConfigErrors> {
    let p = PipelineConfig::from_toml(text)?;
    check(&p)?;
    Ok(p)
}
