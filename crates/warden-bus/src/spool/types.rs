//! The spool's settings, errors, records and counters.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warden_atrest::{CryptError, KeyId, Keyring};

/// When appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every append call.
    Always,
    /// At most this long after a write.
    Interval(Duration),
    /// Never explicitly (the OS decides).
    Never,
}

/// What happens when the spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Refuse new records.
    DropNewest,
    /// Delete the oldest segment to make room.
    DropOldest,
}

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub fsync: FsyncPolicy,
    pub overflow: OverflowPolicy,
    /// Encryption at rest: new segments are sealed with the current key; segments written
    /// with an old key (or before encryption was on, in clear) are still read.
    pub keys: Option<Arc<Keyring>>,
}

/// Spool errors (I/O on the spool directory).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("record of {0} bytes is larger than the spool accepts")]
    TooLarge(usize),
    #[error(
        "spool segment {path} is encrypted (key id {id}) but encryption at rest is off; set \
         at_rest.enabled = true with at_rest.key_file (or old_key_files) holding that key"
    )]
    Encrypted { path: PathBuf, id: KeyId },
    #[error("spool segment {path}: {source}")]
    Crypt { path: PathBuf, source: CryptError },
    #[error("spool encryption: {0}")]
    Seal(#[from] CryptError),
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Position in the spool (consecutive from the first record ever written).
    pub number: u64,
    /// A caller-defined number stored with the record (Warden: the event's `seq`).
    pub tag: u64,
    pub key: Bytes,
    pub payload: Bytes,
}

/// Counters of a spool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records appended.
    pub appended: u64,
    /// Records lost to the overflow policy.
    pub dropped: u64,
    /// Segments whose torn, corrupt or (encrypted) unauthentic tail was cut off when the
    /// spool was opened.
    pub corrupt_dropped: u64,
    /// Segments in clear found while encryption is on (written before it was turned on);
    /// they are replayed as usual.
    pub plaintext_segments: u64,
}
