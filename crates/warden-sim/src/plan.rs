//! The plan of a run: every request of the fleet and of the attacks, in time order, generated
//! lazily and deterministically from the scenario and the seed.
//!
//! Each device and each attacker is an actor with its own random stream (derived from the
//! seed and its position), and the plan merges the actors by time, so a run is the same
//! whatever the machine's speed, and the live and accelerated modes send the same requests.

mod attack;
mod benign;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use warden_event::Subject;

use crate::profile::{Action, BodyKind};
use crate::scenario::{AttackClass, Expect};
use crate::{DeviceType, Fleet, ScenarioConfig, mix_seed};

pub use attack::AttackKind;

/// Nanoseconds in a second.
pub const NS: f64 = 1e9;

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A device of the fleet behaving normally (index in [`Fleet::devices`]).
    Benign(usize),
    /// Attacker `attacker` of attack `attack` (indices in [`Plan::attacks`]).
    Attack { attack: usize, attacker: usize },
}

/// How a request authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// The credential of a fleet device.
    Device(usize),
    /// An API key that is not (or not known to be) any device's: a guess.
    Key(String),
}

/// A request body: what it is and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub kind: BodyKind,
    pub len: u32,
    /// A JSON body that does not parse (a client bug).
    pub malformed: bool,
}

impl SimRequest {
    /// Whether this is an MQTT packet rather than an HTTP request.
    pub fn is_mqtt(&self) -> bool {
        matches!(self.method, MQTT_CONNECT | MQTT_PUBLISH | MQTT_SUBSCRIBE)
    }
}

impl Payload {
    pub const EMPTY: Payload = Payload {
        kind: BodyKind::Empty,
        len: 0,
        malformed: false,
    };
}

/// `SimRequest::method` of an MQTT CONNECT (`path`: the client id).
pub const MQTT_CONNECT: &str = "CONNECT";
/// `SimRequest::method` of an MQTT PUBLISH (`path`: the topic).
pub const MQTT_PUBLISH: &str = "PUBLISH";
/// `SimRequest::method` of an MQTT SUBSCRIBE (`path`: the topic filter).
pub const MQTT_SUBSCRIBE: &str = "SUBSCRIBE";

/// One request to send: HTTP, or an MQTT packet when `method` is one of [`MQTT_CONNECT`],
/// [`MQTT_PUBLISH`] and [`MQTT_SUBSCRIBE`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimRequest {
    pub method: &'static str,
    /// Path with its query, e.g. `/api/v1/export/acme?limit=100`.
    pub path: String,
    pub auth: Auth,
    pub body: Payload,
    /// Source address (sent as `X-Forwarded-For`).
    pub ip: IpAddr,
    pub user_agent: &'static str,
    /// A backend failure to play (`5xx`), see [`crate::upstream::model::FAULT_HEADER`].
    pub fault: Option<u16>,
}

/// A request of the plan, due `at_ns` after the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub at_ns: i64,
    pub source: Source,
    pub request: SimRequest,
}

/// One attacker of an attack: what it is known as (the subjects a detector may name).
#[derive(Debug, Clone, PartialEq)]
pub struct Attacker {
    /// Subjects whose alert or quarantine counts as detecting this attacker.
    pub subjects: Vec<Subject>,
    /// The fleet device it is (or whose key it uses), if any.
    pub device: Option<usize>,
}

/// An attack as planned: its window and its attackers.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackPlan {
    pub name: String,
    pub class: AttackClass,
    pub start_ns: i64,
    pub end_ns: i64,
    pub expect: Expect,
    pub attackers: Vec<Attacker>,
    /// Subjects that are victims rather than attackers (e.g. identities whose leaked keys
    /// the attack uses): quarantining them is not a false quarantine, nor a detection.
    pub victims: Vec<Subject>,
}

/// Something that sends requests.
trait Actor: Send {
    /// Its next request (never earlier than the previous one), or `None` when it is done.
    fn next(&mut self, fleet: &Fleet) -> Option<Planned>;
}

/// The requests of a run, in time order (an iterator).
pub struct Plan {
    fleet: Fleet,
    attacks: Vec<AttackPlan>,
    duration_ns: i64,
    actors: Vec<Box<dyn Actor>>,
    /// The next request of each actor not yet handed out.
    heads: Vec<Option<Planned>>,
    /// `(at_ns, actor)` of every head.
    queue: BinaryHeap<Reverse<(i64, usize)>>,
    /// Devices that send nothing of their own within `[from, to)` ns: cold-start attackers
    /// before their attack, route-mix attackers that replace their traffic during it.
    silent: std::collections::HashMap<usize, (i64, i64)>,
}

