//! What the client sees of a run, recorded as it goes (shared between the sending tasks and
//! whoever shows progress), and turned into [`Labels`] at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::labels::{AttackLabel, AttackerLabel, FleetLabel, Labels, RunMode, RunSummary};
use crate::plan::{Plan, Source};
use crate::{LABELS_VERSION, ScenarioConfig};

/// How a request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The backend answered with this status (the request got through the gateway).
    Through(u16),
    /// The gateway refused it with `403` (quarantine).
    Refused,
    /// The gateway answered it with this status itself (`401`, `404`, `405`, `413`…).
    Gateway(u16),
    /// No response (connection error, timeout).
    Failed,
}

impl Seen {
    fn status(self) -> Option<u16> {
        match self {
            Seen::Through(s) | Seen::Gateway(s) => Some(s),
            Seen::Refused => Some(403),
            Seen::Failed => None,
        }
    }
}

/// Live counters of a run. `record` is called once per request.
#[derive(Debug)]
pub struct Recorder {
    /// Sender class of each device (its type) and of each attack (its name).
    device_class: Vec<&'static str>,
    device_identity: Vec<String>,
    /// Devices some attack uses (as attacker or victim): their own traffic being refused
    /// once they are quarantined is expected.
    involved: Vec<bool>,
    attack_names: Vec<String>,
    sent: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    late: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_class: BTreeMap<String, BTreeMap<u16, u64>>,
    failed_by_class: BTreeMap<String, u64>,
    failures: BTreeMap<&'static str, u64>,
    benign_refused: BTreeMap<String, u64>,
    /// Per attack, per attacker: `(sent_ns, done_ns, seen)` of every attack request.
    attacks: Vec<Vec<Vec<(i64, i64, Seen)>>>,
}

/// What the labels say about a run besides what was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub seed: u64,
    pub mode: RunMode,
    /// The gateway URL or the output file.
    pub target: Option<String>,
    /// Start and end, epoch nanoseconds (attack windows are relative to the start).
    pub started_at: i64,
    pub ended_at: i64,
}

/// Counters at one moment, for progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
    pub late: u64,
}

