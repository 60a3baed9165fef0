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
    /// The gateway's TLS listeners (`gateway`, `admin`) and their handshake counters.
    pub tls: Vec<(&'static str, Arc<warden_gateway::TlsStats>)>,
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
        let tls: Vec<(&str, &warden_gateway::TlsStats)> =
            sources.tls.iter().map(|(l, s)| (*l, &**s)).collect();
        if !tls.is_empty() {
            warden_gateway::TlsStats::render_listeners(id, &tls, &mut out);
        }
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
            (
                "warden_processor_duplicate_events_total",
                "counter",
                "Events skipped because an event with the same id was already processed.",
                get_u(&s.duplicates),
            ),
            (
                "warden_processor_redelivered_records_total",
                "counter",
                "Records skipped because their offset was already in the restored state.",
                get_u(&s.redelivered),
            ),
            (
                "warden_processor_dedup_evicted_ids_total",
                "counter",
                "Event ids forgotten early because a partition's dedup set was full.",
                get_u(&s.dedup_evicted),
            ),
            (
                "warden_processor_checkpoints_total",
                "counter",
                "Partition checkpoints written and acknowledged.",
                get_u(&s.checkpoints),
            ),
            (
                "warden_processor_checkpoint_bytes_total",
                "counter",
                "Bytes of checkpoint records written.",
                get_u(&s.checkpoint_bytes),
            ),
            (
                "warden_processor_checkpoint_failures_total",
                "counter",
                "Checkpoint writes or offset commits that failed (retried next round).",
                get_u(&s.checkpoint_failures),
            ),
            (
                "warden_processor_restores_total",
                "counter",
                "Partitions whose state was restored from a checkpoint.",
                get_u(&s.restores),
            ),
            (
                "warden_processor_assigned_partitions",
                "gauge",
                "Partitions of the events topic assigned to this processor.",
                get_u(&s.assigned_partitions),
            ),
            (
                "warden_processor_uncommitted_partitions",
                "gauge",
                "Partitions with processed events not committed (and checkpointed) yet.",
                get_u(&s.uncommitted_partitions),
            ),
            (
                "warden_processor_events_per_second",
                "gauge",
                "Events processed per second (measured every 2 s).",
                get_u(&s.events_per_second),
            ),
            (
                "warden_processor_consumer_lag",
                "gauge",
                "Records of the assigned partitions not processed yet (all partitions).",
                get_u(&s.lag_total),
            ),
        ] {
            metric(&mut out, name, kind, help, l, v);
        }
        let lag = s.lag_by_partition();
        let name = "warden_processor_partition_lag";
        let _ = writeln!(
            out,
            "# HELP {name} Records of one assigned partition not processed yet."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (partition, v) in lag {
            let _ = writeln!(
                out,
                "{name}{{pipeline=\"{pipeline}\",partition=\"{partition}\"}} {v}"
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_lag_and_throughput_are_exported() {
        let stats = Arc::new(ProcessorStats::default());
        stats.events_per_second.store(1234, Ordering::Relaxed);
        stats.lag_total.store(42, Ordering::Relaxed);
        stats.assigned_partitions.store(2, Ordering::Relaxed);
        stats.duplicates.store(3, Ordering::Relaxed);
        stats.checkpoints.store(9, Ordering::Relaxed);
        *stats.lag.lock() = [(0, 40), (3, 2)].into_iter().collect();
        let text = render(&Sources {
            gateway: None,
            processor: Some(("default".into(), stats)),
            tls: Vec::new(),
        });
        for line in [
            "# TYPE warden_processor_events_per_second gauge",
            "warden_processor_events_per_second{pipeline=\"default\"} 1234",
            "# TYPE warden_processor_consumer_lag gauge",
            "warden_processor_consumer_lag{pipeline=\"default\"} 42",
            "warden_processor_assigned_partitions{pipeline=\"default\"} 2",
            "warden_processor_duplicate_events_total{pipeline=\"default\"} 3",
            "warden_processor_checkpoints_total{pipeline=\"default\"} 9",
            "# TYPE warden_processor_partition_lag gauge",
            "warden_processor_partition_lag{pipeline=\"default\",partition=\"0\"} 40",
            "warden_processor_partition_lag{pipeline=\"default\",partition=\"3\"} 2",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        // Every metric is declared once.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(types.len(), unique.len());
    }

    #[test]
    fn tls_listener_counters_are_exported_with_the_gateway() {
        let emit = Arc::new(warden_gateway::EmitStats::default());
        let tls = Arc::new(warden_gateway::TlsStats::default());
        let text = render(&Sources {
            gateway: Some(("gw-1".into(), emit.clone())),
            processor: None,
            tls: vec![("gateway", tls.clone()), ("admin", tls)],
        });
        for line in [
            "# TYPE warden_gateway_tls_handshakes_total counter",
            "# TYPE warden_gateway_tls_handshakes_refused_total counter",
        ] {
            assert_eq!(text.matches(line).count(), 1, "`{line}` once in:\n{text}");
        }
        for listener in ["gateway", "admin"] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with("warden_gateway_tls_handshakes_total{")
                        && l.contains(&format!("\"{listener}\""))
                        && l.contains("\"gw-1\"")),
                "{listener} in:\n{text}"
            );
        }
        // Without a gateway there is nothing to label them with.
        let none = render(&Sources {
            gateway: None,
            processor: None,
            tls: vec![("gateway", Arc::new(warden_gateway::TlsStats::default()))],
        });
        assert!(!none.contains("warden_gateway_tls"), "{none}");
    }
}
