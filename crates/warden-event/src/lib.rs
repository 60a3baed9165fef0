//! Warden's wire types: one [`RequestEvent`] per request seen by a gateway, the [`Decision`]s the
//! stream processor (or an operator) publishes for gateways to enforce, and the [`Alert`]s that
//! explain them.
//!
//! Every type serialises to a versioned JSON object (`v`); the JSON Schemas under `schemas/` are
//! generated from these types and checked by tests, so any Kafka consumer can read the topics.
//! Request events, by far the most numerous, can also travel in a compact binary form
//! ([`compact`], `bus.event_format`); [`decode`] reads either. This crate does no I/O, except the
//! [`audit`] log's writer (a local, hash-chained file of decisions and operator actions).

mod alert;
mod arrow_schema;
pub mod audit;
mod columnar;
pub mod compact;
mod decision;
pub mod query;
mod request;
#[cfg(test)]
mod test_events;

pub use alert::{Alert, Evidence, Severity};
pub use arrow_schema::{request_event_schema, to_record_batch};
pub use columnar::{RequestBatchBuilder, RequestEventRef, TlsInfoRef};
pub use compact::{COMPACT_TAG, EventFormat, encode_event};
pub use decision::{Action, Decision, Subject, SubjectKind, ThrottleLimit};
pub use request::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, Reason, RequestEvent, TlsInfo,
};

/// Version of the wire format written in the `v` field of every object.
///
/// Version 2 added to request events why a request was refused (`reason`) and the shape and
/// hash of its query string (`query`, `query_hash`), and to throttle decisions the rate they
/// allow (`limit`). Readers accept every version from [`MIN_SCHEMA_VERSION`] on: the fields a
/// version 1 object lacks take their defaults, and a version 1 event's `reason` is inferred
/// from its decision and status ([`Reason::infer`]).
pub const SCHEMA_VERSION: u32 = 2;

/// The oldest version readers accept.
pub const MIN_SCHEMA_VERSION: u32 = 1;

/// Whether this build reads objects of version `v`.
pub const fn readable_version(v: u32) -> bool {
    v >= MIN_SCHEMA_VERSION && v <= SCHEMA_VERSION
}

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
    #[error(
        "unsupported schema version {found} (this build reads {MIN_SCHEMA_VERSION} to {SCHEMA_VERSION})"
    )]
    Version { found: u32 },
}

/// Decode a wire object (JSON, or the compact form of objects that have one), refusing versions
/// this build does not understand.
pub fn decode<T: serde::de::DeserializeOwned + Versioned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if let Some(body) = bytes.strip_prefix(&[COMPACT_TAG]) {
        return T::decode_compact(body);
    }
    let mut value: T = serde_json::from_slice(bytes)?;
    if !readable_version(value.version()) {
        return Err(DecodeError::Version {
            found: value.version(),
        });
    }
    value.upgrade();
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

    /// Fill what an object of an older version lacks (after decoding it).
    fn upgrade(&mut self) {}

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

/// An object without `v` predates versioning: version 1.
fn default_version() -> u32 {
    MIN_SCHEMA_VERSION
}
