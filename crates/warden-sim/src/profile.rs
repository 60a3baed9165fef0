//! Device types and how each behaves: its routes and methods, payload sizes, reporting period
//! with jitter, diurnal pattern, legitimate bursts and error rates.
//!
//! The numbers are built in (a scenario scales periods with `fleet.period_scale`); they follow
//! what such devices typically do: sensors and meters report on a fixed period around the
//! clock, cameras follow activity in daylight, industrial gateways batch readings from a shop
//! floor that works shifts, and app users open the companion app a few times a day, mostly in
//! the evening, in short sessions of several requests.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A kind of device in the fleet.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    /// Reports a temperature reading every 30 s, day and night.
    TemperatureSensor,
    /// Sends motion events (more in daylight), heartbeats, and sometimes a clip upload.
    Camera,
    /// Reports a meter reading every minute.
    SmartMeter,
    /// Uploads batches of shop-floor readings every few seconds during shifts, polls commands.
    IndustrialGateway,
    /// A person using the companion app: sessions of a few requests about their own devices.
    MobileApp,
    /// Publishes a reading every 15 s over MQTT (one connection, kept open; reconnects after
    /// an outage), through the gateway's MQTT listener and its translation rules.
    MqttSensor,
}

impl DeviceType {
    pub const ALL: [DeviceType; 6] = [
        DeviceType::TemperatureSensor,
        DeviceType::Camera,
        DeviceType::SmartMeter,
        DeviceType::IndustrialGateway,
        DeviceType::MobileApp,
        DeviceType::MqttSensor,
    ];

    /// The name used in configs, events (`device_type`) and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::TemperatureSensor => "temperature_sensor",
            DeviceType::Camera => "camera",
            DeviceType::SmartMeter => "smart_meter",
            DeviceType::IndustrialGateway => "industrial_gateway",
            DeviceType::MobileApp => "mobile_app",
            DeviceType::MqttSensor => "mqtt_sensor",
        }
    }

    /// Prefix of the identities of this type (`sensor-00012`).
    pub fn prefix(self) -> &'static str {
        match self {
            DeviceType::TemperatureSensor => "sensor",
            DeviceType::Camera => "camera",
            DeviceType::SmartMeter => "meter",
            DeviceType::IndustrialGateway => "igw",
            DeviceType::MobileApp => "user",
            DeviceType::MqttSensor => "msensor",
        }
    }

    /// Whether this is a device (as opposed to a person using the app).
    pub fn is_device(self) -> bool {
        self != DeviceType::MobileApp
    }

    /// How this type behaves.
    pub fn profile(self) -> &'static Profile {
        match self {
            DeviceType::TemperatureSensor => &SENSOR,
            DeviceType::Camera => &CAMERA,
            DeviceType::SmartMeter => &METER,
            DeviceType::IndustrialGateway => &INDUSTRIAL_GATEWAY,
            DeviceType::MobileApp => &MOBILE_APP,
            DeviceType::MqttSensor => &MQTT_SENSOR,
        }
    }

    /// Whether this type speaks MQTT (its actions are `PUBLISH`es on topics) rather than HTTP.
    pub fn is_mqtt(self) -> bool {
        self == DeviceType::MqttSensor
    }
}

impl std::fmt::Display for DeviceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    Empty,
    /// A JSON document.
    Json,
    /// Opaque bytes (images, video).
    Binary,
}

/// One kind of request a device makes, chosen with probability proportional to `weight`.
#[derive(Debug, Clone, Copy)]
pub struct Action {
    pub weight: f64,
    pub method: &'static str,
    /// Path (and query) with placeholders: `{id}` the device's identity, `{owned}` one of the
    /// devices an app user owns, `{tenant}` the tenant.
    pub path: &'static str,
    pub body: BodyKind,
    /// Body size range in bytes (inclusive); ignored for [`BodyKind::Empty`].
    pub body_bytes: (u32, u32),
}

/// App users send sessions of several requests rather than periodic reports.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// Requests per session (inclusive range).
    pub requests: (u32, u32),
    /// Think time between two requests of a session, seconds (inclusive range).
    pub gap_s: (f64, f64),
}

