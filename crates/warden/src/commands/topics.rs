//! `warden topics`: create the topics a deployment uses (the one-shot init step of a Kafka
//! deployment, so gateways and processors can run with `bus.create_topics = false`), and print
//! them with their partitions.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use warden::{make_bus, topic_specs};
use warden_config::BusKind;

use super::common::load_config;

#[derive(Args, Debug)]
pub struct TopicsArgs {
    /// Config file (its `[bus]` section: brokers, topic names, partitions, retention).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Kafka bootstrap servers (overrides the config's `bus.brokers`).
    #[arg(long, env = "WARDEN_BROKERS")]
    pub brokers: Option<String>,
    /// Keep retrying this many seconds while the brokers are not reachable yet.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.config.as_deref(), args.brokers)?;
    if config.bus.kind != BusKind::Kafka {
        bail!(
            "the config's bus is embedded (in-process): topics exist only on a Kafka bus (set bus.kind = \"kafka\" or pass --brokers)"
        );
    }
    // This command is the one that creates them.
    config.bus.create_topics = true;
    let bus = make_bus(&config)?;
    let specs = topic_specs(&config);
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    loop {
        match bus.ensure_topics(&specs).await {
            Ok(()) => break,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                eprintln!("brokers {} not ready ({e}); retrying", config.bus.brokers);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating topics on {}", config.bus.brokers));
            }
        }
    }
    for spec in &specs {
        let partitions = bus
            .end_offsets(&spec.name)
            .await
            .with_context(|| format!("reading topic {}", spec.name))?
            .len();
        let policy = if spec.compacted {
            "compacted".to_string()
        } else {
            match spec.retention_ms {
                Some(ms) => format!("retention {} h", ms / 3_600_000),
                None => "broker's default retention".to_string(),
            }
        };
        println!("{:<24} {partitions} partition(s), {policy}", spec.name);
    }
    Ok(())
}
