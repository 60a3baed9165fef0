//! Decision policy: from detector firings to quarantines, throttles and alerts.
//!
//! Per subject, firings are kept as evidence for `evidence_window_s` and combined (`any`,
//! `weighted`, `k_of_n`, plus `min_firings`); the strongest action asked for by the detectors
//! that fired decides between a quarantine and a throttle. Repeat offenders get escalating
//! quarantine TTLs. Shadow mode, subjects that cannot be enforced on, the allowlist, the
//! cooldown after a manual release and the per-minute quarantine cap turn an enforcement into
//! an alert that says why.

use std::collections::{HashMap, HashSet, VecDeque};

use warden_config::{Combine, DecisionConfig, DetectorAction, Mode};
use warden_event::{Action, Decision, Subject};

const S: i64 = 1_000_000_000;
const MINUTE_NS: i64 = 60 * S;

/// What the policy decided about one firing.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Enforce `action` on the subject until `until` (and alert).
    Enforce {
        action: Action,
        until: i64,
        /// Offense number of the subject (quarantines within the offense memory).
        offense: u32,
        /// Detectors whose firings made the evidence, by name.
        detectors: Vec<String>,
    },
    /// Alert only; the reason says why nothing is enforced.
    AlertOnly(String),
    /// Nothing new to say (already enforced, or alerted recently).
    Suppress,
}

/// The detector a firing came from, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub detector: &'a str,
    pub mode: Mode,
    pub action: DetectorAction,
    pub weight: f64,
    /// Live keys of the detector's window (the population of fleet context).
    pub population: usize,
    /// The subject's peer group and its population, for detectors that compare peers: fleet
    /// context holds a firing back only while the subject's own group takes part.
    pub group: Option<(&'a str, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Active {
    action: Action,
    until: i64,
    decided_at: i64,
}

#[derive(Debug, Clone)]
struct Firing {
    detector: String,
    at: i64,
    weight: f64,
    action: DetectorAction,
}

/// Keys firing one fleet-context detector at once that make it fleet-wide, in a window of
/// `population` live keys.
fn fleet_threshold(c: &DecisionConfig, population: usize) -> usize {
    let share = (c.fleet_share * population as f64).ceil() as usize;
    share.max(c.fleet_min_subjects as usize)
}

/// Subjects a fleet-context detector fired on: (first, last) firing, and the subject's peer
/// group.
type FleetFirings = HashMap<Subject, (i64, i64, Option<String>)>;

/// Whether the firings of a fleet-context detector in `fired` (those whose last firing is
/// `live`: within the evidence window) are a fleet-wide event that includes `group` (the subject's peer group and its
/// population): enough keys of the whole window, and the subject's own group taking part —
/// `fleet_min_subjects` of its keys, or a share of it at least a quarter of the fleet's (a
/// rollout of sensors does not hide a few app users scraping meanwhile; a group whose
/// devices fire less readily than others in the same rollout still takes part).
fn fleet_wide(
    c: &DecisionConfig,
    population: usize,
    fired: &FleetFirings,
    live: impl Fn(i64) -> bool,
    group: Option<(&str, usize)>,
) -> Option<usize> {
    let firing = || fired.values().filter(|(_, last, _)| live(*last));
    let n = firing().count();
    if n < fleet_threshold(c, population) {
        return None;
    }
    if let Some((g, size)) = group {
        let mine = firing()
            .filter(|(_, _, fg)| fg.as_deref() == Some(g))
            .count();
        let fleet = n as f64 / population.max(1) as f64;
        let share = ((0.25 * fleet * size as f64).ceil() as usize).max(1);
        if mine < share && mine < c.fleet_min_subjects as usize {
            return None;
        }
    }
    Some(n)
}

#[derive(Debug)]
pub struct Policy {
    config: DecisionConfig,
    allowlist: HashSet<String>,
    active: HashMap<Subject, Active>,
    /// Manual releases by subject (decided_at).
    /// Subjects released by an operator: when, and the detectors whose decision the
    /// release ended (empty: every detector).
    released: HashMap<Subject, (i64, Vec<String>)>,
    /// Quarantines per subject within the offense memory: (count, last decided_at).
    offenses: HashMap<Subject, (u32, i64)>,
    evidence: HashMap<Subject, VecDeque<Firing>>,
    last_alert: HashMap<(Subject, String), i64>,
    recent_quarantines: VecDeque<i64>,
    /// Per fleet-context detector, the population it last saw, the subjects it fired on
    /// within the evidence window ((first, last) firing, peer group) and the populations of
    /// their peer groups.
    fleet: HashMap<String, (usize, FleetFirings, HashMap<String, usize>)>,
    /// Per fleet-context detector, when a fleet-wide event of it was last alerted on: the
    /// other subjects of the event are not alerted one by one.
    fleet_alerted: HashMap<String, i64>,
}

