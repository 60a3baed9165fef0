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
    let text = render(&registry(&Sources {
        processor: Some(("default".into(), stats)),
        ..Sources::default()
    }));
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
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    // Every metric is declared once.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
    let mut unique = types.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(types.len(), unique.len());
}

#[test]
fn readiness_follows_the_event_path_and_the_pipeline() {
    let emit = Arc::new(EmitStats::default());
    let processor = Arc::new(ProcessorStats::default());
    let sources = Sources {
        gateway: Some(("gw-1".into(), emit.clone())),
        processor: Some(("default".into(), processor.clone())),
        ..Sources::default()
    };
    let (ready, body) = readiness(&sources);
    assert!(!ready, "no pipeline loaded yet: {body}");
    processor.pipeline.lock().loaded_at = 1;
    let (ready, body) = readiness(&sources);
    assert!(!ready, "the bus never answered: {body}");
    assert_eq!(
        body["checks"]["processor"]["bus_reachable"], false,
        "{body}"
    );
    let now = warden_event::now_ns() as u64;
    processor
        .bus_reached_at
        .store(now - 20_000_000_000, Ordering::Relaxed);
    assert!(!readiness(&sources).0, "the bus last answered 20 s ago");
    processor.bus_reached_at.store(now, Ordering::Relaxed);
    assert!(readiness(&sources).0);
    emit.oldest_unsent_ms.store(61_000, Ordering::Relaxed);
    let (ready, body) = readiness(&sources);
    assert!(!ready);
    assert_eq!(body["checks"]["gateway"]["ready"], false, "{body}");
    assert_eq!(body["checks"]["processor"]["ready"], true, "{body}");
}

#[test]
fn tls_listener_counters_are_exported_with_the_gateway() {
    let emit = Arc::new(warden_gateway::EmitStats::default());
    let tls = Arc::new(warden_gateway::TlsStats::default());
    emit.requests.observe_parts(
        "telemetry",
        "GET",
        200,
        warden_event::Outcome::Allowed,
        warden_event::Reason::None,
        900,
    );
    let text = render(&registry(&Sources {
        gateway: Some(("gw-1".into(), emit.clone())),
        tls: vec![("gateway", tls.clone()), ("admin", tls)],
        ..Sources::default()
    }));
    for line in [
        "# TYPE warden_gateway_requests_total counter",
        "# TYPE warden_gateway_request_duration_seconds histogram",
        "# TYPE warden_gateway_decision_propagation_seconds histogram",
        "# TYPE warden_build_info",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("warden_gateway_requests_total{")
                && l.contains("gateway=\"gw-1\"")
                && l.contains("route=\"telemetry\"")
                && l.ends_with(" 1")),
        "{text}"
    );
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
    let none = render(&registry(&Sources {
        tls: vec![("gateway", Arc::new(warden_gateway::TlsStats::default()))],
        ..Sources::default()
    }));
    assert!(!none.contains("warden_gateway_tls"), "{none}");
}

#[test]
fn model_scores_are_exported_as_histograms_relative_to_the_firing_bar() {
    let stats = Arc::new(ProcessorStats::default());
    let scores = prometheus_client::metrics::histogram::Histogram::new([0.5, 1.0, 2.0]);
    for ratio in [0.2, 0.7, 0.9, 3.0] {
        scores.observe(ratio);
    }
    *stats.model_scores.lock() = vec![warden_stream::ml::ModelScores {
        detector: "fleet_kmeans".into(),
        model: "kmeans",
        scores,
        handle: None,
    }];
    let text = render(&registry(&Sources {
        processor: Some(("ml".into(), stats.clone())),
        ..Sources::default()
    }));
    let labels = "pipeline=\"ml\",detector=\"fleet_kmeans\",model=\"kmeans\"";
    for line in [
        "# TYPE warden_processor_model_score_ratio histogram".to_string(),
        format!("warden_processor_model_score_ratio_count{{{labels}}} 4"),
        format!("warden_processor_model_score_ratio_bucket{{{labels},le=\"1\"}} 3"),
        format!("warden_processor_model_score_ratio_bucket{{{labels},le=\"+Inf\"}} 4"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    // A pipeline without ML detectors exports no model family at all.
    stats.model_scores.lock().clear();
    let text = render(&registry(&Sources {
        processor: Some(("default".into(), stats)),
        ..Sources::default()
    }));
    assert!(!text.contains("model_score"), "{text}");
}
