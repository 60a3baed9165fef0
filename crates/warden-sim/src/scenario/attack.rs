//! Attack configs, selected by `type`. Every attack has a `name`, a window (`start_s`,
//! `end_s`, seconds from the start of the run) and an `expect` table saying whether the
//! default pipeline is expected to detect it today (and why not, when not).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::DeviceType;

/// One attack of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AttackConfig {
    /// Many compromised devices flood at once, each at a rate far above its own.
    BotnetFlood(BotnetFlood),
    /// One compromised device floods.
    DeviceFlood(DeviceFlood),
    /// Many API keys tried from a few IP addresses (a few of them leaked, valid keys).
    CredentialStuffing(CredentialStuffing),
    /// An app user walks other users' device ids (broken object-level authorisation).
    Enumeration(Enumeration),
    /// App users scrape other devices' histories slowly, under any per-device rate limit.
    SlowScraping(SlowScraping),
    /// A client pulls huge exports: few requests, enormous responses.
    Exfiltration(Exfiltration),
    /// A compromised device drifts: new routes, a new IP, more and more over the window.
    Drift(Drift),
    /// A device's key replayed from a new IP while the device goes on as usual.
    TokenReplay(TokenReplay),
    /// A sensor probing firmware and admin routes it never uses.
    FirmwareProbe(FirmwareProbe),
    /// App users page through a collection with `?page=N`, one page after another, faster
    /// than they ever read: one path, many resources.
    QueryScrape(QueryScrape),
    /// A compromised device keeps its pace but changes what it sends: every request on one
    /// of its own routes (e.g. a sensor polling its config route as a command channel), with
    /// its own payload sizes or `body_bytes`. No new route, no new address, no more requests.
    RouteMix(RouteMix),
    /// A compromised device behaves like another device type: that type's pace, request mix
    /// and payload sizes (e.g. a temperature sensor sending like a camera). Every value is
    /// one the fleet sends; the combination is not its own type's.
    TypeMimic(TypeMimic),
    /// A compromised MQTT device walks the topic space: publishes to other devices' topics
    /// and to topics no rule translates, and subscribes to wildcards and others' commands.
    TopicEnumeration(TopicEnumeration),
}

/// The attack classes, as written in labels and reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AttackClass {
    BotnetFlood,
    DeviceFlood,
    CredentialStuffing,
    Enumeration,
    SlowScraping,
    Exfiltration,
    Drift,
    TokenReplay,
    FirmwareProbe,
    QueryScrape,
    RouteMix,
    TypeMimic,
    TopicEnumeration,
}

impl AttackClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AttackClass::BotnetFlood => "botnet_flood",
            AttackClass::DeviceFlood => "device_flood",
            AttackClass::CredentialStuffing => "credential_stuffing",
            AttackClass::Enumeration => "enumeration",
            AttackClass::SlowScraping => "slow_scraping",
            AttackClass::Exfiltration => "exfiltration",
            AttackClass::Drift => "drift",
            AttackClass::TokenReplay => "token_replay",
            AttackClass::FirmwareProbe => "firmware_probe",
            AttackClass::QueryScrape => "query_scrape",
            AttackClass::RouteMix => "route_mix",
            AttackClass::TypeMimic => "type_mimic",
            AttackClass::TopicEnumeration => "topic_enumeration",
        }
    }
}

impl std::fmt::Display for AttackClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the end-to-end test expects of an attack with the default pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Whether an alert is expected on the attacking subjects. When a detector lands that
    /// catches an attack expected undetected, the test fails and asks to flip this.
    pub detected: bool,
    /// Required when `detected = false`: why not yet (which detector is missing).
    #[serde(default)]
    pub reason: Option<String>,
    /// `detected = true` only: least share of attacking subjects that must be detected, in
    /// (0, 1] (default 1).
    #[serde(default)]
    pub min_recall: Option<f64>,
    /// `detected = true` only: every detected attacker must also be refused by the gateway
    /// (quarantined, not only alerted on). Default false.
    #[serde(default)]
    pub quarantined: bool,
}

macro_rules! each {
    ($self:expr, $a:ident => $e:expr) => {
        match $self {
            AttackConfig::BotnetFlood($a) => $e,
            AttackConfig::DeviceFlood($a) => $e,
            AttackConfig::CredentialStuffing($a) => $e,
            AttackConfig::Enumeration($a) => $e,
            AttackConfig::SlowScraping($a) => $e,
            AttackConfig::Exfiltration($a) => $e,
            AttackConfig::Drift($a) => $e,
            AttackConfig::TokenReplay($a) => $e,
            AttackConfig::FirmwareProbe($a) => $e,
            AttackConfig::QueryScrape($a) => $e,
            AttackConfig::RouteMix($a) => $e,
            AttackConfig::TypeMimic($a) => $e,
            AttackConfig::TopicEnumeration($a) => $e,
        }
    };
}

