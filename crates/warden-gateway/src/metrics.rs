//! Request metrics of the gateway on `prometheus-client`: a counter family by route, method
//! class, status class, outcome and refusal reason, and latency histograms.
//!
//! Every label value comes from a closed set (route names from the config, `unmatched`, enum
//! names), so a client cannot grow the number of series. Recording is a read-locked map lookup
//! and a few atomic adds, off any await point.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use warden_event::{Outcome, Reason, RequestEvent};

/// A route name as a label value, inline up to 24 bytes (no allocation per request).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteLabel(compact_str::CompactString);

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(&self.0)
    }
}

/// Labels of `warden_gateway_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: RouteLabel,
    /// `read` (GET, HEAD, OPTIONS), `write` (POST, PUT, PATCH, DELETE) or `other`.
    pub method: &'static str,
    /// `1xx` … `5xx`.
    pub status: &'static str,
    /// The gateway's decision (`allowed`, `denied_auth`, …).
    pub outcome: &'static str,
    /// Why a request was refused (`none` when it was not).
    pub reason: &'static str,
}

/// Labels of the per-route duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: RouteLabel,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Gateway request metrics. Cheap to clone: clones share the same series.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    /// Requests by route, method class, status class, outcome and reason.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from request start to the end of the response, by route, seconds.
    pub duration: HistogramFamily<RouteLabels>,
    /// Time from a decision being made by a processor to this gateway enforcing it, seconds
    /// (clock skew between hosts adds to it).
    pub decision_propagation: Histogram,
    /// Time from sending a request upstream to its response head (or its failure), by route
    /// and result, seconds.
    pub upstream_duration: HistogramFamily<UpstreamLabels>,
}

/// Labels of the upstream duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub route: RouteLabel,
    /// `response` (any status), `timeout` or `error` (connection refused or reset, or the
    /// client's body failed on the way).
    pub result: &'static str,
}

/// 100 µs … ~3.3 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            // 1 ms … ~33 s.
            decision_propagation: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            upstream_duration: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// The class of an HTTP method (the label keeps the series count fixed).
pub fn method_class(method: &str) -> &'static str {
    match method {
        "GET" | "HEAD" | "OPTIONS" => "read",
        "POST" | "PUT" | "PATCH" | "DELETE" => "write",
        _ => "other",
    }
}

/// `1xx` … `5xx` (anything else is `other`).
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

impl RequestMetrics {
    /// Record one upstream exchange of `route`: `seconds` until its response head, its timeout
    /// or its failure (`result`).
    pub fn observe_upstream(&self, route: &str, result: &'static str, seconds: f64) {
        self.upstream_duration
            .get_or_create(&UpstreamLabels {
                route: RouteLabel(compact_str::CompactString::new(route)),
                result,
            })
            .observe(seconds);
    }

    /// Count one request and record its duration.
    pub fn observe(&self, event: &RequestEvent) {
        self.observe_parts(
            &event.route,
            &event.method,
            event.status,
            event.decision,
            event.reason,
            event.latency_us,
        );
    }

    /// [`RequestMetrics::observe`] from an event's parts.
    pub fn observe_parts(
        &self,
        route: &str,
        method: &str,
        status: u16,
        decision: Outcome,
        reason: Reason,
        latency_us: u64,
    ) {
        let route = RouteLabel(compact_str::CompactString::new(route));
        self.duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(latency_us as f64 / 1e6);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method_class(method),
                status: status_class(status),
                outcome: decision.as_str(),
                reason: reason.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn requests_are_counted_by_closed_label_sets() {
        let m = RequestMetrics::default();
        for _ in 0..2 {
            m.observe_parts(
                "telemetry",
                "POST",
                200,
                Outcome::Allowed,
                Reason::None,
                1500,
            );
        }
        m.observe_parts(
            "telemetry",
            "DeLeTe",
            403,
            Outcome::DeniedRbac,
            Reason::Rbac,
            1500,
        );
        m.observe_upstream("telemetry", "response", 0.003);
        m.observe_upstream("telemetry", "timeout", 5.0);
        let mut reg = Registry::default();
        reg.register("warden_gateway_requests", "Requests.", m.requests.clone());
        reg.register(
            "warden_gateway_upstream_duration_seconds",
            "Upstream.",
            m.upstream_duration.clone(),
        );
        reg.register(
            "warden_gateway_request_duration_seconds",
            "Duration.",
            m.duration.clone(),
        );
        let mut out = String::new();
        encode(&mut out, &reg).expect("encode");
        assert!(
            out.contains("# TYPE warden_gateway_requests_total counter"),
            "{out}"
        );
        assert!(
            out.contains(
                "warden_gateway_requests_total{route=\"telemetry\",method=\"write\",status=\"2xx\",outcome=\"allowed\",reason=\"none\"} 2"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "method=\"other\",status=\"4xx\",outcome=\"denied_rbac\",reason=\"rbac\"} 1"
            ),
            "{out}"
        );
        assert!(
            out.contains("warden_gateway_request_duration_seconds_count{route=\"telemetry\"} 3"),
            "{out}"
        );
        for result in ["response", "timeout"] {
            assert!(
                out.contains(&format!(
                    "warden_gateway_upstream_duration_seconds_count{{route=\"telemetry\",result=\"{result}\"}} 1"
                )),
                "{out}"
            );
        }
        assert!(
            out.contains("# TYPE warden_gateway_upstream_duration_seconds histogram"),
            "{out}"
        );
        assert!(
            out.contains("warden_gateway_request_duration_seconds_bucket{le=\"0.0016\",route=\"telemetry\"} 3")
                || out.contains("warden_gateway_request_duration_seconds_bucket{route=\"telemetry\",le=\"0.0016\"} 3"),
            "{out}"
        );
    }
}
