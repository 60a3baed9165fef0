//! Prometheus metrics of the components a process runs, served on `[metrics] listen` in the
//! Prometheus text format (0.0.4) by the `prometheus-client` crate.
//!
//! Two kinds of series: the components' atomic counters and gauges, read at scrape time by a
//! [`Collector`] (so scraping costs nothing on the request path), and the histograms and
//! labelled counter families the gateway and processor record into directly
//! ([`warden_gateway::metrics::RequestMetrics`], [`warden_stream::ProcessorHistograms`]),
//! registered once with a `gateway` or `pipeline` label.

mod sinks;

pub use sinks::SinkSources;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use warden_gateway::{EmitStats, QuarantineSet};
use warden_stream::ProcessorStats;

/// What a process exposes.
#[derive(Clone, Default)]
pub struct Sources {
    /// Gateway id and its event-path counters.
    pub gateway: Option<(String, Arc<EmitStats>)>,
    /// Pipeline name and the processor's counters.
    pub processor: Option<(String, Arc<ProcessorStats>)>,
    /// The gateway's TLS listeners (`gateway`, `admin`) and their handshake counters.
    pub tls: Vec<(&'static str, Arc<warden_gateway::TlsStats>)>,
    /// The gateway's quarantine set (its size is exported).
    pub quarantine: Option<Arc<QuarantineSet>>,
    /// The gateway's live settings: its rate limiters' occupancy is exported.
    pub limiters: Option<warden_gateway::LiveConfig>,
    /// The console's alert sinks, when a console runs in this process.
    pub sinks: Option<SinkSources>,
}

fn get_u(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A sample value: counts as integers, durations as floats.
#[derive(Clone, Copy)]
enum V {
    N(u64),
    F(f64),
}

/// One family of constant samples. `name` may end in `_total` (counters; the encoder adds the
/// suffix itself) and `help` in a full stop (the encoder adds one).
fn family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[(L, V)],
) -> std::fmt::Result {
    let name = name.strip_suffix("_total").unwrap_or(name);
    let help = help.strip_suffix('.').unwrap_or(help);
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let sample = metric.encode_family(labels)?;
        match (kind, *v) {
            (MetricType::Counter, V::N(n)) => ConstCounter::new(n).encode(sample)?,
            (MetricType::Counter, V::F(f)) => ConstCounter::new(f).encode(sample)?,
            (_, V::N(n)) => ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(sample)?,
            (_, V::F(f)) => ConstGauge::new(f).encode(sample)?,
        }
    }
    Ok(())
}

/// Reads the components' atomics at scrape time.
#[derive(Clone)]
struct Atomics(Sources);

impl std::fmt::Debug for Atomics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Atomics")
    }
}

const C: MetricType = MetricType::Counter;
const G: MetricType = MetricType::Gauge;

