//! Attackers: who they are (resolved with the seed) and what each of their requests is.

use std::collections::HashSet;
use std::net::IpAddr;

use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warden_event::{Subject, SubjectKind};

use super::{
    Actor, AttackPlan, Attacker, AttackerIps, Auth, NS, Payload, Planned, SimRequest, Source,
    choose, device_request, pick,
};
use crate::profile::BodyKind;
use crate::scenario::AttackConfig;
use crate::{DeviceType, Fleet};

/// User agents of attack tooling.
const TOOL_AGENTS: [&str; 3] = ["python-requests/2.31.0", "curl/8.5.0", "Go-http-client/1.1"];

/// Firmware and admin probes: `(method, path)`; `{id}` is the prober's identity.
const PROBES: [(&str, &str); 9] = [
    ("GET", "/api/v1/firmware/images/2.4.0?chunk=0"),
    ("PUT", "/api/v1/firmware/{id}/image"),
    ("POST", "/api/v1/firmware/{id}/upload"),
    ("GET", "/api/v1/firmware/{id}/debug"),
    ("GET", "/api/v1/admin/firmware"),
    ("GET", "/api/v1/firmware/{id}/check?model=igw-9000"),
    ("DELETE", "/api/v1/config/{id}"),
    ("GET", "/api/v1/firmware/images/0.0.1-debug?chunk=0"),
    ("GET", "/api/v1/admin/devices"),
];

/// Topic levels an enumerating MQTT device tries under its own prefix.
const TOPIC_GUESSES: [&str; 8] = [
    "config",
    "firmware/update",
    "shadow/update",
    "admin",
    "ota",
    "debug/shell",
    "commands",
    "telemetry/raw",
];

/// What one attacker sends.
#[derive(Debug, Clone)]
pub enum AttackKind {
    /// Device `device` sends its usual report, as fast as `rate`.
    Flood { device: usize },
    /// Guessed keys from `ip`; every `leak_every`-th attempt uses one of `leaked` (valid).
    Stuffing {
        ip: IpAddr,
        leaked: Vec<usize>,
        leak_every: u64,
    },
    /// App user `user` reads the state of every device in turn.
    Enumeration { user: usize, cursor: usize },
    /// App user `user` reads meter histories of other users' meters.
    SlowScraping { user: usize, limit: u32 },
    /// Device `device` pulls exports of its tenant with `limit` rows.
    Exfiltration { device: usize, limit: u32 },
    /// Device `device` drifts to new routes (from `ip`), more and more often.
    Drift { device: usize, ip: IpAddr },
    /// Device `device`'s key replayed from `ip`.
    Replay { device: usize, ip: IpAddr },
    /// Device `device` probes firmware and admin routes.
    Probe { device: usize },
    /// Device `device` sends every request on its action `action`, with bodies of `body`
    /// bytes when set.
    RouteMix {
        device: usize,
        action: usize,
        body: Option<[u32; 2]>,
    },
    /// Device `device` sends the requests of type `mimic` (chosen by weight), on its own
    /// route with the same method when `own_routes`.
    TypeMimic {
        device: usize,
        mimic: DeviceType,
        own_routes: bool,
    },
    /// MQTT device `device` walks topics (`cursor`: the next other device).
    TopicEnumeration { device: usize, cursor: usize },
    /// Client `user` pages through the history of `target` (`?page=N`).
    PageScrape {
        user: usize,
        target: String,
        page_size: u32,
    },
}

fn identity(fleet: &Fleet, d: usize) -> Subject {
    Subject::identity(fleet.devices[d].identity.clone())
}

fn ip(a: IpAddr) -> Subject {
    Subject {
        kind: SubjectKind::Ip,
        value: a.to_string(),
    }
}

