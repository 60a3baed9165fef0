//! The detectors a series can be scored with, their parameters and defaults: read from the
//! JSON Schema of [`DetectorConfig`] (the doc comments and serde defaults of the config
//! structs) and from the series defaults below, so `warden detectors` cannot drift from the
//! code.

use serde::Serialize;
use serde_json::Value;
use warden_config::{ConfigError, DetectorConfig};

use super::SeriesError;

/// Keys `--series` sets itself (not parameters of a series run).
const FIXED: &[&str] = &["type", "name", "feature", "mode", "action", "weight"];

/// Detector types that can score a metric series, with the parameters `--series` gives them
/// before `--param` overrides (TOML). Keys not listed take their pipeline defaults.
pub const SERIES_DEFAULTS: &[(&str, &str)] = &[
    (
        "ewma_zscore",
        "alpha = 0.05\nthreshold = 4.0\nwarmup_samples = 30\nmin_value = 0.0\nmin_std = 1e-9\ndirection = \"both\"\n",
    ),
    (
        "mad",
        "history = 200\nthreshold = 5.0\nwarmup_samples = 30\nmin_mad = 1e-9\ndirection = \"both\"\n",
    ),
    (
        "cusum",
        "alpha = 0.005\nk = 0.5\nh = 10.0\nwarmup_samples = 30\nmin_std = 1e-9\ndirection = \"both\"\n",
    ),
    ("threshold", ""),
    ("cardinality", ""),
];

/// Series detectors run when none is named: those that need no parameter.
pub const DEFAULT_SERIES_DETECTORS: &[&str] = &["ewma_zscore", "mad", "cusum"];

/// One parameter of a detector type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamInfo {
    pub name: String,
    /// `number`, `integer`, `boolean`, `string`, or the choices (`up|down|both`).
    pub kind: String,
    /// Whether a pipeline must set it (no default).
    pub required: bool,
    /// Default in a pipeline, null when required or unset by default.
    pub default: Value,
    /// Value `warden backtest --series` uses before `--param`, null when the detector
    /// cannot score a series or the key is not a series parameter (`name`, `feature`…).
    pub series: Value,
    /// The first sentence of the parameter's documentation.
    pub meaning: String,
}

/// One detector type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorInfo {
    /// `type = "…"` in pipelines, `--detector` of `--series`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The first sentence of its documentation.
    pub meaning: String,
    /// Whether `warden backtest --series` can run it.
    pub series: bool,
    /// Required parameters first, then the others by name.
    pub params: Vec<ParamInfo>,
}

fn series_base(kind: &str) -> Option<&'static str> {
    SERIES_DEFAULTS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, d)| *d)
}

fn series_kinds() -> String {
    SERIES_DEFAULTS
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The config of `kind` with its series defaults and `params` on top, parsed but not checked.
fn series_config(kind: &str, params: &[(&str, &str)]) -> Result<DetectorConfig, Vec<String>> {
    let Some(base) = series_base(kind) else {
        return Err(vec![format!(
            "`{kind}` cannot score a metric series (one of: {})",
            series_kinds()
        )]);
    };
    let mut table: toml::Table = base.parse().map_err(|e| vec![format!("{e}")])?;
    table.insert("name".into(), kind.into());
    table.insert("type".into(), kind.into());
    table.insert("feature".into(), "value".into());
    for (k, v) in params {
        let value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String((*v).to_string()));
        table.insert((*k).to_string(), value);
    }
    let text = toml::to_string(&table).map_err(|e| vec![e.to_string()])?;
    warden_config::parse_strict(&text)
        .map_err(|e| e.0.iter().map(|e| param_error(kind, e)).collect())
}

fn param_error(kind: &str, e: &ConfigError) -> String {
    let key = e.key.strip_prefix("detector.").unwrap_or(&e.key);
    if key.is_empty() || key == "(document)" {
        format!("{kind}: {}", e.reason)
    } else {
        format!("--param {kind}.{key}: {}", e.reason)
    }
}

/// The parameters `--param` may set on `kind`.
pub fn series_params(kind: &str) -> Vec<String> {
    catalog()
        .into_iter()
        .find(|d| d.kind == kind)
        .map(|d| {
            d.params
                .into_iter()
                .filter(|p| !FIXED.contains(&p.name.as_str()))
                .map(|p| p.name)
                .collect()
        })
        .unwrap_or_default()
}

