//! `warden archive`: consume the events topic into hourly Parquet files (size-bounded, with
//! retention), for `warden query` and `warden backtest`.

use std::path::PathBuf;

use clap::Args;
use warden::{ensure_topics, make_bus};
use warden_stream::archive::{ArchiveConfig, Archiver};

use super::common::load_config;

#[derive(Args)]
pub struct ArchiveArgs {
    /// Config file (bus, topics and `[at_rest]` encryption).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (sets bus.kind = "kafka").
    #[arg(long, env = "WARDEN_BROKERS")]
    pub brokers: Option<String>,
    /// Archive directory.
    #[arg(long, default_value = "archive")]
    pub dir: PathBuf,
    /// Largest file, megabytes.
    #[arg(long, default_value_t = 64)]
    pub max_file_mb: u64,
    /// Files are closed (and offsets committed) at least this often, seconds.
    #[arg(long, default_value_t = 60)]
    pub max_file_age_s: u64,
    /// Hours of events kept.
    #[arg(long, default_value_t = 168)]
    pub retention_hours: u64,
    /// Consumer group.
    #[arg(long, default_value = "warden-archive")]
    pub group: String,
}

impl ArchiveArgs {
    pub fn archive_config(&self) -> anyhow::Result<ArchiveConfig> {
        let mut c = ArchiveConfig::new(self.dir.clone());
        c.max_file_bytes = self.max_file_mb.saturating_mul(1024 * 1024);
        c.max_file_age_s = self.max_file_age_s;
        c.retention_hours = self.retention_hours;
        c.group = self.group.clone();
        c.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(c)
    }
}

pub async fn run(args: ArchiveArgs) -> anyhow::Result<()> {
    let archive = args.archive_config()?;
    let config = load_config(args.config.as_deref(), args.brokers)?;
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    // Key files are read at start: a missing, short or group-readable key stops here.
    let keys = config
        .at_rest
        .write_keyring()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .map(std::sync::Arc::new);
    let sealed = keys.is_some();
    let archiver = Archiver::new(archive, config.bus.topics.events.clone()).with_keys(keys);
    println!(
        "archiving {} into {}{}",
        config.bus.topics.events,
        args.dir.display(),
        if sealed { " (encrypted at rest)" } else { "" }
    );
    archiver
        .run(bus, async {
            let name = super::common::shutdown_signal().await;
            eprintln!("{name}: closing the archive…");
        })
        .await?;
    Ok(())
}