/// The plan of attack `ai` and what each of its attackers sends (attacker `k` is
/// `kinds[k]`). Attacking devices are chosen with `rng` among those not `taken`.
pub(super) fn resolve(
    a: &AttackConfig,
    fleet: &Fleet,
    rng: &mut StdRng,
    taken: &mut HashSet<usize>,
    ips: &mut AttackerIps,
) -> (AttackPlan, Vec<AttackKind>) {
    let (start, end) = a.window();
    let mut attackers = Vec::new();
    let mut kinds = Vec::new();
    let mut victims = Vec::new();
    let mut as_device = |d: usize, extra: Vec<Subject>, kind: AttackKind| {
        let mut subjects = vec![identity(fleet, d)];
        subjects.extend(fleet.devices[d].ips.iter().map(|a| ip(*a)));
        subjects.extend(extra);
        attackers.push(Attacker {
            subjects,
            device: Some(d),
        });
        kinds.push(kind);
    };
    match a {
        AttackConfig::BotnetFlood(c) => {
            for d in pick(fleet, c.device_type, c.devices, rng, taken) {
                as_device(d, vec![], AttackKind::Flood { device: d });
            }
        }
        AttackConfig::DeviceFlood(c) => {
            for d in pick(fleet, c.device_type, 1, rng, taken) {
                as_device(d, vec![], AttackKind::Flood { device: d });
            }
        }
        AttackConfig::QueryScrape(c) => {
            for d in pick(fleet, c.device_type, c.attackers, rng, taken) {
                // A meter it owns (app users), else itself.
                let dev = &fleet.devices[d];
                let target = dev
                    .owned
                    .iter()
                    .find(|o| fleet.devices[**o].device_type == DeviceType::SmartMeter)
                    .map_or(dev.identity.clone(), |o| fleet.devices[*o].identity.clone());
                as_device(
                    d,
                    vec![],
                    AttackKind::PageScrape {
                        user: d,
                        target,
                        page_size: c.page_size,
                    },
                );
            }
        }
        AttackConfig::Enumeration(c) => {
            for d in pick(fleet, DeviceType::MobileApp, c.attackers, rng, taken) {
                let cursor = rng.random_range(0..fleet.devices.len().max(1));
                as_device(d, vec![], AttackKind::Enumeration { user: d, cursor });
            }
        }
        AttackConfig::SlowScraping(c) => {
            for d in pick(fleet, DeviceType::MobileApp, c.attackers, rng, taken) {
                as_device(
                    d,
                    vec![],
                    AttackKind::SlowScraping {
                        user: d,
                        limit: c.limit,
                    },
                );
            }
        }
        AttackConfig::Exfiltration(c) => {
            for d in pick(fleet, c.device_type, 1, rng, taken) {
                as_device(
                    d,
                    vec![],
                    AttackKind::Exfiltration {
                        device: d,
                        limit: c.limit,
                    },
                );
            }
        }
        AttackConfig::Drift(c) => {
            for d in pick(fleet, c.device_type, 1, rng, taken) {
                let (new, extra) = if c.new_ip {
                    let new = ips.take();
                    (new, vec![ip(new)])
                } else {
                    (fleet.devices[d].ips[0], vec![])
                };
                as_device(d, extra, AttackKind::Drift { device: d, ip: new });
            }
        }
        AttackConfig::FirmwareProbe(c) => {
            for d in pick(fleet, c.device_type, 1, rng, taken) {
                as_device(d, vec![], AttackKind::Probe { device: d });
            }
        }
        AttackConfig::RouteMix(c) => {
            let action = c
                .device_type
                .profile()
                .actions
                .iter()
                .position(|a| a.path == c.route)
                .unwrap_or(0);
            for d in pick(fleet, c.device_type, c.devices, rng, taken) {
                as_device(
                    d,
                    vec![],
                    AttackKind::RouteMix {
                        device: d,
                        action,
                        body: c.body_bytes,
                    },
                );
            }
        }
        AttackConfig::TypeMimic(c) => {
            for d in pick(fleet, c.device_type, c.devices, rng, taken) {
                as_device(
                    d,
                    vec![],
                    AttackKind::TypeMimic {
                        device: d,
                        mimic: c.mimic,
                        own_routes: c.own_routes,
                    },
                );
            }
        }
        AttackConfig::TopicEnumeration(c) => {
            for d in pick(fleet, c.device_type, c.attackers, rng, taken) {
                let cursor = rng.random_range(0..fleet.devices.len().max(1));
                as_device(
                    d,
                    vec![],
                    AttackKind::TopicEnumeration { device: d, cursor },
                );
            }
        }
        AttackConfig::TokenReplay(c) => {
            for d in pick(fleet, c.device_type, 1, rng, taken) {
                for _ in 0..c.ips {
                    let from = ips.take();
                    attackers.push(Attacker {
                        subjects: vec![identity(fleet, d), ip(from)],
                        device: Some(d),
                    });
                    kinds.push(AttackKind::Replay {
                        device: d,
                        ip: from,
                    });
                }
            }
        }
        AttackConfig::CredentialStuffing(c) => {
            let leaked = pick(fleet, DeviceType::MobileApp, c.leaked_keys, rng, taken);
            victims.extend(leaked.iter().map(|d| identity(fleet, *d)));
            // About one attempt in a hundred is a leaked key, never fewer than one per IP.
            let per_ip = (c.rate_per_s / c.ips as f64) * (end - start);
            let leak_every = if leaked.is_empty() {
                0
            } else {
                (per_ip / leaked.len() as f64).clamp(1.0, 100.0) as u64
            };
            for _ in 0..c.ips {
                let from = ips.take();
                attackers.push(Attacker {
                    subjects: vec![ip(from)],
                    device: None,
                });
                kinds.push(AttackKind::Stuffing {
                    ip: from,
                    leaked: leaked.clone(),
                    leak_every,
                });
            }
        }
    }
    let plan = AttackPlan {
        name: a.name().to_string(),
        class: a.class(),
        start_ns: (start * NS) as i64,
        end_ns: (end * NS) as i64,
        expect: a.expect().clone(),
        attackers,
        victims,
    };
    (plan, kinds)
}

