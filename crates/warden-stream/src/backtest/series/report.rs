//! The report of a series backtest over one or many files, and its renderings: the scored
//! rows as CSV, the summary as JSON (stable, versioned), a text table or Markdown.

use serde::Serialize;
use serde_json::Value;
use warden_config::DetectorConfig;

use super::quality::{Quality, duration};
use super::read::Series;
use super::score::{DetectorRun, LabelScore, NabRun, PointScore, RangeScore, Ranking, RunSummary};

/// Version of the JSON report; raised when a field changes meaning or goes away.
pub const REPORT_VERSION: u32 = 1;

/// A detector as run: its type and every parameter it ran with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorUsed {
    #[serde(rename = "type")]
    pub kind: String,
    pub params: Value,
}

impl DetectorUsed {
    pub fn of(config: &DetectorConfig) -> Self {
        let mut params = serde_json::to_value(config).unwrap_or_default();
        if let Some(p) = params.as_object_mut() {
            for k in ["type", "name", "feature", "mode", "action", "weight"] {
                p.remove(k);
            }
        }
        Self {
            kind: config.type_name().to_string(),
            params,
        }
    }
}

/// One file of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    /// The file, as given (or relative to the folder given).
    pub file: String,
    /// Why the file could not be scored; the other fields are then empty.
    pub error: Option<String>,
    /// Whether the file has a label column (then `labels` is set per detector).
    pub labelled: bool,
    pub quality: Option<Quality>,
    /// The data-quality findings as sentences (empty when clean).
    pub warnings: Vec<String>,
    pub detectors: Vec<RunSummary>,
}

impl FileReport {
    pub fn scored(file: String, series: &Series, runs: &[DetectorRun]) -> Self {
        Self {
            file,
            error: None,
            labelled: series.labelled,
            warnings: series.quality.warnings(),
            quality: Some(series.quality.clone()),
            detectors: runs.iter().map(|r| RunSummary::of(series, r)).collect(),
        }
    }

    pub fn failed(file: String, error: String) -> Self {
        Self {
            file,
            error: Some(error),
            labelled: false,
            quality: None,
            warnings: Vec::new(),
            detectors: Vec::new(),
        }
    }
}

/// Per detector over every labelled file: counts summed, ratios of the sums.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pooled {
    pub detector: String,
    /// Files scored, and how many of them have labels (`labels` sums those).
    pub files: usize,
    pub labelled_files: usize,
    pub points: usize,
    pub flags: usize,
    pub labels: Option<LabelScore>,
}

/// A series backtest over one or many files (`--format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    pub detectors: Vec<DetectorUsed>,
    pub files: Vec<FileReport>,
    /// Per detector, over the files scored.
    pub pooled: Vec<Pooled>,
}

impl SeriesReport {
    pub fn new(detectors: &[DetectorConfig], files: Vec<FileReport>) -> Self {
        let pooled = detectors
            .iter()
            .map(|d| pool(d.type_name(), &files))
            .collect();
        Self {
            version: REPORT_VERSION,
            detectors: detectors.iter().map(DetectorUsed::of).collect(),
            files,
            pooled,
        }
    }

    pub fn failed_files(&self) -> usize {
        self.files.iter().filter(|f| f.error.is_some()).count()
    }

    /// A text table: per file and detector, then the data-quality findings.
    pub fn table(&self) -> String {
        self.render(false)
    }

    /// The same as Markdown (`summary.md` of a folder run).
    pub fn markdown(&self) -> String {
        self.render(true)
    }

