//! Warden's wire types: one [`RequestEvent`] per request seen by a gateway, the [`Decision`]s the
//! stream processor (or an operator) publishes for gateways to enforce, and the [`Alert`]s that
//! explain them.
//!
//! Every type serialises to a versioned JSON object (`v`); the JSON Schemas under `schemas/` are
//! generated from these types and checked by tests, so any Kafka consumer can read the topics.
//! Request events, by far the most numerous, can also travel in a compact binary form
//! ([`compact`], `bus.event_format`); [`decode`] reads either. This crate does no I/O.

mod alert;
mod arrow_schema;
mod columnar;
pub mod compact;
mod decision;
mod request;
#[cfg(test)]
mod test_events;

pub use alert::{Alert, Evidence, Severity};
pub use arrow_schema::{request_event_schema, to_record_batch};
pub use columnar::{RequestBatchBuilder, RequestEventRef, TlsInfoRef};
pub use compact::{COMPACT_TAG, EventFormat, encode_event};
pub use decision::{Action, Decision, Subject, SubjectKind};
pub use request::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, RequestEvent, TlsInfo,
};

/// Version of the JSON wire format written in the `v` field of every object.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors decoding a wire object.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid compact payload: {0}")]
    Compact(#[from] postcard::Error),
    #[error("{count} bytes after the end of a compact payload")]
    TrailingBytes { count: usize },
    #[error("this object has no compact form")]
    NoCompactForm,
    #[error("unsupported schema version {found} (this build reads {SCHEMA_VERSION})")]
    Version { found: u32 },
}

/// Decode a wire object (JSON, or the compact form of objects that have one), refusing versions
/// this build does not understand.
pub fn decode<T: serde::de::DeserializeOwned + Versioned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if let Some(body) = bytes.strip_prefix(&[COMPACT_TAG]) {
        return T::decode_compact(body);
    }
    let value: T = serde_json::from_slice(bytes)?;
    if value.version() != SCHEMA_VERSION {
        return Err(DecodeError::Version {
            found: value.version(),
        });
    }
    Ok(value)
}

/// Encode a wire object as JSON bytes.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain data types cannot fail: no maps with non-string keys, no
    // user-provided `Serialize` impls.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Wire objects carry their schema version.
pub trait Versioned: Sized {
    fn version(&self) -> u32;

    /// Decode the compact form (the payload after [`COMPACT_TAG`]); only objects that have one
    /// override this.
    fn decode_compact(_body: &[u8]) -> Result<Self, DecodeError> {
        Err(DecodeError::NoCompactForm)
    }
}

/// Current wall-clock time in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn default_version() -> u32 {
    SCHEMA_VERSION
}
