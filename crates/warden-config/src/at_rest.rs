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

#[cfg(test)]
mod tests {
    use crate::WardenConfig;

    #[test]
    fn off_by_default_and_checked_when_on() {
        let c = WardenConfig::from_toml("").expect("defaults");
        assert!(!c.at_rest.enabled);
        assert!(c.at_rest.write_keyring().expect("no keys").is_none());
        let err = WardenConfig::from_toml("[at_rest]\nenabled = true\n")
            .expect_err("no key file")
            .to_string();
        assert!(err.contains("at_rest.key_file"), "{err}");
        let err = WardenConfig::from_toml("[at_rest]\nkey_files = \"k\"\n")
            .expect_err("typo")
            .to_string();
        assert!(err.contains("key_files"), "{err}");
        let err = WardenConfig::from_toml("[at_rest]\nold_key_files = [\"old.key\"]\n")
            .expect_err("old without current")
            .to_string();
        assert!(err.contains("at_rest.old_key_files"), "{err}");
    }

    #[test]
    fn key_files_are_read_when_asked() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("k");
        std::fs::write(&key, [3u8; 32]).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        }
        let c = WardenConfig::from_toml(&format!(
            "[at_rest]\nenabled = true\nkey_file = {:?}\n",
            key.display().to_string()
        ))
        .expect("config");
        assert!(c.at_rest.write_keyring().expect("keys").is_some());
        let mut off = c.at_rest.clone();
        off.enabled = false;
        assert!(off.write_keyring().expect("off").is_none());
        assert!(off.keyring().expect("still readable").is_some());
        off.old_key_files = vec![dir.path().join("gone").display().to_string()];
        let err = off.keyring().expect_err("missing old key").to_string();
        assert!(err.contains("gone"), "{err}");
    }
}