/// How one device type behaves.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Mean time between reports (app users: between sessions), seconds, at the daily mean
    /// activity; scaled by `fleet.period_scale`.
    pub period_s: f64,
    /// Relative jitter of each interval (uniform ±).
    pub jitter: f64,
    /// Activity is `1 + amplitude·cos(2π(hour − peak)/24)` times the mean (0: flat).
    pub diurnal_amplitude: f64,
    /// Hour of the day (0-24) of the most activity.
    pub diurnal_peak_hour: f64,
    /// `User-Agent` the device sends.
    pub user_agent: &'static str,
    /// Requests of a report (or of a session), weighted.
    pub actions: &'static [Action],
    /// Share of requests sent malformed (a client bug: the backend answers 400).
    pub malformed_rate: f64,
    /// Share of requests that meet a backend failure (5xx).
    pub fault_rate: f64,
    /// Chance per report of a legitimate burst (an alarm, a sync) of `burst_len` extra reports
    /// 0.2-1 s apart.
    pub burst_rate: f64,
    pub burst_len: (u32, u32),
    /// Whether the device takes part in firmware rollouts.
    pub firmware: bool,
    /// App users: sessions.
    pub session: Option<Session>,
}

impl Profile {
    /// Activity factor at `hour` of the day (mean 1 over a day, never below 0.05).
    pub fn diurnal(&self, hour: f64) -> f64 {
        let phase = (hour - self.diurnal_peak_hour) / 24.0 * std::f64::consts::TAU;
        (1.0 + self.diurnal_amplitude * phase.cos()).max(0.05)
    }

    /// Mean requests per second of one device of this type over a day, before period scaling
    /// (reports or sessions, times the requests each carries, plus bursts).
    pub fn mean_rate(&self) -> f64 {
        let per_report = match self.session {
            Some(s) => f64::from(s.requests.0 + s.requests.1) / 2.0,
            None => 1.0 + self.burst_rate * f64::from(self.burst_len.0 + self.burst_len.1) / 2.0,
        };
        per_report / self.period_s
    }
}

const fn action(
    weight: f64,
    method: &'static str,
    path: &'static str,
    body: BodyKind,
    body_bytes: (u32, u32),
) -> Action {
    Action {
        weight,
        method,
        path,
        body,
        body_bytes,
    }
}

const SENSOR: Profile = Profile {
    period_s: 30.0,
    jitter: 0.2,
    diurnal_amplitude: 0.0,
    diurnal_peak_hour: 0.0,
    user_agent: "acme-thermo-fw/2.3.1",
    actions: &[
        action(
            0.97,
            "POST",
            "/api/v1/telemetry/{id}",
            BodyKind::Json,
            (80, 220),
        ),
        action(0.03, "GET", "/api/v1/config/{id}", BodyKind::Empty, (0, 0)),
    ],
    malformed_rate: 0.004,
    fault_rate: 0.002,
    burst_rate: 0.003,
    burst_len: (3, 6),
    firmware: true,
    session: None,
};

const CAMERA: Profile = Profile {
    period_s: 20.0,
    jitter: 0.6,
    diurnal_amplitude: 0.6,
    diurnal_peak_hour: 14.0,
    user_agent: "vistacam-os/5.1.4",
    actions: &[
        action(
            0.80,
            "POST",
            "/api/v1/media/{id}/events",
            BodyKind::Json,
            (300, 900),
        ),
        action(
            0.12,
            "POST",
            "/api/v1/telemetry/{id}",
            BodyKind::Json,
            (60, 120),
        ),
        action(
            0.05,
            "POST",
            "/api/v1/media/{id}/clips",
            BodyKind::Binary,
            (120_000, 600_000),
        ),
        action(0.03, "GET", "/api/v1/config/{id}", BodyKind::Empty, (0, 0)),
    ],
    malformed_rate: 0.002,
    fault_rate: 0.004,
    burst_rate: 0.02,
    burst_len: (2, 5),
    firmware: true,
    session: None,
};

