use warden_event::{AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, RequestEvent};

use super::*;

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

fn pipeline(threshold: f64, mode: &str) -> PipelineConfig {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../pipelines/default.toml"
    ))
    .expect("default pipeline");
    let text = text.replace("mode = \"enforce\"", &format!("mode = \"{mode}\""));
    let mut p = PipelineConfig::from_toml(&text).expect("valid pipeline");
    // Any other threshold than the shipped 8 is set on every rate z-score detector (the
    // default pipeline has one per window length).
    if threshold != 8.0 {
        for d in p.detector.iter_mut() {
            if let DetectorConfig::EwmaZscore(c) = d {
                c.threshold = threshold;
            }
        }
        // The pace detectors (against the identity's own long-run pace and its peers') also
        // catch the test's flood: they go too, so the z-score threshold alone decides.
        p.detector
            .retain(|d| !matches!(d.name(), "route_pace" | "pace_vs_peers"));
    }
    p
}

/// The rate z-score detectors of the default pipeline, and the rate feature each scores.
const RATE_DETECTORS: [(&str, &str); 2] = [("rate_spike", "request_rate"), ("burst", "burst_rate")];

fn event(identity: &str, ts: i64, status: u16) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("{identity}-{ts}"),
        gateway: "gw".into(),
        seq: 0,
        ts,
        identity: identity.into(),
        tenant: "t".into(),
        device_type: "sensor".into(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: AuthResult::Ok,
        },
        client_ip: "10.0.0.1".into(),
        protocol: Protocol::Http,
        method: "POST".into(),
        route: "telemetry".into(),
        path: format!("/api/devices/{identity}/telemetry"),
        status,
        decision: Outcome::Allowed,
        latency_us: 100,
        bytes_in: 10,
        bytes_out: 10,
        user_agent: None,
        tls: None,
        reason: warden_event::Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

/// 40 devices, one request every 2 s each (staggered), for `secs`; device 7 floods at
/// 100 req/s from `flood_at`. Events are fed in 100 ms batches; returns the outputs with the
/// event time of the batch that produced them.
fn run(engine: &mut Engine, secs: i64, flood_at: Option<i64>) -> Vec<(i64, Output)> {
    run_from(engine, 0, secs, flood_at)
}

/// Like [`run`], from second `from_s` of the same fleet; times are relative to `from_s` and
/// so is `flood_at`.
fn run_from(
    engine: &mut Engine,
    from_s: i64,
    secs: i64,
    flood_at: Option<i64>,
) -> Vec<(i64, Output)> {
    let mut out = Vec::new();
    let base = 1_700_000_000 * S + from_s * S;
    for step in 0..secs * 10 {
        let from = base + step * 100 * MS;
        let mut events = Vec::new();
        for d in 0..40 {
            let offset = (d as i64 * 53 * MS) % (2 * S);
            let t = (from_s * S + step * 100 * MS - offset).rem_euclid(2 * S);
            if t < 100 * MS {
                events.push(event(
                    &format!("dev-{d}"),
                    from + t,
                    if d == 3 { 500 } else { 201 },
                ));
            }
        }
        if let Some(at) = flood_at
            && step * 100 * MS >= at
        {
            for k in 0..10 {
                events.push(event("dev-7", from + k * 10 * MS, 201));
            }
        }
        let batch = warden_event::to_record_batch(&events).expect("batch");
        let now = from + 100 * MS;
        for o in engine.process(&batch, now).expect("process") {
            out.push((now - base, o));
        }
    }
    out
}

/// The one decision of a [`run`] with a flood from 40 s: a quarantine of the flooder, at
/// most a second after the flood started; with its output.
fn the_flooders_quarantine(outputs: &[(i64, Output)]) -> (&Output, &Decision) {
    let decisions: Vec<&(i64, Output)> = outputs
        .iter()
        .filter(|(_, o)| o.decision.is_some())
        .collect();
    assert_eq!(decisions.len(), 1, "{outputs:#?}");
    let (at, o) = decisions[0];
    let d = o.decision.as_ref().expect("decision");
    assert_eq!(d.subject, Subject::identity("dev-7"));
    assert_eq!(d.action, Action::Quarantine);
    assert!(
        *at - 40 * S <= S,
        "decided {} ms after the flood started",
        (*at - 40 * S) / MS
    );
    (o, d)
}

