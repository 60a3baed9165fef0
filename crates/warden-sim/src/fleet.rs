//! Running a fleet: normal devices on their schedules, and optionally one that floods.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::device::{Device, send};
use crate::stats::Sender;
use crate::{DemoDevice, FleetReport, FleetStats};

/// Flood requests in flight at once, at most.
pub const FLOOD_CONCURRENCY: usize = 64;
/// Time allowed for one request (connect to end of response).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight flood requests get to finish once the fleet is stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Base URL of the gateway, e.g. `http://127.0.0.1:8080` (plain HTTP).
    pub gateway: String,
    pub devices: Vec<DemoDevice>,
    /// Mean interval between a device's requests (each interval jittered ±30 %).
    pub period: Duration,
    /// Seed of the schedules and readings.
    pub seed: u64,
    /// One device that starts flooding, if any.
    pub flood: Option<FloodConfig>,
}

/// A device that behaves normally, then floods.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// Index of the device in [`FleetConfig::devices`].
    pub device: usize,
    /// Time from the fleet start to the flood start.
    pub start_after: Duration,
    /// Requests per second during the flood (at most [`FLOOD_CONCURRENCY`] in flight; when
    /// responses are slower than that allows, the rate drops rather than bursting later).
    pub rate_per_s: f64,
}

/// Why a fleet cannot run.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("gateway `{0}` is not an http:// URL")]
    Gateway(String),
    #[error("period must be positive")]
    Period,
    #[error("flood device {index} is not in the fleet ({devices} devices)")]
    FloodDevice { index: usize, devices: usize },
    #[error("flood rate must be a positive number of requests per second")]
    FloodRate,
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Run the fleet until `stop` turns `true` (or its sender is dropped); returns the final
/// counts once every device has stopped (in-flight flood requests get up to 2 s).
///
/// `stats` is updated live: keep a clone of the `Arc` to show progress
/// ([`FleetStats::snapshot`], [`FleetStats::summary`]) while this runs. Dropping the future
/// stops every device at once.
pub async fn run_fleet(
    config: FleetConfig,
    stats: Arc<FleetStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<FleetReport, FleetError> {
    let gateway = check(&config)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(FLOOD_CONCURRENCY + config.devices.len())
        .user_agent(concat!("warden-sim/", env!("CARGO_PKG_VERSION")))
        .build()?;
    stats.mark_started();
    let start = Instant::now();
    info!(devices = config.devices.len(), %gateway, period_ms = config.period.as_millis(), "Fleet started.");

    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for (index, demo) in config.devices.iter().enumerate() {
        let mut device = Device::new(&gateway, index, demo, config.seed, config.period);
        let (client, stats, stop) = (client.clone(), stats.clone(), cancel.clone());
        match config.flood.as_ref().filter(|f| f.device == index) {
            None => {
                tasks.spawn(async move {
                    normal(
                        &client,
                        &mut device,
                        &stats,
                        Sender::Normal,
                        start,
                        None,
                        &stop,
                    )
                    .await;
                });
            }
            Some(flood) => {
                let flood = flood.clone();
                tasks.spawn(async move {
                    let until = start + flood.start_after;
                    normal(
                        &client,
                        &mut device,
                        &stats,
                        Sender::Flooder,
                        start,
                        Some(until),
                        &stop,
                    )
                    .await;
                    if !stop.is_cancelled() {
                        flood_loop(&client, &mut device, &stats, flood.rate_per_s, &stop).await;
                    }
                });
            }
        }
    }
    tokio::select! {
        // Err: the sender is gone, which also means stop.
        _ = stop.wait_for(|stopped| *stopped) => {}
        // Devices only end on stop; this arm only ends an empty fleet.
        _ = async { while tasks.join_next().await.is_some() {} } => {}
    }
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    let report = stats.snapshot();
    info!(%report, "Fleet stopped.");
    Ok(report)
}

/// The gateway base URL without a trailing `/`, once the config is checked.
fn check(config: &FleetConfig) -> Result<String, FleetError> {
    let gateway = config.gateway.trim_end_matches('/').to_string();
    match reqwest::Url::parse(&gateway) {
        Ok(url) if url.scheme() == "http" && url.has_host() => {}
        _ => return Err(FleetError::Gateway(config.gateway.clone())),
    }
    if config.period.is_zero() {
        return Err(FleetError::Period);
    }
    if let Some(f) = &config.flood {
        if f.device >= config.devices.len() {
            return Err(FleetError::FloodDevice {
                index: f.device,
                devices: config.devices.len(),
            });
        }
        if !(f.rate_per_s.is_finite() && f.rate_per_s > 0.0) {
            return Err(FleetError::FloodRate);
        }
    }
    Ok(gateway)
}

/// Send on the device's schedule (one request at a time) until `stop`, or until `until`.
async fn normal(
    client: &reqwest::Client,
    device: &mut Device,
    stats: &FleetStats,
    sender: Sender,
    start: Instant,
    until: Option<Instant>,
    stop: &CancellationToken,
) {
    let mut next = start + device.schedule.offset();
    loop {
        let wake = until.map_or(next, |u| u.min(next));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep_until(wake) => {}
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            return;
        }
        // A request once sent is seen through: the gateway has counted it (one event per
        // request), so the fleet must count its answer too.
        let status = send(device.request(client)).await;
        stats.record(sender, false, status);
        // Keep the mean period, but never burst to catch up after a slow response.
        next = (next + device.schedule.next_interval()).max(Instant::now());
    }
}

/// Send at `rate` requests per second until `stop`, without waiting for each response.
async fn flood_loop(
    client: &reqwest::Client,
    device: &mut Device,
    stats: &Arc<FleetStats>,
    rate: f64,
    stop: &CancellationToken,
) {
    let started = stats.mark_flood_started();
    info!(identity = %device.identity, rate, "Flood started.");
    let permits = Arc::new(Semaphore::new(FLOOD_CONCURRENCY));
    let mut in_flight = JoinSet::new();
    // Requests scheduled so far; request `n` is due at `started + n / rate`.
    let mut scheduled: u64 = 0;
    'flood: loop {
        let due = (started.elapsed().as_secs_f64() * rate).floor() as u64 + 1;
        // Skip what could not be sent in time rather than bursting it later.
        scheduled = scheduled.max(due.saturating_sub(FLOOD_CONCURRENCY as u64));
        while scheduled < due {
            let permit = tokio::select! {
                _ = stop.cancelled() => break 'flood,
                permit = permits.clone().acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break 'flood };
            let request = device.request(client);
            let stats = stats.clone();
            stats.flood_sent();
            in_flight.spawn(async move {
                let status = send(request).await;
                stats.record(Sender::Flooder, true, status);
                drop(permit);
            });
            scheduled += 1;
            while in_flight.try_join_next().is_some() {}
        }
        let next = started + Duration::from_secs_f64(scheduled as f64 / rate);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = sleep_until(next) => {}
        }
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        info!(
            left = in_flight.len(),
            "Flood requests still in flight at stop; abandoned."
        );
    }
}
