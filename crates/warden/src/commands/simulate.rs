//! `warden simulate`: play a scenario — a simulated fleet with labelled attacks — through a
//! gateway in real time, or in accelerated time straight to Parquet; write the labels.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use warden_sim::labels::Labels;
use warden_sim::{AcceleratedOptions, LiveOptions, Plan, Recorder, ScenarioConfig};

use super::common::load_pipeline;
use super::sim_setup::{SimChoice, describe, flags, parse_duration, resolve};

#[derive(Args)]
pub struct SimulateArgs {
    /// Scenario: a built-in name (benign, botnet_flood, device_flood, credential_stuffing,
    /// enumeration, slow_scraping, exfiltration, drift, token_replay, firmware_probe) or a file.
    #[arg(long)]
    pub scenario: String,
    /// Base URL of the gateway (live runs).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// Base URL of the gateway's TLS listener, where the fleet's cameras present their client
    /// certificates (`warden up --scenario` opens it on the gateway's port + 363).
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub gateway_tls: String,
    /// Size the fleet to about this many requests per second (mean over a day).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Devices in the fleet (default: the scenario's).
    #[arg(long)]
    pub devices: Option<usize>,
    /// Run length: seconds, or with a unit (90s, 15m, 2h, 1d). Attack times, the outage and
    /// the rollout keep their share of the run.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<f64>,
    /// Seed of the fleet, its keys and the attacks (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Generate the events in simulated time, without a gateway.
    #[arg(long)]
    pub accelerated: bool,
    /// Accelerated: write the events to DIR/<scenario>-seed<N>.parquet.
    #[arg(long, value_name = "DIR", requires = "accelerated")]
    pub parquet: Option<PathBuf>,
    /// Accelerated: run this pipeline on the events as they are generated (its quarantines
    /// are enforced from then on), write its alerts next to the labels and print the
    /// evaluation.
    #[arg(long, requires = "accelerated")]
    pub pipeline: Option<PathBuf>,
    /// Accelerated: like --pipeline with the built-in default pipeline.
    #[arg(long, requires = "accelerated", conflicts_with = "pipeline")]
    pub detect: bool,
    /// Where to write the labels (default: <scenario>.labels.json).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Live: requests in flight at most.
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let choice = SimChoice {
        scenario: args.scenario.clone(),
        seed: args.seed,
        devices: args.devices,
        rate: args.rate,
        duration_s: args.duration,
    };
    let (scenario, seed) = resolve(&choice)?;
    let plan = Plan::new(&scenario, seed);
    println!("scenario  {}: {}", scenario.name, scenario.description);
    println!("{}", describe(&scenario, plan.fleet(), seed));
    for a in plan.attacks() {
        println!(
            "attack    {} ({}) from {:.0} s to {:.0} s, {} attacker(s); expected {}",
            a.name,
            a.class,
            a.start_ns as f64 / 1e9,
            a.end_ns as f64 / 1e9,
            a.attackers.len(),
            if a.expect.detected {
                "detected".to_string()
            } else {
                format!(
                    "undetected ({})",
                    a.expect.reason.as_deref().unwrap_or_default()
                )
            }
        );
    }
    let labels_path = args
        .labels
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.labels.json", scenario.name)));
    let labels = if args.accelerated {
        accelerated(&args, &scenario, seed, &labels_path)?
    } else {
        println!(
            "gateway   {} (start it with `warden up {}`)",
            args.gateway,
            flags(&choice, seed)
        );
        live(&args, &scenario, seed, plan).await?
    };
    print_summary(&labels, &choice, seed);
    labels
        .write(&labels_path)
        .with_context(|| format!("writing {}", labels_path.display()))?;
    println!(
        "labels    {} — evaluate with `warden eval --labels {}`",
        labels_path.display(),
        labels_path.display()
    );
    Ok(())
}

async fn live(
    args: &SimulateArgs,
    scenario: &ScenarioConfig,
    seed: u64,
    plan: Plan,
) -> anyhow::Result<Labels> {
    let recorder = Arc::new(Recorder::new(&plan));
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        let name = super::common::shutdown_signal().await;
        eprintln!("{name}: stopping (labels are written for what ran)…");
        c.cancel();
    });
    let duration = scenario.duration_s;
    let bar = progress_bar(duration.ceil() as u64, "s");
    let (r, b) = (recorder.clone(), bar.clone());
    let ticker = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_line = 0;
        loop {
            tick.tick().await;
            let elapsed = start.elapsed().as_secs();
            let p = r.progress();
            let msg = format!(
                "sent {} answered {} failed {} late {}",
                p.sent, p.answered, p.failed, p.late
            );
            b.set_position(elapsed.min(b.length().unwrap_or(u64::MAX)));
            if b.is_hidden() && elapsed >= last_line + 10 {
                last_line = elapsed;
                eprintln!("{elapsed:>6} s  {msg}");
            }
            b.set_message(msg);
        }
    });
    let mut options = LiveOptions::new(args.gateway.clone());
    options.gateway_tls = Some(args.gateway_tls.clone());
    options.max_in_flight = args.max_in_flight;
    let labels = warden_sim::run_live(scenario, seed, plan, &options, recorder, cancel).await;
    ticker.abort();
    bar.finish_and_clear();
    Ok(labels?)
}