impl Recorder {
    /// A recorder for the requests of `plan`.
    pub fn new(plan: &Plan) -> Self {
        let fleet = plan.fleet();
        Self {
            device_class: fleet
                .devices
                .iter()
                .map(|d| d.device_type.as_str())
                .collect(),
            device_identity: fleet.devices.iter().map(|d| d.identity.clone()).collect(),
            involved: {
                let mut v = vec![false; fleet.devices.len()];
                for a in plan.attacks() {
                    for d in a.attackers.iter().filter_map(|x| x.device) {
                        v[d] = true;
                    }
                    for s in &a.victims {
                        if let Some(d) = fleet.devices.iter().position(|d| d.identity == s.value) {
                            v[d] = true;
                        }
                    }
                }
                v
            },
            attack_names: plan.attacks().iter().map(|a| a.name.clone()).collect(),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            late: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                attacks: plan
                    .attacks()
                    .iter()
                    .map(|a| vec![Vec::new(); a.attackers.len()])
                    .collect(),
                ..Inner::default()
            }),
        }
    }

    /// A request is being sent; `late`: more than a second after its planned time.
    pub fn sending(&self, late: bool) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if late {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request of `source` sent at `sent_ns` ended as `seen` at `done_ns` (its response,
    /// or the failure).
    pub fn record(&self, source: Source, sent_ns: i64, done_ns: i64, seen: Seen) {
        match seen {
            Seen::Failed => self.failed.fetch_add(1, Ordering::Relaxed),
            _ => self.answered.fetch_add(1, Ordering::Relaxed),
        };
        let mut inner = self.inner.lock();
        let class = match source {
            Source::Benign(d) => self.device_class.get(d).copied().unwrap_or("unknown"),
            Source::Attack { attack, .. } => self
                .attack_names
                .get(attack)
                .map_or("unknown", String::as_str),
        };
        if seen == Seen::Failed {
            *inner.failed_by_class.entry(class.to_string()).or_default() += 1;
        }
        if let Some(status) = seen.status() {
            let counts = match inner.by_class.get_mut(class) {
                Some(c) => c,
                None => inner.by_class.entry(class.to_string()).or_default(),
            };
            *counts.entry(status).or_default() += 1;
        }
        match source {
            Source::Benign(d) => {
                if seen == Seen::Refused
                    && !self.involved.get(d).copied().unwrap_or(false)
                    && let Some(id) = self.device_identity.get(d)
                {
                    *inner.benign_refused.entry(id.clone()).or_default() += 1;
                }
            }
            Source::Attack { attack, attacker } => {
                if let Some(v) = inner
                    .attacks
                    .get_mut(attack)
                    .and_then(|a| a.get_mut(attacker))
                {
                    v.push((sent_ns, done_ns, seen));
                }
            }
        }
    }

    /// Why a request got no response (`timeout`, `connect`, `body`, `request`); counted
    /// in addition to [`Recorder::record`] with [`Seen::Failed`].
    pub fn failure(&self, kind: &'static str) {
        *self.inner.lock().failures.entry(kind).or_default() += 1;
    }

    /// The counters now.
    pub fn progress(&self) -> Progress {
        Progress {
            sent: self.sent.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
        }
    }

    /// Responses so far by sender class and status.
    pub fn by_class(&self) -> BTreeMap<String, BTreeMap<u16, u64>> {
        self.inner.lock().by_class.clone()
    }

    /// The labels of the run.
    pub fn labels(&self, scenario: &ScenarioConfig, plan: &Plan, run: RunInfo) -> Labels {
        let RunInfo {
            seed,
            mode,
            target,
            started_at,
            ended_at,
        } = run;
        let inner = self.inner.lock();
        let fleet = plan.fleet();
        let attacks = plan
            .attacks()
            .iter()
            .enumerate()
            .map(|(ai, a)| AttackLabel {
                name: a.name.clone(),
                class: a.class,
                start_ns: started_at + a.start_ns,
                end_ns: started_at + a.end_ns,
                expect: a.expect.clone(),
                attackers: a
                    .attackers
                    .iter()
                    .enumerate()
                    .map(|(k, x)| {
                        let seen = inner
                            .attacks
                            .get(ai)
                            .and_then(|v| v.get(k))
                            .map_or(&[][..], Vec::as_slice);
                        attacker_label(x.subjects.clone(), seen)
                    })
                    .collect(),
                victims: a.victims.clone(),
            })
            .collect();
        Labels {
            v: LABELS_VERSION,
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seed,
            mode,
            target,
            fleet: FleetLabel {
                devices: fleet.devices.len(),
                by_type: fleet
                    .by_type
                    .iter()
                    .map(|(t, v)| (t.as_str().to_string(), v.len()))
                    .collect(),
                fingerprint: fleet.fingerprint(),
            },
            started_at,
            ended_at,
            expect: scenario.expect.clone(),
            attacks,
            summary: RunSummary {
                sent: self.sent.load(Ordering::Relaxed),
                failed: self.failed.load(Ordering::Relaxed),
                late: self.late.load(Ordering::Relaxed),
                by_class: inner.by_class.clone(),
                failed_by_class: inner.failed_by_class.clone(),
                failures: inner
                    .failures
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), *v))
                    .collect(),
                benign_refused: inner.benign_refused.clone(),
            },
        }
    }
}

/// What one attacker's requests add up to. The gateway refused at the latest when the first
/// refusal came back (a request sent earlier may have waited in the gateway past the
/// decision), so refusals are timed by their response, and so is what got through before.
fn attacker_label(
    subjects: Vec<warden_event::Subject>,
    seen: &[(i64, i64, Seen)],
) -> AttackerLabel {
    let first_refused_ns = seen
        .iter()
        .filter(|(_, _, s)| *s == Seen::Refused)
        .map(|(_, done, _)| *done)
        .min();
    let is_through = |s: &Seen| matches!(s, Seen::Through(_));
    AttackerLabel {
        subjects,
        sent: seen.len() as u64,
        first_sent_ns: seen.iter().map(|(t, _, _)| *t).min(),
        through: seen.iter().filter(|(_, _, s)| is_through(s)).count() as u64,
        through_before_refused: seen
            .iter()
            .filter(|(_, done, s)| is_through(s) && first_refused_ns.is_none_or(|r| *done < r))
            .count() as u64,
        refused: seen.iter().filter(|(_, _, s)| *s == Seen::Refused).count() as u64,
        first_refused_ns,
    }
}
