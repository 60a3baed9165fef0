//! Decision policy: from detector firings to quarantine decisions and alerts.

use std::collections::{HashMap, HashSet, VecDeque};

use warden_config::{DecisionConfig, Mode};
use warden_event::{Action, Decision, Subject};

/// Repeated alerts for the same subject and detector are suppressed for this long.
const ALERT_INTERVAL_NS: i64 = 60 * 1_000_000_000;
const MINUTE_NS: i64 = 60 * 1_000_000_000;

/// What the policy decided about one firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Quarantine the subject (and alert).
    Quarantine,
    /// Alert only; `reason` says why there is no quarantine.
    AlertOnly(&'static str),
    /// Nothing new to say (already quarantined, or alerted recently).
    Suppress,
}

#[derive(Debug)]
pub struct Policy {
    config: DecisionConfig,
    allowlist: HashSet<String>,
    /// Live quarantines by subject (until, decided_at).
    active: HashMap<Subject, (i64, i64)>,
    /// Manual releases by subject (decided_at).
    released: HashMap<Subject, i64>,
    last_alert: HashMap<(Subject, String), i64>,
    recent_quarantines: VecDeque<i64>,
}

impl Policy {
    pub fn new(config: DecisionConfig) -> Self {
        Self {
            allowlist: config.allowlist.iter().cloned().collect(),
            config,
            active: HashMap::new(),
            released: HashMap::new(),
            last_alert: HashMap::new(),
            recent_quarantines: VecDeque::new(),
        }
    }

    pub fn ttl_ns(&self) -> i64 {
        self.config.quarantine_ttl_s as i64 * 1_000_000_000
    }

    /// Learn a decision read from the decisions topic (ours or anyone's).
    pub fn apply(&mut self, d: &Decision) {
        match d.action {
            Action::Quarantine => {
                let newer = self
                    .released
                    .get(&d.subject)
                    .is_none_or(|r| *r < d.decided_at);
                if newer {
                    self.active.insert(
                        d.subject.clone(),
                        (d.until.unwrap_or(i64::MAX), d.decided_at),
                    );
                }
            }
            Action::Release => {
                if self
                    .active
                    .get(&d.subject)
                    .is_none_or(|(_, at)| *at <= d.decided_at)
                {
                    self.active.remove(&d.subject);
                    self.released.insert(d.subject.clone(), d.decided_at);
                }
            }
            Action::Throttle => {}
        }
    }

    /// Decide on a firing of `detector` for `subject` at `now`, in `mode`.
    pub fn decide(
        &mut self,
        subject: &Subject,
        detector: &str,
        mode: Mode,
        enforceable: bool,
        now: i64,
    ) -> Verdict {
        if self
            .active
            .get(subject)
            .is_some_and(|(until, _)| *until > now)
        {
            return Verdict::Suppress;
        }
        let verdict = if mode == Mode::Shadow {
            Verdict::AlertOnly("shadow mode")
        } else if !enforceable {
            Verdict::AlertOnly("subject kind cannot be quarantined")
        } else if self.allowlist.contains(&subject.value) {
            Verdict::AlertOnly("allowlisted")
        } else if self
            .released
            .get(subject)
            .is_some_and(|at| now - at < self.config.cooldown_s as i64 * 1_000_000_000)
        {
            Verdict::AlertOnly("released recently (cooldown)")
        } else {
            while self
                .recent_quarantines
                .front()
                .is_some_and(|t| now - t >= MINUTE_NS)
            {
                self.recent_quarantines.pop_front();
            }
            if self.recent_quarantines.len() >= self.config.max_quarantines_per_minute as usize {
                Verdict::AlertOnly("quarantine rate cap reached")
            } else {
                Verdict::Quarantine
            }
        };
        let alert_key = (subject.clone(), detector.to_string());
        if verdict != Verdict::Quarantine
            && self
                .last_alert
                .get(&alert_key)
                .is_some_and(|t| now - t < ALERT_INTERVAL_NS)
        {
            return Verdict::Suppress;
        }
        self.last_alert.insert(alert_key, now);
        if verdict == Verdict::Quarantine {
            self.recent_quarantines.push_back(now);
            self.active
                .insert(subject.clone(), (now + self.ttl_ns(), now));
        }
        verdict
    }

    /// Forget expired state (bounded memory).
    pub fn prune(&mut self, now: i64) {
        self.active.retain(|_, (until, _)| *until > now);
        let cooldown = self.config.cooldown_s as i64 * 1_000_000_000;
        self.released.retain(|_, at| now - *at < cooldown);
        self.last_alert.retain(|_, t| now - *t < ALERT_INTERVAL_NS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u32) -> Policy {
        Policy::new(DecisionConfig {
            quarantine_ttl_s: 60,
            cooldown_s: 30,
            allowlist: vec!["vip".into()],
            max_quarantines_per_minute: max,
        })
    }
    const S: i64 = 1_000_000_000;

    #[test]
    fn quarantines_once_until_expiry() {
        let mut p = policy(10);
        let s = Subject::identity("d1");
        assert_eq!(
            p.decide(&s, "det", Mode::Enforce, true, 0),
            Verdict::Quarantine
        );
        assert_eq!(
            p.decide(&s, "det", Mode::Enforce, true, S),
            Verdict::Suppress
        );
        assert_eq!(
            p.decide(&s, "det", Mode::Enforce, true, 61 * S),
            Verdict::Quarantine
        );
    }

    #[test]
    fn shadow_allowlist_cooldown_and_cap_alert_only() {
        let mut p = policy(1);
        assert_eq!(
            p.decide(&Subject::identity("a"), "det", Mode::Shadow, true, 0),
            Verdict::AlertOnly("shadow mode")
        );
        assert_eq!(
            p.decide(&Subject::identity("a"), "det", Mode::Shadow, true, S),
            Verdict::Suppress,
            "repeated alert suppressed"
        );
        assert_eq!(
            p.decide(&Subject::identity("vip"), "det", Mode::Enforce, true, 0),
            Verdict::AlertOnly("allowlisted")
        );
        let released = Decision {
            v: 1,
            id: "r".into(),
            subject: Subject::identity("b"),
            action: Action::Release,
            until: None,
            reason: String::new(),
            detector: "dashboard".into(),
            score: 0.0,
            evidence: serde_json::Value::Null,
            decided_at: 0,
        };
        p.apply(&released);
        assert_eq!(
            p.decide(&Subject::identity("b"), "det", Mode::Enforce, true, 10 * S),
            Verdict::AlertOnly("released recently (cooldown)")
        );
        assert_eq!(
            p.decide(&Subject::identity("c"), "det", Mode::Enforce, true, 0),
            Verdict::Quarantine
        );
        assert_eq!(
            p.decide(&Subject::identity("d"), "det", Mode::Enforce, true, S),
            Verdict::AlertOnly("quarantine rate cap reached")
        );
    }
}