/// The configs of the series detectors `kinds` (the defaults when empty) with `params`
/// (`key=value` or `type.key=value`, values in TOML syntax) on top, each checked like a
/// pipeline's detector. Every problem is reported; an unknown parameter with the valid ones.
/// An unqualified key applies to every named detector that has it.
pub fn series_detectors(
    kinds: &[String],
    params: &[(String, String)],
) -> Result<Vec<DetectorConfig>, SeriesError> {
    let mut kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    if kinds.is_empty() {
        kinds = DEFAULT_SERIES_DETECTORS.to_vec();
    }
    let mut errs = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        if kinds[..i].contains(k) {
            errs.push(format!("--detector {k} is named twice"));
        } else if series_base(k).is_none() {
            errs.push(format!(
                "`{k}` cannot score a metric series (one of: {}; `warden detectors` lists them)",
                series_kinds()
            ));
        }
    }
    if !errs.is_empty() {
        return Err(SeriesError::Params(errs));
    }
    let valid: Vec<Vec<String>> = kinds.iter().map(|k| series_params(k)).collect();
    let mut per_kind: Vec<Vec<(&str, &str)>> = vec![Vec::new(); kinds.len()];
    for (key, value) in params {
        let (target, name) = match key.split_once('.') {
            Some((t, n)) => (Some(t), n),
            None => (None, key.as_str()),
        };
        if let Some(t) = target {
            let Some(i) = kinds.iter().position(|k| *k == t) else {
                errs.push(format!(
                    "--param {key}: `{t}` is not one of the detectors run ({})",
                    kinds.join(", ")
                ));
                continue;
            };
            if valid[i].iter().any(|v| v == name) {
                per_kind[i].push((name, value));
            } else {
                errs.push(unknown(key, name, &[(kinds[i], &valid[i])]));
            }
            continue;
        }
        let mut used = false;
        for (i, v) in valid.iter().enumerate() {
            if v.iter().any(|v| v == name) {
                per_kind[i].push((name, value));
                used = true;
            }
        }
        if !used {
            let all: Vec<(&str, &Vec<String>)> = kinds.iter().copied().zip(&valid).collect();
            errs.push(unknown(key, name, &all));
        }
    }
    let mut out = Vec::new();
    for (kind, params) in kinds.iter().zip(&per_kind) {
        match series_config(kind, params) {
            Ok(config) => {
                let mut problems = Vec::new();
                config.check("detector", &mut problems);
                errs.extend(problems.iter().map(|e| param_error(kind, e)));
                out.push(config);
            }
            Err(e) => errs.extend(e),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(SeriesError::Params(errs))
    }
}

fn unknown(key: &str, name: &str, valid: &[(&str, &Vec<String>)]) -> String {
    let close = valid
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter(|v| edit_distance(v, name) <= 2 || v.contains(name) && name.len() >= 3)
        .min_by_key(|v| edit_distance(v, name));
    let hint = close.map_or(String::new(), |c| format!(" (did you mean `{c}`?)"));
    let lists: Vec<String> = valid
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.join(", ")))
        .collect();
    format!(
        "--param {key}: unknown parameter{hint}; valid ones — {} (`warden detectors` lists their defaults)",
        lists.join("; ")
    )
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Every detector type with its parameters, from the config schema and the series defaults.
pub fn catalog() -> Vec<DetectorInfo> {
    static CATALOG: std::sync::OnceLock<Vec<DetectorInfo>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(build_catalog).clone()
}