#[test]
fn flood_is_quarantined_within_a_second_and_nobody_else() {
    let mut engine = Engine::new(&pipeline(8.0, "enforce")).expect("engine");
    let outputs = run(&mut engine, 60, Some(40 * S));
    let (o, d) = the_flooders_quarantine(&outputs);
    assert_eq!(d.until, Some(d.decided_at + 300 * S));
    // The alert explains itself: a rate detector, with its window's rate and baseline.
    assert_eq!(o.alert.decision_id.as_deref(), Some(d.id.as_str()));
    let (_, feature) = RATE_DETECTORS
        .iter()
        .find(|(name, _)| *name == d.detector)
        .unwrap_or_else(|| panic!("decided by {}", d.detector));
    assert!(
        o.alert.evidence.features[*feature] >= 5.0,
        "{:?}",
        o.alert.evidence
    );
    assert!(o.alert.evidence.baseline["mean"] < 1.0);
    assert!(o.alert.score > 8.0);
    assert!(
        outputs
            .iter()
            .all(|(_, o)| o.alert.subject == Subject::identity("dev-7"))
    );
    assert_eq!(engine.stats().late_events, 0);
}

#[test]
fn raising_the_threshold_in_the_pipeline_stops_the_quarantine() {
    let mut engine = Engine::new(&pipeline(1000.0, "enforce")).expect("engine");
    let outputs = run(&mut engine, 60, Some(40 * S));
    assert!(outputs.is_empty(), "{outputs:#?}");
}

#[test]
fn shadow_mode_alerts_without_deciding() {
    let mut engine = Engine::new(&pipeline(8.0, "shadow")).expect("engine");
    let outputs = run(&mut engine, 60, Some(40 * S));
    assert!(!outputs.is_empty());
    assert!(
        outputs
            .iter()
            .all(|(_, o)| o.decision.is_none() && o.alert.action.is_none())
    );
}

#[test]
fn benign_fleet_never_fires_and_late_events_are_counted() {
    let mut engine = Engine::new(&pipeline(8.0, "enforce")).expect("engine");
    assert!(run(&mut engine, 90, None).is_empty());
    let late = event("dev-1", 1_700_000_000 * S, 200);
    let batch = warden_event::to_record_batch(&[late]).expect("batch");
    engine.process(&batch, 0).expect("process");
    assert_eq!(engine.stats().late_events, 1);
}

#[test]
fn a_release_starts_a_cooldown() {
    let mut engine = Engine::new(&pipeline(8.0, "enforce")).expect("engine");
    engine.apply_decision(&Decision {
        v: warden_event::SCHEMA_VERSION,
        id: "r".into(),
        subject: Subject::identity("dev-7"),
        action: Action::Release,
        until: None,
        reason: String::new(),
        detector: "dashboard".into(),
        score: 0.0,
        evidence: serde_json::Value::Null,
        decided_at: 1_700_000_000 * S,
        limit: None,
    });
    let outputs = run(&mut engine, 60, Some(40 * S));
    assert!(!outputs.is_empty());
    assert!(outputs.iter().all(|(_, o)| o.decision.is_none()));
}

