//! Detection, end to end on generated traffic: every built-in attack scenario of the
//! simulator (`tests/scenarios/*.toml`: floods, credential stuffing, enumeration, slow
//! scraping, exfiltration, drift, token replay, firmware probing) is generated in simulated
//! time with its benign fleet and run through the stream engine with the shipped default
//! pipeline; its quarantines are enforced by the emulated gateway as they are decided. Each
//! attack must be detected exactly as its scenario file expects, and no benign subject may be
//! quarantined.

use warden_config::PipelineConfig;
use warden_event::{Alert, Decision};
use warden_sim::{AcceleratedOptions, BUILTIN_SCENARIOS, ScenarioConfig, run_accelerated};
use warden_stream::Engine;

/// The shipped default pipeline (`DETECTION_PIPELINE=FILE` runs another one, for tuning).
fn default_pipeline() -> PipelineConfig {
    let path = std::env::var_os("DETECTION_PIPELINE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/default.toml")
        });
    warden_stream::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Run `scenario` through a fresh engine; returns the evaluation's problems and a summary.
fn evaluate(scenario: &ScenarioConfig, pipeline: &PipelineConfig) -> (Vec<String>, String) {
    let mut engine = Engine::new(pipeline).unwrap_or_else(|e| panic!("{e}"));
    let mut detect = |batch: &arrow::record_batch::RecordBatch, now: i64| {
        engine
            .process(batch, now)
            .map(|outs| {
                outs.into_iter()
                    .map(|o| (o.alert, o.decision))
                    .collect::<Vec<(Alert, Option<Decision>)>>()
            })
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    };
    let options = AcceleratedOptions::new(scenario);
    let mut run = run_accelerated(
        scenario,
        scenario.seed,
        &options,
        Some(&mut detect),
        |_, _| {},
    )
    .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    // Provisional scoring the last full batches deferred, as `warden simulate` does.
    let tail = engine
        .flush(run.labels.ended_at)
        .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    for o in tail {
        run.alerts.push(o.alert);
        run.decisions.extend(o.decision);
    }
    if std::env::var_os("DETECTION_DEBUG").is_some() {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for a in &run.alerts {
            *by.entry(format!("{} {:?}", a.detector, a.action))
                .or_default() += 1;
        }
        eprintln!("{}: {by:?}", scenario.name);
        let only = std::env::var("DETECTION_DEBUG").unwrap_or_default();
        // The watched detector's alerts on attackers and on everyone else.
        let attackers: std::collections::BTreeSet<&str> = run
            .labels
            .attacks
            .iter()
            .flat_map(|a| a.attackers.iter())
            .flat_map(|a| a.subjects.iter().map(|s| s.value.as_str()))
            .collect();
        let (on, off): (Vec<_>, Vec<_>) = run
            .alerts
            .iter()
            .filter(|a| a.detector == only)
            .partition(|a| attackers.contains(a.subject.value.as_str()));
        let subjects = |v: &[&warden_event::Alert]| {
            v.iter()
                .map(|a| a.subject.value.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        eprintln!(
            "  {only}: {} alerts on {} attackers, {} on {} others",
            on.len(),
            subjects(&on),
            off.len(),
            subjects(&off)
        );
        let who = std::env::var("DETECTION_WHO").unwrap_or_default();
        for a in run
            .alerts
            .iter()
            .filter(|a| a.detector == only && a.subject.value.contains(&who))
            .take(8)
        {
            eprintln!("  {}", a.message);
        }
    }
    let findings = warden_sim::eval::findings(&run.alerts, &run.decisions);
    let report = warden_sim::eval::evaluate(&[run.labels], &findings, 5_000_000_000);
    let eval = &report.scenarios[0];
    let summary = format!(
        "{}: {} events, {} alerts, {} decisions; attacks: {}; false quarantines {}, false alerts {}",
        scenario.name,
        run.events,
        run.alerts.len(),
        run.decisions.len(),
        eval.attacks
            .iter()
            .map(|a| format!(
                "{} detected={} recall={:.2} by [{}] t_alert p50={:?}ms",
                a.name,
                a.detected,
                a.recall,
                a.detectors.join(","),
                a.time_to_alert.p50_ms
            ))
            .collect::<Vec<_>>()
            .join("; "),
        eval.false_quarantines.len(),
        eval.false_alerts
    );
    (eval.problems(), summary)
}

#[test]
fn every_scenario_is_detected_as_expected_with_no_false_quarantine() {
    let pipeline = default_pipeline();
    let mut problems = Vec::new();
    let only = std::env::var("DETECTION_SCENARIO").ok();
    for (name, _) in BUILTIN_SCENARIOS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let scenario = warden_sim::builtin_scenario(name)
            .expect("built in")
            .unwrap_or_else(|e| panic!("{e}"));
        let (p, summary) = evaluate(&scenario, &pipeline);
        eprintln!("{summary}");
        problems.extend(p);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Scenarios written apart from the detectors (`tests/scenarios/unseen/`): other fleets, mixes,
/// rates and times of day, every class of attack the default pipeline claims, each with a
/// firmware rollout and a reconnect storm; each file says what it expects.
/// `DETECTION_SCENARIO=name` runs one; `DETECTION_DIR=DIR` runs another folder of scenario
/// files (variants with other seeds, rates and fleet sizes).
#[test]
fn unseen_scenarios_are_detected_as_expected_with_no_false_quarantine() {
    let dir = std::env::var_os("DETECTION_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/unseen"),
        std::path::PathBuf::from,
    );
    let min = if std::env::var_os("DETECTION_DIR").is_some() {
        1
    } else {
        10
    };
    run_folder(&dir, min);
}

/// MQTT devices through the gateway's MQTT listener (`tests/scenarios/mqtt/`): a fleet with
/// MQTT sensors beside the HTTP devices; a flood, a botnet and topic enumeration (fast, and
/// slow over minutes) over MQTT, and a benign day of MQTT devices with churn and a reconnect
/// storm. The same default pipeline, the same expectations.
#[test]
fn mqtt_scenarios_are_detected_as_expected_with_no_false_quarantine() {
    run_folder(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/mqtt"),
        5,
    );
}

/// Every scenario file of `dir` (at least `min`), each evaluated as it expects.
fn run_folder(dir: &std::path::Path, min: usize) {
    let pipeline = default_pipeline();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= min,
        "the scenarios of {} are there",
        dir.display()
    );
    let only = std::env::var("DETECTION_SCENARIO").ok();
    let mut problems = Vec::new();
    for path in files {
        let scenario =
            ScenarioConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if only.as_deref().is_some_and(|o| o != scenario.name) {
            continue;
        }
        let (p, summary) = evaluate(&scenario, &pipeline);
        eprintln!("{summary}");
        problems.extend(p);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
