//! A durable local spool: an append-only log of records on disk, for events that are accepted
//! but not yet acknowledged by the bus.
//!
//! Records are appended to segment files (`{first record number:020}.seg`); each record is
//! `len: u32 | crc32(body): u32 | body`, body = `number: u64 | tag: u64 | key_len: u16 | key |
//! payload`. Reading follows appends; [`Spool::ack`] marks every record below a number as done
//! (persisted atomically in `acked`), and segments whose records are all acknowledged are
//! deleted. On open, segments are scanned and a torn or corrupt tail (a crash mid-write) is cut
//! off, so a restart replays exactly the records that were written completely and not acked.
//!
//! Durability: appended records are written to the OS at the end of every `append` call (a
//! process crash loses nothing written); `fsync` follows [`FsyncPolicy`] (a machine crash loses
//! at most what was written since the last fsync). When the spool holds `max_bytes`, the
//! [`OverflowPolicy`] applies and every lost record is counted.

mod record;
mod types;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use types::io_err;
pub use types::{FsyncPolicy, OverflowPolicy, SpoolConfig, SpoolError, SpoolRecord, SpoolStats};

use record::{
    BODY_FIXED, HEADER, SEALED_EXTRA, SegmentFormat, encode, new_segment_header, read_acked,
    read_record, scan, write_acked,
};

/// Largest record accepted (guards against a corrupt length field too).
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

struct Segment {
    first: u64,
    path: PathBuf,
    bytes: u64,
    format: SegmentFormat,
}

/// The spool. Not thread-safe: own it from one task (or behind a mutex).
pub struct Spool {
    config: SpoolConfig,
    segments: Vec<Segment>,
    writer: Option<BufWriter<File>>,
    next_number: u64,
    acked: u64,
    max_tag: Option<u64>,
    /// Next record to hand out by `read`: segment index (into `segments`) and byte offset.
    read_pos: (u64, u64),
    read_number: u64,
    reader: Option<(u64, File)>,
    last_sync: Instant,
    dirty: bool,
    oldest_unacked_at: Option<Instant>,
    stats: SpoolStats,
}

