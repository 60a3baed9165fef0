//! The data-quality report of a series: what was skipped, and how its timestamps behave
//! (disorder, duplicates, sampling interval, gaps, irregular sampling).

use serde::Serialize;

use super::read::Point;

/// Line numbers kept per finding (the count is exact).
const KEEP_LINES: usize = 10;
/// An interval longer than this many median intervals is a gap.
pub const GAP_FACTOR: f64 = 3.0;
/// An interval further than this share from the median is irregular.
const IRREGULAR_TOLERANCE: f64 = 0.1;
/// Sampling is irregular when more than this share of intervals is.
const IRREGULAR_SHARE: f64 = 0.05;

/// Rows with a finding: how many, and the first lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Lines {
    pub count: usize,
    /// The first lines (at most 10), 1-based.
    pub lines: Vec<usize>,
}

impl Lines {
    pub fn push(&mut self, line: usize) {
        self.count += 1;
        if self.lines.len() < KEEP_LINES {
            self.lines.push(line);
        }
    }

    fn describe(&self, what: &str) -> Option<String> {
        (self.count > 0).then(|| {
            let more = if self.count > self.lines.len() {
                ", …"
            } else {
                ""
            };
            let lines: Vec<String> = self.lines.iter().map(usize::to_string).collect();
            format!("{} {what} (line {}{more})", self.count, lines.join(", "))
        })
    }
}

/// The longest gap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// Timestamps (as written) on either side.
    pub from: String,
    pub to: String,
    pub seconds: f64,
    /// Line of the row after the gap.
    pub line: usize,
}

/// Intervals between consecutive rows (in time order), seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sampling {
    /// Median interval between consecutive distinct timestamps; null with fewer than two.
    pub median_s: Option<f64>,
    pub min_s: Option<f64>,
    pub max_s: Option<f64>,
    /// Intervals longer than `gap_factor` × the median (the row after each gap).
    pub gaps: Lines,
    pub gap_factor: f64,
    pub longest_gap: Option<Gap>,
    /// Share of intervals (gaps excluded) more than 10 % away from the median.
    pub irregular_share: f64,
    /// Whether more than 5 % of intervals are irregular.
    pub irregular: bool,
}

/// What reading a series found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Quality {
    /// Whether the file has a header row.
    pub header: bool,
    /// Data rows read (blank lines and comments not counted).
    pub rows: usize,
    /// Rows scored (`rows` less the skipped ones).
    pub scored: usize,
    /// Rows skipped because their value is empty (or `NA`, `null`…).
    pub missing_values: Lines,
    /// Rows skipped because their value is NaN or ±infinity.
    pub non_finite_values: Lines,
    /// Rows whose timestamp is earlier than the row before them in the file. The series is
    /// sorted by time before scoring (stably: equal timestamps keep their file order).
    pub out_of_order: Lines,
    /// Rows whose timestamp equals another row's (every row after the first of each
    /// timestamp); all are kept and scored, in file order.
    pub duplicate_timestamps: Lines,
    pub sampling: Sampling,
    /// First and last timestamps (as written), in time order.
    pub first: Option<String>,
    pub last: Option<String>,
}

impl Quality {
    /// Sort `points` by time and record disorder, duplicates and the sampling.
    pub(super) fn timing(&mut self, points: &mut [Point]) {
        self.scored = points.len();
        for w in points.windows(2) {
            if w[1].at < w[0].at {
                self.out_of_order.push(w[1].line);
            }
        }
        if self.out_of_order.count > 0 {
            points.sort_by_key(|p| p.at);
        }
        let mut intervals = Vec::with_capacity(points.len());
        for w in points.windows(2) {
            if w[1].at == w[0].at {
                self.duplicate_timestamps.push(w[1].line);
            } else {
                intervals.push(((w[1].at - w[0].at) as f64 / 1e9, w[1].line));
            }
        }
        self.first = points.first().map(|p| p.timestamp.clone());
        self.last = points.last().map(|p| p.timestamp.clone());
        self.sampling = sampling(points, &intervals);
    }

    /// One sentence per finding, for people (empty when the series is clean).
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            self.missing_values.describe("missing value(s) skipped"),
            self.non_finite_values
                .describe("NaN/infinite value(s) skipped"),
            self.out_of_order
                .describe("row(s) out of time order (the series was sorted by time)"),
            self.duplicate_timestamps
                .describe("duplicate timestamp(s) (kept, scored in file order)"),
            self.sampling.gaps.describe(&format!(
                "gap(s) longer than {} × the median interval",
                self.sampling.gap_factor
            )),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(g) = &self.sampling.longest_gap {
            out.push(format!(
                "longest gap {} from {} to {} (line {})",
                duration(g.seconds),
                g.from,
                g.to,
                g.line
            ));
        }
        if self.sampling.irregular {
            out.push(format!(
                "irregular sampling: {:.0} % of intervals differ from the median ({}) by more than 10 %",
                self.sampling.irregular_share * 100.0,
                self.sampling.median_s.map_or("-".into(), duration)
            ));
        }
        out
    }
}

fn sampling(points: &[Point], intervals: &[(f64, usize)]) -> Sampling {
    let mut s = Sampling {
        gap_factor: GAP_FACTOR,
        ..Sampling::default()
    };
    if intervals.is_empty() {
        return s;
    }
    let mut sorted: Vec<f64> = intervals.iter().map(|i| i.0).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    s.median_s = Some(median);
    s.min_s = sorted.first().copied();
    s.max_s = sorted.last().copied();
    let mut regular = 0usize;
    let mut irregular = 0usize;
    let mut longest: Option<(f64, usize)> = None;
    for &(gap, line) in intervals {
        if gap > GAP_FACTOR * median {
            s.gaps.push(line);
            if longest.is_none_or(|(g, _)| gap > g) {
                longest = Some((gap, line));
            }
        } else if (gap - median).abs() > IRREGULAR_TOLERANCE * median {
            irregular += 1;
        } else {
            regular += 1;
        }
    }
    let judged = regular + irregular;
    if judged > 0 {
        s.irregular_share = irregular as f64 / judged as f64;
        s.irregular = s.irregular_share > IRREGULAR_SHARE;
    }
    s.longest_gap = longest.and_then(|(seconds, line)| {
        let at = points.iter().position(|p| p.line == line)?;
        Some(Gap {
            from: points.get(at.checked_sub(1)?)?.timestamp.clone(),
            to: points[at].timestamp.clone(),
            seconds,
            line,
        })
    });
    s
}

/// `90 s`, `15 min`, `2.5 h`, `3.0 d`.
pub fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{} s", trim(seconds))
    } else if seconds < 7200.0 {
        format!("{} min", trim(seconds / 60.0))
    } else if seconds < 172_800.0 {
        format!("{} h", trim(seconds / 3600.0))
    } else {
        format!("{} d", trim(seconds / 86_400.0))
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