impl Collector for Atomics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let sources = &self.0;
        if let Some((id, s)) = &sources.gateway {
            let l = [("gateway", id.as_str())];
            let ms = |a: &AtomicU64| V::F(get_u(a) as f64 / 1e3);
            let n = |a: &AtomicU64| V::N(get_u(a));
            let queued = get_u(&s.emitted)
                .saturating_sub(get_u(&s.spooled).max(get_u(&s.published)) + get_u(&s.dropped));
            for (name, kind, help, v) in [
                (
                    "warden_gateway_events_emitted_total",
                    C,
                    "Events handed to the event queue (one per request).",
                    n(&s.emitted),
                ),
                (
                    "warden_gateway_events_spooled_total",
                    C,
                    "Events written to the durable spool.",
                    n(&s.spooled),
                ),
                (
                    "warden_gateway_events_published_total",
                    C,
                    "Events acknowledged by the bus.",
                    n(&s.published),
                ),
                (
                    "warden_gateway_events_dropped_total",
                    C,
                    "Events lost (queue full or spool overflow); stays 0 unless a cap is hit.",
                    n(&s.dropped),
                ),
                (
                    "warden_gateway_publish_failures_total",
                    C,
                    "Failed publish attempts (each retried).",
                    n(&s.failed_attempts),
                ),
                (
                    "warden_gateway_spool_errors_total",
                    C,
                    "Spool I/O errors.",
                    n(&s.spool_errors),
                ),
                (
                    "warden_gateway_spool_bytes",
                    G,
                    "Bytes in the spool.",
                    n(&s.spool_bytes),
                ),
                (
                    "warden_gateway_spool_pending_events",
                    G,
                    "Spooled events not yet acknowledged by the bus.",
                    n(&s.spool_pending),
                ),
                (
                    "warden_gateway_oldest_unsent_seconds",
                    G,
                    "Age of the oldest unacknowledged spooled event.",
                    ms(&s.oldest_unsent_ms),
                ),
                (
                    "warden_gateway_events_queued",
                    G,
                    "Events in the in-memory queue (approximate).",
                    V::N(queued),
                ),
                (
                    "warden_gateway_decisions_applied_total",
                    C,
                    "Decisions applied from the decisions topic since start.",
                    n(&s.decisions_applied),
                ),
                (
                    "warden_gateway_decision_lag_seconds",
                    G,
                    "Time from the last decision being made to this gateway enforcing it.",
                    ms(&s.decision_lag_ms_last),
                ),
                (
                    "warden_gateway_decision_lag_max_seconds",
                    G,
                    "Largest decision-to-enforcement time seen.",
                    ms(&s.decision_lag_ms_max),
                ),
            ] {
                family(&mut encoder, name, help, kind, &[(l, v)])?;
            }
            if let Some(q) = &sources.quarantine {
                family(
                    &mut encoder,
                    "warden_gateway_quarantine_entries",
                    "Quarantine and throttle entries held (live or not yet pruned).",
                    G,
                    &[(l, V::N(q.len() as u64))],
                )?;
            }
            if let Some(live) = &sources.limiters {
                encode_limiters(&mut encoder, id, &live.limiter_stats())?;
                encode_upstreams(&mut encoder, id, &live.upstream_health())?;
            }
            self.encode_tls(&mut encoder, id)?;
        }
        if let Some(sinks) = &sources.sinks {
            sinks::encode(&mut encoder, sinks)?;
        }
        if let Some((pipeline, s)) = &sources.processor {
            let l = [("pipeline", pipeline.as_str())];
            for (name, kind, help, v) in [
                (
                    "warden_processor_events_total",
                    C,
                    "Events processed.",
                    &s.events,
                ),
                (
                    "warden_processor_undecodable_events_total",
                    C,
                    "Events skipped as unreadable.",
                    &s.undecodable,
                ),
                (
                    "warden_processor_late_events_total",
                    C,
                    "Events older than the watermark minus the allowed lateness.",
                    &s.late_events,
                ),
                (
                    "warden_processor_batches_total",
                    C,
                    "Batches processed.",
                    &s.batches,
                ),
                (
                    "warden_processor_alerts_total",
                    C,
                    "Alerts published.",
                    &s.alerts,
                ),
                (
                    "warden_processor_decisions_total",
                    C,
                    "Decisions published.",
                    &s.decisions,
                ),
                (
                    "warden_processor_commits_total",
                    C,
                    "Offset commits (after the batch's decisions were acknowledged).",
                    &s.commits,
                ),
                (
                    "warden_processor_reloads_total",
                    C,
                    "Pipeline reloads applied.",
                    &s.reloads,
                ),
                (
                    "warden_processor_reload_failures_total",
                    C,
                    "Pipeline changes refused as invalid.",
                    &s.reload_failures,
                ),
                (
                    "warden_processor_state_bytes",
                    G,
                    "Approximate bytes of window and detector state.",
                    &s.state_bytes,
                ),
                (
                    "warden_processor_duplicate_events_total",
                    C,
                    "Events skipped because an event with the same id was already processed.",
                    &s.duplicates,
                ),
                (
                    "warden_processor_redelivered_records_total",
                    C,
                    "Records skipped because their offset was already in the restored state.",
                    &s.redelivered,
                ),
                (
                    "warden_processor_dedup_evicted_ids_total",
                    C,
                    "Event ids forgotten early because a partition's dedup set was full.",
                    &s.dedup_evicted,
                ),
                (
                    "warden_processor_checkpoints_total",
                    C,
                    "Partition checkpoints written and acknowledged.",
                    &s.checkpoints,
                ),
                (
                    "warden_processor_checkpoint_bytes_total",
                    C,
                    "Bytes of checkpoint records written.",
                    &s.checkpoint_bytes,
                ),
                (
                    "warden_processor_checkpoint_failures_total",
                    C,
                    "Checkpoint writes or offset commits that failed (retried next round).",
                    &s.checkpoint_failures,
                ),
                (
                    "warden_processor_restores_total",
                    C,
                    "Partitions whose state was restored from a checkpoint.",
                    &s.restores,
                ),
                (
                    "warden_processor_assigned_partitions",
                    G,
                    "Partitions of the events topic assigned to this processor.",
                    &s.assigned_partitions,
                ),
                (
                    "warden_processor_uncommitted_partitions",
                    G,
                    "Partitions with processed events not committed (and checkpointed) yet.",
                    &s.uncommitted_partitions,
                ),
                (
                    "warden_processor_events_per_second",
                    G,
                    "Events processed per second (measured every 2 s).",
                    &s.events_per_second,
                ),
                (
                    "warden_processor_consumer_lag",
                    G,
                    "Records of the assigned partitions not processed yet (all partitions).",
                    &s.lag_total,
                ),
            ] {
                family(&mut encoder, name, help, kind, &[(l, V::N(get_u(v)))])?;
            }
            let lag: Vec<([(&str, String); 2], V)> = s
                .lag_by_partition()
                .into_iter()
                .map(|(p, v)| {
                    (
                        [("pipeline", pipeline.clone()), ("partition", p.to_string())],
                        V::N(v),
                    )
                })
                .collect();
            family(
                &mut encoder,
                "warden_processor_partition_lag",
                "Records of one assigned partition not processed yet.",
                G,
                &lag,
            )?;
            let status = s.pipeline_status();
            family(
                &mut encoder,
                "warden_processor_pipeline_loaded_timestamp_seconds",
                "When the running pipeline was loaded (Unix time).",
                G,
                &[(l, V::F(status.loaded_at as f64 / 1e9))],
            )?;
            family(
                &mut encoder,
                "warden_processor_pipeline_reload_failing",
                "1 while the pipeline file holds a change that was refused.",
                G,
                &[(l, V::N(u64::from(status.last_failure.is_some())))],
            )?;
            encode_model_scores(&mut encoder, pipeline, &s.model_scores.lock())?;
        }
        Ok(())
    }
}