impl AttackConfig {
    pub fn name(&self) -> &str {
        each!(self, a => &a.name)
    }

    pub fn class(&self) -> AttackClass {
        match self {
            AttackConfig::BotnetFlood(_) => AttackClass::BotnetFlood,
            AttackConfig::DeviceFlood(_) => AttackClass::DeviceFlood,
            AttackConfig::CredentialStuffing(_) => AttackClass::CredentialStuffing,
            AttackConfig::Enumeration(_) => AttackClass::Enumeration,
            AttackConfig::SlowScraping(_) => AttackClass::SlowScraping,
            AttackConfig::Exfiltration(_) => AttackClass::Exfiltration,
            AttackConfig::Drift(_) => AttackClass::Drift,
            AttackConfig::TokenReplay(_) => AttackClass::TokenReplay,
            AttackConfig::FirmwareProbe(_) => AttackClass::FirmwareProbe,
            AttackConfig::QueryScrape(_) => AttackClass::QueryScrape,
            AttackConfig::RouteMix(_) => AttackClass::RouteMix,
            AttackConfig::TypeMimic(_) => AttackClass::TypeMimic,
            AttackConfig::TopicEnumeration(_) => AttackClass::TopicEnumeration,
        }
    }

    /// `(start_s, end_s)`.
    pub fn window(&self) -> (f64, f64) {
        each!(self, a => (a.start_s, a.end_s))
    }

    pub(crate) fn window_mut(&mut self) -> (&mut f64, &mut f64) {
        each!(self, a => (&mut a.start_s, &mut a.end_s))
    }

    pub fn expect(&self) -> &Expect {
        each!(self, a => &a.expect)
    }

    pub fn expect_mut(&mut self) -> &mut Expect {
        each!(self, a => &mut a.expect)
    }
}

fn sensor() -> DeviceType {
    DeviceType::TemperatureSensor
}
fn industrial_gateway() -> DeviceType {
    DeviceType::IndustrialGateway
}
fn camera() -> DeviceType {
    DeviceType::Camera
}
fn meter() -> DeviceType {
    DeviceType::SmartMeter
}
fn one() -> usize {
    1
}
fn export_limit() -> u32 {
    50_000
}
fn scrape_limit() -> u32 {
    500
}
/// `type = "botnet_flood"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BotnetFlood {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Compromised devices (chosen with the seed among devices of `device_type`).
    pub devices: usize,
    /// Type of the compromised devices.
    #[serde(default = "sensor")]
    pub device_type: DeviceType,
    /// Requests per second each compromised device sends (its normal route and body).
    pub rate_per_device: f64,
}

/// `type = "device_flood"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceFlood {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Type of the compromised device (chosen with the seed).
    #[serde(default = "sensor")]
    pub device_type: DeviceType,
    /// Requests per second it sends (at the start, when it grows).
    pub rate_per_s: f64,
    /// The device sends nothing before the attack: it floods from its very first request
    /// (a new device, or a stolen key first used by the attacker), so it has no history of
    /// its own to be compared with.
    #[serde(default)]
    pub cold: bool,
    /// The rate doubles every this many seconds (a slow drift rather than a step).
    #[serde(default)]
    pub doubling_s: Option<f64>,
}

/// `type = "credential_stuffing"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialStuffing {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Source IP addresses the attempts come from.
    pub ips: usize,
    /// Attempts per second, all IPs together.
    pub rate_per_s: f64,
    /// Valid keys of real app users in the attacker's list (they succeed; those identities
    /// count as attacking subjects).
    #[serde(default)]
    pub leaked_keys: usize,
}

/// `type = "enumeration"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Enumeration {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// App users walking other users' device ids (chosen with the seed).
    #[serde(default = "one")]
    pub attackers: usize,
    /// Requests per second of each attacker.
    pub rate_per_s: f64,
}

/// `type = "slow_scraping"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlowScraping {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// App users scraping (chosen with the seed).
    pub attackers: usize,
    /// Requests per second of each attacker (keep it under what a device does).
    pub rate_per_s: f64,
    /// Rows of history asked for per request.
    #[serde(default = "scrape_limit")]
    pub limit: u32,
}

