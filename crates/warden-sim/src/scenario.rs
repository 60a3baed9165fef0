//! Scenario files (`tests/scenarios/*.toml`): a fleet, the attacks played against it with
//! their parameters, and what detection is expected.
//!
//! Loading is strict like every Warden config: unknown keys, wrong types and missing keys are
//! all reported with their paths, then every semantic problem is.

mod attack;
mod validate;

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warden_config::{ConfigError, ConfigErrors};

pub use attack::{
    AttackClass, AttackConfig, BotnetFlood, CredentialStuffing, DeviceFlood, Drift, Enumeration,
    Exfiltration, Expect, FirmwareProbe, RouteMix, SlowScraping, TokenReplay, TypeMimic,
};

use crate::DeviceType;

/// A scenario: a fleet and the attacks played against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Scenario name, used in labels and reports (letters, digits, `_` and `-`).
    pub name: String,
    /// What the scenario shows, in a sentence or two.
    pub description: String,
    /// Seed of everything random (keys, schedules, attack targets); `--seed` overrides it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Length of a run, seconds; `--duration` overrides it, and attack times, the outage and
    /// the firmware rollout then scale with it (they stay at the same share of the run).
    pub duration_s: f64,
    /// The benign fleet.
    pub fleet: FleetSpec,
    /// Attacks (none: a benign-only scenario).
    #[serde(default)]
    pub attack: Vec<AttackConfig>,
    /// What the whole run must show.
    pub expect: ScenarioExpect,
}

fn default_seed() -> u64 {
    7
}

/// The benign fleet of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Devices and app users in the fleet; `--rate` overrides it by sizing the fleet to a
    /// mean request rate.
    pub devices: usize,
    /// Share of each device type (weights; they need not add up to 1).
    pub mix: Mix,
    /// Tenants the fleet is spread over (round-robin).
    #[serde(default = "default_tenants")]
    pub tenants: usize,
    /// Hour of the day (0 to 24) at the start of a run: devices follow their diurnal pattern on
    /// this simulated clock.
    #[serde(default = "default_start_hour")]
    pub start_hour: f64,
    /// Multiplies every device type's reporting period: below 1 makes a chattier fleet (short
    /// test runs), above 1 a quieter one. At least 0.05.
    #[serde(default = "default_period_scale")]
    pub period_scale: f64,
    /// A firmware rollout: devices download a new image in chunks (a legitimate burst).
    #[serde(default)]
    pub firmware_rollout: Option<RolloutSpec>,
    /// A network outage: devices cannot report, then all reconnect at once and send their
    /// backlog (a legitimate reconnect storm).
    #[serde(default)]
    pub outage: Option<OutageSpec>,
    /// Devices joining, leaving and going offline for a while during the run.
    #[serde(default)]
    pub churn: Option<ChurnSpec>,
}

fn default_tenants() -> usize {
    3
}
fn default_start_hour() -> f64 {
    9.0
}
fn default_period_scale() -> f64 {
    1.0
}

/// Weights of the device types in the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Weight of temperature sensors.
    #[serde(default)]
    pub temperature_sensor: f64,
    /// Weight of cameras.
    #[serde(default)]
    pub camera: f64,
    /// Weight of smart meters.
    #[serde(default)]
    pub smart_meter: f64,
    /// Weight of industrial gateways.
    #[serde(default)]
    pub industrial_gateway: f64,
    /// Weight of companion-app users.
    #[serde(default)]
    pub mobile_app: f64,
    /// Weight of MQTT sensors (accelerated runs only: a live run refuses them).
    #[serde(default)]
    pub mqtt_sensor: f64,
}

impl Mix {
    /// The weight of `t`.
    pub fn weight(&self, t: DeviceType) -> f64 {
        match t {
            DeviceType::TemperatureSensor => self.temperature_sensor,
            DeviceType::Camera => self.camera,
            DeviceType::SmartMeter => self.smart_meter,
            DeviceType::IndustrialGateway => self.industrial_gateway,
            DeviceType::MobileApp => self.mobile_app,
            DeviceType::MqttSensor => self.mqtt_sensor,
        }
    }

    /// How many of `devices` are of each type (largest remainders, so they add up exactly).
    pub fn counts(&self, devices: usize) -> Vec<(DeviceType, usize)> {
        let total: f64 = DeviceType::ALL.iter().map(|t| self.weight(*t)).sum();
        if total.is_nan() || total <= 0.0 {
            return DeviceType::ALL.iter().map(|t| (*t, 0)).collect();
        }
        let exact: Vec<f64> = DeviceType::ALL
            .iter()
            .map(|t| self.weight(*t) / total * devices as f64)
            .collect();
        let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
        let mut left = devices.saturating_sub(counts.iter().sum());
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|a, b| {
            let ra = exact[*a] - exact[*a].floor();
            let rb = exact[*b] - exact[*b].floor();
            rb.total_cmp(&ra).then(a.cmp(b))
        });
        for i in order {
            if left == 0 {
                break;
            }
            if self.weight(DeviceType::ALL[i]) > 0.0 {
                counts[i] += 1;
                left -= 1;
            }
        }
        DeviceType::ALL.iter().copied().zip(counts).collect()
    }
}