impl Plan {
    /// The plan of `scenario` (validated) with `seed`.
    pub fn new(scenario: &ScenarioConfig, seed: u64) -> Self {
        let fleet = Fleet::new(scenario, seed);
        let duration_ns = (scenario.duration_s * NS) as i64;
        let mut actors: Vec<Box<dyn Actor>> = Vec::new();
        for d in &fleet.devices {
            actors.push(Box::new(benign::Benign::new(
                scenario, &fleet, d.index, seed,
            )));
        }
        let mut attacks = Vec::new();
        let mut rng = StdRng::seed_from_u64(mix_seed(seed, 0x00A7_7AC4));
        let mut taken = HashSet::new();
        let mut ips = AttackerIps::default();
        let mut silent = std::collections::HashMap::new();
        for (ai, a) in scenario.attack.iter().enumerate() {
            let (plan, kinds) = attack::resolve(a, &fleet, &mut rng, &mut taken, &mut ips);
            let quiet = match a {
                crate::scenario::AttackConfig::DeviceFlood(c) if c.cold => {
                    Some((i64::MIN, plan.start_ns))
                }
                crate::scenario::AttackConfig::RouteMix(c) if c.replace => {
                    Some((plan.start_ns, plan.end_ns))
                }
                crate::scenario::AttackConfig::TypeMimic(c) if c.replace => {
                    Some((plan.start_ns, plan.end_ns))
                }
                _ => None,
            };
            if let Some(q) = quiet {
                for d in plan.attackers.iter().filter_map(|x| x.device) {
                    silent.insert(d, q);
                }
            }
            for (k, kind) in kinds.into_iter().enumerate() {
                actors.push(Box::new(attack::Paced::new(
                    &plan,
                    a,
                    ai,
                    k,
                    kind,
                    mix_seed(seed, ((ai as u64) << 32) | k as u64),
                )));
            }
            attacks.push(plan);
        }
        let mut plan = Self {
            heads: Vec::with_capacity(actors.len()),
            fleet,
            attacks,
            duration_ns,
            actors,
            queue: BinaryHeap::new(),
            silent,
        };
        for i in 0..plan.actors.len() {
            let head = plan.actors[i].next(&plan.fleet);
            if let Some(p) = &head {
                plan.queue.push(Reverse((p.at_ns, i)));
            }
            plan.heads.push(head);
        }
        plan
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn attacks(&self) -> &[AttackPlan] {
        &self.attacks
    }

    /// Length of the run, nanoseconds.
    pub fn duration_ns(&self) -> i64 {
        self.duration_ns
    }
}

impl Iterator for Plan {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        loop {
            let Reverse((_, i)) = self.queue.pop()?;
            let Some(p) = self.heads[i].take() else {
                continue;
            };
            let next = self.actors[i].next(&self.fleet);
            if let Some(n) = &next {
                self.queue.push(Reverse((n.at_ns, i)));
            }
            self.heads[i] = next;
            if let Source::Benign(d) = p.source
                && self
                    .silent
                    .get(&d)
                    .is_some_and(|(from, to)| p.at_ns >= *from && p.at_ns < *to)
            {
                continue;
            }
            if p.at_ns < self.duration_ns {
                return Some(p);
            }
        }
    }
}

/// Addresses handed to attackers: from 198.18.0.0/15 (reserved for benchmarks), never a
/// device's (10.0.0.0/8, 100.64.0.0/10).
#[derive(Debug, Default)]
pub(crate) struct AttackerIps {
    next: u32,
}

impl AttackerIps {
    pub(crate) fn take(&mut self) -> IpAddr {
        let ip = Ipv4Addr::from(0xC612_0000 + (self.next % 0x2_0000) + 1);
        self.next += 1;
        IpAddr::V4(ip)
    }
}

/// `n` devices of type `t` not taken yet, chosen with `rng` (and now taken).
pub(crate) fn pick(
    fleet: &Fleet,
    t: DeviceType,
    n: usize,
    rng: &mut StdRng,
    taken: &mut HashSet<usize>,
) -> Vec<usize> {
    let mut pool: Vec<usize> = fleet
        .of_type(t)
        .iter()
        .copied()
        .filter(|i| !taken.contains(i))
        .collect();
    pool.shuffle(rng);
    pool.truncate(n);
    taken.extend(pool.iter().copied());
    pool
}

/// A request of `action` by device `d` (placeholders filled in, body sized, errors played).
pub(crate) fn device_request(
    fleet: &Fleet,
    d: usize,
    action: &Action,
    ip: IpAddr,
    rng: &mut StdRng,
) -> SimRequest {
    let dev = &fleet.devices[d];
    let profile = dev.device_type.profile();
    let mut path = action.path.replace("{id}", &dev.identity);
    if path.contains("{owned}") {
        let owned = match dev.owned.as_slice() {
            [] => &dev.identity,
            o => &fleet.devices[o[rng.random_range(0..o.len())]].identity,
        };
        path = path.replace("{owned}", owned);
    }
    path = path.replace("{tenant}", &dev.tenant);
    let body = match action.body {
        BodyKind::Empty => Payload::EMPTY,
        kind => Payload {
            kind,
            len: rng.random_range(action.body_bytes.0..=action.body_bytes.1),
            malformed: kind == BodyKind::Json && rng.random_bool(profile.malformed_rate),
        },
    };
    let fault = rng
        .random_bool(profile.fault_rate)
        .then(|| [500, 502, 503][rng.random_range(0..3)]);
    SimRequest {
        method: action.method,
        path,
        auth: Auth::Device(d),
        body,
        ip,
        user_agent: profile.user_agent,
        fault,
    }
}

/// An MQTT CONNECT of device `d` (client id: its identity; password: its API key).
pub(crate) fn mqtt_connect(fleet: &Fleet, d: usize) -> SimRequest {
    let dev = &fleet.devices[d];
    SimRequest {
        method: MQTT_CONNECT,
        path: dev.identity.clone(),
        auth: Auth::Device(d),
        body: Payload::EMPTY,
        ip: dev.ips[0],
        user_agent: dev.device_type.profile().user_agent,
        fault: None,
    }
}

/// An action of `actions` chosen by weight.
pub(crate) fn choose<'a>(actions: &'a [Action], rng: &mut StdRng) -> &'a Action {
    let total: f64 = actions.iter().map(|a| a.weight).sum();
    let mut x = rng.random::<f64>() * total;
    for a in actions {
        if x < a.weight {
            return a;
        }
        x -= a.weight;
    }
    &actions[actions.len() - 1]
}

#[cfg(test)]
mod tests;
