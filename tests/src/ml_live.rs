//! The ML loop over real sockets: models trained on simulated benign traffic (the simulator's
//! accelerated mode, written to Parquet and replayed by `warden train`'s code path), served by
//! a processor in a running stack, and a fleet sending real HTTP through the gateway while
//! some of its devices change what they send.
//!
//! Everything runs ten times faster than a real fleet (`period_scale = 0.1`) so a run takes
//! two minutes: devices report ten times as often, and the ML window is 30 s instead
//! of a minute. Training and serving use the same pipeline and the same time scale.

use std::path::Path;

use warden_config::PipelineConfig;
use warden_sim::ScenarioConfig;

/// Device periods of the live fleet, relative to the built-in profiles.
pub const PERIOD_SCALE: f64 = 0.1;

/// The test pipeline: one 30 s window per identity sampled every second, the features of
/// `pipelines/ml.toml`'s models, a k-means and a Gaussian mixture detector (weight 0.5 each:
/// one model alone alerts, both together quarantine, as in `ml.toml`). A model fires after
/// 40 samples above its threshold (a leaky count), longer than the window: one odd but
/// benign request (a meter's rare config read) stays in the window for 30 samples only —
/// `ml.toml`'s 18 samples of 5 s over a one-minute window, at this time scale.
pub fn pipeline(models: &Path) -> PipelineConfig {
    let text = PIPELINE.replace("MODELS", &models.display().to_string());
    warden_stream::parse_pipeline(&text).unwrap_or_else(|e| panic!("{e}"))
}

const PIPELINE: &str = r#"
name = "ml_live"
mode = "enforce"

[source]
batch_max_events = 512
batch_max_wait_ms = 20

[[window]]
name = "identity_30s"
key = "identity"
size_ms = 30000
slide_ms = 1000
idle_expiry_ms = 600000
provisional = false

[[feature]]
name = "requests"
window = "identity_30s"
type = "count"

[[feature]]
name = "bytes_in"
window = "identity_30s"
type = "sum"
field = "bytes_in"

[[feature]]
name = "bytes_out"
window = "identity_30s"
type = "sum"
field = "bytes_out"

[[feature]]
name = "get_share"
window = "identity_30s"
type = "ratio"
filter = { method = ["GET"] }

[[feature]]
name = "distinct_routes"
window = "identity_30s"
type = "distinct"
field = "route"

[[feature]]
name = "distinct_paths"
window = "identity_30s"
type = "distinct"
field = "path"

[[feature]]
name = "client_error_share"
window = "identity_30s"
type = "ratio"
filter = { min_status = 400, max_status = 499 }

[[detector]]
name = "ml_kmeans"
type = "kmeans"
model = "MODELS/kmeans.json"
features = ["requests", "bytes_in", "bytes_out", "get_share", "distinct_routes", "distinct_paths", "client_error_share"]
sustain_samples = 40
weight = 0.5

[[detector]]
name = "ml_gmm"
type = "gmm"
model = "MODELS/gmm.json"
features = ["requests", "bytes_in", "bytes_out", "get_share", "distinct_routes", "distinct_paths", "client_error_share"]
sustain_samples = 40
weight = 0.5

[decision]
combine = "weighted"
min_score = 1.0
quarantine_ttl_s = 300
"#;

/// The fleet: `devices` sensors, meters and cameras from `start_hour`, `duration_s` long,
/// reporting ten times as often as the built-in profiles. With `attackers > 0`, that many
/// temperature sensors keep their pace from `duration_s / 3` on but every request is now a
/// poll of their config route (a command channel) in place of their reports: the same rate,
/// all GETs, no bytes in, one route.
pub fn scenario(
    devices: usize,
    seed: u64,
    start_hour: f64,
    duration_s: f64,
    attackers: usize,
) -> ScenarioConfig {
    let mut text = format!(
        r#"
name = "ml_live"
description = "Sensors, meters and cameras over real HTTP; some sensors switch to polling their config."
seed = {seed}
duration_s = {duration_s}

[fleet]
devices = {devices}
tenants = 2
start_hour = {start_hour}
period_scale = {PERIOD_SCALE}

[fleet.mix]
temperature_sensor = 0.5
smart_meter = 0.3
camera = 0.2

[expect]
max_false_quarantines = 0
"#
    );
    if attackers > 0 {
        // A sensor reports every 30 s × 0.1 = 3 s: the attackers keep that pace.
        text.push_str(&format!(
            r#"
[[attack]]
name = "beacon"
type = "route_mix"
start_s = {start}
end_s = {duration_s}
devices = {attackers}
device_type = "temperature_sensor"
rate_per_s = {rate}
route = "/api/v1/config/{{id}}"
replace = true

[attack.expect]
detected = true
quarantined = true
"#,
            start = (duration_s / 3.0).round(),
            rate = 1.0 / (30.0 * PERIOD_SCALE),
        ));
    }
    let s = ScenarioConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    s
}