impl Spool {
    /// Open (creating if needed) the spool in `config.dir`, recovering what it holds.
    pub fn open(config: SpoolConfig) -> Result<Self, SpoolError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let (acked, cursor_tag) = read_acked(&dir)?;
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let first = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".seg")?
                    .parse()
                    .ok()?;
                Some((first, p))
            })
            .collect();
        names.sort();
        let mut spool = Spool {
            config,
            segments: Vec::new(),
            writer: None,
            next_number: acked,
            acked,
            max_tag: cursor_tag,
            read_pos: (0, 0),
            read_number: acked,
            reader: None,
            last_sync: Instant::now(),
            dirty: false,
            oldest_unacked_at: None,
            stats: SpoolStats::default(),
        };
        for (first, path) in names {
            let record::Scan {
                format,
                count,
                valid_bytes,
                max_tag,
                file_len,
            } = scan(&path, first, spool.config.keys.as_deref())?;
            if valid_bytes < file_len {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(valid_bytes).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                spool.stats.corrupt_dropped += 1;
                warn!(path = %path.display(), kept_bytes = valid_bytes, "Cut a torn record off the spool.");
            }
            if first + count <= acked || count == 0 {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            if spool.config.keys.is_some() && format.cipher.is_none() {
                spool.stats.plaintext_segments += 1;
                info!(path = %path.display(), "Replaying a spool segment written in clear (before encryption was on).");
            }
            spool.max_tag = spool.max_tag.max(max_tag);
            spool.next_number = first + count;
            spool.segments.push(Segment {
                first,
                path,
                bytes: valid_bytes,
                format,
            });
        }
        // Reading starts at the first record on disk; acknowledged ones are skipped by `read`.
        if let Some(first) = spool.segments.first().map(|s| s.first) {
            spool.read_number = first;
            spool.read_pos = (first, 0);
        }
        if spool.pending() > 0 {
            spool.oldest_unacked_at = Some(Instant::now());
        }
        Ok(spool)
    }

    /// Append records (key, payload, tag). Returns how many were accepted (the rest were
    /// refused by [`OverflowPolicy::DropNewest`]).
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8], &'a [u8], u64)>,
    ) -> Result<usize, SpoolError> {
        let mut accepted = 0;
        for (key, payload, tag) in records {
            let body_len = BODY_FIXED + key.len() + payload.len();
            if body_len > MAX_RECORD || key.len() > u16::MAX as usize {
                return Err(SpoolError::TooLarge(body_len));
            }
            let sealed = if self.config.keys.is_some() {
                SEALED_EXTRA
            } else {
                0
            };
            let rec_len = (HEADER + body_len + sealed) as u64;
            if self.bytes() + rec_len > self.config.max_bytes && !self.make_room(rec_len)? {
                self.stats.dropped += 1;
                continue;
            }
            if self.writer.is_none()
                || self
                    .segments
                    .last()
                    .is_none_or(|s| s.bytes + rec_len > self.config.segment_bytes.max(1))
            {
                self.roll()?;
            }
            let (seg_path, cipher) = self
                .segments
                .last()
                .map(|s| (s.path.clone(), s.format.cipher.clone()))
                .unwrap_or_default();
            let bytes = encode(cipher.as_deref(), self.next_number, tag, key, payload)?;
            let w = self.writer.as_mut().ok_or_else(|| SpoolError::Io {
                path: seg_path.clone(),
                source: io::Error::other("no open segment"),
            })?;
            w.write_all(&bytes).map_err(io_err(&seg_path))?;
            if let Some(s) = self.segments.last_mut() {
                s.bytes += bytes.len() as u64;
            }
            self.next_number += 1;
            self.max_tag = Some(self.max_tag.map_or(tag, |m| m.max(tag)));
            self.stats.appended += 1;
            self.oldest_unacked_at.get_or_insert_with(Instant::now);
            self.dirty = true;
            accepted += 1;
        }
        self.flush()?;
        Ok(accepted)
    }

    /// Hand the OS what was appended, and fsync per the policy.
    fn flush(&mut self) -> Result<(), SpoolError> {
        let path = self
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        if let Some(w) = self.writer.as_mut() {
            w.flush().map_err(io_err(&path))?;
            let due = match self.config.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
                FsyncPolicy::Never => false,
            };
            if due && self.dirty {
                w.get_ref().sync_data().map_err(io_err(&path))?;
                self.last_sync = Instant::now();
                self.dirty = false;
            }
        }
        Ok(())
    }

    /// Fsync now if anything is unsynced (for the interval policy's timer).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.dirty
            && self.config.fsync != FsyncPolicy::Never
            && let (Some(w), Some(s)) = (self.writer.as_mut(), self.segments.last())
        {
            w.get_ref().sync_data().map_err(io_err(&s.path))?;
            self.last_sync = Instant::now();
            self.dirty = false;
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        self.sync()?;
        let path = self
            .config
            .dir
            .join(format!("{:020}.seg", self.next_number));
        // A segment of this name holds no valid record (else numbering would be past it).
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut writer = BufWriter::with_capacity(64 * 1024, file);
        let mut format = SegmentFormat {
            cipher: None,
            data_start: 0,
        };
        if let Some(keys) = &self.config.keys {
            let (header, sub) = new_segment_header(keys)?;
            writer.write_all(&header).map_err(io_err(&path))?;
            format = SegmentFormat {
                cipher: Some(Arc::new(sub)),
                data_start: header.len() as u64,
            };
        }
        self.writer = Some(writer);
        self.segments.push(Segment {
            first: self.next_number,
            path,
            bytes: format.data_start,
            format,
        });
        Ok(())
    }

    /// Free space for `need` bytes per the overflow policy; false when the record must be
    /// refused.
    fn make_room(&mut self, need: u64) -> Result<bool, SpoolError> {
        if self.config.overflow == OverflowPolicy::DropNewest {
            return Ok(false);
        }
        while self.bytes() + need > self.config.max_bytes && self.segments.len() > 1 {
            let seg = self.segments.remove(0);
            let next_first = self.segments.first().map_or(self.next_number, |s| s.first);
            let lost = next_first.saturating_sub(seg.first.max(self.acked));
            self.stats.dropped += lost;
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            if self.read_number < next_first {
                self.read_number = next_first;
                self.read_pos = (next_first, 0);
                self.reader = None;
            }
            self.acked = self.acked.max(next_first);
            write_acked(&self.config.dir, self.acked, self.max_tag)?;
        }
        Ok(self.bytes() + need <= self.config.max_bytes)
    }

    /// Up to `max` records after the last one read (records read but not acked are not read
    /// again unless [`Spool::rewind`] is called).
    pub fn read(&mut self, max: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        let mut out = Vec::new();
        while out.len() < max && self.read_number < self.next_number {
            let Some(idx) = self.segment_of(self.read_number) else {
                break;
            };
            let seg = &self.segments[idx];
            let (first, path, format) = (seg.first, seg.path.clone(), seg.format.clone());
            if self.reader.as_ref().is_none_or(|(f, _)| *f != first) {
                // Records are contiguous: a new segment is entered at its first record.
                let mut f = File::open(&path).map_err(io_err(&path))?;
                let offset = if self.read_pos.0 == first {
                    self.read_pos.1
                } else {
                    0
                }
                .max(format.data_start);
                f.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
                self.read_pos = (first, offset);
                self.reader = Some((first, f));
            }
            let Some((_, f)) = self.reader.as_mut() else {
                break;
            };
            let cipher = format.cipher.as_deref();
            let Some((rec, len)) =
                read_record(f, cipher, self.read_number).map_err(io_err(&path))?
            else {
                // End of this segment's valid records: continue at the next segment (records
                // between are gone — cut off as corrupt when the spool was opened).
                match self.segments.get(idx + 1) {
                    Some(next) => {
                        self.read_number = next.first;
                        continue;
                    }
                    None => break,
                }
            };
            self.read_pos.1 += len;
            self.read_number = rec.number + 1;
            if rec.number >= self.acked {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn segment_of(&self, number: u64) -> Option<usize> {
        let idx = self.segments.partition_point(|s| s.first <= number);
        idx.checked_sub(1)
    }

    /// Read again from the first unacknowledged record (after failed sends).
    pub fn rewind(&mut self) -> Result<(), SpoolError> {
        self.reader = None;
        self.read_number = self.segments.first().map_or(self.acked, |s| s.first);
        self.read_pos = (self.read_number, 0);
        Ok(())
    }

    /// Every record below `number` is acknowledged: persist that and delete finished segments.
    pub fn ack(&mut self, number: u64) -> Result<(), SpoolError> {
        if number <= self.acked {
            return Ok(());
        }
        self.acked = number.min(self.next_number);
        write_acked(&self.config.dir, self.acked, self.max_tag)?;
        while self.segments.len() > 1 && self.segments[1].first <= self.acked {
            let seg = self.segments.remove(0);
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        }
        self.oldest_unacked_at = (self.pending() > 0).then(Instant::now);
        Ok(())
    }

    /// Every record below this number is acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Records appended and not acknowledged.
    pub fn pending(&self) -> u64 {
        self.next_number - self.acked
    }

    /// Records appended and not read yet.
    pub fn unread(&self) -> u64 {
        self.next_number - self.read_number.max(self.acked)
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Largest tag ever appended and still on disk (to resume numbering after a restart).
    pub fn max_tag(&self) -> Option<u64> {
        self.max_tag
    }

    /// How long the oldest unacknowledged record has waited (approximate: since it, or the
    /// last acknowledgement, happened).
    pub fn oldest_pending_age(&self) -> Option<Duration> {
        self.oldest_unacked_at.map(|t| t.elapsed())
    }

    pub fn stats(&self) -> &SpoolStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_encrypted;