/// How fleet context sees a firing (see [`Policy::fleet_check`]).
enum FleetView {
    /// The fleet is firing the detector together.
    Wide(String),
    /// The subject fired it for less than the grace.
    Watching(String),
}

impl Policy {
    pub fn new(config: DecisionConfig) -> Self {
        Self {
            allowlist: config.allowlist.iter().cloned().collect(),
            config,
            active: HashMap::new(),
            released: HashMap::new(),
            offenses: HashMap::new(),
            evidence: HashMap::new(),
            last_alert: HashMap::new(),
            recent_quarantines: VecDeque::new(),
            fleet: HashMap::new(),
            fleet_alerted: HashMap::new(),
        }
    }

    /// Swap in a new config, keeping what is known about subjects.
    pub fn reconfigure(&mut self, config: DecisionConfig) {
        self.allowlist = config.allowlist.iter().cloned().collect();
        self.config = config;
    }

    pub fn config(&self) -> &DecisionConfig {
        &self.config
    }

    fn secs(s: u64) -> i64 {
        i64::try_from(s).unwrap_or(i64::MAX / S).saturating_mul(S)
    }

    /// Learn a decision read from the decisions topic (ours or anyone's).
    pub fn apply(&mut self, d: &Decision) {
        match d.action {
            Action::Quarantine | Action::Throttle => {
                let newer = self
                    .released
                    .get(&d.subject)
                    .is_none_or(|r| r.0 < d.decided_at)
                    && self
                        .active
                        .get(&d.subject)
                        .is_none_or(|a| a.decided_at <= d.decided_at);
                if newer {
                    self.active.insert(
                        d.subject.clone(),
                        Active {
                            action: d.action,
                            until: d.until.unwrap_or(i64::MAX),
                            decided_at: d.decided_at,
                        },
                    );
                }
                if d.action == Action::Quarantine {
                    let o = self
                        .offenses
                        .entry(d.subject.clone())
                        .or_insert((0, i64::MIN));
                    if o.1 < d.decided_at {
                        *o = (o.0 + 1, d.decided_at);
                    }
                }
            }
            Action::Release => {
                if self
                    .active
                    .get(&d.subject)
                    .is_none_or(|a| a.decided_at <= d.decided_at)
                {
                    self.active.remove(&d.subject);
                    let detectors = d.evidence_strings("released_detectors");
                    self.released
                        .insert(d.subject.clone(), (d.decided_at, detectors));
                }
            }
        }
    }

    fn allowlisted(&self, s: &Subject) -> bool {
        self.allowlist.contains(&s.value) || self.allowlist.contains(&s.key())
    }

    /// Record a firing as evidence; returns whether the combination rule is met and the
    /// detectors (with their actions) that make the evidence.
    fn evidence(
        &mut self,
        subject: &Subject,
        src: &Source,
        now: i64,
    ) -> (bool, Vec<(String, DetectorAction)>, String) {
        let window = Self::secs(self.config.evidence_window_s);
        let list = self.evidence.entry(subject.clone()).or_default();
        while list.front().is_some_and(|f| now - f.at >= window) {
            list.pop_front();
        }
        if !list
            .iter()
            .any(|f| f.detector == src.detector && f.at == now)
        {
            list.push_back(Firing {
                detector: src.detector.to_string(),
                at: now,
                weight: src.weight,
                action: src.action,
            });
        }
        let mut distinct: Vec<(String, DetectorAction, f64)> = Vec::new();
        for f in list.iter() {
            match distinct.iter_mut().find(|d| d.0 == f.detector) {
                Some(_) => {}
                None => distinct.push((f.detector.clone(), f.action, f.weight)),
            }
        }
        let firings = list.len() as u32;
        let c = &self.config;
        let mut missing = Vec::new();
        if firings < c.min_firings {
            missing.push(format!("{firings} of {} firings", c.min_firings));
        }
        match c.combine {
            Combine::Any => {}
            Combine::Weighted => {
                let score: f64 = distinct.iter().map(|d| d.2).sum();
                if score < c.min_score {
                    missing.push(format!("weighted score {score:.2} of {}", c.min_score));
                }
            }
            Combine::KOfN => {
                if (distinct.len() as u32) < c.k {
                    missing.push(format!("{} of {} detectors", distinct.len(), c.k));
                }
            }
        }
        let detectors = distinct.into_iter().map(|d| (d.0, d.1)).collect();
        (missing.is_empty(), detectors, missing.join(", "))
    }

