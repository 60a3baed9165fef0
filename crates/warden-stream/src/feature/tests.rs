use warden_config::PipelineConfig;
use warden_event::{AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, RequestEvent};

use super::*;

fn event(i: u64) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("e{i}"),
        gateway: "gw".into(),
        seq: i,
        ts: 1_700_000_000_000_000_000 + i as i64,
        identity: "dev-1".into(),
        tenant: "t".into(),
        device_type: "sensor".into(),
        auth: AuthInfo {
            method: AuthMethod::ApiKey,
            result: if i.is_multiple_of(5) {
                AuthResult::Failed
            } else {
                AuthResult::Ok
            },
        },
        client_ip: "10.0.0.1".into(),
        protocol: Protocol::Http,
        method: if i.is_multiple_of(2) { "GET" } else { "POST" }.into(),
        route: "telemetry".into(),
        path: format!("/api/devices/d{}/state", i % 7),
        status: if i.is_multiple_of(4) { 503 } else { 200 },
        decision: if i.is_multiple_of(5) {
            Outcome::DeniedAuth
        } else {
            Outcome::Allowed
        },
        latency_us: 100,
        bytes_in: 10,
        bytes_out: 100 * (i + 1),
        user_agent: i.is_multiple_of(3).then(|| "fw/1.0".to_string()),
        tls: None,
        reason: warden_event::Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

/// Compile the features of `toml` (one window `w` of 10 s), feed 100 events into one bucket,
/// and return the feature values by name.
fn features(features_toml: &str) -> Result<BTreeMap<String, f64>, String> {
    features_over(features_toml, (0..100).map(event).collect())
}

