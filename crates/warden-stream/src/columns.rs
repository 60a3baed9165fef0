//! Typed access to the columns of a request-event batch.

use arrow::array::{Array, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType, UInt16Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// The columns the engine reads, materialised once per batch.
pub struct Columns {
    pub ts: Vec<i64>,
    pub status: Vec<u16>,
    /// Whether the gateway refused the request.
    pub denied: Vec<bool>,
    pub identity: StringArray,
    pub tenant: StringArray,
    pub route: StringArray,
    pub client_ip: StringArray,
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray, ArrowError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("missing column {name}")))?;
    let utf8 = cast(col, &DataType::Utf8)?;
    Ok(utf8.as_string::<i32>().clone())
}

impl Columns {
    pub fn read(batch: &RecordBatch) -> Result<Self, ArrowError> {
        let missing = |n: &str| ArrowError::SchemaError(format!("missing column {n}"));
        let ts = batch
            .column_by_name("ts")
            .ok_or_else(|| missing("ts"))?
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| missing("ts"))?
            .values()
            .to_vec();
        let status = batch
            .column_by_name("status")
            .ok_or_else(|| missing("status"))?
            .as_primitive_opt::<UInt16Type>()
            .ok_or_else(|| missing("status"))?
            .values()
            .to_vec();
        let decision = strings(batch, "decision")?;
        let denied = (0..decision.len())
            .map(|i| {
                !decision.is_null(i) && !matches!(decision.value(i), "allowed" | "upstream_error")
            })
            .collect();
        Ok(Self {
            ts,
            status,
            denied,
            identity: strings(batch, "identity")?,
            tenant: strings(batch, "tenant")?,
            route: strings(batch, "route")?,
            client_ip: strings(batch, "client_ip")?,
        })
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }
}