/// `type = "exfiltration"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exfiltration {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Type of the compromised client (chosen with the seed).
    #[serde(default = "industrial_gateway")]
    pub device_type: DeviceType,
    /// Export requests per second.
    pub rate_per_s: f64,
    /// Rows per export (about 100 bytes each).
    #[serde(default = "export_limit")]
    pub limit: u32,
}

/// `type = "drift"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Type of the compromised device (chosen with the seed).
    #[serde(default = "camera")]
    pub device_type: DeviceType,
    /// Rate of the unusual requests at the end of the window (it ramps up from 0).
    pub rate_per_s: f64,
    /// Whether the unusual requests come from a new IP address.
    #[serde(default = "yes")]
    pub new_ip: bool,
}

/// `type = "token_replay"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenReplay {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Type of the device whose key is replayed (chosen with the seed).
    #[serde(default = "meter")]
    pub device_type: DeviceType,
    /// New IP addresses the key is replayed from.
    #[serde(default = "one")]
    pub ips: usize,
    /// Replayed requests per second, all IPs together.
    pub rate_per_s: f64,
}

/// `type = "firmware_probe"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirmwareProbe {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Type of the probing device (chosen with the seed).
    #[serde(default = "sensor")]
    pub device_type: DeviceType,
    /// Probes per second.
    pub rate_per_s: f64,
}

fn mqtt_sensor() -> DeviceType {
    DeviceType::MqttSensor
}

/// `type = "topic_enumeration"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicEnumeration {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Type of the enumerating devices (an MQTT type; chosen with the seed).
    #[serde(default = "mqtt_sensor")]
    pub device_type: DeviceType,
    /// How many devices enumerate.
    #[serde(default = "one")]
    pub attackers: usize,
    /// Messages (PUBLISH and SUBSCRIBE) per second, per attacker.
    pub rate_per_s: f64,
}

fn mobile_app() -> DeviceType {
    DeviceType::MobileApp
}
fn page_size() -> u32 {
    100
}

/// `type = "query_scrape"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryScrape {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Clients paging through a collection (chosen with the seed).
    pub attackers: usize,
    /// Their type (app users page through their meters' histories).
    #[serde(default = "mobile_app")]
    pub device_type: DeviceType,
    /// Pages per second of each attacker.
    pub rate_per_s: f64,
    /// Rows per page.
    #[serde(default = "page_size")]
    pub page_size: u32,
}

/// `type = "route_mix"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteMix {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Compromised devices (chosen with the seed among devices of `device_type`).
    #[serde(default = "one")]
    pub devices: usize,
    /// Type of the compromised devices.
    #[serde(default = "sensor")]
    pub device_type: DeviceType,
    /// Requests per second each sends (set it to the type's usual pace).
    pub rate_per_s: f64,
    /// The route template every request uses: one of the type's own (e.g.
    /// `/api/v1/config/{id}`).
    pub route: String,
    /// Body size range `[min, max]` of each request, bytes (default: the route's own).
    #[serde(default)]
    pub body_bytes: Option<[u32; 2]>,
    /// Whether the attack replaces the device's own traffic during its window (it keeps
    /// exactly its pace: `rate_per_s` is all it sends) instead of adding to it.
    #[serde(default)]
    pub replace: bool,
}

/// `type = "type_mimic"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeMimic {
    /// Attack name (unique in the scenario).
    pub name: String,
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// End, seconds from the start of the run.
    pub end_s: f64,
    /// What detection is expected.
    pub expect: Expect,
    /// Compromised devices (chosen with the seed among devices of `device_type`).
    #[serde(default = "one")]
    pub devices: usize,
    /// Type of the compromised devices.
    #[serde(default = "sensor")]
    pub device_type: DeviceType,
    /// The type they behave like: its request mix (methods, payload sizes) is theirs.
    #[serde(default = "camera")]
    pub mimic: DeviceType,
    /// Requests per second each sends (set it to the mimicked type's usual pace).
    pub rate_per_s: f64,
    /// Whether requests keep the device's own routes (each of the mimicked type's requests
    /// sent on the device's own route with the same method, else its main route): no new
    /// route, only the pace, sizes and mix change. Otherwise the mimicked type's routes are
    /// used, with the device's identity in them.
    #[serde(default)]
    pub own_routes: bool,
    /// Whether the attack replaces the device's own traffic during its window instead of
    /// adding to it.
    #[serde(default = "yes")]
    pub replace: bool,
}

fn yes() -> bool {
    true
}
