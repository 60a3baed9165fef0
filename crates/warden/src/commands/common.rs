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

/// Reload `path` as [`load_config`] read it, with `keep` applied to each reading (what the
/// command added to the config at start, so it is not seen as a change).
pub fn config_source(
    path: &Path,
    brokers: Option<String>,
    keep: impl Fn(&mut WardenConfig) + Send + Sync + 'static,
) -> warden::ConfigSource {
    let file = path.to_path_buf();
    let f = file.clone();
    warden::ConfigSource {
        file,
        loader: std::sync::Arc::new(move || {
            let mut config = WardenConfig::load(Some(&f))?;
            if let Some(b) = &brokers {
                config.bus.kind = BusKind::Kafka;
                config.bus.brokers.clone_from(b);
            }
            keep(&mut config);
            Ok(config)
        }),
    }
}

/// Read sealed archive files (encryption at rest) with the keys of `[at_rest]` in `config`
/// (and `WARDEN__AT_REST__*` variables): the current key and every old one, whether or not
/// `enabled` (that only governs writing).
pub fn use_archive_keys(config: Option<&Path>) -> anyhow::Result<()> {
    let at_rest = WardenConfig::load(config)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .at_rest;
    if let Some(keys) = at_rest.keyring().map_err(|e| anyhow::anyhow!("{e}"))? {
        warden_stream::query::set_default_keys(keys);
    }
    Ok(())
}

pub fn load_pipeline(path: Option<&Path>) -> anyhow::Result<PipelineConfig> {
    match path {
        Some(p) => warden_stream::load_pipeline(p).map_err(|e| anyhow::anyhow!("{e}")),
        None => default_pipeline(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what `kill`, systemd and container runtimes send),
/// with the signal's name: every long-running command stops the same way on both (drain
/// in-flight requests, flush events and the spool, close archive files). Should SIGTERM not
/// be available, only Ctrl-C is awaited.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

pub async fn run_until_signal(mut stack: Stack) -> anyhow::Result<()> {
    tokio::select! {
        name = shutdown_signal() => {
            eprintln!("{name}: shutting down…");
            stack.stop().await
        }
        e = stack.wait_failure() => Err(e),
    }
}
