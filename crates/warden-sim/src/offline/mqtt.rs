//! The gateway's MQTT listener, emulated for accelerated runs: what `warden-gateway`'s
//! `mqtt::session` does with a CONNECT, PUBLISH or SUBSCRIBE, and the event it writes.
//!
//! - CONNECT: the password is the device's API key; a quarantined identity, key, tenant or
//!   address is refused (`403`, quarantined), a wrong key too (`401`); accepted, the
//!   connection's message budget starts full. Route `mqtt/connect`, path the client id.
//! - PUBLISH: the connection's own limit first (the listener's defaults, 50 messages/s with a
//!   burst of 100: `429`, route `mqtt/publish`); then the translation rules
//!   ([`MQTT_RULES`]): another identity's topic is refused (`403`, RBAC), a topic no rule
//!   matches too (`404`), a wildcard is invalid (`400`); a translated message goes through
//!   the HTTP chain as its `POST` and is evented with the rule's name as the route and the
//!   topic as the path.
//! - SUBSCRIBE: only the device's own commands topic ([`MQTT_SUBSCRIBE`]); anything else is
//!   refused (`403`, RBAC). Route `mqtt/subscribe`.
//! - A quarantined device is disconnected at once, so its next message is a reconnect the
//!   gateway refuses: evented as a refused CONNECT.

use warden_event::{AuthMethod, AuthResult, Outcome, Protocol, Reason, RequestEvent, SubjectKind};

use super::Offline;
use crate::plan::{Auth, MQTT_CONNECT, MQTT_SUBSCRIBE, Planned};
use crate::record::Seen;
use crate::roster::{MQTT_RULES, MQTT_SUBSCRIBE as SUBSCRIBE_FILTER};

/// The MQTT listener's default per-connection limit: messages per second, and burst.
const MESSAGES_PER_S: f64 = 50.0;
const BURST: i64 = 100;
/// Bytes of a CONNACK, SUBACK or PUBACK.
const ACK_BYTES: u64 = 4;

/// One device's connection: the GCRA of its message limit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Conn {
    tat: i64,
}

impl Conn {
    const INTERVAL_NS: i64 = (1e9 / MESSAGES_PER_S) as i64;

    fn new() -> Self {
        Self { tat: 0 }
    }

    fn take(&mut self, now: i64) -> bool {
        let tat = self.tat.max(now);
        if tat - now > Self::INTERVAL_NS * (BURST - 1) {
            return false;
        }
        self.tat = tat + Self::INTERVAL_NS;
        true
    }
}

/// Where a topic goes under [`MQTT_RULES`].
#[derive(Debug, PartialEq, Eq)]
enum Translation {
    /// `(rule name, HTTP path)`.
    To(&'static str, String),
    OtherIdentity,
    Unmatched,
    Invalid,
}

fn translate(topic: &str, identity: &str) -> Translation {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Translation::Invalid;
    }
    let levels: Vec<&str> = topic.split('/').collect();
    let mut other = false;
    for (name, pattern, path) in MQTT_RULES {
        let pat: Vec<&str> = pattern.split('/').collect();
        if pat.len() != levels.len() {
            continue;
        }
        let mut owner = true;
        let fits = pat.iter().zip(&levels).all(|(p, l)| {
            if *p == "{identity}" {
                owner &= *l == identity;
                !l.is_empty()
            } else {
                p == l
            }
        });
        match (fits, owner) {
            (true, true) => return Translation::To(name, path.replace("{identity}", identity)),
            (true, false) => other = true,
            _ => {}
        }
    }
    if other {
        Translation::OtherIdentity
    } else {
        Translation::Unmatched
    }
}

fn refuse(e: &mut RequestEvent, status: u16, outcome: Outcome, reason: Reason) -> (Seen, u64) {
    e.decision = outcome;
    e.reason = reason;
    let seen = if outcome == Outcome::Quarantined {
        Seen::Refused
    } else {
        Seen::Gateway(status)
    };
    (seen, ACK_BYTES)
}