/// Rate of one attacker of `a`, requests per second (at the end of the window for drifts).
fn rate_of(a: &AttackConfig, attackers: usize) -> f64 {
    let n = attackers.max(1) as f64;
    match a {
        AttackConfig::BotnetFlood(c) => c.rate_per_device,
        AttackConfig::DeviceFlood(c) => c.rate_per_s,
        AttackConfig::CredentialStuffing(c) => c.rate_per_s / n,
        AttackConfig::Enumeration(c) => c.rate_per_s,
        AttackConfig::SlowScraping(c) => c.rate_per_s,
        AttackConfig::Exfiltration(c) => c.rate_per_s,
        AttackConfig::Drift(c) => c.rate_per_s,
        AttackConfig::TokenReplay(c) => c.rate_per_s / n,
        AttackConfig::FirmwareProbe(c) => c.rate_per_s,
        AttackConfig::QueryScrape(c) => c.rate_per_s,
        AttackConfig::RouteMix(c) => c.rate_per_s,
        AttackConfig::TypeMimic(c) => c.rate_per_s,
        AttackConfig::TopicEnumeration(c) => c.rate_per_s,
    }
}

/// An attacker sending at its rate (±20 % jitter per interval) through its window.
pub(super) struct Paced {
    source: Source,
    kind: AttackKind,
    rng: StdRng,
    start_ns: i64,
    end_ns: i64,
    /// Mean interval at full rate, ns.
    interval_ns: f64,
    /// Drifts ramp their rate up from 0 over the window.
    ramp: bool,
    /// Growing floods double their rate every this many ns.
    doubling_ns: Option<f64>,
    next_ns: i64,
    sent: u64,
}

impl Paced {
    pub(super) fn new(
        plan: &AttackPlan,
        config: &AttackConfig,
        attack: usize,
        attacker: usize,
        kind: AttackKind,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let interval_ns = NS / rate_of(config, plan.attackers.len());
        let ramp = matches!(kind, AttackKind::Drift { .. });
        let doubling_ns = match config {
            AttackConfig::DeviceFlood(c) => c.doubling_s.map(|d| d * NS),
            _ => None,
        };
        let offset = if ramp {
            0.0
        } else {
            rng.random::<f64>() * interval_ns
        };
        let mut me = Self {
            source: Source::Attack { attack, attacker },
            kind,
            rng,
            start_ns: plan.start_ns,
            end_ns: plan.end_ns,
            interval_ns,
            ramp,
            doubling_ns,
            next_ns: plan.start_ns + offset as i64,
            sent: 0,
        };
        if ramp {
            me.next_ns = plan.start_ns + me.interval_at(plan.start_ns) as i64;
        }
        me
    }

    /// Interval after a request at `t`.
    fn interval_at(&mut self, t: i64) -> f64 {
        let jitter = 0.8 + 0.4 * self.rng.random::<f64>();
        if let Some(d) = self.doubling_ns {
            let growth = ((t - self.start_ns) as f64 / d).exp2().min(1e6);
            return self.interval_ns / growth * jitter;
        }
        if self.ramp {
            let share = ((t - self.start_ns) as f64 / (self.end_ns - self.start_ns).max(1) as f64)
                .clamp(0.05, 1.0);
            self.interval_ns / share * jitter
        } else {
            self.interval_ns * jitter
        }
    }

