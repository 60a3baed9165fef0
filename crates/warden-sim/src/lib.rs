//! The device-fleet simulator behind `warden up --demo` and the end-to-end tests.
//!
//! - [`demo_keys`]: devices with deterministic API keys (and their gateway config entries);
//! - [`demo_upstream`]: a stand-in backend for the gateway to proxy to;
//! - [`run_fleet`]: devices sending telemetry through the gateway on jittered schedules, one
//!   of which may start flooding; progress is readable live from a shared [`FleetStats`].
//!
//! Everything random is derived from a seed: the same seed gives the same keys, the same
//! schedule offsets and the same readings.

mod device;
mod fleet;
mod keys;
mod stats;
mod upstream;

pub use device::{JITTER, Schedule, Telemetry};
pub use fleet::{
    FLOOD_CONCURRENCY, FleetConfig, FleetError, FloodConfig, REQUEST_TIMEOUT, run_fleet,
};
pub use keys::{DEMO_DEVICE_TYPE, DEMO_TENANTS, DemoDevice, KEY_LEN, demo_keys};
pub use stats::{FleetReport, FleetStats};
pub use upstream::{demo_upstream, demo_upstream_router};