/// The gateway's rate-limiter tables by limit (`scope`): keys tracked, keys whose bucket is
/// not full, capacity, evictions of keys still being limited (the table is too small), and
/// their memory (allocated up front).
fn encode_limiters(
    encoder: &mut DescriptorEncoder,
    gateway: &str,
    stats: &[warden_gateway::ratelimit::LimiterStats],
) -> std::fmt::Result {
    let by = |f: &dyn Fn(&warden_gateway::ratelimit::LimiterStats) -> V| {
        stats
            .iter()
            .map(|s| ([("gateway", gateway), ("scope", s.scope)], f(s)))
            .collect::<Vec<_>>()
    };
    family(
        encoder,
        "warden_gateway_limiter_tracked_keys",
        "Keys holding a slot in a rate limiter's table, by limit.",
        G,
        &by(&|s| V::N(s.tracked as u64)),
    )?;
    family(
        encoder,
        "warden_gateway_limiter_active_keys",
        "Keys whose bucket is not full (being limited, or lately), by limit.",
        G,
        &by(&|s| V::N(s.active as u64)),
    )?;
    family(
        encoder,
        "warden_gateway_limiter_capacity_keys",
        "Keys a rate limiter's table holds at most, by limit.",
        G,
        &by(&|s| V::N(s.capacity as u64)),
    )?;
    family(
        encoder,
        "warden_gateway_limiter_evictions_total",
        "Keys still being limited that lost their slot to a new key (raise limits.max_keys).",
        C,
        &by(&|s| V::N(s.evictions)),
    )?;
    family(
        encoder,
        "warden_gateway_limiter_memory_bytes",
        "Bytes of rate-limiter tables (allocated up front).",
        G,
        &[(
            [("gateway", gateway)],
            V::N(stats.iter().map(|s| s.bytes as u64).sum()),
        )],
    )
}

