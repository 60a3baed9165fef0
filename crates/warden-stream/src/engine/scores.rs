//! Detector scores over time for the subjects an operator looks at: every subject a detector
//! fired on, and every subject whose console page was opened, is *watched* for an hour; on
//! each complete sample of a watched key, each detector of the window also reports the score
//! the sample gets ([`warden_detect::Detector::score`], before it learns from it) into this
//! board, which the console charts.
//!
//! Bounded whatever the fleet does: at most [`MAX_SUBJECTS`] subjects (the least recently
//! updated dropped first) and [`MAX_POINTS`] points per detector and subject. Unwatched keys
//! cost one empty-set check per window and sample round.

use std::collections::{BTreeMap, HashMap, VecDeque};

use parking_lot::Mutex;
use warden_event::SubjectKind;

/// Subjects with score series kept at most.
pub const MAX_SUBJECTS: usize = 1_000;
/// Points kept per detector and subject (an hour of 10-second slides).
pub const MAX_POINTS: usize = 360;
/// How long a subject stays watched after it was fired on or looked at, nanoseconds.
pub(crate) const WATCH_NS: i64 = 3_600 * 1_000_000_000;
/// Watch requests waiting for the engine at most (the console cannot queue more).
const MAX_REQUESTS: usize = 1_000;

/// One detector's scores of one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSeries {
    /// The window the detector runs on.
    pub window: String,
    /// The detector's name in the pipeline.
    pub detector: String,
    /// `(window end, ns; score)` in the order recorded (complete samples oldest first, firings
    /// as they happen); scores in the detector's own unit.
    pub points: Vec<(i64, f64)>,
}

#[derive(Default)]
struct Track {
    /// Event time of the newest point.
    last: i64,
    series: BTreeMap<(String, String), VecDeque<(i64, f32)>>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<(SubjectKind, String)>,
    tracks: HashMap<(SubjectKind, String), Track>,
}

/// Shared by the engine (writer) and the console (reader).
#[derive(Default)]
pub struct ScoreBoard {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for ScoreBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreBoard")
            .field("subjects", &self.len())
            .finish()
    }
}

impl ScoreBoard {
    /// Ask the engine to watch a subject (the console opened its page). Ignored when the
    /// engine has not taken the requests made before (at most [`MAX_REQUESTS`] wait).
    pub fn watch(&self, kind: SubjectKind, value: &str) {
        let mut inner = self.inner.lock();
        if inner.requests.len() < MAX_REQUESTS
            && !inner.requests.iter().any(|(k, v)| *k == kind && v == value)
        {
            inner.requests.push((kind, value.to_string()));
        }
    }

    /// The score series of a subject, by window and detector.
    pub fn series(&self, kind: SubjectKind, value: &str) -> Vec<ScoreSeries> {
        let inner = self.inner.lock();
        let Some(track) = inner.tracks.get(&(kind, value.to_string())) else {
            return Vec::new();
        };
        track
            .series
            .iter()
            .map(|((window, detector), points)| ScoreSeries {
                window: window.clone(),
                detector: detector.clone(),
                points: points.iter().map(|(t, s)| (*t, f64::from(*s))).collect(),
            })
            .collect()
    }

    /// Subjects with series.
    pub fn len(&self) -> usize {
        self.inner.lock().tracks.len()
    }

    /// Whether no subject has series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn take_requests(&self) -> Vec<(SubjectKind, String)> {
        std::mem::take(&mut self.inner.lock().requests)
    }

    /// Add the points of one sample round.
    pub(crate) fn record(&self, points: &[Scored<'_>]) {
        if points.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        for p in points {
            let key = (p.kind, p.subject.to_string());
            if !inner.tracks.contains_key(&key)
                && inner.tracks.len() >= MAX_SUBJECTS
                && let Some(oldest) = inner
                    .tracks
                    .iter()
                    .min_by_key(|(_, t)| t.last)
                    .map(|(k, _)| k.clone())
            {
                inner.tracks.remove(&oldest);
            }
            let track = inner.tracks.entry(key).or_default();
            track.last = track.last.max(p.at);
            let series = track
                .series
                .entry((p.window.to_string(), p.detector.to_string()))
                .or_default();
            if series.len() >= MAX_POINTS {
                series.pop_front();
            }
            #[allow(clippy::cast_possible_truncation)]
            series.push_back((p.at, p.score as f32));
        }
    }
}

/// One score, as the engine hands it over.
pub(crate) struct Scored<'a> {
    pub(crate) kind: SubjectKind,
    pub(crate) subject: &'a str,
    pub(crate) window: &'a str,
    pub(crate) detector: &'a str,
    pub(crate) at: i64,
    pub(crate) score: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point<'a>(subject: &'a str, detector: &'a str, at: i64) -> Scored<'a> {
        Scored {
            kind: SubjectKind::Identity,
            subject,
            window: "identity_10s",
            detector,
            at,
            score: at as f64,
        }
    }

    #[test]
    fn bounded_in_subjects_and_points() {
        let board = ScoreBoard::default();
        let names: Vec<String> = (0..MAX_SUBJECTS + 10).map(|i| format!("d{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            board.record(&[point(n, "burst", i as i64)]);
        }
        assert_eq!(board.len(), MAX_SUBJECTS);
        assert!(
            board.series(SubjectKind::Identity, "d0").is_empty(),
            "oldest dropped"
        );
        let last = &names[names.len() - 1];
        for at in 0..(MAX_POINTS as i64 + 50) {
            board.record(&[point(last, "burst", 10_000 + at), point(last, "mad", at)]);
        }
        let series = board.series(SubjectKind::Identity, last);
        assert_eq!(series.len(), 2);
        assert!(series.iter().all(|s| s.points.len() == MAX_POINTS));
        let burst = series
            .iter()
            .find(|s| s.detector == "burst")
            .expect("burst");
        assert_eq!(
            burst.points.last().map(|p| p.0),
            Some(10_000 + MAX_POINTS as i64 + 49)
        );
        assert!(
            board.series(SubjectKind::Ip, last).is_empty(),
            "kinds apart"
        );
    }

    #[test]
    fn watch_requests_are_deduplicated_and_bounded() {
        let board = ScoreBoard::default();
        for _ in 0..3 {
            board.watch(SubjectKind::Identity, "d1");
        }
        for i in 0..(2 * MAX_REQUESTS) {
            board.watch(SubjectKind::Ip, &format!("10.0.0.{i}"));
        }
        let taken = board.take_requests();
        assert_eq!(taken.len(), MAX_REQUESTS);
        assert_eq!(taken[0], (SubjectKind::Identity, "d1".to_string()));
        assert!(board.take_requests().is_empty());
    }
}
