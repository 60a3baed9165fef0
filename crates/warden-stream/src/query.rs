//! DataFusion SQL over the event archive: the table `events` has the columns of the request
//! event schema (see `warden_event::request_event_schema`) plus, for an archive written by
//! `warden archive`, the partition column `hour` (`YYYY-MM-DDTHH`, UTC), which prunes files
//! when a query filters on it. A folder of plain Parquet files of events is read too. Sealed
//! files (`.parquet.enc`, encryption at rest) are decrypted in memory with the configured keys
//! ([`session_with`], or the process default [`set_default_keys`]).

mod sealed;

pub use sealed::set_default_keys;

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format `{other}` (table, csv, json)")),
        }
    }
}

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("archive {0}: {1}")]
    Archive(String, String),
}

/// A session with the archive in `dir` registered as `events` (sealed files read with the
/// process's default keys).
pub async fn session(dir: &Path) -> Result<SessionContext, QueryError> {
    session_with(dir, sealed::default_keys()).await
}

/// A session with the archive in `dir` registered as `events`, sealed files decrypted with
/// `keys` (an archive with sealed files and no keys is refused, naming the key id needed).
pub async fn session_with(
    dir: &Path,
    keys: Option<&warden_atrest::Keyring>,
) -> Result<SessionContext, QueryError> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| QueryError::Archive(dir.display().to_string(), e.to_string()))?;
    let ctx = SessionContext::new_with_config(
        // Keep the archived string types (no view types) so batches match the event schema.
        SessionConfig::new().set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        ),
    );
    let files = sealed::archive_files(&dir)?;
    let url = if files.iter().any(|p| sealed::is_sealed(p)) {
        sealed::load(&ctx, &dir, &files, keys).await?
    } else {
        ListingTableUrl::parse(format!("{}/", dir.display()))?
    };
    // An archive written by `warden archive` is partitioned by hour; a folder of plain
    // Parquet files of events (e.g. `warden simulate --accelerated --parquet`) is read as is.
    let partitioned = std::fs::read_dir(&dir)
        .map_err(|e| QueryError::Archive(dir.display().to_string(), e.to_string()))?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("hour="));
    let mut options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if partitioned {
        options = options.with_table_partition_cols(vec![("hour".to_string(), DataType::Utf8)]);
    }
    let schema = warden_event::request_event_schema();
    let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(Arc::new(Schema::new(fields)));
    ctx.register_table("events", Arc::new(ListingTable::try_new(config)?))?;
    Ok(ctx)
}

/// Run `sql` over the archive in `dir`.
pub async fn query(dir: &Path, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = session(dir).await?;
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Render batches as a table, CSV (with a header) or JSON (an array of objects).
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, QueryError> {
    match format {
        Format::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string()),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs)?;
                w.finish()?;
            }
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}
