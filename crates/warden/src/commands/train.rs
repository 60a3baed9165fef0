//! `warden train`: fit an ML detector's model on archived (benign) traffic and calibrate its
//! threshold, writing the model file the pipeline's detector loads.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use warden_stream::ml::train::collect;

use super::common::load_pipeline;

#[derive(Args)]
pub struct TrainArgs {
    /// Pipeline with the ML detector (`type = "kmeans" | "gmm" | "one_class_svm" |
    /// "isolation_forest"`): its features are computed by the pipeline's own window code.
    #[arg(long)]
    pub pipeline: PathBuf,
    /// Archive directory of benign traffic (`warden archive`, or `warden simulate
    /// --accelerated --parquet`).
    #[arg(long)]
    pub events: PathBuf,
    /// Config whose `[at_rest]` keys decrypt a sealed archive (encryption at rest; also
    /// read from `WARDEN__AT_REST__*` variables).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model file to write (e.g. models/NAME.json).
    #[arg(long)]
    pub out: PathBuf,
    /// ML detector to train (default: the pipeline's first).
    #[arg(long)]
    pub detector: Option<String>,
    /// Share of held-back benign samples allowed above the threshold.
    #[arg(long, default_value_t = 0.001)]
    pub target_fpr: f64,
    /// Seed of the shuffle, the hold-back split and the model's own randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// One model for every identity only (no model per device type).
    #[arg(long)]
    pub no_per_device_type: bool,
}

pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    if !(args.target_fpr > 0.0 && args.target_fpr < 0.5) {
        bail!("--target-fpr must be in (0, 0.5)");
    }
    let pipeline = load_pipeline(Some(&args.pipeline))?;
    super::common::use_archive_keys(args.config.as_deref())?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(format!(
        "replaying {} through pipeline `{}`",
        args.events.display(),
        pipeline.name
    ));
    let started = Instant::now();
    let set = collect(&pipeline, args.detector.as_deref(), &args.events)
        .await
        .with_context(|| format!("reading {}", args.events.display()))?;
    let replay_s = started.elapsed().as_secs_f64();
    // Printed around the spinner (and also when standard output is not a terminal).
    let say = |line: String| bar.suspend(|| println!("{line}"));
    say(format!(
        "{} events → {} complete samples of `{}` over window `{}` ({} windows not yet full, {} with a feature without value) in {replay_s:.1} s",
        set.events,
        set.rows.len(),
        set.detector,
        set.window,
        set.partial,
        set.missing.iter().map(|m| m.1).sum::<usize>()
    ));
    if set.usable > set.rows.len() as u64 {
        say(format!(
            "  {} usable samples; a uniform sample of {} per device type kept ({} rows)",
            set.usable,
            warden_stream::ml::train::MAX_ROWS_PER_DEVICE_TYPE,
            set.rows.len()
        ));
    }
    for (f, n) in &set.missing {
        say(format!("  feature `{f}` had no value in {n} samples"));
    }
    let Some(mut opts) = set.options(&pipeline.name, args.target_fpr, args.seed) else {
        bail!("detector `{}` is not an ML detector", set.detector);
    };
    opts.per_device_type = !args.no_per_device_type;
    let fit_started = Instant::now();
    let model = warden_ml::train(&set.rows, &opts, |group| {
        bar.set_message(format!("fitting {} for {group}", opts.kind.as_str()));
    })
    .with_context(|| format!("training `{}`", set.detector))?;
    let fit_s = fit_started.elapsed().as_secs_f64();
    model.save(&args.out)?;
    bar.finish_and_clear();
    println!(
        "{} model for `{}` ({} features) written to {} (sha256 {}), fitted in {fit_s:.1} s",
        model.kind().as_str(),
        set.detector,
        model.body.features.len(),
        args.out.display(),
        model.sha256
    );
    println!(
        "{:<22} {:>8} {:>8} {:>12} {:>10} {:>12}",
        "group", "fitted", "held", "threshold", "target", "achieved"
    );
    for g in &model.body.groups {
        let c = &g.calibration;
        println!(
            "{:<22} {:>8} {:>8} {:>12.4} {:>10.4} {:>12.4}",
            g.device_type.as_deref().unwrap_or("(all)"),
            c.train_rows,
            c.holdout_rows,
            c.threshold,
            c.target_fpr,
            c.achieved_fpr
        );
    }
    Ok(())
}
