//! The metrics a running stack exports, checked against docs/METRICS.md and the Grafana
//! dashboards in dashboards/.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};

/// The repository's root folder.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Metric families in a Prometheus text scrape: name from `# TYPE` → type.
pub fn families(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// Sample names in a scrape (`name{…} v` or `name v`).
pub fn samples(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The metric table of docs/METRICS.md: name → (type, has samples only with TLS listeners,
/// alert sinks or ML detectors, which the end-to-end stack does not configure).
pub fn documented() -> anyhow::Result<BTreeMap<String, (String, bool)>> {
    let text = std::fs::read_to_string(root().join("docs/METRICS.md"))?;
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells.get(1).context("name")?.trim_matches('`').to_string();
        let kind = cells.get(2).context("type")?.to_string();
        let tls_only = line.contains("(TLS listeners only)")
            || line.contains("(with alert sinks only)")
            || line.contains("(ML detectors only)");
        out.insert(name, (kind, tls_only));
    }
    Ok(out)
}

/// Every `warden_*` name the dashboards query.
pub fn dashboard_queries() -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("dashboards"))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let board: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{}", path.display()))?;
        let panels = board["panels"].as_array().context("panels")?;
        ensure!(!panels.is_empty(), "{}: no panels", path.display());
        for target in panels
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        {
            let expr = target["expr"].as_str().context("expr")?;
            for (i, _) in expr.match_indices("warden_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
    }
    ensure!(!out.is_empty(), "no dashboard queries");
    Ok(out)
}

/// Check a scrape of a gateway + processor (without TLS listeners) that has served requests
/// and quarantined a device: every documented metric is exported with its documented type,
/// every exported family is documented, and every metric a dashboard queries has samples.
pub fn check_scrape(scrape: &str) -> anyhow::Result<()> {
    let families = families(scrape);
    let samples = samples(scrape);
    let docs = documented()?;
    for (name, (kind, tls_only)) in &docs {
        match families.get(name) {
            Some(k) => ensure!(k == kind, "{name}: exported as {k}, documented as {kind}"),
            None => ensure!(*tls_only, "{name} is documented but not exported"),
        }
    }
    for name in families.keys() {
        ensure!(
            docs.contains_key(name),
            "{name} is exported but not in docs/METRICS.md"
        );
    }
    for q in dashboard_queries()? {
        let documented_tls = docs
            .get(q.trim_end_matches("_bucket"))
            .is_some_and(|(_, tls)| *tls);
        ensure!(
            samples.contains(&q) || documented_tls,
            "a dashboard queries {q}, which has no samples"
        );
    }
    Ok(())
}
