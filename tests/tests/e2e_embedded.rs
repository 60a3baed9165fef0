//! The whole loop on the embedded bus.

use warden_config::WardenConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_quarantined_end_to_end_on_the_embedded_bus() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,warden=info")
        .try_init();
    warden_tests::e2e::full_loop(WardenConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}
