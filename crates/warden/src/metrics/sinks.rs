//! Delivery counters of the console's alert sinks (webhooks and syslog receivers), read at
//! scrape time.

use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use warden_dashboard::sink::{SinkKind, SinkStats};

use super::{C, V, family, get_u};

/// The sinks of a console: kind, name and counters.
pub type SinkSources = Vec<(SinkKind, String, Arc<SinkStats>)>;

/// `warden_dashboard_sink_*_total` by `type` and `sink`. The families are declared even when
/// no sink is configured, so dashboards and alert rules find them.
pub(super) fn encode(encoder: &mut DescriptorEncoder, sinks: &SinkSources) -> std::fmt::Result {
    let per = |f: &dyn Fn(&SinkStats) -> u64| -> Vec<([(&str, &str); 2], V)> {
        sinks
            .iter()
            .map(|(kind, name, s)| {
                (
                    [("type", kind.as_str()), ("sink", name.as_str())],
                    V::N(f(s)),
                )
            })
            .collect()
    };
    family(
        encoder,
        "warden_dashboard_sink_delivered_total",
        "Alerts and decisions delivered to a sink (webhook: answered 2xx; syslog: written).",
        C,
        &per(&|s| get_u(&s.delivered)),
    )?;
    family(
        encoder,
        "warden_dashboard_sink_failed_attempts_total",
        "Delivery attempts to a sink that failed (each retried while attempts remain).",
        C,
        &per(&|s| get_u(&s.failed_attempts)),
    )?;
    family(
        encoder,
        "warden_dashboard_sink_dead_lettered_total",
        "Alerts and decisions given up: refused for good, attempts exhausted, or queue full.",
        C,
        &per(&|s| get_u(&s.dead_lettered)),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::metrics::{Sources, registry, render};

    #[test]
    fn sink_counters_are_exported_by_type_and_name() {
        let hook = Arc::new(SinkStats::default());
        hook.delivered.store(5, Ordering::Relaxed);
        hook.dead_lettered.store(1, Ordering::Relaxed);
        let syslog = Arc::new(SinkStats::default());
        syslog.failed_attempts.store(2, Ordering::Relaxed);
        let text = render(&registry(&Sources {
            sinks: Some(vec![
                (SinkKind::Webhook, "oncall".into(), hook),
                (SinkKind::Syslog, "siem".into(), syslog),
            ]),
            ..Sources::default()
        }));
        for line in [
            "# TYPE warden_dashboard_sink_delivered_total counter",
            "warden_dashboard_sink_delivered_total{type=\"webhook\",sink=\"oncall\"} 5",
            "warden_dashboard_sink_dead_lettered_total{type=\"webhook\",sink=\"oncall\"} 1",
            "warden_dashboard_sink_failed_attempts_total{type=\"syslog\",sink=\"siem\"} 2",
            "warden_dashboard_sink_delivered_total{type=\"syslog\",sink=\"siem\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        // Declared without sinks too; absent without a console.
        let none = render(&registry(&Sources {
            sinks: Some(Vec::new()),
            ..Sources::default()
        }));
        assert!(none.contains("# TYPE warden_dashboard_sink_dead_lettered_total counter"));
        let without = render(&registry(&Sources::default()));
        assert!(!without.contains("warden_dashboard_sink"));
    }
}
