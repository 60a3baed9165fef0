//! `warden backtest`: replay archived events through a pipeline (what would it have alerted,
//! quarantined, throttled?), or score a `timestamp,value` metric series with one detector.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use warden_stream::backtest::{render_series, replay, run_series, series_detector};

use super::common::load_pipeline;

#[derive(Args)]
pub struct BacktestArgs {
    /// Pipeline to replay events through (default: the built-in default pipeline).
    #[arg(long, conflicts_with = "series")]
    pub pipeline: Option<PathBuf>,
    /// Archive directory (as written by `warden archive`) whose events are replayed.
    #[arg(long, conflicts_with = "series", required_unless_present = "series")]
    pub events: Option<PathBuf>,
    /// A CSV metric series with `timestamp` and `value` columns, scored row by row.
    #[arg(long, requires = "detector")]
    pub series: Option<PathBuf>,
    /// Detector type for --series: ewma_zscore, mad, cusum, threshold or cardinality.
    #[arg(long)]
    pub detector: Option<String>,
    /// Detector parameter for --series, `key=value` (repeatable), e.g. `--param threshold=6`.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Output: `table` or `json` (events); series always write CSV.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Write the output to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn emit(out: Option<&PathBuf>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

pub async fn run(args: BacktestArgs) -> anyhow::Result<()> {
    if let Some(series) = &args.series {
        let kind = args
            .detector
            .as_deref()
            .context("--series needs --detector")?;
        let params = args
            .params
            .iter()
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .with_context(|| format!("--param {p}: expected KEY=VALUE"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let detector = series_detector(kind, &params).map_err(|e| anyhow::anyhow!("{e}"))?;
        let text = std::fs::read_to_string(series)
            .with_context(|| format!("reading {}", series.display()))?;
        let rows = run_series(&detector, &text).with_context(|| series.display().to_string())?;
        return emit(args.out.as_ref(), &render_series(&rows));
    }
    let Some(events) = &args.events else {
        bail!("give --events DIR or --series FILE");
    };
    if !args.params.is_empty() || args.detector.is_some() {
        bail!("--detector and --param apply to --series");
    }
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    let report = replay(&pipeline, events)
        .await
        .with_context(|| format!("replaying {}", events.display()))?;
    let text = match args.format.as_str() {
        "table" => report.table(),
        "json" => format!("{}\n", serde_json::to_string_pretty(&report)?),
        other => bail!("unknown format `{other}` (table, json)"),
    };
    emit(args.out.as_ref(), &text)
}