    /// Decide on a firing of `src` for `subject` at `now`.
    pub fn decide(
        &mut self,
        subject: &Subject,
        src: &Source,
        enforceable: bool,
        now: i64,
    ) -> Verdict {
        let active = self.active.get(subject).copied().filter(|a| a.until > now);
        if active.is_some_and(|a| a.action == Action::Quarantine) {
            return Verdict::Suppress;
        }
        let verdict = self.judge(subject, src, enforceable, active, now);
        if matches!(verdict, Verdict::Suppress) {
            return verdict;
        }
        let alert_key = (subject.clone(), src.detector.to_string());
        if !matches!(verdict, Verdict::Enforce { .. })
            && self
                .last_alert
                .get(&alert_key)
                .is_some_and(|t| now - t < Self::secs(self.config.alert_interval_s))
        {
            return Verdict::Suppress;
        }
        self.last_alert.insert(alert_key, now);
        if let Verdict::Enforce { action, until, .. } = &verdict {
            if *action == Action::Quarantine {
                self.recent_quarantines.push_back(now);
                let o = self
                    .offenses
                    .entry(subject.clone())
                    .or_insert((0, i64::MIN));
                *o = (o.0 + 1, now);
            }
            self.active.insert(
                subject.clone(),
                Active {
                    action: *action,
                    until: *until,
                    decided_at: now,
                },
            );
        }
        verdict
    }

    fn judge(
        &mut self,
        subject: &Subject,
        src: &Source,
        enforceable: bool,
        active: Option<Active>,
        now: i64,
    ) -> Verdict {
        if src.mode == Mode::Shadow {
            return Verdict::AlertOnly("shadow mode".into());
        }
        let (met, detectors, missing) = self.evidence(subject, src, now);
        if !enforceable {
            return Verdict::AlertOnly("subject kind cannot be enforced on".into());
        }
        if self.allowlisted(subject) {
            return Verdict::AlertOnly("allowlisted".into());
        }
        // The cooldown after a release holds back the detectors whose decision was released
        // (an operator judged them wrong about this subject), not an independent detection.
        if self.released.get(subject).is_some_and(|(at, detectors)| {
            now - at < Self::secs(self.config.cooldown_s)
                && (detectors.is_empty() || detectors.iter().any(|d| d == src.detector))
        }) {
            return Verdict::AlertOnly("released recently (cooldown)".into());
        }
        match self.fleet_check(subject, src, now) {
            Some(FleetView::Wide(why)) => {
                // One alert per fleet-wide event and evidence window, not one per subject
                // (a rollout would otherwise alert on every device it updates).
                let window = Self::secs(self.config.evidence_window_s);
                if self
                    .fleet_alerted
                    .get(src.detector)
                    .is_some_and(|t| now - t < window)
                {
                    return Verdict::Suppress;
                }
                self.fleet_alerted.insert(src.detector.to_string(), now);
                return Verdict::AlertOnly(format!(
                    "{why}; the event's other subjects are not alerted on one by one for {} s",
                    self.config.evidence_window_s
                ));
            }
            Some(FleetView::Watching(why)) => return Verdict::AlertOnly(why),
            None => {}
        }
        if !met {
            return Verdict::AlertOnly(format!("not enough evidence yet ({missing})"));
        }
        // Firings of fleet-context detectors held back (fleet-wide, or within their grace)
        // are evidence for alerts, not for enforcement by another detector's firing.
        let detectors: Vec<(String, DetectorAction)> = detectors
            .into_iter()
            .filter(|(d, _)| !self.fleet_held(d, subject, now))
            .collect();
        if detectors.is_empty() {
            return Verdict::AlertOnly("held back by fleet context".into());
        }
        let strongest = detectors
            .iter()
            .map(|d| d.1)
            .fold(DetectorAction::Alert, |a, b| match (a, b) {
                (DetectorAction::Quarantine, _) | (_, DetectorAction::Quarantine) => {
                    DetectorAction::Quarantine
                }
                (DetectorAction::Throttle, _) | (_, DetectorAction::Throttle) => {
                    DetectorAction::Throttle
                }
                _ => DetectorAction::Alert,
            });
        let names = detectors.into_iter().map(|d| d.0).collect();
        match strongest {
            DetectorAction::Alert => Verdict::AlertOnly("the detectors only alert".into()),
            DetectorAction::Throttle => {
                if active.is_some_and(|a| a.action == Action::Throttle) {
                    return Verdict::Suppress;
                }
                Verdict::Enforce {
                    action: Action::Throttle,
                    until: now.saturating_add(Self::secs(self.config.throttle_ttl_s)),
                    offense: self.offense_number(subject, now),
                    detectors: names,
                }
            }
            DetectorAction::Quarantine => {
                while self
                    .recent_quarantines
                    .front()
                    .is_some_and(|t| now - t >= MINUTE_NS)
                {
                    self.recent_quarantines.pop_front();
                }
                if self.recent_quarantines.len() >= self.config.max_quarantines_per_minute as usize
                {
                    return Verdict::AlertOnly("quarantine rate cap reached".into());
                }
                let offense = self.offense_number(subject, now);
                Verdict::Enforce {
                    action: Action::Quarantine,
                    until: now.saturating_add(self.quarantine_ttl_ns(offense)),
                    offense,
                    detectors: names,
                }
            }
        }
    }