const METER: Profile = Profile {
    period_s: 60.0,
    jitter: 0.1,
    diurnal_amplitude: 0.0,
    diurnal_peak_hour: 0.0,
    user_agent: "gridmeter-fw/1.0.9",
    actions: &[
        action(
            0.98,
            "POST",
            "/api/v1/meters/{id}/readings",
            BodyKind::Json,
            (150, 400),
        ),
        action(0.02, "GET", "/api/v1/config/{id}", BodyKind::Empty, (0, 0)),
    ],
    malformed_rate: 0.001,
    fault_rate: 0.002,
    burst_rate: 0.0,
    burst_len: (0, 0),
    firmware: true,
    session: None,
};

const INDUSTRIAL_GATEWAY: Profile = Profile {
    period_s: 5.0,
    jitter: 0.3,
    diurnal_amplitude: 0.5,
    diurnal_peak_hour: 11.0,
    user_agent: "floorlink-agent/3.2.0",
    actions: &[
        action(
            0.85,
            "POST",
            "/api/v1/ingest/{id}/batch",
            BodyKind::Json,
            (4_000, 64_000),
        ),
        action(
            0.14,
            "GET",
            "/api/v1/ingest/{id}/commands",
            BodyKind::Empty,
            (0, 0),
        ),
        action(0.01, "GET", "/api/v1/config/{id}", BodyKind::Empty, (0, 0)),
    ],
    malformed_rate: 0.003,
    fault_rate: 0.006,
    burst_rate: 0.01,
    burst_len: (2, 4),
    firmware: true,
    session: None,
};

const MOBILE_APP: Profile = Profile {
    period_s: 1800.0,
    jitter: 0.9,
    diurnal_amplitude: 0.8,
    diurnal_peak_hour: 20.0,
    user_agent: "WardenHome/4.2.0 (iOS 17.5)",
    actions: &[
        action(
            0.25,
            "GET",
            "/api/v1/app/users/{id}/devices",
            BodyKind::Empty,
            (0, 0),
        ),
        action(
            0.45,
            "GET",
            "/api/v1/app/devices/{owned}/state",
            BodyKind::Empty,
            (0, 0),
        ),
        action(
            0.20,
            "GET",
            "/api/v1/meters/{owned}/history?limit=48",
            BodyKind::Empty,
            (0, 0),
        ),
        action(
            0.10,
            "POST",
            "/api/v1/app/devices/{owned}/commands",
            BodyKind::Json,
            (40, 160),
        ),
    ],
    malformed_rate: 0.002,
    fault_rate: 0.003,
    burst_rate: 0.0,
    burst_len: (0, 0),
    firmware: false,
    session: Some(Session {
        requests: (3, 10),
        gap_s: (0.5, 4.0),
    }),
};

/// MQTT sensors: `PUBLISH` on their own topics; the gateway's translation rules
/// ([`crate::roster::MQTT_RULES`]) turn each into an HTTP `POST` to the telemetry route.
const MQTT_SENSOR: Profile = Profile {
    period_s: 15.0,
    jitter: 0.15,
    diurnal_amplitude: 0.0,
    diurnal_peak_hour: 0.0,
    user_agent: "mqtt-thermo-fw/1.4.2",
    actions: &[
        action(
            0.95,
            "PUBLISH",
            "devices/{id}/telemetry",
            BodyKind::Json,
            (60, 200),
        ),
        action(
            0.05,
            "PUBLISH",
            "devices/{id}/status",
            BodyKind::Json,
            (20, 60),
        ),
    ],
    malformed_rate: 0.0,
    fault_rate: 0.002,
    burst_rate: 0.004,
    burst_len: (2, 5),
    firmware: false,
    session: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diurnal_factors_average_to_one() {
        for t in DeviceType::ALL {
            let p = t.profile();
            let mean: f64 = (0..2400)
                .map(|i| p.diurnal(f64::from(i) / 100.0))
                .sum::<f64>()
                / 2400.0;
            assert!((mean - 1.0).abs() < 0.01, "{t}: {mean}");
            let weights: f64 = p.actions.iter().map(|a| a.weight).sum();
            assert!((weights - 1.0).abs() < 1e-9, "{t}: weights {weights}");
        }
        let cam = DeviceType::Camera.profile();
        assert!(cam.diurnal(14.0) > 1.5 && cam.diurnal(2.0) < 0.5);
    }
}
