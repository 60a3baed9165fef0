//! Arrow representation of [`RequestEvent`]s, the columnar form the stream processor and the
//! archive work on.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Int64Builder, StringBuilder, StringDictionaryBuilder, UInt16Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::RequestEvent;

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
    ]))
});

/// The Arrow schema of a batch of [`RequestEvent`]s. Low-cardinality strings are
/// dictionary-encoded; `ts` is a nanosecond timestamp (UTC).
pub fn request_event_schema() -> SchemaRef {
    SCHEMA.clone()
}

fn enum_str<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Convert events to a [`RecordBatch`] with [`request_event_schema`].
pub fn to_record_batch(events: &[RequestEvent]) -> Result<RecordBatch, ArrowError> {
    let n = events.len();
    let mut id = StringBuilder::with_capacity(n, n * 36);
    let mut gateway = StringDictionaryBuilder::<Int32Type>::new();
    let mut seq = UInt64Builder::with_capacity(n);
    let mut ts = Int64Builder::with_capacity(n);
    let mut identity = StringBuilder::with_capacity(n, n * 16);
    let mut tenant = StringDictionaryBuilder::<Int32Type>::new();
    let mut device_type = StringDictionaryBuilder::<Int32Type>::new();
    let mut auth_method = StringDictionaryBuilder::<Int32Type>::new();
    let mut auth_result = StringDictionaryBuilder::<Int32Type>::new();
    let mut client_ip = StringBuilder::with_capacity(n, n * 12);
    let mut protocol = StringDictionaryBuilder::<Int32Type>::new();
    let mut method = StringDictionaryBuilder::<Int32Type>::new();
    let mut route = StringDictionaryBuilder::<Int32Type>::new();
    let mut path = StringBuilder::with_capacity(n, n * 24);
    let mut status = UInt16Builder::with_capacity(n);
    let mut decision = StringDictionaryBuilder::<Int32Type>::new();
    let mut latency = UInt64Builder::with_capacity(n);
    let mut bytes_in = UInt64Builder::with_capacity(n);
    let mut bytes_out = UInt64Builder::with_capacity(n);
    let mut user_agent = StringBuilder::new();
    let mut tls_version = StringDictionaryBuilder::<Int32Type>::new();
    let mut fingerprint = StringBuilder::new();

    for e in events {
        id.append_value(&e.id);
        gateway.append_value(&e.gateway);
        seq.append_value(e.seq);
        ts.append_value(e.ts);
        identity.append_value(&e.identity);
        tenant.append_value(&e.tenant);
        device_type.append_value(&e.device_type);
        auth_method.append_value(enum_str(&e.auth.method));
        auth_result.append_value(enum_str(&e.auth.result));
        client_ip.append_value(&e.client_ip);
        protocol.append_value(enum_str(&e.protocol));
        method.append_value(&e.method);
        route.append_value(&e.route);
        path.append_value(&e.path);
        status.append_value(e.status);
        decision.append_value(e.decision.as_str());
        latency.append_value(e.latency_us);
        bytes_in.append_value(e.bytes_in);
        bytes_out.append_value(e.bytes_out);
        user_agent.append_option(e.user_agent.as_deref());
        tls_version.append_option(e.tls.as_ref().map(|t| t.version.as_str()));
        fingerprint.append_option(
            e.tls
                .as_ref()
                .and_then(|t| t.client_cert_fingerprint.as_deref()),
        );
    }

    let ts: ArrayRef = Arc::new(
        ts.finish()
            .reinterpret_cast::<arrow::datatypes::TimestampNanosecondType>(),
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(gateway.finish()),
        Arc::new(seq.finish()),
        ts,
        Arc::new(identity.finish()),
        Arc::new(tenant.finish()),
        Arc::new(device_type.finish()),
        Arc::new(auth_method.finish()),
        Arc::new(auth_result.finish()),
        Arc::new(client_ip.finish()),
        Arc::new(protocol.finish()),
        Arc::new(method.finish()),
        Arc::new(route.finish()),
        Arc::new(path.finish()),
        Arc::new(status.finish()),
        Arc::new(decision.finish()),
        Arc::new(latency.finish()),
        Arc::new(bytes_in.finish()),
        Arc::new(bytes_out.finish()),
        Arc::new(user_agent.finish()),
        Arc::new(tls_version.finish()),
        Arc::new(fingerprint.finish()),
    ];
    RecordBatch::try_new(request_event_schema(), columns)
}
