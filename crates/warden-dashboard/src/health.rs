//! The overview's processor panel, drawn on the server from the status the processor beside
//! the console reports (`/api/status`): throughput, lag per partition, the bus, warm-up, the
//! pipeline and its reloads (a refused change with every problem), and the models served.

use serde_json::Value;

use crate::render::{esc, facts, table, time};

/// The panel for `status` (the JSON of `/api/status`).
pub(crate) fn section(status: &Value) -> String {
    let mut html = String::from(r#"<h2 id="processor">Processor</h2>"#);
    let p = &status["processor"];
    let n = |v: &Value| v.as_u64().map_or("–".to_string(), |n| n.to_string());
    let lag_parts: Vec<String> = p["lag_by_partition"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{}: {}", esc(k), n(v)))
                .collect()
        })
        .unwrap_or_default();
    let pipeline = &status["pipeline"];
    let warm = &status["warmup"];
    let mut items = vec![
        ("events/s", n(&p["events_per_second"])),
        (
            "consumer lag",
            format!(
                "{}{}",
                n(&p["consumer_lag"]),
                if lag_parts.is_empty() {
                    String::new()
                } else {
                    format!(" (by partition: {})", lag_parts.join(", "))
                }
            ),
        ),
        ("partitions", n(&p["assigned_partitions"])),
        (
            "bus last answered",
            p["bus_last_answered_ns"]
                .as_i64()
                .map_or("not yet".into(), time),
        ),
        ("warm-up", esc(warm["state"].as_str().unwrap_or("unknown"))),
        (
            "state",
            crate::render::bytes(p["state_bytes"].as_u64().unwrap_or(0)),
        ),
        ("late events", n(&p["late_events"])),
        (
            "pipeline",
            format!(
                "{}{} — loaded {}, {} reload(s)",
                esc(pipeline["name"].as_str().unwrap_or("")),
                pipeline["path"]
                    .as_str()
                    .map_or(String::new(), |path| format!(" ({})", esc(path))),
                pipeline["loaded_at"].as_i64().map_or("–".into(), time),
                n(&pipeline["reloads"]),
            ),
        ),
    ];
    if let Some(last) = pipeline["last_reload"].as_str() {
        items.push(("last reload", esc(last)));
    }
    html.push_str(&facts(&items));
    if let Some(failure) = pipeline["last_failure"].as_object() {
        let problems: Vec<String> = failure
            .get("problems")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|t| format!("<li>{}</li>", esc(t)))
                    .collect()
            })
            .unwrap_or_default();
        html.push_str(&format!(
            r#"<div class="warn" id="reload-refused"><p>The last pipeline change was refused {}; the previous pipeline keeps running:</p><ul>{}</ul></div>"#,
            failure.get("at").and_then(Value::as_i64).map_or("–".into(), time),
            problems.join("")
        ));
    }
    let models: Vec<Vec<String>> = status["models"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let s = |k: &str| esc(m[k].as_str().unwrap_or("–"));
                    let sha = m["sha256"].as_str().unwrap_or("–");
                    vec![
                        s("detector"),
                        s("model"),
                        format!(
                            r#"<code title="{}">{}</code>"#,
                            esc(sha),
                            esc(sha.get(..12).unwrap_or(sha))
                        ),
                        m["trained_at_s"]
                            .as_i64()
                            .map_or("–".into(), |t| time(t.saturating_mul(1_000_000_000))),
                        n(&m["rows"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    html.push_str(&table(
        "models",
        &["detector", "model", "sha256", "trained", "rows"],
        &models,
        "no ML models in this pipeline",
    ));
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panel_shows_lag_warm_up_reload_problems_and_models_inertly() {
        let status = serde_json::json!({
            "warmup": { "state": "warming up, 42 s left", "needs_ms": 60000 },
            "pipeline": {
                "name": "<b>default</b>", "path": "pipelines/default.toml", "loaded_at": 1_800_000_000_000_000_000i64,
                "reloads": 2, "last_reload": "detectors kept: burst",
                "last_failure": { "at": 1_800_000_000_000_000_000i64, "problems": ["f: detector[0].threshold: <script>"] },
                "warmup": []
            },
            "processor": {
                "events_per_second": 1234, "consumer_lag": 7, "lag_by_partition": { "0": 3, "1": 4 },
                "assigned_partitions": 2, "state_bytes": 2048, "late_events": 0,
                "bus_last_answered_ns": 1_800_000_000_000_000_000i64
            },
            "models": [{ "detector": "gmm_shape", "model": "gmm", "sha256": "ab".repeat(32), "trained_at_s": 1_800_000_000, "rows": 5000 }]
        });
        let html = section(&status);
        for needle in [
            "1234",
            "by partition: 0: 3, 1: 4",
            "warming up, 42 s left",
            "&lt;b&gt;default&lt;/b&gt;",
            "detectors kept: burst",
            r#"id="reload-refused""#,
            "detector[0].threshold: &lt;script&gt;",
            "gmm_shape",
            "abababababab",
            "5000",
        ] {
            assert!(html.contains(needle), "{needle} missing: {html}");
        }
        assert!(!html.contains("<script>") && !html.contains("<b>default"));
        // A status without a processor (fields missing) still renders.
        let empty = section(&serde_json::json!({}));
        assert!(empty.contains("no ML models"), "{empty}");
    }
}
