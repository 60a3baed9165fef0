//! One detector over a `timestamp,value` series (e.g. the Numenta Anomaly Benchmark's CSVs):
//! every row gets the detector's score before it learns from the row, and whether it fired.

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};
use serde::Serialize;
use warden_config::{ConfigError, ConfigErrors, DetectorConfig};
use warden_detect::Sample;

use super::BacktestError;

/// One scored row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRow {
    /// The timestamp as written in the input.
    pub timestamp: String,
    pub value: f64,
    /// The detector's anomaly score for this row (its own unit: z-score, robust z, cumulative
    /// sum…), computed before learning from the row.
    pub score: f64,
    /// Whether the detector fired on this row.
    pub anomaly: bool,
}

/// Parameters of each detector type when run on a series, before `--param` overrides.
fn defaults(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "ewma_zscore" => {
            "alpha = 0.05\nthreshold = 4.0\nwarmup_samples = 30\nmin_value = 0.0\nmin_std = 1e-9\ndirection = \"both\"\n"
        }
        "mad" => {
            "history = 200\nthreshold = 5.0\nwarmup_samples = 30\nmin_mad = 1e-9\ndirection = \"both\"\n"
        }
        "cusum" => {
            "alpha = 0.005\nk = 0.5\nh = 10.0\nwarmup_samples = 30\nmin_std = 1e-9\ndirection = \"both\"\n"
        }
        "threshold" | "cardinality" => "",
        _ => return None,
    })
}

/// The config of a series detector: `kind` with its series defaults and `params`
/// (`key=value`, values in TOML syntax) on top, checked like a pipeline's detectors.
pub fn series_detector(
    kind: &str,
    params: &[(String, String)],
) -> Result<DetectorConfig, ConfigErrors> {
    let Some(base) = defaults(kind) else {
        return Err(ConfigError::new(
            "detector",
            format!(
                "`{kind}` cannot score a metric series (one of: ewma_zscore, mad, cusum, threshold, cardinality)"
            ),
        )
        .into());
    };
    let mut table: toml::Table = base
        .parse()
        .map_err(|e| ConfigError::new("detector", format!("{e}")))?;
    table.insert("name".into(), kind.into());
    table.insert("type".into(), kind.into());
    table.insert("feature".into(), "value".into());
    for (k, v) in params {
        let value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.clone()));
        table.insert(k.clone(), value);
    }
    let text = toml::to_string(&table).map_err(|e| ConfigError::new("detector", e.to_string()))?;
    let config: DetectorConfig = warden_config::parse_strict(&text)?;
    let mut errs = Vec::new();
    config.check("detector", &mut errs);
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errs))
    }
}

fn split(line: &str) -> Vec<String> {
    line.split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect()
}

/// Score every row of a CSV with a header naming `timestamp` and `value` columns.
/// Timestamps are RFC 3339 / `YYYY-MM-DD HH:MM:SS` (UTC) or epoch seconds, milliseconds or
/// nanoseconds.
pub fn run_series(config: &DetectorConfig, csv: &str) -> Result<Vec<SeriesRow>, BacktestError> {
    let bad = |line: usize, reason: String| BacktestError::Series { line, reason };
    let mut lines = csv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| bad(1, "empty file".into()))?;
    let header: Vec<String> = split(header)
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(1, format!("no `{name}` column in the header")))
    };
    let (tc, vc) = (col("timestamp")?, col("value")?);
    let mut stamps = Vec::new();
    let mut values = Vec::new();
    let mut line_of = Vec::new();
    for (i, line) in lines {
        let cells = split(line);
        let (Some(t), Some(v)) = (cells.get(tc), cells.get(vc)) else {
            return Err(bad(i + 1, format!("expected {} columns", header.len())));
        };
        let v: f64 = v
            .parse()
            .map_err(|_| bad(i + 1, format!("value `{v}` is not a number")))?;
        stamps.push(t.clone());
        values.push(v);
        line_of.push(i + 1);
    }
    let times = timestamps(&stamps, &line_of)?;
    let mut detector = warden_detect::build(config, 0);
    let mut rows = Vec::with_capacity(values.len());
    for ((t, v), at) in stamps.into_iter().zip(values).zip(times) {
        let one = [v];
        let sample = Sample::of(0, &one, at);
        let score = detector.score(&sample);
        let anomaly = detector.observe(&sample).is_some();
        rows.push(SeriesRow {
            timestamp: t,
            value: v,
            score,
            anomaly,
        });
    }
    Ok(rows)
}

fn timestamps(stamps: &[String], lines: &[usize]) -> Result<Vec<i64>, BacktestError> {
    let mut out = vec![0i64; stamps.len()];
    let mut text_idx = Vec::new();
    for (i, s) in stamps.iter().enumerate() {
        match s.parse::<f64>() {
            Ok(n) if n.abs() < 1e11 => out[i] = (n * 1e9) as i64,
            Ok(n) if n.abs() < 1e14 => out[i] = (n * 1e6) as i64,
            Ok(n) => out[i] = n as i64,
            Err(_) => text_idx.push(i),
        }
    }
    if text_idx.is_empty() {
        return Ok(out);
    }
    let texts: StringArray = text_idx.iter().map(|i| Some(stamps[*i].as_str())).collect();
    let parsed = cast(
        &(Arc::new(texts) as Arc<dyn Array>),
        &DataType::Timestamp(TimeUnit::Nanosecond, None),
    )
    .map_err(|e| BacktestError::Series {
        line: lines.get(text_idx[0]).copied().unwrap_or(0),
        reason: format!("unreadable timestamp: {e}"),
    })?;
    let parsed = parsed.as_primitive::<TimestampNanosecondType>();
    for (k, i) in text_idx.iter().enumerate() {
        if parsed.is_null(k) {
            return Err(BacktestError::Series {
                line: lines[*i],
                reason: format!("unreadable timestamp `{}`", stamps[*i]),
            });
        }
        out[*i] = parsed.value(k);
    }
    Ok(out)
}

/// `timestamp,value,score,anomaly` CSV.
pub fn render_series(rows: &[SeriesRow]) -> String {
    let mut out = String::from("timestamp,value,score,anomaly\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{:.6},{}\n",
            r.timestamp,
            r.value,
            r.score,
            u8::from(r.anomaly)
        ));
    }
    out
}