/// A firmware rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// When the rollout starts, seconds from the start of the run.
    pub start_s: f64,
    /// Devices start their download spread over this many seconds.
    pub spread_s: f64,
    /// Share of the devices (not app users) that update, in (0, 1].
    pub fraction: f64,
    /// Chunks of 64 KiB each device downloads.
    #[serde(default = "default_chunks")]
    pub chunks: u32,
}

fn default_chunks() -> u32 {
    12
}

/// A network outage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    /// When the outage starts, seconds from the start of the run.
    pub start_s: f64,
    /// How long devices cannot reach the gateway, seconds.
    pub duration_s: f64,
    /// Most queued reports a device sends when it reconnects.
    #[serde(default = "default_backlog")]
    pub max_backlog: u32,
}

fn default_backlog() -> u32 {
    8
}

/// A fleet's churn: each device is at most one of new (joins during the run), retired (goes
/// silent during the run) or away (offline for a while, then back with its queued reports —
/// after a long absence its history has expired, so it returns as an unknown device with a
/// burst). Moments are drawn uniformly over the run, per device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChurnSpec {
    /// Share of the devices that join during the run: silent until then, they start with a
    /// few first-contact requests within seconds, then report as usual.
    #[serde(default)]
    pub joining: f64,
    /// Share of the devices that go silent for good at some moment of the run.
    #[serde(default)]
    pub leaving: f64,
    /// Share of the devices that go offline for `offline_s` at some moment of the run.
    #[serde(default)]
    pub offline: f64,
    /// How long an away device is offline, seconds (scales with `--duration`).
    #[serde(default = "default_offline_s")]
    pub offline_s: f64,
    /// Most queued reports an away device sends when it is back.
    #[serde(default = "default_backlog")]
    pub max_backlog: u32,
}

fn default_offline_s() -> f64 {
    60.0
}

/// What a whole run must show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioExpect {
    /// Most quarantines of benign subjects the run may cause (normally 0).
    pub max_false_quarantines: usize,
}

impl ScenarioConfig {
    /// Load and validate a scenario file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let with_file = |mut e: ConfigErrors| {
            for err in &mut e.0 {
                err.file.get_or_insert_with(|| path.to_path_buf());
            }
            e
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| with_file(ConfigError::new("", format!("cannot read: {e}")).into()))?;
        Self::from_toml(&text).map_err(with_file)
    }

    /// Parse and validate scenario TOML.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        let config: Self = warden_config::parse_strict(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Semantic checks; every problem is reported with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let errs = validate::scenario(self);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// This scenario with another run length: attack windows, the outage and the rollout keep
    /// their share of the run.
    pub fn with_duration(mut self, duration_s: f64) -> Self {
        let k = duration_s / self.duration_s;
        if !(k.is_finite() && k > 0.0) {
            self.duration_s = duration_s;
            return self;
        }
        self.duration_s = duration_s;
        for a in &mut self.attack {
            let (start, end) = a.window_mut();
            *start *= k;
            *end *= k;
        }
        if let Some(r) = &mut self.fleet.firmware_rollout {
            r.start_s *= k;
            r.spread_s *= k;
        }
        if let Some(o) = &mut self.fleet.outage {
            o.start_s *= k;
            o.duration_s *= k;
        }
        if let Some(c) = &mut self.fleet.churn {
            c.offline_s *= k;
        }
        self
    }

    /// This scenario with a fleet sized so that it sends about `rate` requests per second on
    /// average over a day (at least one device of each type the mix has).
    pub fn with_rate(mut self, rate: f64) -> Self {
        let per_device: f64 = {
            let total: f64 = DeviceType::ALL
                .iter()
                .map(|t| self.fleet.mix.weight(*t))
                .sum();
            DeviceType::ALL
                .iter()
                .map(|t| self.fleet.mix.weight(*t) / total * t.profile().mean_rate())
                .sum::<f64>()
                / self.fleet.period_scale
        };
        if per_device.is_finite() && per_device > 0.0 && rate.is_finite() && rate > 0.0 {
            self.fleet.devices = (rate / per_device).round().max(1.0) as usize;
        }
        self
    }

    /// Mean requests per second of the benign fleet over a day.
    pub fn mean_rate(&self) -> f64 {
        self.fleet
            .mix
            .counts(self.fleet.devices)
            .into_iter()
            .map(|(t, n)| n as f64 * t.profile().mean_rate())
            .sum::<f64>()
            / self.fleet.period_scale
    }
}

#[cfg(test)]
mod tests;