impl Offline {
    /// The MQTT listener's phases for `p` (an MQTT packet): fills in `e`, returns what the
    /// client sees and the bytes sent back.
    pub(super) fn mqtt(&mut self, e: &mut RequestEvent, p: &Planned, now: i64) -> (Seen, u64) {
        let r = &p.request;
        e.protocol = Protocol::Mqtt;
        e.user_agent = None;
        e.query.clear();
        e.query_hash = 0;
        e.method = r.method.to_string();
        e.path = r.path.clone();
        e.bytes_in = u64::from(r.body.len);
        e.auth.method = AuthMethod::ApiKey;
        let device = match &r.auth {
            Auth::None => None,
            Auth::Device(d) => Some(Some(*d)),
            Auth::Key(k) => Some(self.keys.get(k).copied()),
        };
        e.auth.result = match device {
            None => AuthResult::Missing,
            Some(None) => AuthResult::Failed,
            Some(Some(_)) => AuthResult::Ok,
        };
        let Some(Some(d)) = device else {
            e.method = MQTT_CONNECT.to_string();
            e.route = "mqtt/connect".to_string();
            return refuse(e, 401, Outcome::DeniedAuth, Reason::Auth);
        };
        let (identity, tenant, device_type) = {
            let dev = &self.plan.fleet().devices[d];
            (
                dev.identity.clone(),
                dev.tenant.clone(),
                dev.device_type.as_str(),
            )
        };
        e.identity = identity.clone();
        e.tenant = tenant;
        e.device_type = device_type.to_string();
        let ip = e.client_ip.clone();
        if self.quarantined_device(d, now) || self.quarantined(SubjectKind::Ip, &ip, now) {
            // Disconnected at once; what follows is the client reconnecting.
            self.conns.remove(&d);
            e.method = MQTT_CONNECT.to_string();
            e.route = "mqtt/connect".to_string();
            e.path = identity;
            e.bytes_in = 0;
            return refuse(e, 403, Outcome::Quarantined, Reason::Quarantine);
        }
        match r.method {
            MQTT_CONNECT => {
                e.route = "mqtt/connect".to_string();
                self.conns.insert(d, Conn::new());
                e.decision = Outcome::Allowed;
                (Seen::Gateway(200), ACK_BYTES)
            }
            MQTT_SUBSCRIBE => {
                e.route = "mqtt/subscribe".to_string();
                if r.path == SUBSCRIBE_FILTER.replace("{identity}", &identity) {
                    e.decision = Outcome::Allowed;
                    (Seen::Gateway(200), ACK_BYTES)
                } else {
                    refuse(e, 403, Outcome::DeniedRbac, Reason::Rbac)
                }
            }
            _ => {
                e.route = "mqtt/publish".to_string();
                if !self.conns.entry(d).or_insert_with(Conn::new).take(now) {
                    return refuse(e, 429, Outcome::Throttled, Reason::RateLimit);
                }
                match translate(&r.path, &identity) {
                    Translation::Invalid => refuse(e, 400, Outcome::Invalid, Reason::Invalid),
                    Translation::Unmatched => refuse(e, 404, Outcome::Invalid, Reason::Route),
                    Translation::OtherIdentity => refuse(e, 403, Outcome::DeniedRbac, Reason::Rbac),
                    Translation::To(rule, path) => {
                        let mut http = p.clone();
                        http.request.method = "POST";
                        http.request.path = path.clone();
                        let (seen, _) = self.gateway(e, &http, &path, None, &ip, now);
                        e.protocol = Protocol::Mqtt;
                        e.method = "POST".to_string();
                        e.route = rule.to_string();
                        e.path = r.path.clone();
                        (seen, ACK_BYTES)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_translate_under_owner_scoping() {
        assert_eq!(
            translate("devices/msensor-00001/telemetry", "msensor-00001"),
            Translation::To("mqtt_telemetry", "/api/v1/telemetry/msensor-00001".into())
        );
        assert_eq!(
            translate("devices/msensor-00002/telemetry", "msensor-00001"),
            Translation::OtherIdentity
        );
        assert_eq!(
            translate("devices/msensor-00001/ota", "msensor-00001"),
            Translation::Unmatched
        );
        assert_eq!(
            translate("devices/#", "msensor-00001"),
            Translation::Invalid
        );
    }

    #[test]
    fn the_connection_limit_allows_its_burst_then_its_rate() {
        let mut c = Conn::new();
        let now = 1_000_000_000;
        let burst = (0..200).filter(|_| c.take(now)).count();
        assert_eq!(burst as i64, BURST);
        // One second later: 50 more.
        let later = (0..200).filter(|_| c.take(now + 1_000_000_000)).count();
        assert_eq!(later, 50);
    }
}

#[cfg(test)]
mod run_tests {
    use std::collections::{HashMap, HashSet};

    use warden_event::{Action, Decision, Outcome, Protocol, Reason, Subject};

    use crate::offline::Offline;
    use crate::plan::Plan;
    use crate::scenario::ScenarioConfig;

    const SCENARIO: &str = r#"
name = "mqtt_unit"
description = "MQTT sensors, an outage, a flood and a topic walk."
seed = 5
duration_s = 120.0

[fleet]
devices = 40
tenants = 2
start_hour = 12.0
period_scale = 0.2

[fleet.mix]
mqtt_sensor = 0.8
mobile_app = 0.2

[fleet.outage]
start_s = 60.0
duration_s = 10.0
max_backlog = 3

[[attack]]
name = "flood"
type = "device_flood"
start_s = 20.0
end_s = 40.0
device_type = "mqtt_sensor"
rate_per_s = 150.0
expect = { detected = true }

[[attack]]
name = "walk"
type = "topic_enumeration"
start_s = 20.0
end_s = 50.0
rate_per_s = 3.0
expect = { detected = true }

[expect]
max_false_quarantines = 0
"#;

    #[test]
    fn mqtt_devices_connect_publish_reconnect_and_are_refused_as_the_listener_would() {
        let scenario = ScenarioConfig::from_toml(SCENARIO).unwrap_or_else(|e| panic!("{e}"));
        let plan = Plan::new(&scenario, scenario.seed);
        let flooder = plan.attacks()[0].attackers[0].subjects[0].value.clone();
        let walker = plan.attacks()[1].attackers[0].subjects[0].value.clone();
        let mut run = Offline::new(plan, 1_700_000_000_000_000_000, scenario.seed);
        let start = 1_700_000_000_000_000_000i64;
        let mut events = Vec::new();
        let mut quarantined_at = None;
        loop {
            let batch = run.next_batch(100_000_000, 1000);
            if batch.is_empty() {
                break;
            }
            events.extend(batch);
            // Quarantine the flooder 35 s in: its next message is a refused reconnect.
            if quarantined_at.is_none() && run.now_ns() >= start + 35_000_000_000 {
                quarantined_at = Some(run.now_ns());
                run.apply_decision(&Decision {
                    v: 1,
                    id: "q".into(),
                    subject: Subject::identity(flooder.clone()),
                    action: Action::Quarantine,
                    until: Some(i64::MAX),
                    reason: String::new(),
                    detector: "burst".into(),
                    score: 1.0,
                    evidence: serde_json::Value::Null,
                    decided_at: run.now_ns(),
                    limit: None,
                });
            }
        }
        let mqtt: Vec<_> = events
            .iter()
            .filter(|e| e.protocol == Protocol::Mqtt)
            .collect();
        assert!(mqtt.len() > 500, "{} MQTT events", mqtt.len());
        // Every MQTT device's first message is its CONNECT, accepted.
        let mut seen = HashSet::new();
        for e in &mqtt {
            if seen.insert(e.identity.clone()) {
                assert_eq!((e.route.as_str(), e.status), ("mqtt/connect", 200), "{e:?}");
            }
        }
        // The outage dropped every connection: reconnects after it.
        let after: HashSet<&str> = mqtt
            .iter()
            .filter(|e| e.ts >= start + 70_000_000_000 && e.route == "mqtt/connect")
            .map(|e| e.identity.as_str())
            .collect();
        assert!(after.len() >= 20, "{} reconnected", after.len());
        // Accepted messages carry the rule's name and the topic.
        let ok = mqtt
            .iter()
            .find(|e| e.route == "mqtt_telemetry")
            .expect("translated telemetry");
        assert_eq!(ok.method, "POST");
        assert_eq!(ok.path, format!("devices/{}/telemetry", ok.identity));
        assert_eq!(ok.decision, Outcome::Allowed);
        // The flood meets the connection's limit.
        let limited = mqtt
            .iter()
            .filter(|e| e.identity == flooder && e.reason == Reason::RateLimit)
            .count();
        assert!(
            limited > 500,
            "{limited} messages over the connection's limit"
        );
        // After the quarantine, the flooder only reconnects, refused.
        let q = quarantined_at.expect("quarantined");
        let later: Vec<_> = mqtt
            .iter()
            .filter(|e| e.identity == flooder && e.ts > q)
            .collect();
        assert!(!later.is_empty());
        assert!(later.iter().all(|e| e.route == "mqtt/connect"
            && e.status == 403
            && e.decision == Outcome::Quarantined));
        // The walk: refusals of every kind, many distinct topics.
        let mut by: HashMap<(&str, u16), usize> = HashMap::new();
        for e in mqtt.iter().filter(|e| e.identity == walker) {
            *by.entry((e.route.as_str(), e.status)).or_default() += 1;
        }
        for k in [
            ("mqtt/publish", 403),
            ("mqtt/publish", 404),
            ("mqtt/subscribe", 403),
        ] {
            assert!(by.get(&k).is_some_and(|n| *n > 3), "{k:?}: {by:?}");
        }
    }
}
