//! Helpers shared by the subcommands.

use std::path::Path;

use warden::Stack;
use warden::demo::default_pipeline;
use warden_config::{BusKind, PipelineConfig, WardenConfig};

pub fn load_config(path: Option<&Path>, brokers: Option<String>) -> anyhow::Result<WardenConfig> {
    let mut config = WardenConfig::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(b) = brokers {
        config.bus.kind = BusKind::Kafka;
        config.bus.brokers = b;
    }
    Ok(config)
}

pub fn load_pipeline(path: Option<&Path>) -> anyhow::Result<PipelineConfig> {
    match path {
        Some(p) => warden_stream::load_pipeline(p).map_err(|e| anyhow::anyhow!("{e}")),
        None => default_pipeline(),
    }
}

pub async fn run_until_signal(mut stack: Stack) -> anyhow::Result<()> {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shutting down…");
            stack.stop().await
        }
        e = stack.wait_failure() => Err(e),
    }
}
