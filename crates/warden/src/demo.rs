//! The built-in demo: an in-process upstream, a fleet of simulated devices with API keys, and
//! the config that ties them to the gateway.

use std::net::SocketAddr;

use warden_config::{PipelineConfig, RouteAuth, RouteConfig, WardenConfig};
use warden_sim::DemoDevice;

/// The default pipeline, built in so `warden up` needs no files.
pub const DEFAULT_PIPELINE: &str = include_str!("../../../pipelines/default.toml");

/// The built-in default pipeline.
pub fn default_pipeline() -> anyhow::Result<PipelineConfig> {
    PipelineConfig::from_toml(DEFAULT_PIPELINE)
        .map_err(|e| anyhow::anyhow!("built-in pipeline: {e}"))
}

/// `base` with a route `/api` to the demo upstream and an API key per demo device.
pub fn demo_config(
    mut base: WardenConfig,
    upstream: SocketAddr,
    devices: &[DemoDevice],
) -> anyhow::Result<WardenConfig> {
    base.routes.push(RouteConfig {
        name: "devices".into(),
        prefix: "/api".into(),
        upstream: format!("http://{upstream}"),
        upstream_tls: None,
        deprecation: None,
        resilience: Default::default(),
        timeout_ms: 5_000,
        strip_prefix: false,
        auth: RouteAuth::ApiKey,
        methods: vec![],
        require_mtls: false,
        forward_bearer: false,
        allow_underscore_headers: false,
    });
    base.api_keys
        .extend(devices.iter().map(|d| d.config.clone()));
    base.validate()
        .map_err(|e| anyhow::anyhow!("demo config: {e}"))?;
    Ok(base)
}
