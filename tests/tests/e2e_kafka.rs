//! The whole loop on a real Kafka-protocol broker (Tansu) on loopback.

use warden_config::{BusKind, WardenConfig};
use warden_tests::tansu::Tansu;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_quarantined_end_to_end_on_kafka() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,warden=info")
        .try_init();
    // SQLite storage: Tansu's memory engine under-reports end offsets (see tests/src/tansu.rs).
    let broker = Tansu::start_sqlite();
    let mut config = WardenConfig::default();
    config.bus.kind = BusKind::Kafka;
    config.bus.brokers = broker.brokers();
    warden_tests::e2e::full_loop(config)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}
