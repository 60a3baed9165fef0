//! Scenario runs against a whole embedded (or Kafka) stack: the scenario's fleet and attacks
//! over real HTTP through a real gateway, a processor running the pipeline, and the
//! evaluation of the alerts and decisions it published.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio_util::sync::CancellationToken;
use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_bus::Bus;
use warden_config::{PipelineConfig, WardenConfig};
use warden_event::{Alert, Decision};
use warden_sim::eval::{DEFAULT_GRACE_NS, EvalReport, ScenarioEval, evaluate, findings};
use warden_sim::labels::Labels;
use warden_sim::{Fleet, LiveOptions, Plan, Recorder, ScenarioConfig};

/// The built-in scenario `name`, shortened for a test: `duration_s` long (attack windows keep
/// their share of the run), `devices` devices, reporting `period_scale` times as often.
pub fn short(name: &str, duration_s: f64, devices: usize, period_scale: f64) -> ScenarioConfig {
    let mut s = warden_sim::builtin_scenario(name)
        .unwrap_or_else(|| panic!("no built-in scenario {name}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .with_duration(duration_s);
    s.fleet.devices = devices;
    s.fleet.period_scale = period_scale;
    if let Err(e) = s.validate() {
        panic!("shortened {name}: {e}");
    }
    s
}

/// What a scenario run produced.
pub struct ScenarioRun {
    pub labels: Labels,
    pub alerts: Vec<Alert>,
    pub decisions: Vec<Decision>,
    pub report: EvalReport,
}

impl ScenarioRun {
    pub fn eval(&self) -> &ScenarioEval {
        &self.report.scenarios[0]
    }

    /// Everything that does not match the scenario file's expectations, plus what the client
    /// saw that no benign device should: a `403`, a `401`, or requests left unanswered. For
    /// attacks expected quarantined, also that the gateway refused every attacker within
    /// `max_time_to_quarantine` of its first attack request.
    pub fn problems(&self, max_time_to_quarantine: Duration) -> Vec<String> {
        let mut out = self.eval().problems();
        let s = &self.labels.summary;
        if !s.benign_refused.is_empty() {
            out.push(format!(
                "{}: benign identities refused by the gateway: {:?}",
                self.labels.scenario, s.benign_refused
            ));
        }
        // A loaded 2-core machine may time out a large upload now and then; a gateway that
        // hangs does so on many requests.
        if s.failed * 100 > s.sent {
            out.push(format!(
                "{}: {} of {} requests without a response: {:?} ({:?})",
                self.labels.scenario, s.failed, s.sent, s.failed_by_class, s.failures
            ));
        }
        let benign_401: u64 = s
            .by_class
            .iter()
            .filter(|(c, _)| warden_sim::DeviceType::ALL.iter().any(|t| t.as_str() == *c))
            .filter_map(|(_, m)| m.get(&401))
            .sum();
        if benign_401 > 0 {
            out.push(format!(
                "{}: {benign_401} benign requests unauthenticated: the fleet's keys are not the gateway's",
                self.labels.scenario
            ));
        }
        for (a, label) in self.eval().attacks.iter().zip(&self.labels.attacks) {
            if !(a.expected_quarantined && a.detected) {
                continue;
            }
            let limit = max_time_to_quarantine.as_secs_f64() * 1000.0;
            if a.time_to_quarantine.max_ms.is_some_and(|m| m > limit) {
                out.push(format!(
                    "{}: attack {}: time to quarantine up to {:?} ms (limit {limit} ms): {:?}",
                    self.labels.scenario,
                    a.name,
                    a.time_to_quarantine.max_ms,
                    label
                        .attackers
                        .iter()
                        .map(|x| (x.first_sent_ns, x.first_refused_ns))
                        .collect::<Vec<_>>()
                ));
            }
        }
        out
    }
}

/// Run `scenario` with `seed` live against a fresh stack on `base`'s bus (embedded or
/// Kafka) running `pipeline`; evaluate what the processor published.
pub async fn run_live(
    base: &WardenConfig,
    scenario: &ScenarioConfig,
    seed: u64,
    pipeline: PipelineConfig,
) -> anyhow::Result<ScenarioRun> {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    let upstream_task = tokio::spawn(warden_sim::demo_upstream(upstream));
    let fleet = Fleet::new(scenario, seed);
    let mut config = base.clone();
    config.gateway.listen = "127.0.0.1:0".parse()?;
    config.dashboard.listen = "127.0.0.1:0".parse()?;
    config.routes.clear();
    config.api_keys.clear();
    // The fleet's CA, server certificate, JWKS and registry in a directory of this run's own:
    // runs side by side share seeds but not their server certificates.
    let files = tempfile::tempdir()?;
    fleet
        .configure_in(&mut config, upstream_addr, files.path())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    let stack = Stack::start(
        bus.clone(),
        &config,
        StackParts {
            gateway: true,
            processor: Some(pipeline),
            dashboard: false,
        },
    )
    .await?;
    let gateway = format!("http://{}", stack.gateway_addr.context("gateway")?);
    let mut options = LiveOptions::new(gateway);
    // The fleet's cameras present client certificates on the TLS listener it configured.
    options.gateway_tls = stack.gateway_tls_addr.map(|a| format!("https://{a}"));
    let plan = Plan::new(scenario, seed);
    let recorder = Arc::new(Recorder::new(&plan));
    let labels = warden_sim::run_live(
        scenario,
        seed,
        plan,
        &options,
        recorder,
        CancellationToken::new(),
    )
    .await?;
    // Let the processor finish the last batches.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (alerts, decisions) = read_outputs(&*bus, &config).await?;
    stack.stop().await?;
    upstream_task.abort();
    let found = findings(&alerts, &decisions);
    let report = evaluate(std::slice::from_ref(&labels), &found, DEFAULT_GRACE_NS);
    Ok(ScenarioRun {
        labels,
        alerts,
        decisions,
        report,
    })
}

/// Every alert and decision on the bus.
pub async fn read_outputs(
    bus: &dyn Bus,
    config: &WardenConfig,
) -> anyhow::Result<(Vec<Alert>, Vec<Decision>)> {
    let mut alerts = Vec::new();
    let mut decisions = Vec::new();
    let mut bad = 0;
    let t = &config.bus.topics;
    warden_bus::read_to_end(
        bus,
        &t.alerts,
        Duration::from_secs(30),
        |m| match warden_event::decode::<Alert>(&m.payload) {
            Ok(a) => alerts.push(a),
            Err(_) => bad += 1,
        },
    )
    .await?;
    warden_bus::read_to_end(bus, &t.decisions, Duration::from_secs(30), |m| {
        match warden_event::decode::<Decision>(&m.payload) {
            Ok(d) => decisions.push(d),
            Err(_) => bad += 1,
        }
    })
    .await?;
    ensure!(bad == 0, "{bad} undecodable alerts or decisions");
    Ok((alerts, decisions))
}
