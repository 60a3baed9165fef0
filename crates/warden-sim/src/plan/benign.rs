//! A device behaving normally: periodic reports (or app sessions) on its diurnal pattern, with
//! jitter, occasional bursts, the fleet's firmware rollout and reconnect storm, and churn
//! (joining, leaving, away for a while).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Actor, NS, Planned, Source, choose, device_request};
use crate::profile::{BodyKind, Profile};
use crate::{Fleet, ScenarioConfig, mix_seed};

pub(super) struct Benign {
    device: usize,
    profile: &'static Profile,
    rng: StdRng,
    /// Mean interval between reports at the daily mean activity, ns.
    period_ns: f64,
    start_hour: f64,
    end_ns: i64,
    /// Time of the next regular report.
    next_report: i64,
    /// Requests already decided (bursts, sessions, rollout, backlog), latest first.
    pending: Vec<Planned>,
    /// When the device does not report, `[from, to)` ns: the fleet's outage, the device's own
    /// absence (churn) and, for a device that joins during the run, the time before it does.
    silent: Vec<(i64, i64)>,
    /// MQTT devices: whether the connection is up (a CONNECT comes before the first message
    /// and after every silence that dropped it).
    mqtt: bool,
    connected: bool,
    /// Time of the last request handed out.
    last_ns: i64,
}

/// Chance per report that an MQTT device's connection drops and it reconnects (NAT rebinding,
/// a keep-alive missed on a weak link).
const MQTT_RECONNECT: f64 = 0.002;

/// Salt of the churn's random stream: a scenario without churn draws exactly what it drew
/// before churn existed.
const CHURN_SALT: u64 = 0x6368_7572_6e00;

impl Benign {
    pub(super) fn new(scenario: &ScenarioConfig, fleet: &Fleet, device: usize, seed: u64) -> Self {
        let dev = &fleet.devices[device];
        let profile = dev.device_type.profile();
        let mut rng = StdRng::seed_from_u64(mix_seed(seed, device as u64));
        let period_ns = profile.period_s * scenario.fleet.period_scale * NS;
        let end_ns = (scenario.duration_s * NS) as i64;
        let first = (rng.random::<f64>() * period_ns) as i64;
        let mut me = Self {
            device,
            profile,
            rng,
            period_ns,
            start_hour: scenario.fleet.start_hour,
            end_ns,
            next_report: first,
            pending: Vec::new(),
            silent: Vec::new(),
            mqtt: dev.device_type.is_mqtt(),
            connected: false,
            last_ns: i64::MIN,
        };
        if let Some(r) = scenario.fleet.firmware_rollout.as_ref()
            && profile.firmware
            && me.rng.random_bool(r.fraction)
        {
            let mut t = ((r.start_s + me.rng.random::<f64>() * r.spread_s) * NS) as i64;
            let check = crate::profile::Action {
                weight: 1.0,
                method: "GET",
                path: "/api/v1/firmware/{id}/check",
                body: BodyKind::Empty,
                body_bytes: (0, 0),
            };
            me.push(fleet, t, &check);
            for chunk in 0..r.chunks {
                t += ((0.3 + 0.5 * me.rng.random::<f64>()) * NS) as i64;
                let ip = dev.ips[0];
                let mut req = device_request(fleet, device, &check, ip, &mut me.rng);
                req.path = format!("/api/v1/firmware/images/2.4.0?chunk={chunk}");
                me.insert(Planned {
                    at_ns: t,
                    source: Source::Benign(device),
                    request: req,
                });
            }
        }
        if let Some(o) = scenario.fleet.outage.as_ref() {
            let from = (o.start_s * NS) as i64;
            let to = ((o.start_s + o.duration_s) * NS) as i64;
            me.silent.push((from, to));
            // Reports missed during the outage, sent right after it (a reconnect storm).
            let missed = ((to - from) as f64 / period_ns).ceil() as u32;
            let backlog = missed.min(o.max_backlog);
            let mut t = to + (me.rng.random::<f64>() * 3.0 * NS) as i64;
            for _ in 0..backlog {
                let action = choose(profile.actions, &mut me.rng);
                me.push(fleet, t, action);
                t += ((0.2 + 0.3 * me.rng.random::<f64>()) * NS) as i64;
            }
        }
        if let Some(c) = scenario.fleet.churn.as_ref() {
            me.churn(
                scenario,
                c,
                fleet,
                mix_seed(seed ^ CHURN_SALT, device as u64),
            );
        }
        me
    }

