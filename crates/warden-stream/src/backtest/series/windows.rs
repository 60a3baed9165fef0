//! Labels kept apart from the data, as anomaly windows per file (the Numenta Anomaly
//! Benchmark's `labels/combined_windows.json`): `{"realKnownCause/nyc_taxi.csv":
//! [["2014-10-30 15:30:00.000000", "2014-11-03 22:30:00.000000"], …], …}`.

use std::collections::BTreeMap;

use super::SeriesError;
use super::read::{Series, timestamps};

/// Anomaly windows per file, nanoseconds since the Unix epoch, both ends included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows(BTreeMap<String, Vec<(i64, i64)>>);

impl Windows {
    /// Parse a windows file; `name` names it in errors.
    pub fn parse(name: &str, text: &str) -> Result<Self, SeriesError> {
        let bad = |reason: String| SeriesError::File {
            file: name.to_string(),
            reason,
        };
        let raw: BTreeMap<String, Vec<Vec<String>>> = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "{e} (expected {{\"file.csv\": [[\"start\", \"end\"], …]}})"
            ))
        })?;
        let mut out = BTreeMap::new();
        for (file, windows) in raw {
            let mut spans = Vec::with_capacity(windows.len());
            for (i, w) in windows.iter().enumerate() {
                let [start, end] = w.as_slice() else {
                    return Err(bad(format!(
                        "{file}: window {i} has {} timestamps, expected 2",
                        w.len()
                    )));
                };
                let ts = timestamps(&[start.as_str(), end.as_str()])
                    .map_err(|(_, reason)| bad(format!("{file}: window {i}: {reason}")))?;
                if ts[1] < ts[0] {
                    return Err(bad(format!("{file}: window {i} ends before it starts")));
                }
                spans.push((ts[0], ts[1]));
            }
            out.insert(file, spans);
        }
        Ok(Self(out))
    }

    /// The windows of `file`: its own key, else the key it ends with (`data/a/b.csv` →
    /// `a/b.csv`), else the only key with the same file name.
    pub fn of(&self, file: &str) -> Option<&[(i64, i64)]> {
        let file = file.replace('\\', "/");
        if let Some(w) = self.0.get(&file) {
            return Some(w);
        }
        let suffix = self
            .0
            .iter()
            .filter(|(k, _)| file.ends_with(&format!("/{k}")))
            .max_by_key(|(k, _)| k.len());
        if let Some((_, w)) = suffix {
            return Some(w);
        }
        let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        let mut same = self.0.iter().filter(|(k, _)| base(k) == base(&file));
        match (same.next(), same.next()) {
            (Some((_, w)), None) => Some(w),
            _ => None,
        }
    }

    /// Label `series` from its windows (replacing a label column); false when the windows
    /// file does not name it (the series keeps its own labels, if any).
    pub fn apply(&self, series: &mut Series) -> bool {
        let Some(windows) = self.of(&series.name) else {
            return false;
        };
        for p in &mut series.points {
            p.label = Some(windows.iter().any(|(s, e)| (*s..=*e).contains(&p.at)));
        }
        series.labelled = true;
        true
    }
}