#[test]
fn a_reload_keeps_unchanged_detectors_warm() {
    let base = pipeline(8.0, "enforce");
    let mut engine = Engine::new(&base).expect("engine");
    run(&mut engine, 30, None);
    // Change another detector: rate_spike and its window keep their state.
    let mut changed = base.clone();
    for d in changed.detector.iter_mut() {
        if let DetectorConfig::Cardinality(c) = d {
            c.limit = Some(30.0);
        }
    }
    let report = engine.reconfigure(&changed).expect("reload");
    assert!(
        report.detectors_kept.contains(&"rate_spike".to_string()),
        "{report}"
    );
    assert!(
        report.detectors_reset.contains(&"enumeration".to_string()),
        "{report}"
    );
    assert!(report.windows_kept.contains(&"identity_10s".to_string()));
    assert_eq!(engine.pipeline(), &changed);
    // The flood (continuing the same event time) is caught at once: the baseline survived.
    let outputs = run_from(&mut engine, 30, 10, Some(0));
    assert!(
        outputs
            .iter()
            .any(|(at, o)| o.decision.is_some() && *at <= S),
        "{outputs:#?}"
    );
    // A fresh engine has no baseline yet: nothing within the first second.
    let mut fresh = Engine::new(&changed).expect("engine");
    let outputs = run_from(&mut fresh, 30, 10, Some(0));
    assert!(outputs.iter().all(|(at, _)| *at > S), "{outputs:#?}");
}

#[test]
fn a_reload_with_a_broken_sql_feature_changes_nothing() {
    let base = pipeline(8.0, "enforce");
    let mut engine = Engine::new(&base).expect("engine");
    let mut broken = base.clone();
    for f in broken.feature.iter_mut() {
        if let FeatureConfig::Sql(s) = f {
            s.expr = "stddev(status)".into();
        }
    }
    let errs = engine.reconfigure(&broken).expect_err("refused");
    assert!(errs.0[0].key.ends_with(".expr"), "{errs}");
    assert_eq!(engine.pipeline(), &base);
}

#[test]
fn snapshots_restore_what_detectors_learned() {
    let base = pipeline(8.0, "enforce");
    let mut engine = Engine::new(&base).expect("engine");
    run(&mut engine, 30, None);
    // Checkpoint dev-7 only (as a per-partition checkpoint would).
    let snap = engine.snapshot(|_, key| key == "dev-7");
    let json = serde_json::to_string(&snap).expect("serialise");
    let snap: EngineSnapshot = serde_json::from_str(&json).expect("deserialise");
    assert!(snap.windows["identity_10s"].keys.len() == 1);
    assert!(
        snap.windows["identity_10s"].keys[0]
            .detectors
            .contains_key("rate_spike")
    );
    let mut restored = Engine::new(&base).expect("engine");
    restored.restore(snap).expect("restore");
    assert_eq!(restored.watermark(), engine.watermark());
    let outputs = run_from(&mut restored, 30, 10, Some(0));
    assert!(
        outputs.iter().any(|(at, o)| o
            .decision
            .as_ref()
            .is_some_and(|d| d.subject == Subject::identity("dev-7"))
            && *at <= S),
        "{outputs:#?}"
    );
}

#[test]
fn identity_route_windows_decide_on_the_identity_and_name_the_route() {
    let p = PipelineConfig::from_toml(
        r#"
name = "routes"
[[window]]
name = "w"
key = "identity_route"
size_ms = 2000
slide_ms = 1000
[[feature]]
name = "hits"
window = "w"
type = "count"
[[detector]]
name = "hammer"
type = "threshold"
feature = "hits"
above = 50
[decision]
quarantine_ttl_s = 60
"#,
    )
    .expect("pipeline");
    let mut engine = Engine::new(&p).expect("engine");
    let base = 1_700_000_000 * S;
    let events: Vec<RequestEvent> = (0..60)
        .map(|i| event("dev-1", base + i * MS, 200))
        .collect();
    let out = engine
        .process(
            &warden_event::to_record_batch(&events).expect("batch"),
            base,
        )
        .expect("process");
    assert_eq!(out.len(), 1, "{out:#?}");
    let d = out[0].decision.as_ref().expect("decision");
    assert_eq!(d.subject, Subject::identity("dev-1"));
    assert!(
        out[0]
            .alert
            .message
            .starts_with("identity:dev-1 on route telemetry: hits 60 is above 50"),
        "{}",
        out[0].alert.message
    );
    assert_eq!(engine.keys(), vec![("w".to_string(), 1)]);
}

