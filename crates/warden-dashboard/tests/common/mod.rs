//! What the console's integration tests share: a config with one operator and an embedded
//! bus with the events, decisions and alerts topics.

use std::sync::Arc;

use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, TopicSpec};
use warden_config::WardenConfig;

/// A config whose one operator, `ops`, signs in with `token`, keeping `max_alerts` alerts
/// (`None`: the default), and a bus with its topics.
pub async fn setup(token: &str, max_alerts: Option<usize>) -> (WardenConfig, Arc<dyn Bus>) {
    let mut config = WardenConfig::default();
    if let Some(n) = max_alerts {
        config.dashboard.max_alerts = n;
    }
    config.dashboard.operators = vec![warden_config::OperatorConfig {
        name: "ops".into(),
        role: warden_config::ConsoleRole::Operator,
        token_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes())),
    }];
    config.gateway.decisions_bootstrap_timeout_ms = 5_000;
    let bus = EmbeddedBus::new(EmbeddedConfig::default());
    let t = &config.bus.topics;
    let spec = |name: &str, compacted| TopicSpec {
        name: name.into(),
        partitions: 2,
        compacted,
        retention_ms: None,
    };
    bus.ensure_topics(&[
        spec(&t.events, false),
        spec(&t.decisions, true),
        spec(&t.alerts, false),
    ])
    .await
    .expect("topics");
    (config, Arc::new(bus))
}
