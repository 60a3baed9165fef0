//! `warden backtest`: replay archived events through a pipeline (what would it have alerted,
//! quarantined, throttled?), or score `timestamp,value[,label]` metric series with detectors
//! (`super::series`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use warden_stream::backtest::replay;

use super::common::load_pipeline;

#[derive(Args)]
#[command(after_long_help = series_help())]
pub struct BacktestArgs {
    /// Pipeline to replay events through (default: the built-in default pipeline).
    #[arg(long, conflicts_with = "series")]
    pub pipeline: Option<PathBuf>,
    /// Archive directory (as written by `warden archive`) whose events are replayed.
    #[arg(long, conflicts_with = "series", required_unless_present = "series")]
    pub events: Option<PathBuf>,
    /// Config whose `[at_rest]` keys decrypt a sealed archive (encryption at rest; also
    /// read from `WARDEN__AT_REST__*` variables).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A CSV metric series (`timestamp,value[,label]`), or a folder of them (every `*.csv`
    /// below it), scored row by row.
    #[arg(long)]
    pub series: Option<PathBuf>,
    /// Detector type(s) for --series (repeatable or comma-separated; default ewma_zscore,
    /// mad, cusum). `warden detectors` lists them with their parameters.
    #[arg(long = "detector", value_name = "TYPE", value_delimiter = ',')]
    pub detectors: Vec<String>,
    /// Detector parameter for --series, `KEY=VALUE` (every detector run that has KEY) or
    /// `TYPE.KEY=VALUE` (repeatable), e.g. `--param threshold=6 --param cusum.h=8`.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Labels for --series kept apart from the data: anomaly windows per file, as the
    /// Numenta Anomaly Benchmark's `labels/combined_windows.json` (`{"dir/file.csv":
    /// [["start", "end"], …]}`); they replace a file's label column.
    #[arg(long, requires = "series", value_name = "FILE.json")]
    pub labels: Option<PathBuf>,
    /// Labels of the simulated run whose events --events holds (`warden simulate
    /// --accelerated --parquet DIR` writes both): report detection against them, per ML
    /// detector and for the whole pipeline — recall, precision, false-positive rate over
    /// benign identities, the ROC AUC of each model's mean score over the attack windows,
    /// quarantines — as Markdown (`--format json`: JSON; `--out DIR`: both files).
    #[arg(long, conflicts_with = "series", requires = "events")]
    pub attack_labels: Option<PathBuf>,
    /// With --attack-labels: another pipeline replayed over the same events and reported
    /// side by side (e.g. `pipelines/default.toml` beside `pipelines/ml.toml`).
    #[arg(long, requires = "attack_labels")]
    pub compare: Option<PathBuf>,
    /// Output: `table` or `json` (events: default table); `csv`, `table` or `json` (series:
    /// default csv for one file, table for a folder).
    #[arg(long)]
    pub format: Option<String>,
    /// Write the output to this file instead of standard output; with a folder of series (or
    /// an existing folder), the folder to write each scored file, `summary.json` and
    /// `summary.md` into.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

const SERIES_HELP: &str = "\
Series (--series FILE|DIR):
  Columns are found by header name (timestamp|time|ts|datetime|date, value|val|y, optional
  label|is_anomaly|anomaly) or, without a header, taken as timestamp,value[,label].
  Timestamps: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or epoch seconds/ms/µs/ns.
  Rows with an empty (or NA/null) value and NaN/inf values are skipped and reported; a row
  that cannot be read stops the file with FILE:LINE. Rows out of time order are sorted
  (stably) and reported; duplicate timestamps are kept and reported, as are gaps longer than
  3 × the median interval and irregular sampling.
  Scored CSV: timestamp,value,score,flag[,label] (score_TYPE,flag_TYPE per detector when
  several run). With labels, the summary gives point precision/recall/F1 and labelled ranges
  detected. docs/SERIES.md has the details.

Series detectors and the parameters they run with (`-` = unset; meanings: `warden detectors`):
";

/// The long help's series section, with the series defaults taken from the code.
fn series_help() -> String {
    format!(
        "{SERIES_HELP}{}",
        warden_stream::backtest::series::series_defaults_text()
    )
}

pub(crate) fn emit(out: Option<&PathBuf>, text: &str) -> anyhow::Result<()> {
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
        return super::series::run(series, &args);
    }
    let Some(events) = &args.events else {
        bail!("give --events DIR or --series FILE|DIR");
    };
    if !args.params.is_empty() || !args.detectors.is_empty() {
        bail!("--detector and --param apply to --series");
    }
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    super::common::use_archive_keys(args.config.as_deref())?;
    if let Some(labels) = &args.attack_labels {
        return evaluate(&args, &pipeline, events, labels).await;
    }
    let report = replay(&pipeline, events)
        .await
        .with_context(|| format!("replaying {}", events.display()))?;
    let text = match args.format.as_deref().unwrap_or("table") {
        "table" => report.table(),
        "json" => format!("{}\n", serde_json::to_string_pretty(&report)?),
        other => bail!("unknown format `{other}` (table, json)"),
    };
    emit(args.out.as_ref(), &text)
}

/// `--attack-labels`: the pipeline (and `--compare`) replayed over the run's events, each ML
/// model's scores of every identity over the attack windows, and the rows of
/// [`warden::evaluation`].
async fn evaluate(
    args: &BacktestArgs,
    pipeline: &warden_config::PipelineConfig,
    events: &std::path::Path,
    labels: &std::path::Path,
) -> anyhow::Result<()> {
    use warden::evaluation::{Outcome, markdown, rows};
    let labels = warden_sim::labels::Labels::read(labels)
        .with_context(|| format!("reading {}", labels.display()))?;
    let served = replay(pipeline, events)
        .await
        .with_context(|| format!("replaying {} through {}", events.display(), pipeline.name))?;
    let served = Outcome::of_backtest(&labels, &served);
    let compare = match &args.compare {
        Some(p) => {
            let c = load_pipeline(Some(p))?;
            let r = replay(&c, events)
                .await
                .with_context(|| format!("replaying {} through {}", events.display(), c.name))?;
            Some((
                format!("{} (all detectors)", c.name),
                Outcome::of_backtest(&labels, &r),
            ))
        }
        None => None,
    };
    let spans: Vec<(i64, i64)> = labels
        .attacks
        .iter()
        .map(|a| (a.start_ns, a.end_ns))
        .collect();
    let scores = warden_stream::backtest::scores::model_scores(pipeline, events, &spans)
        .await
        .context("scoring the events with the pipeline's models")?;
    let served_name = format!("{} (all detectors)", pipeline.name);
    let table = rows(
        &labels,
        compare.as_ref().map(|(n, o)| (n.as_str(), o)),
        (&served_name, &served),
        &scores.detectors,
        &scores.by_identity,
    );
    let md = markdown(&table);
    let json = format!("{}\n", serde_json::to_string_pretty(&table)?);
    match &args.out {
        Some(dir) if dir.is_dir() => {
            std::fs::write(dir.join("report.md"), &md)
                .with_context(|| format!("writing {}", dir.join("report.md").display()))?;
            std::fs::write(dir.join("report.json"), &json)
                .with_context(|| format!("writing {}", dir.join("report.json").display()))?;
            eprintln!("wrote {0}/report.md and {0}/report.json", dir.display());
            Ok(())
        }
        out => match args.format.as_deref().unwrap_or("table") {
            "table" | "markdown" => emit(out.as_ref(), &md),
            "json" => emit(out.as_ref(), &json),
            other => bail!("unknown format `{other}` (table, json)"),
        },
    }
}