#[test]
fn batches_without_the_event_schema_are_refused() {
    let mut engine = Engine::new(&pipeline(8.0, "enforce")).expect("engine");
    let batch = RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int32, false),
        ])),
        vec![std::sync::Arc::new(arrow::array::Int32Array::from(vec![1]))],
    )
    .expect("batch");
    assert!(matches!(
        engine.process(&batch, 0),
        Err(EngineError::Batch(_))
    ));
}

fn small_pipeline(extra: &str) -> PipelineConfig {
    PipelineConfig::from_toml(&format!(
        r#"
name = "small"
[[window]]
name = "w"
key = "identity"
size_ms = 10000
slide_ms = 1000
allowed_lateness_ms = 2000
[[feature]]
name = "hits"
window = "w"
type = "count"
[[feature]]
name = "errors"
window = "w"
type = "count"
filter = {{ min_status = 500 }}
{extra}
[decision]
quarantine_ttl_s = 60
"#
    ))
    .expect("pipeline")
}

fn process(engine: &mut Engine, events: &[RequestEvent], now: i64) -> Vec<Output> {
    engine
        .process(&warden_event::to_record_batch(events).expect("batch"), now)
        .expect("process")
}

#[test]
fn events_within_the_allowed_lateness_count_and_later_ones_are_counted_as_late() {
    let p = small_pipeline(
        r#"
[[detector]]
name = "busy"
type = "threshold"
feature = "hits"
above = 10
"#,
    );
    let mut engine = Engine::new(&p).expect("engine");
    let base = 1_700_000_000 * S;
    // Ten events in order: 10 is not above 10.
    let events: Vec<RequestEvent> = (0..10)
        .map(|i| event("dev-1", base + 5 * S + i * 100 * MS, 200))
        .collect();
    assert!(process(&mut engine, &events, base + 6 * S).is_empty());
    assert_eq!(engine.watermark(), Some(base + 5 * S + 900 * MS));
    // 5.9 s behind the watermark, 2 s allowed: late. It would be in the window (and make 11),
    // but it is counted as late and left out.
    let too_late = event("dev-1", base, 200);
    assert!(process(&mut engine, &[too_late], base + 6 * S).is_empty());
    assert_eq!(engine.stats().late_events, 1);
    assert_eq!(engine.stats().events, 11);
    // 1.4 s behind: within the lateness, it lands in its bucket and makes 11.
    let late_but_allowed = event("dev-1", base + 4 * S + 500 * MS, 200);
    let out = process(&mut engine, &[late_but_allowed], base + 6 * S);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].alert.evidence.features["hits"], 11.0);
    assert_eq!(engine.stats().late_events, 1, "not late");
    assert_eq!(
        engine.watermark(),
        Some(base + 5 * S + 900 * MS),
        "an older event does not move the watermark"
    );
}

#[test]
fn a_shadow_detector_only_alerts_while_the_others_enforce() {
    let p = small_pipeline(
        r#"
[[detector]]
name = "busy"
type = "threshold"
feature = "hits"
above = 5
mode = "shadow"
[[detector]]
name = "failing"
type = "threshold"
feature = "errors"
above = 5
"#,
    );
    let mut engine = Engine::new(&p).expect("engine");
    let base = 1_700_000_000 * S;
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(event("dev-ok", base + i * 10 * MS, 200));
        events.push(event("dev-bad", base + i * 10 * MS, 503));
    }
    let out = process(&mut engine, &events, base + S);
    let by = |subject: &str, detector: &str| {
        out.iter()
            .find(|o| o.alert.subject == Subject::identity(subject) && o.alert.detector == detector)
    };
    let shadow = by("dev-ok", "busy").expect("shadow alert");
    assert!(shadow.decision.is_none());
    assert!(
        shadow.alert.message.ends_with("not enforced: shadow mode"),
        "{}",
        shadow.alert.message
    );
    assert!(by("dev-ok", "failing").is_none());
    let enforced = by("dev-bad", "failing").expect("enforcing detector");
    let d = enforced.decision.as_ref().expect("quarantine");
    assert_eq!((d.action, &d.detector[..]), (Action::Quarantine, "failing"));
    let decisions = out.iter().filter(|o| o.decision.is_some()).count();
    assert_eq!(decisions, 1, "{out:#?}");
}

