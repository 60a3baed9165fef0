//! Accelerated runs: the plan's requests turned straight into the events a gateway would
//! emit, in simulated time and without any HTTP — for training data (Parquet), for day-long
//! runs through the detection engine, and for fast backtests.
//!
//! The gateway is emulated for what decides an event's fields: route matching and method
//! allow lists ([`SIM_ROUTES`]), API-key authentication, quarantine of identities, keys,
//! tenants and IPs (from the decisions the caller applies), the body limit, and the simulated
//! backend's answer ([`crate::upstream::model::reply`]).

mod mqtt;
mod parquet_sink;

use std::collections::HashMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warden_event::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Decision, Outcome, Protocol, Reason, RequestEvent,
    SCHEMA_VERSION, Subject, SubjectKind,
};

pub use parquet_sink::ParquetSink;

use crate::labels::{Labels, RunMode};
use crate::plan::{Auth, Plan, Planned};
use crate::record::{Recorder, RunInfo, Seen};
use crate::roster::{Credential, SIM_ROUTES};
use crate::upstream::model;
use crate::{ScenarioConfig, mix_seed};

/// Largest request body the emulated gateway accepts (the gateway's default).
pub const MAX_BODY_BYTES: u64 = 1 << 20;
/// Gateway id written in accelerated events.
pub const OFFLINE_GATEWAY: &str = "sim-offline";

/// An accelerated run in progress: hands out events batch by batch.
pub struct Offline {
    plan: Plan,
    recorder: Recorder,
    /// Epoch nanoseconds of the run's start.
    start_ns: i64,
    rng: StdRng,
    keys: HashMap<String, usize>,
    /// Active quarantines: subject → until (epoch ns).
    quarantine: HashMap<Subject, i64>,
    /// Active throttles: subject → (until, the GCRA's theoretical arrival time in ns,
    /// emission interval in ns, burst tolerance in ns).
    throttles: HashMap<Subject, Throttle>,
    seq: u64,
    /// A request taken from the plan but not yet handed out (it belongs to the next batch).
    held: Option<Planned>,
    last_ts: i64,
    /// MQTT devices' open connections (device index → its message limit).
    conns: HashMap<usize, mqtt::Conn>,
}

