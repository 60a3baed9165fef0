//! The set of quarantined subjects, fed by the decisions topic and checked on every request.

use std::collections::HashMap;

use parking_lot::RwLock;
use warden_event::{Action, Decision, Subject, SubjectKind};

#[derive(Debug, Clone)]
struct Entry {
    action: Action,
    until: Option<i64>,
    decided_at: i64,
    decision_id: String,
}

/// Live decisions by subject. Applying a decision is idempotent, and an older decision never
/// overrides a newer one for the same subject (so replays and duplicates change nothing).
#[derive(Debug, Default)]
pub struct QuarantineSet {
    entries: RwLock<HashMap<Subject, Entry>>,
}

/// What the set says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Quarantined {
        subject: Subject,
        decision_id: String,
    },
}

impl QuarantineSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply one decision.
    pub fn apply(&self, d: &Decision) {
        let mut entries = self.entries.write();
        if let Some(existing) = entries.get(&d.subject)
            && existing.decided_at > d.decided_at
        {
            return;
        }
        entries.insert(
            d.subject.clone(),
            Entry {
                action: d.action,
                until: d.until,
                decided_at: d.decided_at,
                decision_id: d.id.clone(),
            },
        );
    }

    /// Check the subjects of a request at time `now_ns`.
    pub fn check(&self, now_ns: i64, subjects: &[(SubjectKind, &str)]) -> Verdict {
        let entries = self.entries.read();
        if entries.is_empty() {
            return Verdict::Pass;
        }
        for (kind, value) in subjects {
            let key = Subject {
                kind: *kind,
                value: (*value).to_string(),
            };
            if let Some(e) = entries.get(&key)
                && e.action == Action::Quarantine
                && e.until.is_none_or(|u| u > now_ns)
            {
                return Verdict::Quarantined {
                    subject: key,
                    decision_id: e.decision_id.clone(),
                };
            }
        }
        Verdict::Pass
    }

    /// Subjects quarantined at `now_ns`.
    pub fn active(&self, now_ns: i64) -> Vec<Subject> {
        self.entries
            .read()
            .iter()
            .filter(|(_, e)| e.action == Action::Quarantine && e.until.is_none_or(|u| u > now_ns))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Forget entries that no longer restrict anything (expired or released).
    pub fn prune(&self, now_ns: i64) {
        self.entries
            .write()
            .retain(|_, e| e.action != Action::Release && e.until.is_none_or(|u| u > now_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(action: Action, until: Option<i64>, at: i64) -> Decision {
        Decision {
            v: 1,
            id: format!("d{at}"),
            subject: Subject::identity("dev-1"),
            action,
            until,
            reason: String::new(),
            detector: "test".into(),
            score: 0.0,
            evidence: serde_json::Value::Null,
            decided_at: at,
        }
    }

    fn check(set: &QuarantineSet, now: i64) -> bool {
        matches!(
            set.check(now, &[(SubjectKind::Identity, "dev-1")]),
            Verdict::Quarantined { .. }
        )
    }

    #[test]
    fn quarantine_expires_and_release_wins_only_when_newer() {
        let set = QuarantineSet::new();
        set.apply(&decision(Action::Quarantine, Some(100), 10));
        assert!(check(&set, 50));
        assert!(!check(&set, 100), "expired at until");
        set.apply(&decision(Action::Release, None, 5));
        assert!(
            check(&set, 50),
            "an older release does not undo a newer quarantine"
        );
        set.apply(&decision(Action::Release, None, 20));
        assert!(!check(&set, 50));
        set.apply(&decision(Action::Quarantine, Some(100), 10));
        assert!(
            !check(&set, 50),
            "replaying the old quarantine changes nothing"
        );
    }

    #[test]
    fn other_subjects_pass_and_prune_forgets() {
        let set = QuarantineSet::new();
        set.apply(&decision(Action::Quarantine, Some(100), 10));
        assert_eq!(
            set.check(50, &[(SubjectKind::Identity, "dev-2")]),
            Verdict::Pass
        );
        assert_eq!(set.active(50).len(), 1);
        set.prune(200);
        assert!(set.active(50).is_empty());
    }
}