fn build_catalog() -> Vec<DetectorInfo> {
    let schema = serde_json::to_value(schemars::schema_for!(DetectorConfig)).unwrap_or_default();
    let defs = schema.get("$defs").cloned().unwrap_or_default();
    let variants = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    variants
        .iter()
        .filter_map(|v| {
            let kind = v.pointer("/properties/type/const")?.as_str()?.to_string();
            let series = series_config(&kind, &[])
                .ok()
                .and_then(|c| serde_json::to_value(c).ok());
            let required: Vec<&str> = v
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let props = v.get("properties").and_then(Value::as_object)?;
            let mut params: Vec<ParamInfo> = props
                .iter()
                .filter(|(name, _)| name.as_str() != "type")
                .map(|(name, p)| ParamInfo {
                    name: name.clone(),
                    kind: kind_of(p, &defs),
                    required: required.contains(&name.as_str()),
                    default: p.get("default").cloned().unwrap_or(Value::Null),
                    series: series
                        .as_ref()
                        .filter(|_| !FIXED.contains(&name.as_str()))
                        .and_then(|s| s.get(name))
                        .cloned()
                        .unwrap_or(Value::Null),
                    meaning: first_sentence(p.get("description")),
                })
                .collect();
            let rank = |p: &ParamInfo| required.iter().position(|r| *r == p.name);
            params.sort_by(|a, b| match (rank(a), rank(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.name.cmp(&b.name),
            });
            Some(DetectorInfo {
                meaning: first_sentence(v.get("description")),
                series: series.is_some(),
                kind,
                params,
            })
        })
        .collect()
}

fn kind_of(p: &Value, defs: &Value) -> String {
    let target = p
        .get("$ref")
        .or_else(|| p.pointer("/anyOf/0/$ref"))
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .and_then(|name| defs.get(name));
    if let Some(def) = target {
        let choices: Vec<&str> = def
            .get("oneOf")
            .and_then(Value::as_array)
            .map(|o| {
                o.iter()
                    .filter_map(|c| c.get("const").and_then(Value::as_str))
                    .collect()
            })
            .or_else(|| {
                def.get("enum")
                    .and_then(Value::as_array)
                    .map(|e| e.iter().filter_map(Value::as_str).collect())
            })
            .unwrap_or_default();
        if !choices.is_empty() {
            return choices.join("|");
        }
    }
    match p.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let items = p.get("items").map_or("value".into(), |i| kind_of(i, defs));
            format!("[{items}]")
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("value")
            .to_string(),
        _ => "value".into(),
    }
}

fn first_sentence(doc: Option<&Value>) -> String {
    let text = doc
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut end = text.len();
    for (i, _) in text.match_indices(". ") {
        // Not after an abbreviation like `e.g.` or `i.e.`.
        if !text[..i].ends_with("e.g") && !text[..i].ends_with("i.e") {
            end = i + 1;
            break;
        }
    }
    text[..end].to_string()
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The series detectors with every parameter at the value `--series` uses, wrapped for a
/// terminal (the `--help` of `warden backtest`).
pub fn series_defaults_text() -> String {
    let mut out = String::new();
    for d in catalog().iter().filter(|d| d.series) {
        let mut line = format!("  {}:", d.kind);
        for p in d
            .params
            .iter()
            .filter(|p| !FIXED.contains(&p.name.as_str()))
        {
            let item = format!(" {}={}", p.name, show(&p.series));
            if line.chars().count() + item.chars().count() > 92 {
                out.push_str(&line);
                out.push('\n');
                line = "   ".to_string();
            }
            line.push_str(&item);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The catalogue for people: one block per detector type.
pub fn render_catalog(detectors: &[DetectorInfo]) -> String {
    let mut out = String::new();
    for d in detectors {
        let series = if d.series { "  [--series]" } else { "" };
        out.push_str(&format!("{}{series}\n  {}\n", d.kind, d.meaning));
        let mut rows = vec![[
            "parameter".to_string(),
            "kind".into(),
            "default".into(),
            "series".into(),
            "meaning".into(),
        ]];
        for p in &d.params {
            let default = if p.required {
                "required".to_string()
            } else {
                show(&p.default)
            };
            rows.push([
                p.name.clone(),
                p.kind.clone(),
                default,
                show(&p.series),
                p.meaning.clone(),
            ]);
        }
        let mut widths = [0usize; 4];
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        for r in &rows {
            out.push_str(&format!(
                "  {:<a$}  {:<b$}  {:<c$}  {:<d$}  {}\n",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                a = widths[0],
                b = widths[1],
                c = widths[2],
                d = widths[3]
            ));
        }
        out.push('\n');
    }
    out.push_str(
        "`default`: the value in a pipeline when the key is left out; `series`: the value \
         `warden backtest --series` uses unless `--param KEY=VALUE` sets it.\n",
    );
    out
}