fn accelerated(
    args: &SimulateArgs,
    scenario: &ScenarioConfig,
    seed: u64,
    labels_path: &Path,
) -> anyhow::Result<Labels> {
    let mut options = AcceleratedOptions::new(scenario);
    if let Some(dir) = &args.parquet {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        options.parquet = Some(dir.join(format!("{}-seed{seed}.parquet", scenario.name)));
    }
    let pipeline = if args.detect {
        Some(load_pipeline(None)?)
    } else {
        args.pipeline
            .as_deref()
            .map(|p| load_pipeline(Some(p)))
            .transpose()?
    };
    if options.parquet.is_none() && pipeline.is_none() {
        anyhow::bail!("--accelerated needs --parquet DIR and/or --pipeline P (or --detect)");
    }
    // With detection, batches are what the processor would take (its batch wait and size);
    // without, large batches keep generation fast.
    match &pipeline {
        Some(p) => {
            options.batch_span_ns = (p.source.batch_max_wait_ms.max(1) * 1_000_000) as i64;
            options.batch_max = p.source.batch_max_events.max(1);
        }
        None => {
            options.batch_span_ns = 60_000_000_000;
            options.batch_max = 16_384;
        }
    }
    let mut engine = pipeline
        .as_ref()
        .map(warden_stream::Engine::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut detect = |batch: &arrow::record_batch::RecordBatch,
                      now: i64|
     -> Result<_, warden_sim::accelerated::DetectError> {
        let Some(engine) = engine.as_mut() else {
            return Ok(Vec::new());
        };
        Ok(engine
            .process(batch, now)?
            .into_iter()
            .map(|o| (o.alert, o.decision))
            .collect())
    };
    let bar = progress_bar(scenario.duration_s.ceil() as u64, "simulated s");
    let mut last_line = 0;
    let mut run = warden_sim::run_accelerated(
        scenario,
        seed,
        &options,
        Some(&mut detect),
        |elapsed_ns, events| {
            let s = (elapsed_ns / 1_000_000_000).max(0) as u64;
            bar.set_position(s);
            bar.set_message(format!("{events} events"));
            if bar.is_hidden() && s >= last_line + 3600 {
                last_line = s;
                eprintln!("{s:>8} simulated s  {events} events");
            }
        },
    )?;
    // Keys whose provisional scoring the last full batches deferred.
    if let Some(engine) = engine.as_mut() {
        let now = run.labels.ended_at;
        for out in engine.flush(now).map_err(|e| anyhow::anyhow!("{e}"))? {
            run.alerts.push(out.alert);
            run.decisions.extend(out.decision);
        }
    }
    bar.finish_and_clear();
    println!("events    {}", run.events);
    if let (Some(path), Some(rows)) = (&options.parquet, run.parquet_rows) {
        println!("parquet   {} ({rows} rows)", path.display());
    }
    if pipeline.is_some() {
        let alerts_path = labels_path.with_extension("alerts.json");
        let body = serde_json::json!({ "alerts": run.alerts, "decisions": run.decisions });
        std::fs::write(&alerts_path, serde_json::to_vec_pretty(&body)?)
            .with_context(|| format!("writing {}", alerts_path.display()))?;
        println!(
            "alerts    {} ({} alerts, {} quarantines)",
            alerts_path.display(),
            run.alerts.len(),
            run.decisions.len()
        );
        let findings = warden_sim::eval::findings(&run.alerts, &run.decisions);
        let report = warden_sim::eval::evaluate(
            std::slice::from_ref(&run.labels),
            &findings,
            warden_sim::eval::DEFAULT_GRACE_NS,
        );
        println!();
        print!("{}", warden_sim::eval::markdown(&report));
        println!();
    }
    Ok(run.labels)
}

fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn print_summary(labels: &Labels, choice: &SimChoice, seed: u64) {
    let s = &labels.summary;
    println!();
    println!(
        "sent {} requests in {:.1} s; {} without response, {} sent late",
        s.sent,
        (labels.ended_at - labels.started_at) as f64 / 1e9,
        s.failed,
        s.late
    );
    println!("| class | requests | statuses |");
    println!("|---|---|---|");
    for (class, statuses) in &s.by_class {
        let list: Vec<String> = statuses.iter().map(|(k, n)| format!("{k}×{n}")).collect();
        println!(
            "| {class} | {} | {} |",
            statuses.values().sum::<u64>(),
            list.join(" ")
        );
    }
    for a in &labels.attacks {
        let sent: u64 = a.attackers.iter().map(|x| x.sent).sum();
        let through: u64 = a.attackers.iter().map(|x| x.through_before_refused).sum();
        let refused = a
            .attackers
            .iter()
            .filter(|x| x.first_refused_ns.is_some())
            .count();
        println!(
            "attack {}: {sent} requests, {through} got through before a refusal, {refused}/{} attackers refused by the gateway",
            a.name,
            a.attackers.len()
        );
    }
    if !s.benign_refused.is_empty() {
        println!(
            "warning: {} benign identities were refused (403): {}",
            s.benign_refused.len(),
            s.benign_refused
                .keys()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let benign_401: u64 = s
        .by_class
        .iter()
        .filter(|(class, _)| {
            warden_sim::DeviceType::ALL
                .iter()
                .any(|t| t.as_str() == *class)
        })
        .filter_map(|(_, m)| m.get(&401))
        .sum();
    if benign_401 > 0 && labels.mode == warden_sim::labels::RunMode::Live {
        println!(
            "warning: {benign_401} benign requests were refused as unauthenticated (401): does the \
             gateway know this fleet's keys? Start it with `warden up {}`.",
            flags(choice, seed)
        );
    }
}