impl Offline {
    /// Start an accelerated run of `plan` whose simulated clock starts at `start_ns` (epoch
    /// nanoseconds).
    pub fn new(plan: Plan, start_ns: i64, seed: u64) -> Self {
        let keys = plan
            .fleet()
            .devices
            .iter()
            .filter_map(|d| Some((d.credential.api_key()?.to_string(), d.index)))
            .collect();
        Self {
            recorder: Recorder::new(&plan),
            plan,
            start_ns,
            rng: StdRng::seed_from_u64(mix_seed(seed, 0x000F_F11E)),
            keys,
            quarantine: HashMap::new(),
            throttles: HashMap::new(),
            seq: 0,
            held: None,
            last_ts: start_ns,
            conns: HashMap::new(),
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Counters so far.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Event time of the last event handed out.
    pub fn now_ns(&self) -> i64 {
        self.last_ts
    }

    /// The events of the next `span_ns` of simulated time (at most `max` of them); empty when
    /// the run is over.
    pub fn next_batch(&mut self, span_ns: i64, max: usize) -> Vec<RequestEvent> {
        let mut out = Vec::new();
        let Some(first) = self.held.take().or_else(|| self.plan.next()) else {
            return out;
        };
        let until = first.at_ns + span_ns.max(1);
        let mut next = Some(first);
        while let Some(p) = next {
            if p.at_ns >= until || out.len() >= max.max(1) {
                self.held = Some(p);
                break;
            }
            out.push(self.event(&p));
            next = self.plan.next();
        }
        out
    }

    /// Enforce a decision from now on, as every gateway would: a quarantine refuses the
    /// subject, a throttle holds it to the decision's rate (the gateway's default, 1 request/s
    /// with a burst of 5, when the decision has none).
    pub fn apply_decision(&mut self, d: &Decision) {
        let until = d.until.unwrap_or(i64::MAX);
        match d.action {
            warden_event::Action::Release => {
                self.quarantine.remove(&d.subject);
                self.throttles.remove(&d.subject);
            }
            warden_event::Action::Quarantine => {
                self.throttles.remove(&d.subject);
                self.quarantine.insert(d.subject.clone(), until);
            }
            warden_event::Action::Throttle => {
                self.quarantine.remove(&d.subject);
                let (per_s, burst) = d.limit.map_or((1.0, 5), |l| (l.per_s, l.burst));
                let interval = (1e9 / per_s.max(1e-6)).min(1e15) as i64;
                self.throttles.insert(
                    d.subject.clone(),
                    Throttle {
                        until,
                        tat: 0,
                        interval,
                        tolerance: interval.saturating_mul(i64::from(burst.max(1)) - 1),
                    },
                );
            }
        }
    }

    /// Count a request of `subject` against its throttle, if any: `false` when refused.
    fn throttle_allows(&mut self, subject: &Subject, now: i64) -> bool {
        let Some(t) = self.throttles.get_mut(subject) else {
            return true;
        };
        if t.until <= now {
            return true;
        }
        let tat = t.tat.max(now);
        if tat - now > t.tolerance {
            return false;
        }
        t.tat = tat + t.interval;
        true
    }

    /// The labels of the run, once [`Offline::next_batch`] returned nothing.
    pub fn labels(&self, scenario: &ScenarioConfig, seed: u64, target: Option<String>) -> Labels {
        self.recorder.labels(
            scenario,
            &self.plan,
            RunInfo {
                seed,
                mode: RunMode::Accelerated,
                target,
                started_at: self.start_ns,
                ended_at: self.start_ns + self.plan.duration_ns(),
            },
        )
    }

    /// Whether device `d`'s identity, key or tenant is quarantined.
    fn quarantined_device(&self, d: usize, now: i64) -> bool {
        let d = &self.plan.fleet().devices[d];
        self.quarantined(SubjectKind::Identity, &d.identity, now)
            || d.credential
                .key_id()
                .is_some_and(|k| self.quarantined(SubjectKind::ApiKey, k, now))
            || self.quarantined(SubjectKind::Tenant, &d.tenant, now)
    }

    fn quarantined(&self, kind: SubjectKind, value: &str, now: i64) -> bool {
        self.quarantine
            .get(&Subject {
                kind,
                value: value.to_string(),
            })
            .is_some_and(|until| *until > now)
    }

    /// The event the gateway would emit for `p`, and what its client would see.
    fn event(&mut self, p: &Planned) -> RequestEvent {
        let r = &p.request;
        let ts = self.start_ns + p.at_ns;
        self.last_ts = ts;
        let (path, query) = match r.path.split_once('?') {
            Some((path, q)) => (path, Some(q)),
            None => (r.path.as_str(), None),
        };
        let ip = r.ip.to_string();
        let mut e = RequestEvent {
            v: SCHEMA_VERSION,
            id: uuid::Builder::from_random_bytes(self.rng.random())
                .into_uuid()
                .to_string(),
            gateway: OFFLINE_GATEWAY.to_string(),
            seq: self.seq,
            ts,
            identity: ANONYMOUS.to_string(),
            tenant: String::new(),
            device_type: String::new(),
            auth: AuthInfo {
                method: AuthMethod::None,
                result: AuthResult::NotRequired,
            },
            client_ip: ip.clone(),
            protocol: Protocol::Http,
            method: r.method.to_string(),
            route: "unmatched".to_string(),
            path: path.to_string(),
            status: 0,
            decision: Outcome::Allowed,
            latency_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            user_agent: Some(r.user_agent.to_string()),
            tls: None,
            reason: Reason::None,
            query: String::new(),
            query_hash: 0,
        };
        if let Some(q) = query {
            e.query = warden_event::query::shape(q);
            e.query_hash = warden_event::query::hash(QUERY_HASH_KEY, q);
        }
        self.seq += 1;
        let (seen, bytes_out) = if r.is_mqtt() {
            self.mqtt(&mut e, p, ts)
        } else {
            self.gateway(&mut e, p, path, query, &ip, ts)
        };
        e.bytes_out = bytes_out;
        e.status = match seen {
            Seen::Through(s) | Seen::Gateway(s) => s,
            Seen::Refused => 403,
            Seen::Failed => 502,
        };
        if e.reason == Reason::None && e.status >= 500 {
            e.reason = Reason::Upstream;
        }
        // Latency: a couple of milliseconds plus transfer time at ~50 MB/s.
        let transfer = (e.bytes_in + e.bytes_out) / 50;
        e.latency_us = 800 + self.rng.random_range(0..4_000) + transfer;
        self.recorder.sending(false);
        self.recorder
            .record(p.source, ts, ts + e.latency_us as i64 * 1000, seen);
        e
    }

    /// The gateway's phases for `p`: fills in the event, returns what the client sees and the
    /// response bytes.
    fn gateway(
        &mut self,
        e: &mut RequestEvent,
        p: &Planned,
        path: &str,
        query: Option<&str>,
        ip: &str,
        now: i64,
    ) -> (Seen, u64) {
        const ERROR_BODY: u64 = 110;
        let r = &p.request;
        // A quarantined address learns nothing: the same 403 whatever it presents.
        if self.quarantined(SubjectKind::Ip, ip, now) {
            e.decision = Outcome::Quarantined;
            e.reason = Reason::Quarantine;
            return (Seen::Refused, ERROR_BODY);
        }
        let route = SIM_ROUTES
            .iter()
            .filter(|(_, prefix, _)| {
                path == *prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|(_, prefix, _)| prefix.len());
        let refused_route = match route {
            None => Some(404),
            Some((name, _, methods)) => {
                e.route = (*name).to_string();
                (!methods.is_empty() && !methods.contains(&r.method)).then_some(405)
            }
        };
        let device = match &r.auth {
            Auth::None => None,
            Auth::Device(d) => Some(Some(*d)),
            Auth::Key(k) => Some(self.keys.get(k).copied()),
        };
        e.auth.method = match &r.auth {
            Auth::Device(d) => match self.plan.fleet().devices[*d].credential {
                Credential::Jwt => AuthMethod::Jwt,
                Credential::ClientCert => AuthMethod::ClientCert,
                Credential::ApiKey { .. } => AuthMethod::ApiKey,
            },
            _ => AuthMethod::ApiKey,
        };
        e.auth.result = match device {
            None => AuthResult::Missing,
            Some(None) => AuthResult::Failed,
            Some(Some(_)) => AuthResult::Ok,
        };
        if let Some(Some(d)) = device {
            // Attributed even when the route is refused: a probing device's probes count.
            let d = &self.plan.fleet().devices[d];
            e.identity = d.identity.clone();
            e.tenant = d.tenant.clone();
            e.device_type = d.device_type.as_str().to_string();
        }
        let d = match (device, refused_route) {
            (Some(Some(d)), _) if self.quarantined_device(d, now) => {
                e.decision = Outcome::Quarantined;
                e.reason = Reason::Quarantine;
                return (Seen::Refused, ERROR_BODY);
            }
            (_, Some(status)) => {
                e.decision = Outcome::Invalid;
                e.reason = Reason::Route;
                return (Seen::Gateway(status), ERROR_BODY);
            }
            (None | Some(None), None) => {
                e.decision = Outcome::DeniedAuth;
                e.reason = Reason::Auth;
                return (Seen::Gateway(401), ERROR_BODY);
            }
            (Some(Some(d)), None) => d,
        };
        let d = &self.plan.fleet().devices[d];
        let throttled = [
            Subject::identity(d.identity.clone()),
            Subject {
                kind: SubjectKind::Tenant,
                value: d.tenant.clone(),
            },
        ];
        if !throttled.iter().all(|s| self.throttle_allows(s, now)) {
            e.decision = Outcome::Throttled;
            e.reason = Reason::Throttle;
            return (Seen::Gateway(429), ERROR_BODY);
        }
        let body_len = u64::from(r.body.len);
        if body_len > MAX_BODY_BYTES {
            e.decision = Outcome::Invalid;
            e.reason = Reason::Invalid;
            return (Seen::Gateway(413), ERROR_BODY);
        }
        e.bytes_in = body_len;
        let reply = model::reply(r.method, path, query, !r.body.malformed, r.fault);
        e.decision = Outcome::Allowed;
        (Seen::Through(reply.status), reply.len())
    }
}

/// A `throttle` decision as a GCRA (see the gateway's `ratelimit::gcra`).
#[derive(Debug, Clone, Copy)]
struct Throttle {
    until: i64,
    tat: i64,
    interval: i64,
    tolerance: i64,
}

/// Key of the query hashes of accelerated runs.
pub const QUERY_HASH_KEY: &[u8] = b"warden-sim";

/// Write an accelerated run's events to `path` as Parquet; see [`ParquetSink`].
pub fn parquet_sink(path: &Path) -> Result<ParquetSink, crate::SimError> {
    ParquetSink::create(path)
}