    /// Fleet context (`decision.fleet_context`): why a firing of a fleet-context detector is
    /// not enforced — the fleet is firing it together, or the subject has not fired it for
    /// `fleet_grace_s` yet — or `None`.
    fn fleet_check(&mut self, subject: &Subject, src: &Source, now: i64) -> Option<FleetView> {
        if !self.config.fleet_context.iter().any(|d| d == src.detector) {
            return None;
        }
        let window = Self::secs(self.config.evidence_window_s);
        let grace = Self::secs(self.config.fleet_grace_s);
        let (population, fired, groups) = self.fleet.entry(src.detector.to_string()).or_default();
        *population = src.population;
        if let Some((g, size)) = src.group {
            groups.insert(g.to_string(), size);
        }
        fired.retain(|_, (_, last, _)| now - *last < window);
        let first = fired
            .entry(subject.clone())
            .and_modify(|(_, last, _)| *last = now)
            .or_insert((now, now, src.group.map(|(g, _)| g.to_string())))
            .0;
        if let Some(n) = fleet_wide(&self.config, src.population, fired, |_| true, src.group) {
            let among = src
                .group
                .map(|(g, _)| format!(", {g} among them"))
                .unwrap_or_default();
            return Some(FleetView::Wide(format!(
                "fleet-wide: {n} of {} keys fired {} within {} s{among} (the fleet acting together, e.g. a rollout or a reconnect storm)",
                src.population, src.detector, self.config.evidence_window_s
            )));
        }
        (now - first < grace).then(|| {
            FleetView::Watching(format!(
                "watching: enforced if it goes on for {} s while unlike the fleet",
                self.config.fleet_grace_s
            ))
        })
    }

    /// Whether firings of fleet-context `detector` on `subject` are held back at `now`.
    fn fleet_held(&self, detector: &str, subject: &Subject, now: i64) -> bool {
        let Some((population, fired, groups)) = self.fleet.get(detector) else {
            return false;
        };
        let window = Self::secs(self.config.evidence_window_s);
        let group = fired
            .get(subject)
            .and_then(|(_, _, g)| g.as_deref())
            .map(|g| (g, groups.get(g).copied().unwrap_or(0)));
        let live = |last: i64| now - last < window;
        if fleet_wide(&self.config, *population, fired, live, group).is_some() {
            return true;
        }
        fired
            .get(subject)
            .is_some_and(|(first, _, _)| now - first < Self::secs(self.config.fleet_grace_s))
    }

    /// The number this offense would have (1 for a first offense).
    fn offense_number(&self, subject: &Subject, now: i64) -> u32 {
        match self.offenses.get(subject) {
            Some((n, last)) if now - last < Self::secs(self.config.offense_memory_s) => n + 1,
            _ => 1,
        }
    }

    /// TTL of the `offense`-th quarantine: base × factor^(offense − 1), capped.
    pub fn quarantine_ttl_ns(&self, offense: u32) -> i64 {
        let c = &self.config;
        let exp = i32::try_from(offense.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = (c.quarantine_ttl_s as f64 * c.escalation_factor.powi(exp))
            .min(c.max_quarantine_ttl_s as f64);
        (secs * 1e9) as i64
    }

    /// Forget expired state (bounded memory).
    pub fn prune(&mut self, now: i64) {
        self.active.retain(|_, a| a.until > now);
        let cooldown = Self::secs(self.config.cooldown_s);
        self.released.retain(|_, (at, _)| now - *at < cooldown);
        let interval = Self::secs(self.config.alert_interval_s);
        self.last_alert.retain(|_, t| now - *t < interval);
        let memory = Self::secs(self.config.offense_memory_s);
        self.offenses.retain(|_, (_, last)| now - *last < memory);
        let window = Self::secs(self.config.evidence_window_s);
        self.evidence
            .retain(|_, l| l.back().is_some_and(|f| now - f.at < window));
        for (_, fired, _) in self.fleet.values_mut() {
            fired.retain(|_, (_, last, _)| now - *last < window);
        }
    }
}

#[cfg(test)]
mod tests;
