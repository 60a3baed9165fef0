//! Detectors over `timestamp,value[,label]` series (e.g. the Numenta Anomaly Benchmark's or
//! Yahoo's CSVs): every point gets each detector's score before the detector learns from it,
//! and whether it fired; the file's data quality is reported on the way.
//!
//! - [`read_series`] reads a CSV (the `csv` crate: quotes, BOM, header or none), skips and
//!   counts missing and NaN/infinite values, parses the timestamps and sorts by them,
//!   reporting disorder, duplicates, gaps and irregular sampling ([`Quality`]).
//! - [`series_detectors`] builds the detectors with their series defaults and `--param`
//!   overrides; [`catalog`] lists every detector type with its parameters and defaults.
//! - [`score`] runs one detector, each point with its own timestamp; [`SeriesReport`] sums
//!   up a run over many files (JSON, table, Markdown) and [`render_scored`] writes the
//!   scored rows.
//! - [`nab`] scores runs the Numenta Anomaly Benchmark's way (windows, early detection,
//!   profiles, normalised 0–100).
//! - Labels come from a `label` column or from a windows file ([`Windows`], NAB's format).

mod catalog;
mod nab;
mod quality;
mod read;
mod report;
mod score;
mod windows;

pub use catalog::{
    DEFAULT_SERIES_DETECTORS, DetectorInfo, ParamInfo, SERIES_DEFAULTS, catalog, render_catalog,
    series_defaults_text, series_detectors, series_params,
};
pub use nab::{NAB_PROFILES, Nab, NabPoints, NabProfile, NabScore};
pub use quality::{GAP_FACTOR, Gap, Lines, Quality, Sampling};
pub use read::{Point, Series, read_series};
pub use report::{DetectorUsed, FileReport, Pooled, REPORT_VERSION, SeriesReport, render_scored};
pub use score::{
    DetectorRun, LabelScore, NabRun, PointScore, RangeScore, Ranking, RunSummary, Sweep, score,
};
pub use windows::Windows;

use warden_config::DetectorConfig;

/// Errors of a series backtest.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeriesError {
    /// A row that cannot be read (`file:line: reason`).
    #[error("{file}:{line}: {reason}")]
    Row {
        file: String,
        line: usize,
        reason: String,
    },
    /// A file that cannot be used as a whole.
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    /// Detector choices and parameters, every problem.
    #[error("{}", .0.join("\n"))]
    Params(Vec<String>),
}

/// Read `bytes` as the series `name`, label it from `windows` if they name it, and run every
/// detector over it.
pub fn run_file(
    name: &str,
    bytes: &[u8],
    detectors: &[DetectorConfig],
    windows: Option<&Windows>,
) -> Result<(Series, Vec<DetectorRun>), SeriesError> {
    let mut series = read_series(name, bytes)?;
    if let Some(w) = windows {
        w.apply(&mut series);
    }
    let runs = detectors.iter().map(|d| score(d, &series)).collect();
    Ok((series, runs))
}

/// One detector of `kind` with `params` (see [`series_detectors`]).
pub fn series_detector(
    kind: &str,
    params: &[(String, String)],
) -> Result<DetectorConfig, SeriesError> {
    let mut v = series_detectors(&[kind.to_string()], params)?;
    v.pop()
        .ok_or_else(|| SeriesError::Params(vec![format!("no detector `{kind}`")]))
}

#[cfg(test)]
mod tests;