/// [`features`] over the given events.
fn features_over(
    features_toml: &str,
    events: Vec<RequestEvent>,
) -> Result<BTreeMap<String, f64>, String> {
    let text = format!(
        r#"
name = "t"
[[window]]
name = "w"
key = "identity"
size_ms = 10000
slide_ms = 1000
{features_toml}
[[detector]]
name = "d"
type = "threshold"
feature = "x"
above = 1.0
[decision]
quarantine_ttl_s = 60
"#
    );
    let pipeline = PipelineConfig::from_toml(&text).map_err(|e| e.to_string())?;
    let compiler = Compiler::new().map_err(|e| e.to_string())?;
    let mut plan = WindowPlan::default();
    for f in &pipeline.feature {
        plan.add(&compiler, f)
            .map_err(|e| format!("{}: {}", e.key, e.reason))?;
    }
    let batch = warden_event::to_record_batch(&events).map_err(|e| e.to_string())?;
    let inputs = plan.evaluate(&batch).map_err(|e| e.to_string())?;
    let (mut scalars, mut sketches) = (Vec::new(), Vec::new());
    plan.new_scalars(&mut scalars);
    plan.new_sketches(&mut sketches);
    for row in 0..events.len() {
        plan.update(&mut scalars, &mut sketches, &inputs, row);
    }
    let mut values = vec![0.0; plan.values.len()];
    plan.read_values(&scalars, &sketches, &mut values);
    let mut out = Vec::new();
    plan.features(&values, 1, 10.0, 0, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(plan.names.iter().cloned().zip(out).collect())
}

use std::collections::BTreeMap;

fn feature(kind: &str) -> String {
    format!("[[feature]]\nname = \"x\"\nwindow = \"w\"\n{kind}\n")
}

fn value(kind: &str) -> f64 {
    let f = features(&feature(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
    f["x"]
}

#[test]
fn fast_path_aggregates() {
    assert_eq!(value("type = \"count\""), 100.0);
    assert_eq!(value("type = \"rate\""), 10.0);
    assert_eq!(
        value("type = \"count\"\nfilter = { method = [\"GET\"], min_status = 500 }"),
        25.0
    );
    assert_eq!(value("type = \"error_ratio\""), 0.25);
    assert_eq!(value("type = \"denied_ratio\""), 0.2);
    assert_eq!(
        value("type = \"ratio\"\nfilter = { auth_result = [\"failed\"] }"),
        0.2
    );
    assert_eq!(
        value("type = \"sum\"\nfield = \"bytes_out\""),
        100.0 * 5050.0
    );
    assert_eq!(value("type = \"mean\"\nfield = \"bytes_out\""), 5050.0);
    assert_eq!(value("type = \"distinct\"\nfield = \"path\""), 7.0);
    assert_eq!(
        value("type = \"distinct\"\nfield = \"user_agent\""),
        1.0,
        "nulls are not values"
    );
    let p99 = value("type = \"percentile\"\nfield = \"bytes_out\"\nquantile = 0.99");
    assert!((p99 - 9900.0).abs() / 9900.0 < 0.011, "{p99}");
    assert!(
        value("type = \"mean\"\nfield = \"bytes_out\"\nfilter = { route = [\"nope\"] }").is_nan()
    );
}

#[test]
fn sql_features_match_the_fast_path() {
    let sql = |e: &str| value(&format!("type = \"sql\"\nexpr = \"{e}\""));
    assert_eq!(
        sql("count(*) filter (where status >= 500) / count(*)"),
        0.25
    );
    assert_eq!(sql("count(*)"), 100.0);
    assert_eq!(sql("avg(bytes_out)"), 5050.0);
    assert_eq!(sql("sum(bytes_out) / 1000"), 5050.0 * 100.0 / 1000.0);
    assert_eq!(sql("max(bytes_out) - min(bytes_out)"), 9900.0);
    assert_eq!(sql("count(distinct path)"), 7.0);
    assert_eq!(sql("approx_distinct(client_ip)"), 1.0);
    assert_eq!(
        sql("count(user_agent)"),
        34.0,
        "count(x) counts non-null values"
    );
    assert_eq!(
        sql("count(*) filter (where auth_result = 'failed' and decision <> 'allowed')"),
        20.0
    );
    assert_eq!(
        sql("coalesce(sum(bytes_in) filter (where route = 'nope'), 0)"),
        0.0
    );
    assert!(
        sql("sum(bytes_in) filter (where route = 'nope')").is_nan(),
        "SQL sum of nothing is NULL"
    );
    let p = sql("approx_percentile_cont(0.5) within group (order by bytes_out)");
    assert!((p - 5000.0).abs() / 5000.0 < 0.011, "{p}");
    assert!((sql("approx_median(latency_us)") - 100.0).abs() < 1.0);
}

#[test]
fn sql_mistakes_are_reported() {
    let err =
        |e: &str| features(&feature(&format!("type = \"sql\"\nexpr = \"{e}\""))).expect_err(e);
    assert!(
        err("count(*) +").starts_with("expr: "),
        "{}",
        err("count(*) +")
    );
    let e = err("stddev(bytes_out)");
    assert!(e.contains("aggregate `stddev` is not supported"), "{e}");
    let e = err("status + 1");
    assert!(e.contains("must aggregate"), "{e}");
    let e = err("count(*) / status");
    assert!(
        e.contains("column(s) status must be inside an aggregate"),
        "{e}"
    );
    let e = err("sum(no_such_column)");
    assert!(e.contains("no_such_column"), "{e}");
}

#[test]
fn identical_aggregates_are_shared() {
    let toml = format!(
        "{}{}{}",
        feature("type = \"rate\""),
        "[[feature]]\nname = \"n\"\nwindow = \"w\"\ntype = \"count\"\n",
        "[[feature]]\nname = \"e\"\nwindow = \"w\"\ntype = \"sql\"\nexpr = \"count(*) filter (where status >= 500) / count(*)\"\n"
    );
    let text = format!(
        "name = \"t\"\n[[window]]\nname = \"w\"\nkey = \"identity\"\nsize_ms = 1000\nslide_ms = 1000\n{toml}[[detector]]\nname = \"d\"\ntype = \"threshold\"\nfeature = \"x\"\nabove = 1.0\n[decision]\nquarantine_ttl_s = 60\n"
    );
    let pipeline = PipelineConfig::from_toml(&text).expect("pipeline");
    let compiler = Compiler::new().expect("compiler");
    let mut plan = WindowPlan::default();
    for f in &pipeline.feature {
        plan.add(&compiler, f).expect("compiles");
    }
    assert_eq!(plan.scalars.len(), 2, "count(*) and count(*) filter (…)");
    let f = features(&toml).expect("features");
    assert_eq!((f["x"], f["n"], f["e"]), (10.0, 100.0, 0.25));
}

#[test]
fn distinct_resources_count_paths_and_queries() {
    let distinct = |events: Vec<RequestEvent>, field: &str| {
        let toml = feature(&format!("type = \"distinct\"\nfield = \"{field}\""));
        features_over(&toml, events).unwrap_or_else(|e| panic!("{e}"))["x"]
    };
    // 7 paths, no query: 7 resources, as many as paths.
    let plain: Vec<RequestEvent> = (0..100).map(event).collect();
    assert_eq!(distinct(plain.clone(), "resource"), 7.0);
    // One path with the same query everywhere: one resource.
    let same: Vec<RequestEvent> = (0..100)
        .map(|i| {
            let mut e = event(i);
            e.path = "/api/meters/m-1/history".into();
            e.query = warden_event::query::shape("limit=48");
            e.query_hash = warden_event::query::hash(b"k", "limit=48");
            e
        })
        .collect();
    assert_eq!(distinct(same, "resource"), 1.0);
    // One path scraped page by page: one path, 40 resources, one query shape.
    let scraped: Vec<RequestEvent> = (0..100)
        .map(|i| {
            let mut e = event(i);
            e.path = "/api/items".into();
            let q = format!("page={}", i % 40);
            e.query = warden_event::query::shape(&q);
            e.query_hash = warden_event::query::hash(b"k", &q);
            e
        })
        .collect();
    assert_eq!(distinct(scraped.clone(), "path"), 1.0);
    assert_eq!(distinct(scraped.clone(), "resource"), 40.0);
    assert_eq!(distinct(scraped, "query"), 1.0);
}

#[test]
fn status_filters_leave_out_wardens_own_refusals() {
    use warden_event::Reason;
    // 100 events: 40 refused by a quarantine (403), 20 by a throttle (429), 10 by RBAC
    // (403), 30 served.
    let events: Vec<RequestEvent> = (0..100)
        .map(|i| {
            let mut e = event(i);
            (e.status, e.reason) = match i {
                0..40 => (403, Reason::Quarantine),
                40..60 => (429, Reason::Throttle),
                60..70 => (403, Reason::Rbac),
                _ => (200, Reason::None),
            };
            e
        })
        .collect();
    let count = |filter: &str| {
        let toml = feature(&format!("type = \"count\"\nfilter = {{ {filter} }}"));
        features_over(&toml, events.clone()).unwrap_or_else(|e| panic!("{e}"))["x"]
    };
    assert_eq!(count("min_status = 400, max_status = 499"), 10.0);
    assert_eq!(
        count("min_status = 400, max_status = 499, include_enforced = true"),
        70.0
    );
    assert_eq!(count("reason = [\"quarantine\", \"throttle\"]"), 60.0);
    assert_eq!(count("min_status = 200, max_status = 299"), 30.0);
}

#[test]
fn hour_of_day_is_the_angle_of_the_window_end_on_the_unit_circle() {
    let text = r#"
name = "t"
[[window]]
name = "w"
key = "identity"
size_ms = 10000
slide_ms = 1000
[[feature]]
name = "hour_sin"
window = "w"
type = "hour_of_day"
component = "sin"
[[feature]]
name = "hour_cos"
window = "w"
type = "hour_of_day"
component = "cos"
[[detector]]
name = "d"
type = "threshold"
feature = "hour_sin"
above = 1.0
[decision]
quarantine_ttl_s = 60
"#;
    let pipeline = PipelineConfig::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
    let compiler = Compiler::new().expect("compiler");
    let mut plan = WindowPlan::default();
    for f in &pipeline.feature {
        plan.add(&compiler, f)
            .unwrap_or_else(|e| panic!("{}", e.reason));
    }
    const H: i64 = 3_600_000_000_000;
    let day = 20_000 * 24 * H;
    let at = |at_ns: i64| {
        let mut out = Vec::new();
        plan.features(&[], 2, 10.0, at_ns, &mut out)
            .expect("features");
        assert_eq!(out.len(), 4);
        assert_eq!(out[..2], out[2..], "the same for every key of a round");
        (out[0], out[1])
    };
    let close = |(s, c): (f64, f64), (es, ec): (f64, f64)| {
        assert!((s - es).abs() < 1e-9 && (c - ec).abs() < 1e-9, "{s} {c}");
    };
    close(at(day), (0.0, 1.0));
    close(at(day + 6 * H), (1.0, 0.0));
    close(at(day + 12 * H), (0.0, -1.0));
    close(at(day + 18 * H), (-1.0, 0.0));
    // Midnight's neighbours are close on the circle; times before 1970 too.
    let (a, b) = (at(day - 60_000_000_000), at(day + 60_000_000_000));
    assert!((a.0 + b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9);
    close(at(-6 * H), (-1.0, 0.0));
}
