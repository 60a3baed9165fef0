//! Archives with sealed files (encryption at rest): every file is read, sealed ones decrypted
//! with the configured keys, into an in-memory object store the `events` table is listed
//! from. Plaintext never reaches the disk; the price is memory of the size of the archive read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::object_store::memory::InMemory;
use datafusion::object_store::path::Path as ObjectPath;
use datafusion::object_store::{ObjectStoreExt as _, PutPayload};
use datafusion::prelude::SessionContext;
use warden_atrest::Keyring;

use super::QueryError;
use crate::archive::SEALED_EXTENSION;

static DEFAULT_KEYS: OnceLock<Keyring> = OnceLock::new();

/// The keys [`super::session`] reads sealed archive files with when none are passed (set
/// once by the command line from `[at_rest]`). Later calls are ignored.
pub fn set_default_keys(keys: Keyring) {
    let _ = DEFAULT_KEYS.set(keys);
}

pub(super) fn default_keys() -> Option<&'static Keyring> {
    DEFAULT_KEYS.get()
}

/// Archive files (`.parquet` and sealed), relative to `dir`: at the top and one level down
/// (hour partitions). Temporary files (`.name.tmp`) are skipped.
pub(super) fn archive_files(dir: &Path) -> Result<Vec<PathBuf>, QueryError> {
    let err =
        |p: &Path, e: std::io::Error| QueryError::Archive(p.display().to_string(), e.to_string());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| err(dir, e))?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            for sub in std::fs::read_dir(&path)
                .map_err(|e| err(&path, e))?
                .flatten()
            {
                out.push(sub.path());
            }
        } else {
            out.push(path);
        }
    }
    out.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            !n.starts_with('.') && (n.ends_with(".parquet") || n.ends_with(SEALED_EXTENSION))
        })
    });
    out.sort();
    Ok(out)
}

pub(super) fn is_sealed(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(SEALED_EXTENSION))
}

/// Put every archive file (decrypted) into a memory store registered with `ctx`; returns
/// the URL to list the table from.
pub(super) async fn load(
    ctx: &SessionContext,
    dir: &Path,
    files: &[PathBuf],
    keys: Option<&Keyring>,
) -> Result<ListingTableUrl, QueryError> {
    let sealed = files.iter().filter(|p| is_sealed(p)).count();
    let Some(keys) = keys else {
        let id = files
            .iter()
            .find(|p| is_sealed(p))
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| warden_atrest::envelope_key_id(&b))
            .map_or_else(|| "?".to_string(), |id| id.to_string());
        return Err(QueryError::Archive(
            dir.display().to_string(),
            format!(
                "holds {sealed} encrypted file(s) (key id {id}) and no key is configured; \
                 pass --config with [at_rest] key_file (or old_key_files) holding that key"
            ),
        ));
    };
    let store = Arc::new(InMemory::new());
    for path in files {
        let bytes = std::fs::read(path)
            .map_err(|e| QueryError::Archive(path.display().to_string(), e.to_string()))?;
        let bytes = if is_sealed(path) {
            warden_atrest::open_envelope(keys, &bytes)
                .map_err(|e| QueryError::Archive(path.display().to_string(), e.to_string()))?
        } else {
            bytes
        };
        let rel = path.strip_prefix(dir).unwrap_or(path).to_string_lossy();
        let rel = rel.strip_suffix(".enc").unwrap_or(&rel).replace('\\', "/");
        store
            .put(&ObjectPath::from(rel), PutPayload::from(bytes))
            .await
            .map_err(|e| QueryError::Archive(path.display().to_string(), e.to_string()))?;
    }
    let url = ListingTableUrl::parse("memory://warden-archive/")?;
    ctx.register_object_store(url.as_ref(), store);
    Ok(url)
}