/// Each route's upstream: forwarded to (1) or refused at once (0: down by its health checks,
/// or ejected after failures in a row).
fn encode_upstreams(
    encoder: &mut DescriptorEncoder,
    gateway: &str,
    routes: &[warden_gateway::health::RouteHealth],
) -> std::fmt::Result {
    let samples: Vec<_> = routes
        .iter()
        .map(|h| {
            (
                [("gateway", gateway), ("route", h.route.as_str())],
                V::N(u64::from(!h.ejected)),
            )
        })
        .collect();
    family(
        encoder,
        "warden_gateway_upstream_up",
        "Whether a route's upstream is forwarded to (1) or refused at once (0: down by its health checks, or ejected after failures in a row).",
        G,
        &samples,
    )?;
    let down: Vec<_> = routes
        .iter()
        .filter(|h| h.checked)
        .map(|h| {
            (
                [("gateway", gateway), ("route", h.route.as_str())],
                V::N(u64::from(h.down)),
            )
        })
        .collect();
    family(
        encoder,
        "warden_gateway_upstream_health_check_down",
        "Routes with active health checks: 1 while their upstream is marked down by them.",
        G,
        &down,
    )
}

/// The ML detectors' score histograms (the set changes with pipeline reloads, so they are
/// read at scrape time rather than registered once).
fn encode_model_scores(
    encoder: &mut DescriptorEncoder,
    pipeline: &str,
    models: &[warden_stream::ml::ModelScores],
) -> std::fmt::Result {
    if models.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(
        "warden_processor_model_score_ratio",
        "ML detectors' scores of complete window samples as a share of the bar they fire at \
         (calibrated threshold × threshold_factor); 1 and above fires",
        None,
        MetricType::Histogram,
    )?;
    for m in models {
        let labels = [
            ("pipeline", pipeline),
            ("detector", m.detector.as_str()),
            ("model", m.model),
        ];
        m.scores.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Atomics {
    /// Completed handshakes, timeouts and refusals by reason (every reason, zeros included,
    /// so rates work from the start) of each TLS listener.
    fn encode_tls(&self, encoder: &mut DescriptorEncoder, gateway: &str) -> std::fmt::Result {
        let tls = &self.0.tls;
        if tls.is_empty() {
            return Ok(());
        }
        let per = |f: &dyn Fn(&warden_gateway::TlsStats) -> u64| -> Vec<([(&str, &str); 2], V)> {
            tls.iter()
                .map(|(l, s)| ([("gateway", gateway), ("listener", *l)], V::N(f(s))))
                .collect()
        };
        family(
            encoder,
            "warden_gateway_tls_handshakes_total",
            "Completed TLS handshakes.",
            C,
            &per(&|s| s.handshakes()),
        )?;
        family(
            encoder,
            "warden_gateway_tls_handshake_timeouts_total",
            "TLS handshakes not completed within handshake_timeout_ms.",
            C,
            &per(&|s| s.timeouts()),
        )?;
        let mut refused = Vec::new();
        for (l, s) in tls {
            for reason in warden_gateway::TlsRejection::ALL {
                refused.push((
                    [
                        ("gateway", gateway),
                        ("listener", *l),
                        ("reason", reason.as_str()),
                    ],
                    V::N(s.rejected(reason)),
                ));
            }
        }
        family(
            encoder,
            "warden_gateway_tls_handshakes_refused_total",
            "Refused TLS handshakes, by reason (client certificate expired, not yet valid, \
             revoked, from an unknown CA, denied by fingerprint, missing, otherwise bad; or a \
             protocol error).",
            C,
            &refused,
        )
    }
}

/// The registry of everything `sources` exposes.
pub fn registry(sources: &Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "warden_build",
        "Warden's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry.register_collector(Box::new(Atomics(sources.clone())));
    if let Some((id, s)) = &sources.gateway {
        let r = registry.sub_registry_with_label(("gateway".into(), id.clone().into()));
        let m = &s.requests;
        r.register(
            "warden_gateway_requests",
            "Requests by route, method class (read, write, other), status class, outcome and \
             refusal reason",
            m.requests.clone(),
        );
        r.register(
            "warden_gateway_request_duration_seconds",
            "Time from request start to the end of the response, by route",
            m.duration.clone(),
        );
        r.register(
            "warden_gateway_upstream_duration_seconds",
            "Time from sending a request upstream to its response head, timeout or failure, \
             by route and result (response, timeout, error)",
            m.upstream_duration.clone(),
        );
        r.register(
            "warden_gateway_decision_propagation_seconds",
            "Time from a decision being made by a processor to this gateway enforcing it \
             (clock skew between hosts adds to it)",
            m.decision_propagation.clone(),
        );
    }
    if let Some((pipeline, s)) = &sources.processor {
        let r = registry.sub_registry_with_label(("pipeline".into(), pipeline.clone().into()));
        let h = &s.histograms;
        r.register(
            "warden_processor_batch_duration_seconds",
            "Time to run one batch of events through the windows and detectors",
            h.batch_duration.clone(),
        );
        r.register(
            "warden_processor_event_to_decision_seconds",
            "From the event time of the window end a detector fired on to its decision being \
             acknowledged by the bus",
            h.event_to_decision.clone(),
        );
        r.register(
            "warden_processor_detector_firings",
            "Alerts by detector and the action they led to (alert, throttle, quarantine)",
            h.firings.clone(),
        );
    }
    registry
}

/// The metrics in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "Encoding metrics failed.");
    }
    out
}