/// Windows keyed by the same column find a row's key through the first of them; keys
/// forgotten in one window and their ids reused by other keys must not mix states up.
#[test]
fn windows_sharing_a_key_column_keep_keys_apart_when_ids_are_reused() {
    // The detector is on the second window, the one that finds keys through the first.
    let window = |name: &str, size_ms: u64, idle_ms: u64, detector: bool| {
        let mut w = format!(
            r#"
[[window]]
name = "{name}"
key = "identity"
size_ms = {size_ms}
slide_ms = 1000
idle_expiry_ms = {idle_ms}
[[feature]]
name = "hits_{name}"
window = "{name}"
type = "count"
"#
        );
        if detector {
            w.push_str(&format!(
                "[[detector]]\nname = \"busy_{name}\"\ntype = \"threshold\"\nfeature = \"hits_{name}\"\nabove = 2\n"
            ));
        }
        w
    };
    let long = |d| window("long", 10_000, 600_000, d);
    let short = |d| window("short", 1000, 2000, d);
    // Either window can be the one the other looks keys up through.
    for (windows, detector) in [
        (format!("{}{}", long(false), short(true)), "busy_short"),
        (format!("{}{}", short(false), long(true)), "busy_long"),
    ] {
        let p = PipelineConfig::from_toml(&format!(
            "name = \"linked\"\n{windows}\n[decision]\nquarantine_ttl_s = 60\n"
        ))
        .expect("pipeline");
        let mut engine = Engine::new(&p).expect("engine");
        let base = 1_700_000_000 * S;
        let mut fired = Vec::new();
        let mut feed = |engine: &mut Engine, events: &[RequestEvent]| {
            for o in process(engine, events, base) {
                fired.push((
                    o.alert.detector.clone(),
                    o.alert.subject.value.clone(),
                    o.alert.evidence.features.clone(),
                ));
            }
        };
        feed(&mut engine, &[event("dev-a", base, 200)]);
        // dev-a goes idle in `short` and is forgotten there; dev-b takes its id.
        feed(&mut engine, &[event("dev-x", base + 5 * S, 200)]);
        feed(&mut engine, &[event("dev-b", base + 6 * S, 200)]);
        let back: Vec<RequestEvent> = (0..3)
            .map(|i| event("dev-a", base + 7 * S + i * MS, 200))
            .collect();
        feed(&mut engine, &back);
        assert!(!fired.is_empty());
        for (detector, subject, features) in &fired {
            assert_eq!(subject, "dev-a", "{detector}: {fired:?}");
            if detector == "busy_short" {
                assert_eq!(features["hits_short"], 3.0, "{fired:?}");
            } else {
                assert_eq!(features["hits_long"], 4.0, "{fired:?}");
            }
        }
        assert!(fired.iter().all(|f| f.0 == detector), "{fired:?}");
    }
}

/// One event per identity `dev-{i}` for `i` in `ids`, at `ts`.
fn one_each(ids: std::ops::Range<usize>, ts: i64) -> Vec<RequestEvent> {
    ids.map(|i| event(&format!("dev-{i}"), ts, 200)).collect()
}

/// Provisional samples one batch of `n` distinct identities gives: one per identity in each
/// of the default pipeline's two provisional identity windows, and one for the shared client
/// IP (`identity_2m` is not provisional).
fn provisional_for(n: u64) -> u64 {
    2 * n + 1
}

