//! Events to a Parquet file (snappy), with the Arrow schema of
//! [`warden_event::request_event_schema`].

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use warden_event::RequestEvent;

use crate::SimError;

/// A Parquet file being written.
pub struct ParquetSink {
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

impl ParquetSink {
    /// Create (or truncate) `path`.
    pub fn create(path: &Path) -> Result<Self, SimError> {
        let file = File::create(path).map_err(|source| SimError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = ArrowWriter::try_new(file, warden_event::request_event_schema(), Some(props))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            rows: 0,
        })
    }

    /// Append a batch (made by [`warden_event::to_record_batch`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), SimError> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch)?;
        Ok(())
    }

    /// Append events.
    pub fn write_events(&mut self, events: &[RequestEvent]) -> Result<(), SimError> {
        self.write(&warden_event::to_record_batch(events)?)
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finish the file (footer written); returns the rows written.
    pub fn close(self) -> Result<u64, SimError> {
        self.writer.close()?;
        Ok(self.rows)
    }
}