    fn request(&mut self, fleet: &Fleet) -> SimRequest {
        let n = self.sent;
        let rng = &mut self.rng;
        match &mut self.kind {
            AttackKind::Flood { device } => {
                let d = &fleet.devices[*device];
                let action = &d.device_type.profile().actions[0];
                let mut r = device_request(fleet, *device, action, d.ips[0], rng);
                r.fault = None;
                r.body.malformed = false;
                r
            }
            AttackKind::Stuffing {
                ip,
                leaked,
                leak_every,
            } => {
                let auth = if *leak_every > 0 && (n + 1).is_multiple_of(*leak_every) {
                    Auth::Device(leaked[(n / *leak_every) as usize % leaked.len()])
                } else {
                    Auth::Key(Alphanumeric.sample_string(rng, 32))
                };
                let guess = rng.random_range(0..100_000u32);
                SimRequest {
                    method: "GET",
                    path: format!("/api/v1/app/users/user-{guess:05}/devices"),
                    auth,
                    body: Payload::EMPTY,
                    ip: *ip,
                    user_agent: TOOL_AGENTS[(n % 3) as usize],
                    fault: None,
                }
            }
            AttackKind::Enumeration { user, cursor } => {
                let d = &fleet.devices[*user];
                let mut target = *cursor % fleet.devices.len();
                for _ in 0..fleet.devices.len() {
                    if !d.owned.contains(&target) && target != *user {
                        break;
                    }
                    target = (target + 1) % fleet.devices.len();
                }
                *cursor = target + 1;
                SimRequest {
                    method: "GET",
                    path: format!(
                        "/api/v1/app/devices/{}/state",
                        fleet.devices[target].identity
                    ),
                    auth: Auth::Device(*user),
                    body: Payload::EMPTY,
                    ip: d.ips[0],
                    user_agent: d.device_type.profile().user_agent,
                    fault: None,
                }
            }
            AttackKind::SlowScraping { user, limit } => {
                let d = &fleet.devices[*user];
                let meters = fleet.of_type(DeviceType::SmartMeter);
                let target = match meters {
                    [] => d.identity.clone(),
                    m => fleet.devices[m[rng.random_range(0..m.len())]]
                        .identity
                        .clone(),
                };
                SimRequest {
                    method: "GET",
                    path: format!("/api/v1/meters/{target}/history?limit={limit}"),
                    auth: Auth::Device(*user),
                    body: Payload::EMPTY,
                    ip: d.ips[0],
                    user_agent: d.device_type.profile().user_agent,
                    fault: None,
                }
            }
            AttackKind::Exfiltration { device, limit } => {
                let d = &fleet.devices[*device];
                SimRequest {
                    method: "GET",
                    path: format!("/api/v1/export/{}?limit={limit}", d.tenant),
                    auth: Auth::Device(*device),
                    body: Payload::EMPTY,
                    ip: d.ips[0],
                    user_agent: d.device_type.profile().user_agent,
                    fault: None,
                }
            }
            AttackKind::Drift { device, ip } => {
                let d = &fleet.devices[*device];
                let other = &fleet.devices[rng.random_range(0..fleet.devices.len())].identity;
                let path = match n % 4 {
                    0 => format!("/api/v1/config/{other}"),
                    1 => format!("/api/v1/app/devices/{other}/state"),
                    2 => format!("/api/v1/export/{}?limit=2000", d.tenant),
                    _ => "/api/v1/firmware/images/2.4.0?chunk=0".to_string(),
                };
                SimRequest {
                    method: "GET",
                    path,
                    auth: Auth::Device(*device),
                    body: Payload::EMPTY,
                    ip: *ip,
                    user_agent: if n.is_multiple_of(2) {
                        d.device_type.profile().user_agent
                    } else {
                        TOOL_AGENTS[0]
                    },
                    fault: None,
                }
            }
            AttackKind::RouteMix {
                device,
                action,
                body,
            } => {
                let d = &fleet.devices[*device];
                let actions = d.device_type.profile().actions;
                let a = &actions[(*action).min(actions.len().saturating_sub(1))];
                let mut r = device_request(fleet, *device, a, d.ips[0], rng);
                r.fault = None;
                r.body.malformed = false;
                if let Some([lo, hi]) = *body {
                    r.body.len = rng.random_range(lo..=hi.max(lo));
                    if r.body.kind == BodyKind::Empty && r.body.len > 0 {
                        r.body.kind = BodyKind::Binary;
                    }
                }
                r
            }
            AttackKind::TypeMimic {
                device,
                mimic,
                own_routes,
            } => {
                let d = &fleet.devices[*device];
                let theirs = choose(mimic.profile().actions, rng);
                let mut r = device_request(fleet, *device, theirs, d.ips[0], rng);
                if *own_routes {
                    let own = d.device_type.profile().actions;
                    if let Some(a) = own
                        .iter()
                        .find(|a| a.method == theirs.method)
                        .or_else(|| own.first())
                    {
                        r.method = a.method;
                        r.path = a.path.replace("{id}", &d.identity);
                    }
                }
                // Its own firmware's identity and its own type's error rates.
                r.user_agent = d.device_type.profile().user_agent;
                r.fault = None;
                r.body.malformed = false;
                r
            }
            AttackKind::Replay { device, ip } => {
                let d = &fleet.devices[*device];
                let action = choose(d.device_type.profile().actions, rng);
                let mut r = device_request(fleet, *device, action, *ip, rng);
                r.fault = None;
                r.body.malformed = false;
                r
            }
            AttackKind::PageScrape {
                user,
                target,
                page_size,
            } => {
                let d = &fleet.devices[*user];
                SimRequest {
                    method: "GET",
                    path: format!(
                        "/api/v1/meters/{target}/history?page={}&limit={page_size}",
                        n + 1
                    ),
                    auth: Auth::Device(*user),
                    body: Payload::EMPTY,
                    ip: d.ips[0],
                    user_agent: d.device_type.profile().user_agent,
                    fault: None,
                }
            }
            AttackKind::TopicEnumeration { device, cursor } => {
                let d = &fleet.devices[*device];
                let mut other = *cursor % fleet.devices.len();
                if other == *device {
                    other = (other + 1) % fleet.devices.len();
                }
                *cursor = other + 1;
                let other = &fleet.devices[other].identity;
                let (method, path) = match n % 6 {
                    // Another device's telemetry and status: refused (owner scoping).
                    0 | 3 => ("PUBLISH", format!("devices/{other}/telemetry")),
                    1 => ("PUBLISH", format!("devices/{other}/status")),
                    // Topics of its own that no rule translates.
                    2 => (
                        "PUBLISH",
                        format!(
                            "devices/{}/{}",
                            d.identity,
                            TOPIC_GUESSES[(n / 6) as usize % TOPIC_GUESSES.len()]
                        ),
                    ),
                    // Wildcards and other devices' commands.
                    4 => ("SUBSCRIBE", format!("devices/{other}/commands")),
                    _ => (
                        "SUBSCRIBE",
                        ["devices/#", "devices/+/telemetry", "$SYS/#", "#"][(n / 6) as usize % 4]
                            .to_string(),
                    ),
                };
                SimRequest {
                    method,
                    path,
                    auth: Auth::Device(*device),
                    body: if method == "PUBLISH" {
                        Payload {
                            kind: BodyKind::Json,
                            len: rng.random_range(20..=120),
                            malformed: false,
                        }
                    } else {
                        Payload::EMPTY
                    },
                    ip: d.ips[0],
                    user_agent: d.device_type.profile().user_agent,
                    fault: None,
                }
            }
            AttackKind::Probe { device } => {
                let d = &fleet.devices[*device];
                let (method, path) = PROBES[(n as usize) % PROBES.len()];
                SimRequest {
                    method,
                    path: path.replace("{id}", &d.identity),
                    auth: Auth::Device(*device),
                    body: if method == "PUT" || method == "POST" {
                        Payload {
                            kind: BodyKind::Binary,
                            len: 4096,
                            malformed: false,
                        }
                    } else {
                        Payload::EMPTY
                    },
                    ip: d.ips[0],
                    user_agent: d.device_type.profile().user_agent,
                    fault: None,
                }
            }
        }
    }
}

impl Actor for Paced {
    fn next(&mut self, fleet: &Fleet) -> Option<Planned> {
        if self.next_ns >= self.end_ns || fleet.devices.is_empty() {
            return None;
        }
        let at_ns = self.next_ns;
        let request = self.request(fleet);
        self.sent += 1;
        let step = self.interval_at(at_ns);
        self.next_ns = at_ns + (step as i64).max(1);
        Some(Planned {
            at_ns,
            source: self.source,
            request,
        })
    }
}
