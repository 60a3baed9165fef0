//! The set of live decisions (quarantines and throttles) by subject, fed by the decisions topic
//! and the admin API, checked on every request.
//!
//! Built for 100k+ subjects without stalling requests: one map per subject kind, each split
//! into [`SHARDS`] independently locked shards, so a lookup hashes the value once and takes
//! one uncontended read lock (no allocation), an update write-locks one shard for one insert,
//! and pruning walks the shards one at a time. An empty set is a single atomic load.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;
use serde::Serialize;
use warden_event::{Action, Decision, Subject, SubjectKind, ThrottleLimit};

/// Shards per subject kind.
pub const SHARDS: usize = 64;

#[derive(Debug, Clone)]
struct Entry {
    action: Action,
    until: Option<i64>,
    decided_at: i64,
    decision_id: String,
    detector: String,
    reason: String,
    limit: Option<ThrottleLimit>,
}

impl Entry {
    fn live(&self, now_ns: i64) -> bool {
        self.action != Action::Release && self.until.is_none_or(|u| u > now_ns)
    }
}

type Shard = RwLock<HashMap<Box<str>, Entry>>;

/// Live decisions by subject. Applying a decision is idempotent, and an older decision never
/// overrides a newer one for the same subject (so replays and duplicates change nothing).
#[derive(Debug)]
pub struct QuarantineSet {
    kinds: Vec<Box<[Shard]>>,
    hasher: std::hash::RandomState,
    entries: AtomicUsize,
}

/// What the set says about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Quarantined {
        subject: Subject,
        decision_id: String,
    },
    /// Under a `throttle` decision: the reduced rate applies to `subject`, the decision's
    /// own limit when it has one.
    Throttled {
        subject: Subject,
        limit: Option<ThrottleLimit>,
    },
}

/// One live decision (admin API).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveDecision {
    pub subject: Subject,
    pub action: Action,
    /// End, nanoseconds since the Unix epoch (`null`: until released).
    pub until: Option<i64>,
    pub decided_at: i64,
    pub decision_id: String,
    pub detector: String,
    pub reason: String,
    /// The rate a `throttle` holds the subject to, when the decision set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<ThrottleLimit>,
}

const KINDS: [SubjectKind; 5] = [
    SubjectKind::Identity,
    SubjectKind::Ip,
    SubjectKind::ApiKey,
    SubjectKind::Tenant,
    SubjectKind::Route,
];

fn kind_index(k: SubjectKind) -> usize {
    match k {
        SubjectKind::Identity => 0,
        SubjectKind::Ip => 1,
        SubjectKind::ApiKey => 2,
        SubjectKind::Tenant => 3,
        SubjectKind::Route => 4,
    }
}

impl Default for QuarantineSet {
    fn default() -> Self {
        Self::new()
    }
}

impl QuarantineSet {
    pub fn new() -> Self {
        Self {
            kinds: KINDS
                .iter()
                .map(|_| (0..SHARDS).map(|_| Shard::default()).collect())
                .collect(),
            hasher: std::hash::RandomState::new(),
            entries: AtomicUsize::new(0),
        }
    }

    fn shard(&self, kind: SubjectKind, value: &str) -> &Shard {
        let i = (self.hasher.hash_one(value) as usize) % SHARDS;
        &self.kinds[kind_index(kind)][i]
    }

