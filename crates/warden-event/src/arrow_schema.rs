//! Arrow representation of [`RequestEvent`]s, the columnar form the stream processor and the
//! archive work on.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::RequestEvent;
use crate::columnar::RequestBatchBuilder;

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("gateway", dict(), false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("identity", DataType::Utf8, false),
        Field::new("tenant", dict(), false),
        Field::new("device_type", dict(), false),
        Field::new("auth_method", dict(), false),
        Field::new("auth_result", dict(), false),
        Field::new("client_ip", DataType::Utf8, false),
        Field::new("protocol", dict(), false),
        Field::new("method", dict(), false),
        Field::new("route", dict(), false),
        Field::new("path", DataType::Utf8, false),
        Field::new("status", DataType::UInt16, false),
        Field::new("decision", dict(), false),
        Field::new("latency_us", DataType::UInt64, false),
        Field::new("bytes_in", DataType::UInt64, false),
        Field::new("bytes_out", DataType::UInt64, false),
        Field::new("user_agent", DataType::Utf8, true),
        Field::new("tls_version", dict(), true),
        Field::new("client_cert_fingerprint", DataType::Utf8, true),
        // Schema version 2. Nullable: archives written before have no such columns, and
        // readers see nulls there.
        Field::new("reason", dict(), true),
        Field::new("query", dict(), true),
        Field::new("query_hash", DataType::UInt32, true),
    ]))
});

/// The Arrow schema of a batch of [`RequestEvent`]s. Low-cardinality strings are
/// dictionary-encoded; `ts` is a nanosecond timestamp (UTC).
pub fn request_event_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Convert events to a [`RecordBatch`] with [`request_event_schema`].
pub fn to_record_batch(events: &[RequestEvent]) -> Result<RecordBatch, ArrowError> {
    let mut b = RequestBatchBuilder::with_capacity(events.len());
    for e in events {
        b.push(e);
    }
    b.finish()
}
