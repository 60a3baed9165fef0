//! Encryption at rest of the gateway's spool and the processor's archive (`[at_rest]`).

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warden_atrest::Keyring;

use crate::ConfigError;

/// Encryption at rest (off by default): spool segments and archive files are sealed with
/// ChaCha20-Poly1305 under a key read from a file (see docs/SECURITY.md, "Encryption at
/// rest").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct AtRestConfig {
    /// Encrypt new spool segments and archive files. Data written in clear before is still
    /// read; encrypted data is read whenever its key is configured, even with this off.
    #[serde(default)]
    pub enabled: bool,
    /// The current key: a file of exactly 32 random bytes, or of 64 hex digits (e.g.
    /// `openssl rand -hex 32`), readable by its owner only (mode 0600 or 0400). New data is
    /// written with it. Required when `enabled`.
    #[serde(default)]
    pub key_file: String,
    /// Earlier keys, for reading only: keep a key here after a rotation until every spool
    /// segment and archive file written with it has been acknowledged or aged out.
    #[serde(default)]
    pub old_key_files: Vec<String>,
}

impl AtRestConfig {
    /// Semantic problems (files are read by [`AtRestConfig::keyring`]).
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if self.enabled && self.key_file.trim().is_empty() {
            errs.push(ConfigError::new(
                "at_rest.key_file",
                "required when at_rest.enabled = true",
            ));
        }
        if !self.old_key_files.is_empty() && self.key_file.trim().is_empty() {
            errs.push(ConfigError::new(
                "at_rest.old_key_files",
                "needs at_rest.key_file (the current key)",
            ));
        }
        if self.old_key_files.iter().any(|f| f.trim().is_empty()) {
            errs.push(ConfigError::new(
                "at_rest.old_key_files",
                "must not contain an empty path",
            ));
        }
        errs
    }

    /// The keys, read from their files: `None` when no key file is configured. Every problem
    /// (unreadable, wrong length, readable by others, a key given twice) is an error naming
    /// the file.
    pub fn keyring(&self) -> Result<Option<Keyring>, ConfigError> {
        if self.key_file.trim().is_empty() {
            return Ok(None);
        }
        let old: Vec<PathBuf> = self.old_key_files.iter().map(PathBuf::from).collect();
        Keyring::load(Path::new(&self.key_file), &old)
            .map(Some)
            .map_err(|e| ConfigError::new("at_rest", e.to_string()))
    }

    /// The keys new data is written with: `None` unless `enabled`. Reading paths use
    /// [`AtRestConfig::keyring`] (old data stays readable after encryption is turned off).
    pub fn write_keyring(&self) -> Result<Option<Keyring>, ConfigError> {
        if self.enabled {
            self.keyring()
        } else {
            Ok(None)
        }
    }
}
