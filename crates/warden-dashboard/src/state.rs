//! What the dashboard knows: the most recent alerts and the latest decision per subject.

use std::collections::{HashMap, VecDeque};

use parking_lot::RwLock;
use serde::Serialize;
use warden_event::{Action, Alert, Decision, Subject};

/// The dashboard's view of the alerts and decisions topics, fed by the followers and read by
/// the API handlers. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct DashboardState {
    max_alerts: usize,
    /// Newest first (by `ts`; arrival order among equal timestamps).
    alerts: RwLock<VecDeque<Alert>>,
    /// Latest decision per subject, releases and expired ones included, so that an older
    /// decision replayed later never overrides a newer one.
    decisions: RwLock<HashMap<Subject, Decision>>,
    /// New alerts and decisions, pushed to the console's live stream (`/api/stream`).
    live: tokio::sync::broadcast::Sender<LiveUpdate>,
    /// Traffic over time, from the events topic (bounded: see [`crate::traffic`]).
    traffic: crate::traffic::Traffic,
}

/// One change pushed to the console: what happened, about whom, and when (nanoseconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveUpdate {
    /// `alert` or `decision`.
    pub kind: &'static str,
    pub id: String,
    pub subject: Subject,
    /// The alert's detector, or the decision's.
    pub detector: String,
    /// For decisions: `quarantine`, `throttle` or `release`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    pub ts: i64,
}

/// Updates buffered per console before a slow one is told to resynchronise.
const LIVE_BUFFER: usize = 1024;

/// An active quarantine (or throttle), as listed by `GET /api/quarantine`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ActiveDecision {
    pub subject: Subject,
    pub action: Action,
    /// End of enforcement, nanoseconds since the Unix epoch (`null`: until released).
    pub until: Option<i64>,
    pub reason: String,
    pub detector: String,
    pub score: f64,
    pub decided_at: i64,
    pub decision_id: String,
    /// The rate a throttle holds the subject to, when the decision set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<warden_event::ThrottleLimit>,
}

impl From<&Decision> for ActiveDecision {
    fn from(d: &Decision) -> Self {
        Self {
            subject: d.subject.clone(),
            action: d.action,
            until: d.until,
            reason: d.reason.clone(),
            detector: d.detector.clone(),
            score: d.score,
            decided_at: d.decided_at,
            decision_id: d.id.clone(),
            limit: d.limit,
        }
    }
}

impl DashboardState {
    /// An empty state keeping at most `max_alerts` alerts.
    pub fn new(max_alerts: usize) -> Self {
        Self {
            max_alerts,
            alerts: RwLock::new(VecDeque::new()),
            decisions: RwLock::new(HashMap::new()),
            live: tokio::sync::broadcast::channel(LIVE_BUFFER).0,
            traffic: crate::traffic::Traffic::new(crate::traffic::MAX_SUBJECTS),
        }
    }

    /// Traffic over time (fleet and subjects).
    pub fn traffic(&self) -> &crate::traffic::Traffic {
        &self.traffic
    }

    /// Record one request event in the traffic store.
    pub fn apply_event(&self, event: &warden_event::RequestEvent) {
        self.traffic.record(event, warden_event::now_ns());
    }

    /// The alert `id`, if it is among those held.
    pub fn alert(&self, id: &str) -> Option<Alert> {
        self.alerts.read().iter().find(|a| a.id == id).cloned()
    }

