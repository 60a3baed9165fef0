//! Detector scores over time on subject pages, from the processor running beside the console
//! (`warden up`, `warden processor`): opening a subject's page asks the processor to watch it
//! (subjects a detector fired on are watched already), and the page charts each detector's
//! score per minute over the last hour.

use std::sync::Arc;

use warden_event::Subject;

use crate::render::{Line, chart};

/// One detector's scores of one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreLine {
    /// `window/detector`.
    pub label: String,
    /// `(window end, ns; score)`, oldest first, in the detector's own unit.
    pub points: Vec<(i64, f64)>,
}

/// Where detector scores come from (the processor of the same process).
pub trait ScoreSource: Send + Sync {
    /// Start watching `subject` (its scores are reported from its next complete window on).
    fn watch(&self, subject: &Subject);
    /// Its score series so far.
    fn series(&self, subject: &Subject) -> Vec<ScoreLine>;
}

/// Shared by the handlers.
pub(crate) type Scores = Option<Arc<dyn ScoreSource>>;

const MINUTE_NS: i64 = 60_000_000_000;
/// Detectors charted at most (those with the highest scores).
const MAX_LINES: usize = 8;

/// The subject page's section: a chart of the per-minute highest score of each detector over
/// the hour before `now`, or a sentence saying why there is none.
pub(crate) fn section(scores: &Scores, subject: &Subject, now: i64) -> String {
    let mut html = String::from("<h2>Detector scores, last hour</h2>");
    let Some(source) = scores else {
        html.push_str(
            r#"<p class="empty">Detector scores are charted by a console running beside the processor (<code>warden up</code>, <code>warden processor</code>).</p>"#,
        );
        return html;
    };
    source.watch(subject);
    let t0 = (now / MINUTE_NS - 59) * MINUTE_NS;
    let mut lines: Vec<Line> = source
        .series(subject)
        .into_iter()
        .filter_map(|s| {
            let mut values = vec![f64::NAN; 60];
            let mut any = false;
            for (t, v) in s.points {
                let Ok(i) = usize::try_from((t - t0) / MINUTE_NS) else {
                    continue;
                };
                if let Some(slot) = values.get_mut(i)
                    && v.is_finite()
                {
                    *slot = if slot.is_nan() { v } else { slot.max(v) };
                    any = true;
                }
            }
            any.then_some(Line {
                name: s.label,
                values,
            })
        })
        .collect();
    if lines.is_empty() {
        html.push_str(
            r#"<p class="empty">No detector scores of this subject yet: the processor reports them for subjects it fired on, and for subjects whose page was opened, from their next complete window on.</p>"#,
        );
        return html;
    }
    let peak = |l: &Line| {
        l.values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
    };
    lines.sort_by(|a, b| peak(b).total_cmp(&peak(a)));
    lines.truncate(MAX_LINES);
    html.push_str(&chart(
        "subject-scores",
        "Highest score per minute, by window/detector (each in its own unit: z-scores, robust z, sums, counts)",
        "",
        t0,
        MINUTE_NS,
        &lines,
    ));
    html
}