    /// Make this device new, retired or away, as `c` draws it.
    fn churn(
        &mut self,
        scenario: &ScenarioConfig,
        c: &crate::scenario::ChurnSpec,
        fleet: &Fleet,
        seed: u64,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let role = rng.random::<f64>();
        let at = (rng.random::<f64>() * self.end_ns as f64) as i64;
        if role < c.joining {
            // New: nothing before `at`, then a few first-contact requests within seconds.
            self.silent.push((i64::MIN, at));
            self.pending.retain(|p| p.at_ns >= at);
            let mut t = at;
            for _ in 0..rng.random_range(2..=4) {
                let action = choose(self.profile.actions, &mut rng);
                self.push(fleet, t, action);
                t += ((0.2 + 0.8 * rng.random::<f64>()) * NS) as i64;
            }
            if self.next_report < at {
                let skip = ((at - self.next_report) as f64 / self.period_ns).ceil();
                self.next_report += (skip * self.period_ns) as i64;
            }
        } else if role < c.joining + c.leaving {
            // Retired: silent from `at` on.
            self.end_ns = self.end_ns.min(at);
        } else if role < c.joining + c.leaving + c.offline {
            // Away for `offline_s`, then back with what it queued (within the run).
            let to = at.saturating_add((c.offline_s * NS) as i64);
            let end = (scenario.duration_s * NS) as i64;
            self.silent.push((at, to));
            self.pending.retain(|p| p.at_ns < at || p.at_ns >= to);
            let missed = ((to - at) as f64 / self.period_ns).ceil() as u32;
            let mut t = to + (rng.random::<f64>() * 3.0 * NS) as i64;
            for _ in 0..missed.min(c.max_backlog) {
                if t >= end {
                    break;
                }
                let action = choose(self.profile.actions, &mut rng);
                self.push(fleet, t, action);
                t += ((0.2 + 0.3 * rng.random::<f64>()) * NS) as i64;
            }
        }
    }

    /// Decide a request of `action` at `t`.
    fn push(&mut self, fleet: &Fleet, t: i64, action: &crate::profile::Action) {
        let ip = fleet.devices[self.device].ips[0];
        let request = device_request(fleet, self.device, action, ip, &mut self.rng);
        self.insert(Planned {
            at_ns: t,
            source: Source::Benign(self.device),
            request,
        });
    }

    fn insert(&mut self, p: Planned) {
        let at = p.at_ns;
        let pos = self.pending.partition_point(|q| q.at_ns > at);
        self.pending.insert(pos, p);
    }

    fn hour(&self, t: i64) -> f64 {
        (self.start_hour + t as f64 / NS / 3600.0).rem_euclid(24.0)
    }

    /// The regular report (or session) at `self.next_report`; schedules the next one.
    fn report(&mut self, fleet: &Fleet) {
        let t = self.next_report;
        let activity = self.profile.diurnal(self.hour(t));
        let interval = match self.profile.session {
            // Sessions start at random (exponential gaps).
            Some(_) => -(1.0 - self.rng.random::<f64>()).ln() * self.period_ns / activity,
            None => {
                let j = self.profile.jitter;
                self.period_ns * (1.0 + self.rng.random_range(-j..=j)) / activity
            }
        };
        self.next_report = t + (interval as i64).max(1_000_000);
        if self.silent.iter().any(|&(from, to)| t >= from && t < to) {
            return;
        }
        let dev = &fleet.devices[self.device];
        match self.profile.session {
            Some(s) => {
                // A third of sessions come over the carrier network.
                let ip = match dev.ips.get(1) {
                    Some(alt) if self.rng.random_bool(1.0 / 3.0) => *alt,
                    _ => dev.ips[0],
                };
                let n = self.rng.random_range(s.requests.0..=s.requests.1);
                let mut at = t;
                for _ in 0..n {
                    let action = choose(self.profile.actions, &mut self.rng);
                    let request = device_request(fleet, self.device, action, ip, &mut self.rng);
                    self.insert(Planned {
                        at_ns: at,
                        source: Source::Benign(self.device),
                        request,
                    });
                    at += (self.rng.random_range(s.gap_s.0..=s.gap_s.1) * NS) as i64;
                }
            }
            None => {
                if self.mqtt && self.rng.random_bool(MQTT_RECONNECT) {
                    self.connected = false;
                }
                let action = choose(self.profile.actions, &mut self.rng);
                self.push(fleet, t, action);
                if self.rng.random_bool(self.profile.burst_rate) {
                    let (lo, hi) = self.profile.burst_len;
                    let mut at = t;
                    for _ in 0..self.rng.random_range(lo..=hi) {
                        at += ((0.2 + 0.8 * self.rng.random::<f64>()) * NS) as i64;
                        let action = choose(self.profile.actions, &mut self.rng);
                        self.push(fleet, at, action);
                    }
                }
            }
        }
    }
}

impl Actor for Benign {
    fn next(&mut self, fleet: &Fleet) -> Option<Planned> {
        loop {
            let earliest_pending = self.pending.last().map(|p| p.at_ns);
            if self.next_report < self.end_ns
                && earliest_pending.is_none_or(|e| self.next_report <= e)
            {
                self.report(fleet);
                continue;
            }
            let p = self.pending.pop()?;
            if p.at_ns >= self.end_ns {
                self.pending.clear();
                return None;
            }
            if self.mqtt {
                let last = self.last_ns;
                let dropped = self
                    .silent
                    .iter()
                    .any(|&(from, to)| from > last && to <= p.at_ns);
                if !self.connected || dropped {
                    // (Re)connect a few milliseconds before the message.
                    self.connected = true;
                    let at = (p.at_ns - 5_000_000).max(last).max(0);
                    let connect = Planned {
                        at_ns: at,
                        source: Source::Benign(self.device),
                        request: super::mqtt_connect(fleet, self.device),
                    };
                    self.pending.push(p);
                    self.last_ns = at;
                    return Some(connect);
                }
            }
            self.last_ns = p.at_ns;
            return Some(p);
        }
    }
}