    /// Alerts sharing the decision `decision_id` (the detectors that agreed on it), newest
    /// first, at most `limit`.
    pub fn alerts_of_decision(&self, decision_id: &str, limit: usize) -> Vec<Alert> {
        self.alerts
            .read()
            .iter()
            .filter(|a| a.decision_id.as_deref() == Some(decision_id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// A page of alerts, newest first: `limit` of them after skipping `offset`, optionally
    /// only those about `subject`; and how many match in all.
    pub fn alerts_page(
        &self,
        offset: usize,
        limit: usize,
        subject: Option<&Subject>,
    ) -> (Vec<Alert>, usize) {
        let alerts = self.alerts.read();
        let mut total = 0;
        let mut page = Vec::with_capacity(limit.min(1024));
        for a in alerts
            .iter()
            .filter(|a| subject.is_none_or(|s| a.subject == *s))
        {
            if total >= offset && page.len() < limit {
                page.push(a.clone());
            }
            total += 1;
        }
        (page, total)
    }

    /// Subjects of held alerts whose value contains `needle` (ASCII case-insensitive), most
    /// recently alerted first, at most `limit`, with their number of alerts.
    pub fn alerted_subjects(&self, needle: &str, limit: usize) -> Vec<(Subject, usize)> {
        let needle = needle.to_ascii_lowercase();
        let mut found: Vec<(Subject, usize)> = Vec::new();
        let mut index: HashMap<&Subject, usize> = HashMap::new();
        let alerts = self.alerts.read();
        for a in alerts.iter() {
            if let Some(&i) = index.get(&a.subject) {
                found[i].1 += 1;
            } else if a.subject.value.to_ascii_lowercase().contains(&needle) {
                index.insert(&a.subject, found.len());
                found.push((a.subject.clone(), 1));
            }
        }
        found.truncate(limit);
        found
    }

    /// Subscribe to new alerts and decisions.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LiveUpdate> {
        self.live.subscribe()
    }

    /// Record an alert, dropping the oldest beyond `max_alerts`. An alert already held (same
    /// id: a redelivery, or a console action's audit record applied when it was made and read
    /// back from the bus) is not recorded twice.
    pub fn apply_alert(&self, alert: Alert) {
        if self.max_alerts == 0 {
            return;
        }
        let mut alerts = self.alerts.write();
        let at = alerts.partition_point(|a| a.ts > alert.ts);
        if at >= self.max_alerts
            || alerts
                .range(at..)
                .take_while(|a| a.ts == alert.ts)
                .any(|a| a.id == alert.id)
        {
            return;
        }
        let update = LiveUpdate {
            kind: "alert",
            id: alert.id.clone(),
            subject: alert.subject.clone(),
            detector: alert.detector.clone(),
            action: alert.action,
            ts: alert.ts,
        };
        alerts.insert(at, alert);
        alerts.truncate(self.max_alerts);
        drop(alerts);
        // No console listening is not an error.
        let _ = self.live.send(update);
    }

    /// Apply a decision: the latest `decided_at` per subject wins (ties: the later one
    /// applied), so replays and duplicates change nothing.
    pub fn apply_decision(&self, decision: Decision) {
        let mut decisions = self.decisions.write();
        if let Some(existing) = decisions.get(&decision.subject)
            && existing.decided_at > decision.decided_at
        {
            return;
        }
        let update = LiveUpdate {
            kind: "decision",
            id: decision.id.clone(),
            subject: decision.subject.clone(),
            detector: decision.detector.clone(),
            action: Some(decision.action),
            ts: decision.decided_at,
        };
        decisions.insert(decision.subject.clone(), decision);
        drop(decisions);
        let _ = self.live.send(update);
    }

    /// Up to `limit` alerts, newest first, optionally only those about `subject`.
    pub fn alerts(&self, limit: usize, subject: Option<&Subject>) -> Vec<Alert> {
        self.alerts
            .read()
            .iter()
            .filter(|a| subject.is_none_or(|s| a.subject == *s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Decisions restricting their subject at `now_ns`, most recent first.
    pub fn active(&self, now_ns: i64) -> Vec<ActiveDecision> {
        let mut active: Vec<ActiveDecision> = self
            .decisions
            .read()
            .values()
            .filter(|d| d.is_active(now_ns))
            .map(ActiveDecision::from)
            .collect();
        active.sort_by(|a, b| {
            b.decided_at
                .cmp(&a.decided_at)
                .then_with(|| a.subject.cmp(&b.subject))
        });
        active
    }

    /// The latest decision known for `subject` (active or not).
    pub fn decision(&self, subject: &Subject) -> Option<Decision> {
        self.decisions.read().get(subject).cloned()
    }

    /// Forget decisions that no longer restrict anything and were decided more than
    /// `keep_ns` before `now_ns` (kept that long to shadow late replays of older ones).
    pub fn prune(&self, now_ns: i64, keep_ns: i64) {
        self.decisions
            .write()
            .retain(|_, d| d.is_active(now_ns) || d.decided_at > now_ns.saturating_sub(keep_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(action: Action, until: Option<i64>, at: i64) -> Decision {
        Decision {
            v: warden_event::SCHEMA_VERSION,
            id: format!("d{at}"),
            subject: Subject::identity("dev-1"),
            action,
            until,
            reason: String::new(),
            detector: "test".into(),
            score: 0.0,
            evidence: serde_json::Value::Null,
            decided_at: at,
            limit: None,
        }
    }

    #[test]
    fn latest_decision_wins_and_expiry_ends_it() {
        let s = DashboardState::new(10);
        s.apply_decision(decision(Action::Quarantine, Some(100), 10));
        assert_eq!(s.active(50).len(), 1);
        assert!(s.active(100).is_empty(), "expired at until");
        s.apply_decision(decision(Action::Release, None, 5));
        assert_eq!(s.active(50).len(), 1, "an older release changes nothing");
        s.apply_decision(decision(Action::Release, None, 20));
        assert!(s.active(50).is_empty());
        s.apply_decision(decision(Action::Quarantine, Some(100), 10));
        assert!(
            s.active(50).is_empty(),
            "a replayed older quarantine changes nothing"
        );
        s.prune(1_000, 100);
        assert!(s.decision(&Subject::identity("dev-1")).is_none());
    }

    #[test]
    fn new_alerts_and_decisions_are_pushed_but_replays_are_not() {
        let s = DashboardState::new(10);
        let mut rx = s.subscribe();
        s.apply_decision(decision(Action::Quarantine, Some(100), 10));
        s.apply_decision(decision(Action::Quarantine, Some(100), 5));
        let first = rx.try_recv().expect("pushed");
        assert_eq!((first.kind, first.ts), ("decision", 10));
        assert!(rx.try_recv().is_err(), "an older decision is not news");
    }

    #[test]
    fn an_alert_seen_twice_is_held_and_pushed_once() {
        let s = DashboardState::new(10);
        let mut rx = s.subscribe();
        let alert = |id: &str, ts: i64| Alert {
            v: warden_event::SCHEMA_VERSION,
            id: id.into(),
            ts,
            pipeline: "p".into(),
            detector: "console".into(),
            subject: Subject::identity("dev-1"),
            score: 0.0,
            severity: warden_event::Severity::Low,
            message: String::new(),
            evidence: warden_event::Evidence::default(),
            action: None,
            decision_id: None,
        };
        s.apply_alert(alert("a", 10));
        s.apply_alert(alert("b", 10));
        s.apply_alert(alert("a", 10));
        s.apply_alert(alert("c", 5));
        let ids: Vec<String> = s.alerts(10, None).into_iter().map(|a| a.id).collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids.iter().filter(|i| *i == "a").count(), 1);
        let pushed = std::iter::from_fn(|| rx.try_recv().ok()).count();
        assert_eq!(pushed, 3);
    }

    #[test]
    fn throttles_are_listed_with_the_rate_they_hold_to() {
        let s = DashboardState::new(10);
        let mut d = decision(Action::Throttle, Some(100), 10);
        d.limit = Some(warden_event::ThrottleLimit {
            per_s: 0.2,
            burst: 5,
        });
        s.apply_decision(d);
        let listed = serde_json::to_value(s.active(50)).expect("json");
        assert_eq!(listed[0]["action"], "throttle");
        assert_eq!(
            listed[0]["limit"],
            serde_json::json!({"per_s": 0.2, "burst": 5})
        );
    }
}
