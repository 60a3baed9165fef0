//! Settings of the event archive.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warden_config::{ConfigError, ConfigErrors};

/// Where and how events are archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Directory of the archive (created if missing).
    pub dir: PathBuf,
    /// Consumer group of archivers (separate from processors: both see every event).
    #[serde(default = "default_group")]
    pub group: String,
    /// A file is closed once it holds about this many bytes (Parquet, snappy).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Files are closed (and offsets committed) at least this often, seconds.
    #[serde(default = "default_max_file_age_s")]
    pub max_file_age_s: u64,
    /// Hours of events kept; older hour partitions are deleted.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// Most events read per poll.
    #[serde(default = "default_batch")]
    pub batch_max_events: usize,
}

fn default_group() -> String {
    "warden-archive".into()
}
fn default_max_file_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_max_file_age_s() -> u64 {
    60
}
fn default_retention_hours() -> u64 {
    7 * 24
}
fn default_batch() -> usize {
    4096
}

impl ArchiveConfig {
    /// Defaults for an archive in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            group: default_group(),
            max_file_bytes: default_max_file_bytes(),
            max_file_age_s: default_max_file_age_s(),
            retention_hours: default_retention_hours(),
            batch_max_events: default_batch(),
        }
    }

    /// Every problem, with its key.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        if self.dir.as_os_str().is_empty() {
            errs.push(ConfigError::new("archive.dir", "must not be empty"));
        }
        if self.group.trim().is_empty() {
            errs.push(ConfigError::new("archive.group", "must not be empty"));
        }
        if self.max_file_bytes < 64 * 1024 {
            errs.push(ConfigError::new(
                "archive.max_file_bytes",
                "must be at least 65536",
            ));
        }
        if self.max_file_age_s == 0 {
            errs.push(ConfigError::new(
                "archive.max_file_age_s",
                "must be at least 1",
            ));
        }
        if self.retention_hours == 0 {
            errs.push(ConfigError::new(
                "archive.retention_hours",
                "must be at least 1",
            ));
        }
        if self.batch_max_events == 0 {
            errs.push(ConfigError::new(
                "archive.batch_max_events",
                "must be at least 1",
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }
}