#[test]
fn under_backlog_touched_keys_are_scored_once_per_interval_and_at_once_when_caught_up() {
    let mut p = pipeline(8.0, "enforce");
    p.source.batch_max_events = 4;
    p.source.provisional_every_ms = 100;
    p.source.provisional_min_events = 1;
    let mut engine = Engine::new(&p).expect("engine");
    let t0 = 1_700_000_000 * S;
    let provisional = |e: &Engine| e.stats().provisional;
    // The first full batch is scored: nothing was before.
    process(&mut engine, &one_each(0..4, t0), t0);
    assert_eq!(provisional(&engine), provisional_for(4));
    assert!(!engine.pending());
    // Full batches within 100 ms of event time wait…
    process(&mut engine, &one_each(0..4, t0 + 10 * MS), t0);
    process(&mut engine, &one_each(4..8, t0 + 20 * MS), t0);
    assert_eq!(provisional(&engine), provisional_for(4));
    assert!(engine.pending());
    // …and the first one 100 ms after the last scoring scores every key touched since, once.
    process(&mut engine, &one_each(0..4, t0 + 100 * MS), t0);
    assert_eq!(
        provisional(&engine),
        provisional_for(4) + provisional_for(8)
    );
    assert!(!engine.pending());
    // A batch that is not full (caught up) is scored at once.
    process(&mut engine, &one_each(0..3, t0 + 110 * MS), t0);
    let before = provisional_for(4) + provisional_for(8) + provisional_for(3);
    assert_eq!(provisional(&engine), before);
    // When events stop after a full batch, `flush` scores what it deferred, once.
    process(&mut engine, &one_each(0..4, t0 + 120 * MS), t0);
    assert_eq!(provisional(&engine), before);
    assert!(engine.pending());
    engine.flush(t0).expect("flush");
    assert_eq!(provisional(&engine), before + provisional_for(4));
    assert!(!engine.pending());
    assert!(engine.flush(t0).expect("flush").is_empty());
    assert_eq!(provisional(&engine), before + provisional_for(4));
}

#[test]
fn under_backlog_a_key_with_a_single_new_event_waits_for_its_complete_sample() {
    let mut p = pipeline(8.0, "enforce");
    p.source.batch_max_events = 4;
    p.source.provisional_every_ms = 100;
    assert_eq!(p.source.provisional_min_events, 2, "the default");
    let mut engine = Engine::new(&p).expect("engine");
    let t0 = 1_700_000_000 * S;
    let provisional = |e: &Engine| e.stats().provisional;
    // Four identities with one event each, from one address: only the address (four events)
    // is scored now; the identities are left to their complete samples.
    process(&mut engine, &one_each(0..4, t0), t0);
    assert_eq!(provisional(&engine), 1);
    assert!(!engine.pending());
    // Counts add up over the batches of an interval: dev-0 gets two events, dev-1 one now and
    // one in the next batch, dev-2 and the newcomers one each.
    let at = t0 + 10 * MS;
    let batch = [
        event("dev-0", at, 200),
        event("dev-0", at, 200),
        event("dev-1", at, 200),
        event("dev-2", at, 200),
    ];
    process(&mut engine, &batch, t0);
    assert!(engine.pending());
    let mut next = one_each(5..8, t0 + 100 * MS);
    next.push(event("dev-1", t0 + 100 * MS, 200));
    process(&mut engine, &next, t0);
    // dev-0 and dev-1 in both identity windows, and the address.
    assert_eq!(provisional(&engine), 1 + 2 * 2 + 1);
    assert!(
        !engine.pending(),
        "the others wait for their complete sample"
    );
    // Caught up (a batch that is not full): every touched key is scored at once.
    process(&mut engine, &one_each(0..3, t0 + 110 * MS), t0);
    assert_eq!(provisional(&engine), 6 + provisional_for(3));
    // Every key is still in the complete samples.
    let before = engine.stats().samples;
    process(&mut engine, &one_each(0..3, t0 + 1200 * MS), t0);
    assert!(engine.stats().samples >= before + 8, "{:?}", engine.stats());
}