    fn render(&self, md: bool) -> String {
        let head = [
            "file",
            "detector",
            "points",
            "flags",
            "max score",
            "p99",
            "P",
            "R",
            "F1",
            "ranges",
            "AP",
            "best F1 (at score)",
            "NAB flags / best",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        for f in &self.files {
            if let Some(e) = &f.error {
                rows.push(vec![f.file.clone(), format!("error: {e}")]);
                continue;
            }
            for d in &f.detectors {
                rows.push(row(&f.file, d));
            }
        }
        let mut out = String::new();
        if md {
            out.push_str("# Series backtest\n\n");
        }
        out.push_str(&table(md, &head, &rows));
        if self.files.len() > 1 || self.pooled.iter().any(|p| p.labels.is_some()) {
            out.push_str(if md { "\n## Pooled\n\n" } else { "\npooled\n" });
            let rows: Vec<Vec<String>> = self
                .pooled
                .iter()
                .map(|p| {
                    let l = p.labels.unwrap_or_default();
                    let mut r = vec![
                        format!("{} file(s), {} labelled", p.files, p.labelled_files),
                        p.detector.clone(),
                        p.points.to_string(),
                        p.flags.to_string(),
                        "".into(),
                        "".into(),
                    ];
                    r.extend(ratios(p.labels.map(|_| l.point), p.labels.map(|_| l.range)));
                    r.extend(ranked(p.labels));
                    r
                })
                .collect();
            out.push_str(&table(md, &head, &rows));
        }
        let mut notes = Vec::new();
        for f in &self.files {
            for w in &f.warnings {
                notes.push(format!("{}: {w}", f.file));
            }
            if let Some(s) = f.quality.as_ref().and_then(|q| q.sampling.median_s) {
                notes.push(format!("{}: median interval {}", f.file, duration(s)));
            }
        }
        if !notes.is_empty() {
            out.push_str(if md {
                "\n## Data quality\n\n"
            } else {
                "\ndata quality\n"
            });
            for n in notes {
                out.push_str(&format!("{}{n}\n", if md { "- " } else { "  " }));
            }
        }
        out
    }
}

pub(super) fn pool(detector: &str, files: &[FileReport]) -> Pooled {
    let runs: Vec<(&FileReport, &RunSummary)> = files
        .iter()
        .flat_map(|f| f.detectors.iter().map(move |d| (f, d)))
        .filter(|(_, d)| d.detector == detector)
        .collect();
    let labelled: Vec<LabelScore> = runs.iter().filter_map(|(_, d)| d.labels).collect();
    let mut ranking = Ranking::default();
    let mut nab = NabRun::default();
    for (_, d) in &runs {
        if let Some(r) = &d.ranking {
            ranking.extend(r);
        }
        if let Some(n) = &d.nab {
            nab.extend(n);
        }
    }
    let labels = (!labelled.is_empty()).then(|| {
        let sum = |f: fn(&LabelScore) -> usize| labelled.iter().map(f).sum::<usize>();
        let ranges = sum(|l| l.range.ranges);
        let detected = sum(|l| l.range.detected);
        LabelScore {
            point: PointScore::of(
                sum(|l| l.point.tp),
                sum(|l| l.point.fp),
                sum(|l| l.point.fn_),
            ),
            range: RangeScore {
                ranges,
                detected,
                recall: (ranges > 0).then(|| detected as f64 / ranges as f64),
                false_alarms: sum(|l| l.range.false_alarms),
            },
            average_precision: ranking.average_precision(),
            best: ranking.best(),
            nab: nab.report(),
        }
    });
    Pooled {
        detector: detector.to_string(),
        files: runs.len(),
        labelled_files: labelled.len(),
        points: runs.iter().map(|(_, d)| d.points).sum(),
        flags: runs.iter().map(|(_, d)| d.flags).sum(),
        labels,
    }
}

fn row(file: &str, d: &RunSummary) -> Vec<String> {
    let labels = d.labels;
    let mut r = vec![
        file.to_string(),
        d.detector.clone(),
        d.points.to_string(),
        d.flags.to_string(),
        num(d.max_score),
        num(d.p99_score),
    ];
    r.extend(ratios(labels.map(|l| l.point), labels.map(|l| l.range)));
    r.extend(ranked(labels));
    r
}

/// The AP and best-threshold cells.
fn ranked(labels: Option<LabelScore>) -> Vec<String> {
    let ap = labels
        .and_then(|l| l.average_precision)
        .map_or("-".into(), |v| format!("{v:.2}"));
    let best = labels.and_then(|l| l.best).map_or("-".into(), |b| {
        format!("{:.2} (≥ {})", b.f1, num(b.threshold))
    });
    let nab = labels.and_then(|l| l.nab).map_or("-".into(), |n| {
        format!("{:.1} / {:.1}", n.flags[0].score, n.best[0].score)
    });
    vec![ap, best, nab]
}

fn ratios(point: Option<PointScore>, range: Option<RangeScore>) -> Vec<String> {
    let r = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    match (point, range) {
        (Some(p), Some(g)) => vec![
            r(p.precision),
            r(p.recall),
            r(p.f1),
            format!("{}/{}", g.detected, g.ranges),
        ],
        _ => vec!["-".into(), "-".into(), "-".into(), "-".into()],
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:.3e}")
    } else {
        format!("{v:.2}")
    }
}

fn table(md: bool, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(widths.len()) {
            if r.len() > 2 {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        if md {
            format!("| {} |\n", cells.join(" | "))
        } else {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        }
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    if md {
        out.push_str(&format!("|{}\n", " --- |".repeat(head.len())));
    }
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// The scored rows as CSV, in time order: `timestamp,value,score,flag` for one detector
/// (`score_<type>,flag_<type>` per detector for several), then `label` if the file has one.
pub fn render_scored(series: &Series, runs: &[DetectorRun]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["timestamp".to_string(), "value".to_string()];
    for r in runs {
        if runs.len() == 1 {
            head.extend(["score".into(), "flag".into()]);
        } else {
            head.extend([
                format!("score_{}", r.detector),
                format!("flag_{}", r.detector),
            ]);
        }
    }
    if series.labelled {
        head.push("label".into());
    }
    // Writing to a Vec cannot fail.
    let _ = w.write_record(&head);
    for (i, p) in series.points.iter().enumerate() {
        let mut rec = vec![p.timestamp.clone(), p.value.to_string()];
        for r in runs {
            rec.push(format!("{:.6}", r.scores[i]));
            rec.push(u8::from(r.flags[i]).to_string());
        }
        if series.labelled {
            rec.push(u8::from(p.label.unwrap_or(false)).to_string());
        }
        let _ = w.write_record(&rec);
    }
    w.into_inner()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
