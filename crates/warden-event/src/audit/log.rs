//! The writer: one per file, appending and syncing one record at a time.
//!
//! On open it locks the file (one writer per file, across processes), reads the last record
//! and continues its chain. A last line without its newline (a write torn by a crash) is
//! moved to `<path>.torn-<ns>` and cut off, with a warning and a [`Kind::Log`] record saying
//! so: the log stays writable, and the cut is itself on record. Anything else wrong with the
//! last record (bad hash, wrong key, not a record) refuses the open: run `warden audit verify`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::{Alg, AuditKey, GENESIS, Kind, LineError, MAX_RECORD_BYTES, check_line, encode_line};

/// Errors opening or appending to the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {path} is open in another process (one writer per file)")]
    Locked { path: PathBuf },
    #[error(
        "audit log {path}: the last record {detail}; refusing to append (run `warden audit verify`)"
    )]
    Tail { path: PathBuf, detail: String },
    #[error("audit record of {bytes} bytes is larger than {MAX_RECORD_BYTES}")]
    TooLarge { bytes: usize },
    #[error("audit record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// An open audit log.
pub struct AuditLog {
    path: PathBuf,
    key: Option<AuditKey>,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

struct State {
    file: File,
    /// `seq` and `hash` of the last record.
    seq: u64,
    head: String,
    /// Bytes in the file (where the next record starts).
    len: u64,
}

/// The last line (without its newline), where it starts, and the bytes after it.
struct Tail {
    last: Option<Vec<u8>>,
    complete_len: u64,
    torn: Vec<u8>,
}

impl AuditLog {
    /// Open (or create, mode 0600) the log at `path`, records keyed with `key` if given.
    pub fn open(path: &Path, key: Option<AuditKey>) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let Some(tail) = read_tail(&mut file).map_err(io)? else {
            return Err(AuditError::Tail {
                path: path.to_path_buf(),
                detail: "is longer than any record".into(),
            });
        };
        let mut torn_saved = None;
        if !tail.torn.is_empty() {
            let saved = torn_path(path);
            std::fs::write(&saved, &tail.torn).map_err(io)?;
            file.set_len(tail.complete_len).map_err(io)?;
            file.sync_all().map_err(io)?;
            tracing::warn!(path = %path.display(), bytes = tail.torn.len(), saved_to = %saved.display(), "Audit log ended in a torn record; it was cut off and saved aside.");
            torn_saved = Some((saved, tail.torn.len()));
        }
        let (seq, head) = match &tail.last {
            None => (0, GENESIS.to_string()),
            Some(line) => {
                let tail_error = |detail: String| AuditError::Tail {
                    path: path.to_path_buf(),
                    detail,
                };
                let record = check_line(line, key.as_ref()).map_err(|e| match e {
                    LineError::Malformed(why) => tail_error(format!("is malformed: {why}")),
                    LineError::NeedsKey => {
                        tail_error("is keyed and audit.key_file is not set".into())
                    }
                    LineError::Hash => tail_error(
                        "does not match its hash (edited, or another key than audit.key_file)"
                            .into(),
                    ),
                })?;
                if key.is_some() && record.alg != Alg::HmacSha256 {
                    return Err(tail_error(
                        "is not keyed and audit.key_file is set (start a new file to add a key)"
                            .into(),
                    ));
                }
                (record.seq, record.hash)
            }
        };
        let log = Self {
            path: path.to_path_buf(),
            key,
            state: Mutex::new(State {
                file,
                seq,
                head,
                len: tail.complete_len,
            }),
        };
        if let Some((saved, bytes)) = torn_saved {
            log.append(
                Kind::Log,
                &serde_json::json!({
                    "event": "torn_tail_removed",
                    "bytes": bytes,
                    "saved_to": saved.display().to_string(),
                }),
            )?;
        }
        Ok(log)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `seq` of the last record (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    /// Append a record stamped now, synced to disk before returning its `seq`. Blocks on the
    /// disk: from async code, call it in `spawn_blocking`.
    pub fn append<P: Serialize>(&self, kind: Kind, payload: &P) -> Result<u64, AuditError> {
        self.append_at(crate::now_ns(), kind, payload)
    }

    /// [`AuditLog::append`] with the time given (nanoseconds since the Unix epoch).
    pub fn append_at<P: Serialize>(
        &self,
        ts_ns: i64,
        kind: Kind,
        payload: &P,
    ) -> Result<u64, AuditError> {
        let mut state = self.lock();
        let seq = state.seq + 1;
        let ts = super::rfc3339(ts_ns);
        let (line, hash) = encode_line(self.key.as_ref(), seq, &ts, kind, &state.head, payload)?;
        if line.len() > MAX_RECORD_BYTES {
            return Err(AuditError::TooLarge { bytes: line.len() });
        }
        let written = state
            .file
            .write_all(line.as_bytes())
            .and_then(|()| state.file.sync_data());
        if let Err(source) = written {
            // Cut off whatever part of the record reached the file, so the next one starts
            // on a line of its own (if that fails too, the next open removes the torn tail).
            let len = state.len;
            let _ = state.file.set_len(len);
            return Err(AuditError::Io {
                path: self.path.clone(),
                source,
            });
        }
        state.seq = seq;
        state.head = hash;
        state.len += line.len() as u64;
        Ok(seq)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (it is updated last).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `<path>.torn-<ns>`, beside the log.
fn torn_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".torn-{}", crate::now_ns()));
    path.with_file_name(name)
}

/// Read the end of the file backwards until the last complete line is whole; `None` when the
/// end of the file is longer than any record without a line break (nothing to continue from).
fn read_tail(file: &mut File) -> std::io::Result<Option<Tail>> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut chunk = 4096u64;
    loop {
        let start = len.saturating_sub(chunk);
        let mut buf = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
        file.seek(SeekFrom::Start(start))?;
        Read::by_ref(file).take(len - start).read_to_end(&mut buf)?;
        let end = buf.iter().rposition(|b| *b == b'\n');
        // The last line starts after the newline before `end`, or at the file's start.
        let line_start = end.and_then(|e| buf[..e].iter().rposition(|b| *b == b'\n'));
        if start == 0 || line_start.is_some() {
            let torn_from = end.map_or(0, |e| e + 1);
            let last = end.map(|e| buf[line_start.map_or(0, |s| s + 1)..e].to_vec());
            return Ok(Some(Tail {
                last,
                complete_len: start + torn_from as u64,
                torn: buf[torn_from..].to_vec(),
            }));
        }
        if buf.len() > 2 * MAX_RECORD_BYTES + 2 {
            return Ok(None);
        }
        chunk = chunk.saturating_mul(4);
    }
}