#[test]
fn with_no_interval_every_full_batch_is_scored() {
    let mut p = pipeline(8.0, "enforce");
    p.source.batch_max_events = 4;
    p.source.provisional_every_ms = 0;
    p.source.provisional_min_events = 1;
    let mut engine = Engine::new(&p).expect("engine");
    let t0 = 1_700_000_000 * S;
    for k in 0..5 {
        process(&mut engine, &one_each(0..4, t0 + k * MS), t0);
        assert_eq!(
            engine.stats().provisional,
            (k as u64 + 1) * provisional_for(4)
        );
        assert!(!engine.pending());
    }
}

#[test]
fn a_flood_under_backlog_is_still_quarantined_within_a_second_and_nobody_else() {
    // Every batch is full, so touched keys are scored only every 500 ms of event time.
    let mut p = pipeline(8.0, "enforce");
    p.source.batch_max_events = 1;
    p.source.provisional_every_ms = 500;
    let mut engine = Engine::new(&p).expect("engine");
    let outputs = run(&mut engine, 60, Some(40 * S));
    the_flooders_quarantine(&outputs);
    // Fewer provisional samples than a scoring after every batch would take.
    let mut every = Engine::new(&pipeline(8.0, "enforce")).expect("engine");
    run(&mut every, 60, Some(40 * S));
    assert!(
        engine.stats().provisional < every.stats().provisional,
        "{} vs {}",
        engine.stats().provisional,
        every.stats().provisional
    );
}

#[test]
fn when_event_time_stands_still_the_callers_clock_bounds_the_wait() {
    // A lagging partition's backlog read after another's recent events: full batches whose
    // events are all older than the newest seen, so event time does not advance.
    let mut p = pipeline(8.0, "enforce");
    p.source.batch_max_events = 4;
    p.source.provisional_every_ms = 100;
    p.source.provisional_min_events = 1;
    let mut engine = Engine::new(&p).expect("engine");
    let t0 = 1_700_000_000 * S;
    let now = 1_800_000_000 * S;
    process(&mut engine, &one_each(0..4, t0), now);
    assert_eq!(engine.stats().provisional, provisional_for(4));
    process(&mut engine, &one_each(4..8, t0), now + 50 * MS);
    assert!(engine.pending());
    process(&mut engine, &one_each(8..12, t0), now + 100 * MS);
    assert!(!engine.pending());
    assert_eq!(
        engine.stats().provisional,
        provisional_for(4) + provisional_for(8)
    );
}

#[test]
fn a_reload_keeps_keys_waiting_for_scoring_and_the_source_in_effect() {
    let mut p = pipeline(8.0, "enforce");
    p.source.batch_max_events = 4;
    p.source.provisional_every_ms = 100;
    p.source.provisional_min_events = 1;
    let mut engine = Engine::new(&p).expect("engine");
    let t0 = 1_700_000_000 * S;
    process(&mut engine, &one_each(0..4, t0), t0);
    process(&mut engine, &one_each(0..4, t0 + 10 * MS), t0);
    assert!(engine.pending());
    // A detector changes; the windows are kept, and so are the keys waiting in them. The new
    // `source` applies after a restart, as the runner reads batches with the old one.
    let mut next = p.clone();
    for d in next.detector.iter_mut() {
        if let DetectorConfig::EwmaZscore(c) = d {
            c.threshold = 9.0;
        }
    }
    next.source.provisional_every_ms = 0;
    next.source.batch_max_events = 2;
    engine.reconfigure(&next).expect("reload");
    assert_eq!(engine.pipeline().source, p.source);
    assert!(engine.pending());
    engine.flush(t0).expect("flush");
    assert_eq!(engine.stats().provisional, 2 * provisional_for(4));
    // Marks were cleared with the scoring: the same keys touched again wait again.
    process(&mut engine, &one_each(0..4, t0 + 20 * MS), t0);
    assert!(engine.pending());
    engine.flush(t0).expect("flush");
    assert_eq!(engine.stats().provisional, 3 * provisional_for(4));
}