    /// Entries held (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply one decision.
    pub fn apply(&self, d: &Decision) {
        let mut shard = self.shard(d.subject.kind, &d.subject.value).write();
        if let Some(existing) = shard.get(d.subject.value.as_str())
            && existing.decided_at > d.decided_at
        {
            return;
        }
        let entry = Entry {
            action: d.action,
            until: d.until,
            decided_at: d.decided_at,
            decision_id: d.id.clone(),
            detector: d.detector.clone(),
            reason: d.reason.clone(),
            limit: d.limit,
        };
        if shard
            .insert(d.subject.value.as_str().into(), entry)
            .is_none()
        {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Check the subjects of a request at time `now_ns`: a quarantine of any subject wins over
    /// a throttle of another.
    pub fn check(&self, now_ns: i64, subjects: &[(SubjectKind, &str)]) -> Verdict {
        if self.is_empty() {
            return Verdict::Pass;
        }
        let mut throttled = None;
        for (kind, value) in subjects {
            let shard = self.shard(*kind, value).read();
            let Some(e) = shard.get(*value) else {
                continue;
            };
            if !e.live(now_ns) {
                continue;
            }
            let subject = || Subject {
                kind: *kind,
                value: (*value).to_string(),
            };
            match e.action {
                Action::Quarantine => {
                    return Verdict::Quarantined {
                        subject: subject(),
                        decision_id: e.decision_id.clone(),
                    };
                }
                Action::Throttle if throttled.is_none() => throttled = Some((subject(), e.limit)),
                _ => {}
            }
        }
        match throttled {
            Some((subject, limit)) => Verdict::Throttled { subject, limit },
            None => Verdict::Pass,
        }
    }

    /// Subjects quarantined at `now_ns`.
    pub fn active(&self, now_ns: i64) -> Vec<Subject> {
        self.live(now_ns)
            .into_iter()
            .filter(|d| d.action == Action::Quarantine)
            .map(|d| d.subject)
            .collect()
    }

    /// Every live decision (quarantines and throttles) at `now_ns`, one shard lock at a time.
    pub fn live(&self, now_ns: i64) -> Vec<LiveDecision> {
        let mut out = Vec::new();
        for (k, shards) in KINDS.iter().zip(&self.kinds) {
            for shard in shards.iter() {
                out.extend(
                    shard
                        .read()
                        .iter()
                        .filter(|(_, e)| e.live(now_ns))
                        .map(|(v, e)| LiveDecision {
                            subject: Subject {
                                kind: *k,
                                value: v.to_string(),
                            },
                            action: e.action,
                            until: e.until,
                            decided_at: e.decided_at,
                            decision_id: e.decision_id.clone(),
                            detector: e.detector.clone(),
                            reason: e.reason.clone(),
                            limit: e.limit,
                        }),
                );
            }
        }
        out
    }

    /// Forget entries that no longer restrict anything (expired or released), one shard at a
    /// time so requests are never held up by more than one shard's worth of work.
    pub fn prune(&self, now_ns: i64) {
        for shards in &self.kinds {
            for shard in shards.iter() {
                let mut s = shard.write();
                let before = s.len();
                s.retain(|_, e| e.live(now_ns));
                self.entries.fetch_sub(before - s.len(), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(subject: Subject, action: Action, until: Option<i64>, at: i64) -> Decision {
        Decision {
            v: warden_event::SCHEMA_VERSION,
            id: format!("d{at}"),
            subject,
            action,
            until,
            reason: "test".into(),
            detector: "test".into(),
            score: 0.0,
            evidence: serde_json::Value::Null,
            decided_at: at,
            limit: None,
        }
    }

    fn dev1(action: Action, until: Option<i64>, at: i64) -> Decision {
        decision(Subject::identity("dev-1"), action, until, at)
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
        set.apply(&dev1(Action::Quarantine, Some(100), 10));
        assert!(check(&set, 50));
        assert!(!check(&set, 100), "expired at until");
        set.apply(&dev1(Action::Release, None, 5));
        assert!(
            check(&set, 50),
            "an older release does not undo a newer quarantine"
        );
        set.apply(&dev1(Action::Release, None, 20));
        assert!(!check(&set, 50));
        set.apply(&dev1(Action::Quarantine, Some(100), 10));
        assert!(
            !check(&set, 50),
            "replaying the old quarantine changes nothing"
        );
        assert_eq!(set.len(), 1, "one entry per subject");
    }

    #[test]
    fn other_subjects_pass_and_prune_forgets() {
        let set = QuarantineSet::new();
        set.apply(&dev1(Action::Quarantine, Some(100), 10));
        assert_eq!(
            set.check(50, &[(SubjectKind::Identity, "dev-2")]),
            Verdict::Pass
        );
        assert_eq!(
            set.check(50, &[(SubjectKind::Tenant, "dev-1")]),
            Verdict::Pass,
            "kinds are separate"
        );
        assert_eq!(set.active(50).len(), 1);
        set.prune(200);
        assert!(set.active(50).is_empty());
        assert!(set.is_empty());
    }

    #[test]
    fn quarantine_of_any_subject_wins_over_a_throttle() {
        let set = QuarantineSet::new();
        set.apply(&decision(
            Subject {
                kind: SubjectKind::Tenant,
                value: "acme".into(),
            },
            Action::Throttle,
            Some(100),
            1,
        ));
        let subjects = [
            (SubjectKind::Ip, "10.0.0.1"),
            (SubjectKind::Tenant, "acme"),
            (SubjectKind::ApiKey, "k1"),
        ];
        assert_eq!(
            set.check(50, &subjects),
            Verdict::Throttled {
                subject: Subject {
                    kind: SubjectKind::Tenant,
                    value: "acme".into()
                },
                limit: None,
            }
        );
        set.apply(&decision(
            Subject {
                kind: SubjectKind::ApiKey,
                value: "k1".into(),
            },
            Action::Quarantine,
            None,
            2,
        ));
        assert!(matches!(
            set.check(50, &subjects),
            Verdict::Quarantined { .. }
        ));
        assert_eq!(
            set.check(150, &subjects[..2]),
            Verdict::Pass,
            "throttle expired"
        );
        let live = set.live(50);
        assert_eq!(live.len(), 2);
        assert_eq!(set.active(50).len(), 1, "active lists quarantines only");
    }

    #[test]
    fn large_sets_stay_exact() {
        let set = QuarantineSet::new();
        for i in 0..20_000 {
            set.apply(&decision(
                Subject::identity(format!("dev-{i}")),
                Action::Quarantine,
                Some(if i % 2 == 0 { 100 } else { 1000 }),
                1,
            ));
        }
        assert_eq!(set.len(), 20_000);
        assert!(matches!(
            set.check(50, &[(SubjectKind::Identity, "dev-19999")]),
            Verdict::Quarantined { .. }
        ));
        assert_eq!(
            set.check(50, &[(SubjectKind::Identity, "dev-20000")]),
            Verdict::Pass
        );
        set.prune(500);
        assert_eq!(set.len(), 10_000);
        assert_eq!(set.active(500).len(), 10_000);
    }
}