/// Longest a spooled event may wait for the bus before the process reports itself not ready.
const READY_MAX_UNSENT_MS: u64 = 60_000;

/// Longest the bus may leave the processor unanswered (it asks every 2 s) before the process
/// reports itself not ready: a processor that cannot reach the bus decides nothing.
const READY_MAX_BUS_SILENCE_MS: u64 = 15_000;

/// Readiness of what this process runs: the gateway is ready when its events reach the bus
/// (nothing unsent for over a minute — it read the live decisions before its listener
/// opened), the processor when its pipeline is loaded and the bus answered it lately.
/// Returns whether all are ready and the checks as JSON.
pub fn readiness(sources: &Sources) -> (bool, serde_json::Value) {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    if let Some((id, s)) = &sources.gateway {
        let unsent_ms = get_u(&s.oldest_unsent_ms);
        let ok = unsent_ms <= READY_MAX_UNSENT_MS;
        ready &= ok;
        checks.insert(
            "gateway".into(),
            serde_json::json!({ "id": id, "ready": ok, "oldest_unsent_seconds": unsent_ms as f64 / 1e3 }),
        );
    }
    if let Some((pipeline, s)) = &sources.processor {
        let status = s.pipeline_status();
        let reached = get_u(&s.bus_reached_at);
        let since_bus_ns = u64::try_from(warden_event::now_ns())
            .unwrap_or(0)
            .saturating_sub(reached);
        let bus_ok = reached > 0 && since_bus_ns <= READY_MAX_BUS_SILENCE_MS * 1_000_000;
        let ok = status.loaded_at > 0 && bus_ok;
        ready &= ok;
        checks.insert(
            "processor".into(),
            serde_json::json!({
                "pipeline": pipeline,
                "ready": ok,
                "reload_failing": status.last_failure.is_some(),
                "bus_reachable": bus_ok,
                "bus_last_answered_seconds_ago": (reached > 0).then(|| since_bus_ns as f64 / 1e9),
                "consumer_lag": get_u(&s.lag_total),
            }),
        );
    }
    (
        ready,
        serde_json::json!({ "ready": ready, "checks": checks }),
    )
}

/// Serve `/metrics`, `/healthz` (alive) and `/readyz` ([`readiness`]: `200` or `503` with the
/// checks as JSON) on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, sources: Sources) -> std::io::Result<()> {
    let registry = Arc::new(registry(&sources));
    let probes = sources.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let (ready, body) = readiness(&probes);
                let status = if ready {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                };
                async move { (status, axum::Json(body)) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = render(&registry);
                async move {
                    (
                        [(
                            "content-type",
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        )],
                        body,
                    )
                }
            }),
        );
    axum::serve(listener, app).await
}

/// Bind the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests;
