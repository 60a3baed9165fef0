//! Prometheus metrics of the components a process runs, served as text on `[metrics] listen`.
//!
//! Counters and gauges come straight from the components' atomic counters, so scraping costs
//! nothing on the request path.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use warden_gateway::EmitStats;
use warden_stream::ProcessorStats;

/// What a process exposes.
#[derive(Clone, Default)]
pub struct Sources {
    /// Gateway id and its event-path counters.
    pub gateway: Option<(String, Arc<EmitStats>)>,
    /// Pipeline name and the processor's counters.
    pub processor: Option<(String, Arc<ProcessorStats>)>,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, label: (&str, &str), value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name}{{{}=\"{}\"}} {value}", label.0, label.1);
}

fn get_u(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The metrics in Prometheus text format.
pub fn render(sources: &Sources) -> String {
    let mut out = String::new();
    if let Some((id, s)) = &sources.gateway {
        let l = ("gateway", id.as_str());
        for (name, kind, help, v) in [
            (
                "warden_gateway_events_emitted_total",
                "counter",
                "Events handed to the event queue (one per request).",
                get_u(&s.emitted),
            ),
            (
                "warden_gateway_events_spooled_total",
                "counter",
                "Events written to the durable spool.",
                get_u(&s.spooled),
            ),
            (
                "warden_gateway_events_published_total",
                "counter",
                "Events acknowledged by the bus.",
                get_u(&s.published),
            ),
            (
                "warden_gateway_events_dropped_total",
                "counter",
                "Events lost (queue full or spool overflow); stays 0 unless a cap is hit.",
                get_u(&s.dropped),
            ),
            (
                "warden_gateway_publish_failures_total",
                "counter",
                "Failed publish attempts (each retried).",
                get_u(&s.failed_attempts),
            ),
            (
                "warden_gateway_spool_errors_total",
                "counter",
                "Spool I/O errors.",
                get_u(&s.spool_errors),
            ),
            (
                "warden_gateway_spool_bytes",
                "gauge",
                "Bytes in the spool.",
                get_u(&s.spool_bytes),
            ),
            (
                "warden_gateway_spool_pending_events",
                "gauge",
                "Spooled events not yet acknowledged by the bus.",
                get_u(&s.spool_pending),
            ),
            (
                "warden_gateway_oldest_unsent_milliseconds",
                "gauge",
                "Age of the oldest unacknowledged spooled event.",
                get_u(&s.oldest_unsent_ms),
            ),
            (
                "warden_gateway_decisions_applied_total",
                "counter",
                "Decisions applied from the decisions topic since start.",
                get_u(&s.decisions_applied),
            ),
            (
                "warden_gateway_decision_lag_milliseconds",
                "gauge",
                "Time from the last decision being made to this gateway enforcing it.",
                get_u(&s.decision_lag_ms_last),
            ),
            (
                "warden_gateway_decision_lag_max_milliseconds",
                "gauge",
                "Largest decision-to-enforcement time seen.",
                get_u(&s.decision_lag_ms_max),
            ),
        ] {
            metric(&mut out, name, kind, help, l, v);
        }
        let queued = get_u(&s.emitted)
            .saturating_sub(get_u(&s.spooled).max(get_u(&s.published)) + get_u(&s.dropped));
        metric(
            &mut out,
            "warden_gateway_events_queued",
            "gauge",
            "Events in the in-memory queue (approximate).",
            l,
            queued,
        );
    }
    if let Some((pipeline, s)) = &sources.processor {
        let l = ("pipeline", pipeline.as_str());
        for (name, kind, help, v) in [
            (
                "warden_processor_events_total",
                "counter",
                "Events processed.",
                get_u(&s.events),
            ),
            (
                "warden_processor_undecodable_events_total",
                "counter",
                "Events skipped as unreadable.",
                get_u(&s.undecodable),
            ),
            (
                "warden_processor_late_events_total",
                "counter",
                "Events older than the watermark minus the allowed lateness.",
                get_u(&s.late_events),
            ),
            (
                "warden_processor_batches_total",
                "counter",
                "Batches processed.",
                get_u(&s.batches),
            ),
            (
                "warden_processor_alerts_total",
                "counter",
                "Alerts published.",
                get_u(&s.alerts),
            ),
            (
                "warden_processor_decisions_total",
                "counter",
                "Decisions published.",
                get_u(&s.decisions),
            ),
            (
                "warden_processor_commits_total",
                "counter",
                "Offset commits (after the batch's decisions were acknowledged).",
                get_u(&s.commits),
            ),
            (
                "warden_processor_reloads_total",
                "counter",
                "Pipeline reloads applied.",
                get_u(&s.reloads),
            ),
            (
                "warden_processor_reload_failures_total",
                "counter",
                "Pipeline changes refused as invalid.",
                get_u(&s.reload_failures),
            ),
            (
                "warden_processor_state_bytes",
                "gauge",
                "Approximate bytes of window and detector state.",
                get_u(&s.state_bytes),
            ),
        ] {
            metric(&mut out, name, kind, help, l, v);
        }
    }
    out
}

/// Serve `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, sources: Sources) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let body = render(&sources);
            async move { ([("content-type", "text/plain; version=0.0.4")], body) }
        }),
    );
    axum::serve(listener, app).await
}

/// Bind the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
