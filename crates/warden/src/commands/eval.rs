//! `warden eval`: join the labels of simulated runs with the alerts and decisions the
//! pipeline produced (from the dashboard, the bus, or an accelerated run's alerts file) and
//! report detection per scenario and attack class, as Markdown and JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use warden::make_bus;
use warden_event::{Action, Alert, Decision, Subject};
use warden_sim::eval::{Finding, evaluate, findings, markdown};
use warden_sim::labels::Labels;

use super::common::load_config;

#[derive(Args)]
pub struct EvalArgs {
    /// Labels files written by `warden simulate` (repeatable).
    #[arg(long, required = true)]
    pub labels: Vec<PathBuf>,
    /// Dashboard to read alerts and quarantines from (the default source).
    #[arg(long, conflicts_with_all = ["brokers", "alerts"])]
    pub dashboard: Option<String>,
    /// A console operator's token for the dashboard (sent as `Authorization: Bearer`).
    #[arg(long, env = "WARDEN_CONSOLE_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
    /// Kafka bootstrap servers: read the alerts and decisions topics instead.
    #[arg(long, conflicts_with = "alerts")]
    pub brokers: Option<String>,
    /// Config file (topic names, Kafka settings) with --brokers.
    #[arg(long, requires = "brokers")]
    pub config: Option<PathBuf>,
    /// Alerts file written by `warden simulate --accelerated --pipeline/--detect`.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seconds after an attack (or a run) ends during which alerts still count.
    #[arg(long, default_value_t = 30)]
    pub grace: u64,
    /// Exit with code 3 when a run does not meet its scenario's expectations.
    #[arg(long)]
    pub check: bool,
}

const DEFAULT_DASHBOARD: &str = "http://127.0.0.1:9400";

pub async fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let labels: Vec<Labels> = args
        .labels
        .iter()
        .map(|p| Labels::read(p).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<_>>()?;
    let found = if let Some(path) = &args.alerts {
        from_file(path)?
    } else if let Some(brokers) = &args.brokers {
        from_bus(args.config.as_deref(), brokers.clone()).await?
    } else {
        let url = args.dashboard.as_deref().unwrap_or(DEFAULT_DASHBOARD);
        let token = args.dashboard_token.as_deref().context(
            "the dashboard needs an operator's token: --dashboard-token or WARDEN_CONSOLE_TOKEN",
        )?;
        from_dashboard(url, token).await?
    };
    let report = evaluate(&labels, &found, (args.grace * 1_000_000_000) as i64);
    print!("{}", markdown(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\njson: {}", path.display());
    }
    let problems = report
        .scenarios
        .iter()
        .map(|s| s.problems().len())
        .sum::<usize>();
    Ok(if args.check && problems > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Deserialize)]
struct AlertsFile {
    alerts: Vec<Alert>,
    decisions: Vec<Decision>,
}

fn from_file(path: &std::path::Path) -> anyhow::Result<Vec<Finding>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let f: AlertsFile = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not an alerts file", path.display()))?;
    Ok(findings(&f.alerts, &f.decisions))
}

/// An entry of the dashboard's `/api/quarantine`.
#[derive(Deserialize)]
struct Active {
    subject: Subject,
    action: Action,
    detector: String,
    decided_at: i64,
}

async fn from_dashboard(url: &str, token: &str) -> anyhow::Result<Vec<Finding>> {
    let url = url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let alerts: Vec<Alert> = client
        .get(format!("{url}/api/alerts?limit=1000000"))
        .bearer_auth(token)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("reading alerts from the dashboard at {url}"))?
        .json()
        .await
        .context("the dashboard's /api/alerts")?;
    let active: Vec<Active> = client
        .get(format!("{url}/api/quarantine"))
        .bearer_auth(token)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("reading quarantines from the dashboard at {url}"))?
        .json()
        .await
        .context("the dashboard's /api/quarantine")?;
    let mut out = findings(&alerts, &[]);
    out.extend(
        active
            .into_iter()
            .filter(|a| a.action == Action::Quarantine)
            .map(|a| Finding {
                subject: a.subject,
                ts: a.decided_at,
                detector: a.detector,
                quarantine: true,
            }),
    );
    Ok(out)
}

async fn from_bus(
    config: Option<&std::path::Path>,
    brokers: String,
) -> anyhow::Result<Vec<Finding>> {
    let config = load_config(config, Some(brokers))?;
    let bus = make_bus(&config)?;
    let mut alerts = Vec::new();
    let mut decisions = Vec::new();
    let mut bad = 0usize;
    let topics = &config.bus.topics;
    warden_bus::read_to_end(&*bus, &topics.alerts, Duration::from_secs(60), |m| {
        match warden_event::decode::<Alert>(&m.payload) {
            Ok(a) => alerts.push(a),
            Err(_) => bad += 1,
        }
    })
    .await
    .with_context(|| format!("reading `{}`", topics.alerts))?;
    warden_bus::read_to_end(&*bus, &topics.decisions, Duration::from_secs(60), |m| {
        match warden_event::decode::<Decision>(&m.payload) {
            Ok(d) => decisions.push(d),
            Err(_) => bad += 1,
        }
    })
    .await
    .with_context(|| format!("reading `{}`", topics.decisions))?;
    if bad > 0 {
        eprintln!("warning: {bad} unreadable records skipped");
    }
    Ok(findings(&alerts, &decisions))
}
