//! One simulated device: when it sends, and what.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::DemoDevice;

/// Relative jitter of the interval between a device's requests (±30 %).
pub const JITTER: f64 = 0.3;

/// A device's send times: a first offset spread over one period, then intervals of `period`
/// ±[`JITTER`]. Derived from the fleet seed and the device index only, so a fleet's schedule
/// is the same on every run with the same seed.
#[derive(Debug, Clone)]
pub struct Schedule {
    rng: StdRng,
    period: Duration,
    offset: Duration,
}

impl Schedule {
    /// The schedule of device `index` of a fleet seeded with `seed`.
    pub fn new(seed: u64, index: usize, period: Duration) -> Self {
        let mut rng = StdRng::seed_from_u64(device_seed(seed, index));
        let offset = period.mul_f64(rng.random::<f64>());
        Self {
            rng,
            period,
            offset,
        }
    }

    /// Delay from the fleet start to the first request, in `[0, period)`.
    pub fn offset(&self) -> Duration {
        self.offset
    }

    /// Delay from one request to the next.
    pub fn next_interval(&mut self) -> Duration {
        let factor = 1.0 + self.rng.random_range(-JITTER..=JITTER);
        self.period.mul_f64(factor)
    }

    /// Random numbers for the device's readings (same stream as the schedule).
    fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

/// A distinct, well-mixed seed per device (SplitMix64 of the fleet seed and the index).
fn device_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed
        ^ (index as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The body of a telemetry request.
#[derive(Debug, Clone, Serialize)]
pub struct Telemetry {
    pub device: String,
    pub seq: u64,
    pub temperature_c: f64,
    pub battery_pct: f64,
}

/// A device of a running fleet.
pub(crate) struct Device {
    pub(crate) identity: String,
    key: String,
    url: String,
    pub(crate) schedule: Schedule,
    seq: u64,
    temperature_c: f64,
    battery_pct: f64,
}

impl Device {
    /// Device `index` of the fleet, sending to `gateway` (base URL without a trailing `/`).
    /// Identities are used in the path as they are (demo identities are URL-safe).
    pub(crate) fn new(
        gateway: &str,
        index: usize,
        device: &DemoDevice,
        seed: u64,
        period: Duration,
    ) -> Self {
        let mut schedule = Schedule::new(seed, index, period);
        let temperature_c = 18.0 + 6.0 * schedule.rng().random::<f64>();
        Self {
            identity: device.identity.clone(),
            key: device.key.clone(),
            url: format!("{gateway}/api/devices/{}/telemetry", device.identity),
            schedule,
            seq: 0,
            temperature_c,
            battery_pct: 100.0,
        }
    }

    /// The next reading: temperature drifts a little, the battery slowly drains.
    fn next_telemetry(&mut self) -> Telemetry {
        let drift = self.schedule.rng().random_range(-0.2..=0.2);
        self.temperature_c = (self.temperature_c + drift).clamp(-40.0, 85.0);
        self.battery_pct = (self.battery_pct - 0.001).max(0.0);
        self.seq += 1;
        Telemetry {
            device: self.identity.clone(),
            seq: self.seq,
            temperature_c: (self.temperature_c * 100.0).round() / 100.0,
            battery_pct: (self.battery_pct * 1000.0).round() / 1000.0,
        }
    }

    /// The next telemetry request (`POST …/telemetry` with `X-Api-Key` and a JSON body).
    pub(crate) fn request(&mut self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        let body = self.next_telemetry();
        client
            .post(&self.url)
            .header("x-api-key", &self.key)
            .json(&body)
    }
}

/// Send a request and read the response body to its end (so the connection is reused).
/// Returns the status, or `None` when no response came.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Option<u16> {
    match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // A body cut short still counts as answered with this status.
            let _ = resp.bytes().await;
            Some(status)
        }
        Err(e) => {
            tracing::debug!(error = %e, "Request failed.");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_deterministic_spread_and_jittered() {
        let period = Duration::from_millis(1000);
        let offsets: Vec<Duration> = (0..50)
            .map(|i| Schedule::new(3, i, period).offset())
            .collect();
        let again: Vec<Duration> = (0..50)
            .map(|i| Schedule::new(3, i, period).offset())
            .collect();
        assert_eq!(offsets, again);
        assert!(offsets.iter().all(|o| *o < period));
        assert!(offsets.iter().any(|o| *o < period / 2) && offsets.iter().any(|o| *o > period / 2));
        assert_ne!(
            Schedule::new(4, 0, period).offset(),
            offsets[0],
            "another seed"
        );
        let mut s = Schedule::new(3, 0, period);
        let intervals: Vec<Duration> = (0..200).map(|_| s.next_interval()).collect();
        assert!(
            intervals
                .iter()
                .all(|d| *d >= period.mul_f64(0.7) && *d <= period.mul_f64(1.3))
        );
        let mean = intervals.iter().sum::<Duration>() / 200;
        assert!(
            mean > period.mul_f64(0.95) && mean < period.mul_f64(1.05),
            "{mean:?}"
        );
    }
}
