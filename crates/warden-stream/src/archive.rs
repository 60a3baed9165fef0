//! The event archive: request events written to Parquet files partitioned by hour of event
//! time (`DIR/hour=2026-01-05T09/part-….parquet`, Hive style), each file bounded in size and
//! age, older hours deleted after the retention. Files are written under a temporary name
//! and renamed when complete, so readers ([`crate::query`], backtests) never see a partial
//! file. The [`Archiver`] consumes the events topic in its own consumer group and commits its
//! offsets only once the events are in closed files (at-least-once: a crash may duplicate
//! events in the archive, never lose them; `id` tells duplicates apart). With encryption at
//! rest ([`Archiver::with_keys`]) files are sealed envelopes named `part-….parquet.enc`, which
//! [`crate::query`] decrypts in memory.

mod config;
mod writer;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{debug, info, warn};
use warden_bus::{Bus, BusError, Position};
use warden_event::RequestBatchBuilder;

pub use config::ArchiveConfig;
pub use writer::{ArchiveWriter, SEALED_EXTENSION, hour_dir, prune};

/// Errors of the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive I/O at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("encryption at rest: {0}")]
    Crypt(#[from] warden_atrest::CryptError),
}

impl ArchiveError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Counters of a running archiver.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    /// Events written to (open or closed) files.
    pub events: AtomicU64,
    pub undecodable: AtomicU64,
    /// Files closed (complete and visible).
    pub files: AtomicU64,
    /// Offset commits (after files closed).
    pub commits: AtomicU64,
    /// Hour partitions deleted by retention.
    pub pruned: AtomicU64,
}

/// Consumes the events topic into the archive.
pub struct Archiver {
    config: ArchiveConfig,
    topic: String,
    stats: Arc<ArchiveStats>,
    keys: Option<Arc<warden_atrest::Keyring>>,
}

impl Archiver {
    /// An archiver of `topic` (the events topic) with a validated config.
    pub fn new(config: ArchiveConfig, topic: String) -> Self {
        Self {
            config,
            topic,
            stats: Arc::new(ArchiveStats::default()),
            keys: None,
        }
    }

    /// Seal every file with the keyring's current key (encryption at rest).
    pub fn with_keys(mut self, keys: Option<Arc<warden_atrest::Keyring>>) -> Self {
        self.keys = keys;
        self
    }

    pub fn stats(&self) -> Arc<ArchiveStats> {
        self.stats.clone()
    }

    /// Run until `shutdown` resolves; then close every file and commit.
    pub async fn run(
        self,
        bus: Arc<dyn Bus>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ArchiveError> {
        let c = &self.config;
        let mut writer =
            ArchiveWriter::new(c.dir.clone(), c.max_file_bytes)?.with_keys(self.keys.clone());
        // Hours that expired while no archiver ran go at once, then every minute.
        self.prune_now(&[]);
        let mut consumer = bus.group_consumer(&c.group, &[self.topic.as_str()]).await?;
        info!(dir = %c.dir.display(), group = %c.group, "Archiver consuming events.");
        let mut pending: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut roll = tokio::time::interval(Duration::from_secs(c.max_file_age_s.max(1)));
        roll.tick().await;
        let mut retention = tokio::time::interval(Duration::from_secs(60));
        retention.tick().await;
        tokio::pin!(shutdown);
        // At shutdown, read what is already on the bus (until a poll comes back empty), then
        // close the files: events published just before the stop are archived too.
        let mut draining = false;
        loop {
            let polled = if draining {
                consumer
                    .poll(c.batch_max_events, Duration::from_millis(200))
                    .await
            } else {
                tokio::select! {
                _ = &mut shutdown => {
                    draining = true;
                    continue;
                }
                _ = roll.tick() => {
                    self.close_and_commit(&mut writer, &mut pending, &mut *consumer).await?;
                    continue;
                }
                _ = retention.tick() => {
                    self.prune_now(&writer.open_hours());
                    continue;
                }
                p = consumer.poll(c.batch_max_events, Duration::from_millis(200)) => p,
                }
            };
            let msgs = match polled {
                Ok(m) => m,
                Err(e) if draining => {
                    warn!(error = %e, "Reading the last events at shutdown failed.");
                    break;
                }
                Err(e) if e.is_retriable() => {
                    warn!(error = %e, "Polling events failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if msgs.is_empty() {
                if draining {
                    break;
                }
                continue;
            }
            // Payloads (compact or JSON) straight into the batch's columns.
            let mut builder = RequestBatchBuilder::with_capacity(msgs.len());
            for m in &msgs {
                let p = pending.entry((m.topic.clone(), m.partition)).or_insert(0);
                *p = (*p).max(m.offset + 1);
                if let Err(e) = builder.push_payload(&m.payload) {
                    self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, "Skipping an unreadable event.");
                }
            }
            let events = builder.len();
            let batch = builder.finish()?;
            let closed = writer.write(&batch)?;
            self.stats
                .events
                .fetch_add(events as u64, Ordering::Relaxed);
            if closed > 0 {
                // A file reached its size: close the others too and commit everything.
                self.close_and_commit(&mut writer, &mut pending, &mut *consumer)
                    .await?;
            }
        }
        self.close_and_commit(&mut writer, &mut pending, &mut *consumer)
            .await?;
        info!("Archiver stopped.");
        Ok(())
    }

    async fn close_and_commit(
        &self,
        writer: &mut ArchiveWriter,
        pending: &mut BTreeMap<(String, i32), i64>,
        consumer: &mut dyn warden_bus::Consumer,
    ) -> Result<(), ArchiveError> {
        let files = writer.close_all()?;
        self.stats.files.fetch_add(files as u64, Ordering::Relaxed);
        if pending.is_empty() {
            return Ok(());
        }
        let positions: Vec<Position> = std::mem::take(pending)
            .into_iter()
            .map(|((topic, partition), offset)| Position {
                topic,
                partition,
                offset,
            })
            .collect();
        loop {
            match consumer.commit(&positions).await {
                Ok(()) => break,
                Err(e) if e.is_retriable() => {
                    warn!(error = %e, "Committing archive offsets failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn prune_now(&self, open: &[i64]) {
        match prune(
            &self.config.dir,
            self.config.retention_hours,
            warden_event::now_ns(),
            open,
        ) {
            Ok(n) => {
                if n > 0 {
                    info!(hours = n, "Archive retention: old hours deleted.");
                }
                self.stats.pruned.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => warn!(error = %e, "Archive retention failed."),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sealed;
