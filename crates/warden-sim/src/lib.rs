//! The device-fleet simulator: a fleet of several device types sending realistic traffic,
//! labelled attack scenarios played against it, and the evaluation of what the detection
//! pipeline made of them.
//!
//! - [`ScenarioConfig`]: a scenario file (`tests/scenarios/*.toml`, built in by name with
//!   [`builtin_scenario`]): the fleet, the attacks with their parameters, what detection is
//!   expected;
//! - [`Fleet`]: the scenario's devices with their identities and keys, derived from the seed
//!   (so `warden up` and `warden simulate` agree), and the gateway config they need;
//! - [`Plan`]: every request of a run, in time order, deterministic with the seed;
//! - [`run_live`]: the plan sent through a gateway over HTTP in real time;
//!   [`run_accelerated`]: the plan turned into events in simulated time (Parquet, and the
//!   detection engine in the loop);
//! - [`Labels`]: what ran when, who attacked, and what the client saw;
//!   [`eval::evaluate`]: labels joined with alerts and decisions;
//! - [`demo_upstream`]: the stand-in backend serving every route the fleet uses.
//!
//! The first-cut demo fleet ([`demo_keys`], [`run_fleet`]: one device type, one flooding
//! device) remains for `warden up --demo`.

pub mod accelerated;
mod device;
pub mod eval;
mod fleet;
pub mod issuer;
mod keys;
pub mod labels;
pub mod live;
pub mod offline;
pub mod pki;
pub mod plan;
pub mod profile;
pub mod record;
pub mod roster;
pub mod scenario;
mod scenarios;
mod stats;
pub mod upstream;

pub use accelerated::{AcceleratedOptions, AcceleratedRun, Detect, run_accelerated};
pub use device::{JITTER, Schedule, Telemetry};
pub use fleet::{
    FLOOD_CONCURRENCY, FleetConfig, FleetError, FloodConfig, REQUEST_TIMEOUT, run_fleet,
};
pub use keys::{DEMO_DEVICE_TYPE, DEMO_TENANTS, DemoDevice, KEY_LEN, demo_keys};
pub use labels::{LABELS_VERSION, Labels, LabelsError};
pub use live::{LiveOptions, SimError, run_live};
pub use plan::Plan;
pub use profile::DeviceType;
pub use record::Recorder;
pub use roster::{Credential, Fleet, SimDevice};
pub use scenario::{ScenarioConfig, ScenarioExpect};
pub use scenarios::{BUILTIN_SCENARIOS, builtin_scenario, resolve_scenario};
pub use stats::{FleetReport, FleetStats};
pub use upstream::{demo_upstream, demo_upstream_router};

/// A well-mixed seed from a seed and a salt (SplitMix64), so every actor of a run has its
/// own random stream.
pub(crate) fn mix_seed(seed: u64, salt: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Write `body` to `path` atomically (a sibling file renamed over it): a gateway watching the
/// file, or another run configured with the same seed, never reads it half-written.
pub(crate) fn write_atomic(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
