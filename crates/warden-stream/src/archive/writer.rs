//! Parquet files per hour of event time, size-bounded, renamed into place when complete.
//! With encryption at rest, a file is built in memory and written sealed as one envelope
//! (`part-….parquet.enc`, see `warden_atrest::seal_envelope`): no plaintext reaches the disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampNanosecondType;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use warden_atrest::Keyring;

use super::ArchiveError;

const HOUR_NS: i64 = 3_600_000_000_000;

/// `hour=YYYY-MM-DDTHH` of an hour number (hours since the epoch, UTC).
pub fn hour_dir(hour: i64) -> String {
    let days = hour.div_euclid(24);
    let h = hour.rem_euclid(24);
    let (y, m, d) = civil_from_days(days);
    format!("hour={y:04}-{m:02}-{d:02}T{h:02}")
}

/// The hour number of a `hour=YYYY-MM-DDTHH` directory name.
fn parse_hour_dir(name: &str) -> Option<i64> {
    let s = name.strip_prefix("hour=")?;
    let (date, h) = s.split_once('T')?;
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let h: i64 = h.parse().ok()?;
    if parts.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(0..24).contains(&h)
    {
        return None;
    }
    Some(days_from_civil(y, m, d) * 24 + h)
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Delete hour partitions of `dir` that ended more than `retention_hours` before `now_ns`,
/// except the hours in `open` (files being written). Returns how many were deleted.
pub fn prune(
    dir: &Path,
    retention_hours: u64,
    now_ns: i64,
    open: &[i64],
) -> Result<usize, ArchiveError> {
    let keep_from = now_ns.div_euclid(HOUR_NS) - i64::try_from(retention_hours).unwrap_or(i64::MAX);
    let mut n = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ArchiveError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::io(dir, e))?;
        let name = entry.file_name();
        let Some(hour) = name.to_str().and_then(parse_hour_dir) else {
            continue;
        };
        if hour < keep_from && !open.contains(&hour) {
            std::fs::remove_dir_all(entry.path())
                .map_err(|e| ArchiveError::io(&entry.path(), e))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Where an open Parquet file goes: a temporary file, or memory when it is to be sealed.
enum Sink {
    File(File),
    Memory(Vec<u8>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Memory(v) => v.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }
}

struct OpenFile {
    writer: ArrowWriter<Sink>,
    tmp: PathBuf,
    path: PathBuf,
}

/// Extension of sealed archive files.
pub const SEALED_EXTENSION: &str = ".parquet.enc";

/// Open Parquet files, one per hour with events in flight.
pub struct ArchiveWriter {
    dir: PathBuf,
    max_file_bytes: u64,
    open: BTreeMap<i64, OpenFile>,
    props: WriterProperties,
    /// Files closed so far.
    closed: Vec<PathBuf>,
    /// Encryption at rest: files are sealed with the current key.
    keys: Option<Arc<Keyring>>,
}

impl ArchiveWriter {
    pub fn new(dir: PathBuf, max_file_bytes: u64) -> Result<Self, ArchiveError> {
        std::fs::create_dir_all(&dir).map_err(|e| ArchiveError::io(&dir, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(64 * 1024))
            .build();
        Ok(Self {
            dir,
            max_file_bytes,
            open: BTreeMap::new(),
            props,
            closed: Vec::new(),
            keys: None,
        })
    }

    /// Seal every file with the keyring's current key (`None`: files in clear).
    pub fn with_keys(mut self, keys: Option<Arc<Keyring>>) -> Self {
        self.keys = keys;
        self
    }

    /// Hours with a file being written.
    pub fn open_hours(&self) -> Vec<i64> {
        self.open.keys().copied().collect()
    }

    /// Files closed so far, in order.
    pub fn closed_files(&self) -> &[PathBuf] {
        &self.closed
    }

    /// Write a batch of events (request event schema); returns how many files reached their
    /// size and were closed.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<usize, ArchiveError> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let ts = batch
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| arrow::error::ArrowError::SchemaError("missing ts".into()))?;
        let hours: Vec<i64> = ts.values().iter().map(|t| t.div_euclid(HOUR_NS)).collect();
        let mut distinct = hours.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut closed = 0;
        for hour in distinct {
            let part = if hours.iter().all(|h| *h == hour) {
                batch.clone()
            } else {
                let mask: BooleanArray = hours.iter().map(|h| Some(*h == hour)).collect();
                filter_record_batch(batch, &mask)?
            };
            let file = match self.open.get_mut(&hour) {
                Some(f) => f,
                None => {
                    let f = self.create(hour, batch.schema())?;
                    self.open.entry(hour).or_insert(f)
                }
            };
            file.writer.write(&part)?;
            let size = file.writer.bytes_written() + file.writer.in_progress_size();
            if size as u64 >= self.max_file_bytes {
                self.close(hour)?;
                closed += 1;
            }
        }
        Ok(closed)
    }

    fn create(
        &self,
        hour: i64,
        schema: arrow::datatypes::SchemaRef,
    ) -> Result<OpenFile, ArchiveError> {
        let dir = self.dir.join(hour_dir(hour));
        std::fs::create_dir_all(&dir).map_err(|e| ArchiveError::io(&dir, e))?;
        let name = format!(
            "part-{}-{}{}",
            warden_event::now_ns(),
            &uuid::Uuid::new_v4().simple().to_string()[..8],
            if self.keys.is_some() {
                SEALED_EXTENSION
            } else {
                ".parquet"
            }
        );
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let sink = if self.keys.is_some() {
            Sink::Memory(Vec::new())
        } else {
            Sink::File(File::create(&tmp).map_err(|e| ArchiveError::io(&tmp, e))?)
        };
        let writer = ArrowWriter::try_new(sink, Arc::clone(&schema), Some(self.props.clone()))?;
        Ok(OpenFile { writer, tmp, path })
    }

    fn close(&mut self, hour: i64) -> Result<(), ArchiveError> {
        let Some(f) = self.open.remove(&hour) else {
            return Ok(());
        };
        let file = match f.writer.into_inner()? {
            Sink::File(file) => file,
            Sink::Memory(plain) => {
                let key = self.keys.as_ref().map(|k| k.current()).ok_or_else(|| {
                    ArchiveError::io(&f.path, std::io::Error::other("no key to seal with"))
                })?;
                let sealed = warden_atrest::seal_envelope(key, &plain)?;
                let mut file = File::create(&f.tmp).map_err(|e| ArchiveError::io(&f.tmp, e))?;
                file.write_all(&sealed)
                    .map_err(|e| ArchiveError::io(&f.tmp, e))?;
                file
            }
        };
        file.sync_all().map_err(|e| ArchiveError::io(&f.tmp, e))?;
        drop(file);
        std::fs::rename(&f.tmp, &f.path).map_err(|e| ArchiveError::io(&f.path, e))?;
        self.closed.push(f.path);
        Ok(())
    }

    /// Close every open file (they become visible); returns how many.
    pub fn close_all(&mut self) -> Result<usize, ArchiveError> {
        let hours: Vec<i64> = self.open.keys().copied().collect();
        for h in &hours {
            self.close(*h)?;
        }
        Ok(hours.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_directories_round_trip() {
        assert_eq!(hour_dir(0), "hour=1970-01-01T00");
        // 2026-01-05T09:00Z
        let h = 1_767_603_600 / 3600;
        assert_eq!(hour_dir(h), "hour=2026-01-05T09");
        assert_eq!(parse_hour_dir("hour=2026-01-05T09"), Some(h));
        assert_eq!(parse_hour_dir(&hour_dir(h - 24 * 400)), Some(h - 24 * 400));
        assert_eq!(parse_hour_dir("hour=2026-13-05T09"), None);
        assert_eq!(parse_hour_dir("other"), None);
    }
}