/// `sample = "active"`: complete samples cover the keys with events in their slide; the
/// others are neither sampled nor lost, and a threshold still fires on an active key.
#[test]
fn active_sampling_samples_the_keys_with_events_and_still_detects() {
    let detector = r#"
[[detector]]
name = "busy"
type = "threshold"
feature = "hits"
above = 30
"#;
    let all = small_pipeline(detector);
    let mut active = all.clone();
    active.window[0].sample = warden_config::Sampling::Active;
    let base = 1_700_000_000 * S;
    // 50 identities send once in the first second; then dev-0 alone sends 40 over 4 s.
    let mut events = one_each(0..50, base);
    events.extend((0..40).map(|i| event("dev-0", base + S + i * 100 * MS, 200)));
    // A later event moves the watermark past every slide of the window.
    events.push(event("dev-0", base + 30 * S, 200));
    let mut samples = Vec::new();
    let mut fired = Vec::new();
    for p in [&all, &active] {
        let mut engine = Engine::new(p).expect("engine");
        let mut outs = Vec::new();
        for chunk in events.chunks(16) {
            outs.extend(process(&mut engine, chunk, base + 40 * S));
        }
        samples.push(engine.stats().samples);
        fired.push(
            outs.iter()
                .filter(|o| o.alert.subject.value == "dev-0")
                .count(),
        );
        assert!(
            outs.iter().all(|o| o.alert.subject.value == "dev-0"),
            "only the busy identity fires"
        );
    }
    assert!(fired.iter().all(|n| *n >= 1), "{fired:?}");
    // Every slide of 50 keys against the slides where a key had events.
    assert!(samples[1] * 10 < samples[0], "{samples:?}");
}

#[test]
fn watched_and_fired_on_subjects_get_score_series_and_nobody_else() {
    let mut engine = Engine::new(&pipeline(8.0, "enforce")).expect("engine");
    let board = std::sync::Arc::new(ScoreBoard::default());
    engine.set_score_board(board.clone());
    run(&mut engine, 20, None);
    assert!(board.is_empty(), "nobody watched, nothing fired");
    board.watch(SubjectKind::Identity, "dev-2");
    board.watch(SubjectKind::Identity, "never-seen");
    let outputs = run_from(&mut engine, 20, 40, Some(20 * S));
    the_flooders_quarantine(&outputs);

    // The operator's pick: every detector of its identity windows, one point per slide.
    let watched = board.series(SubjectKind::Identity, "dev-2");
    let names: Vec<&str> = watched.iter().map(|s| s.detector.as_str()).collect();
    assert!(
        names.contains(&"rate_spike") && names.contains(&"burst"),
        "{names:?}"
    );
    assert!(watched.iter().all(|s| s.points.len() >= 5), "{watched:?}");
    assert!(
        watched
            .iter()
            .flat_map(|s| &s.points)
            .all(|(_, v)| v.is_finite() && *v < 8.0),
        "a steady device scores low: {watched:?}"
    );
    // The flooder is watched from its firing on, and its scores show the flood.
    let flooder = board.series(SubjectKind::Identity, "dev-7");
    let peak = flooder
        .iter()
        .filter(|s| RATE_DETECTORS.iter().any(|(d, _)| *d == s.detector))
        .flat_map(|s| &s.points)
        .map(|(_, v)| *v)
        .fold(0.0, f64::max);
    assert!(peak >= 8.0, "{flooder:?}");
    assert!(board.series(SubjectKind::Identity, "dev-5").is_empty());
    assert!(board.series(SubjectKind::Identity, "never-seen").is_empty());
    assert_eq!(board.len(), 2);
}
