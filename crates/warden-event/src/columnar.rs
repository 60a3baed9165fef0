//! Request events straight from their JSON payloads into Arrow columns.
//!
//! [`crate::decode`] builds an owned [`RequestEvent`] (eight `String`s and more per event) that
//! [`crate::to_record_batch`] then copies into Arrow builders. On the processor's hot path the
//! owned event is never needed: [`RequestEventRef`] borrows its strings from the payload (a
//! [`Cow`] is owned only for a string with JSON escapes), and [`RequestBatchBuilder`] appends it
//! to the batch's column builders directly. Both accept exactly what [`crate::decode`] accepts
//! (same fields, same unknown-field and version checks): the borrowed type mirrors the owned
//! one field for field, and a test checks the two agree.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, ArrowPrimitiveType, DictionaryArray, Int32Array, NullBufferBuilder, PrimitiveArray,
    StringArray, StringBuilder,
};
use arrow::datatypes::{Int32Type, TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::Deserialize;

use crate::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, DecodeError, Outcome, Protocol, Reason,
    RequestEvent, readable_version, request_event_schema,
};

/// A [`RequestEvent`] whose strings borrow from the JSON payload it was decoded from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEventRef<'a> {
    #[serde(default = "crate::default_version")]
    pub v: u32,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub gateway: Cow<'a, str>,
    pub seq: u64,
    pub ts: i64,
    #[serde(borrow)]
    pub identity: Cow<'a, str>,
    #[serde(borrow)]
    pub tenant: Cow<'a, str>,
    #[serde(borrow)]
    pub device_type: Cow<'a, str>,
    pub auth: AuthInfo,
    #[serde(borrow)]
    pub client_ip: Cow<'a, str>,
    pub protocol: Protocol,
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow)]
    pub route: Cow<'a, str>,
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    pub status: u16,
    pub decision: Outcome,
    pub latency_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(borrow, default, deserialize_with = "optional_borrowed")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub tls: Option<TlsInfoRef<'a>>,
    #[serde(default)]
    pub reason: Reason,
    #[serde(borrow, default)]
    pub query: Cow<'a, str>,
    #[serde(default)]
    pub query_hash: u32,
}

/// [`crate::TlsInfo`], borrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsInfoRef<'a> {
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "optional_borrowed")]
    pub client_cert_fingerprint: Option<Cow<'a, str>>,
}

/// `Option<Cow<str>>` that borrows like a plain `Cow<str>` field does (serde's derive borrows a
/// `#[serde(borrow)] Cow<str>` field but allocates one inside an `Option`). Absent is `None`,
/// as for the owned type's `Option<String>`.
fn optional_borrowed<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

impl<'a> RequestEventRef<'a> {
    /// Decode a request event payload (JSON or compact), borrowing its strings; refuses what
    /// [`crate::decode`] refuses (invalid JSON, unknown fields, other schema versions, trailing
    /// bytes).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if let Some(body) = bytes.strip_prefix(&[crate::COMPACT_TAG]) {
            return crate::compact::decode_ref(body);
        }
        let mut e: Self = serde_json::from_slice(bytes)?;
        if !readable_version(e.v) {
            return Err(DecodeError::Version { found: e.v });
        }
        if e.v < 2 {
            e.reason = Reason::infer(e.decision, e.status);
        }
        Ok(e)
    }

    /// See [`RequestEvent::key`].
    pub fn key(&self) -> &str {
        if self.identity == ANONYMOUS {
            &self.client_ip
        } else {
            &self.identity
        }
    }

    /// A view of an owned event (nothing copied but the small `auth` value).
    pub fn borrowing(e: &'a RequestEvent) -> Self {
        Self {
            v: e.v,
            id: Cow::Borrowed(&e.id),
            gateway: Cow::Borrowed(&e.gateway),
            seq: e.seq,
            ts: e.ts,
            identity: Cow::Borrowed(&e.identity),
            tenant: Cow::Borrowed(&e.tenant),
            device_type: Cow::Borrowed(&e.device_type),
            auth: e.auth.clone(),
            client_ip: Cow::Borrowed(&e.client_ip),
            protocol: e.protocol,
            method: Cow::Borrowed(&e.method),
            route: Cow::Borrowed(&e.route),
            path: Cow::Borrowed(&e.path),
            status: e.status,
            decision: e.decision,
            latency_us: e.latency_us,
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
            user_agent: e.user_agent.as_deref().map(Cow::Borrowed),
            tls: e.tls.as_ref().map(|t| TlsInfoRef {
                version: Cow::Borrowed(&t.version),
                client_cert_fingerprint: t.client_cert_fingerprint.as_deref().map(Cow::Borrowed),
            }),
            reason: e.reason,
            query: Cow::Borrowed(&e.query),
            query_hash: e.query_hash,
        }
    }

    /// The owned event.
    pub fn to_owned_event(&self) -> RequestEvent {
        RequestEvent {
            v: self.v,
            id: self.id.to_string(),
            gateway: self.gateway.to_string(),
            seq: self.seq,
            ts: self.ts,
            identity: self.identity.to_string(),
            tenant: self.tenant.to_string(),
            device_type: self.device_type.to_string(),
            auth: self.auth.clone(),
            client_ip: self.client_ip.to_string(),
            protocol: self.protocol,
            method: self.method.to_string(),
            route: self.route.to_string(),
            path: self.path.to_string(),
            status: self.status,
            decision: self.decision,
            latency_us: self.latency_us,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            user_agent: self.user_agent.as_deref().map(str::to_string),
            tls: self.tls.as_ref().map(|t| crate::TlsInfo {
                version: t.version.to_string(),
                client_cert_fingerprint: t.client_cert_fingerprint.as_deref().map(str::to_string),
            }),
            reason: self.reason,
            query: self.query.to_string(),
            query_hash: self.query_hash,
        }
    }
}

/// A dictionary-encoded column of low-cardinality strings (tenant, route, method…). Arrow's
/// `StringDictionaryBuilder` hashes every value; here a value is first looked for among the
/// batch's few distinct values by comparison (a batch typically has a handful), and only
/// columns with many distinct values fall back to a hash map.
#[derive(Default)]
struct Dict {
    keys: Vec<i32>,
    /// Validity of `keys`; allocated only once a null is appended.
    nulls: Option<NullBufferBuilder>,
    values: Vec<Box<str>>,
    /// Per value, [`tag`]: a scan compares these and reads a value only when its tag matches.
    tags: Vec<u64>,
    /// Index of `values` once there are more than [`Dict::SCAN`].
    index: HashMap<Box<str>, i32>,
    /// The values every batch starts with (an enumeration's names).
    fixed: Vec<Box<str>>,
}

impl Dict {
    /// Distinct values found by scanning before the hash map is used.
    const SCAN: usize = 16;

    fn with_capacity(n: usize) -> Self {
        Self {
            keys: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    #[inline]
    fn key(&mut self, v: &str) -> i32 {
        if self.values.len() <= Self::SCAN {
            let t = tag(v);
            let found = self.tags.iter().zip(&self.values).position(|(x, value)| {
                *x == t && value.len() == v.len() && (v.len() <= 8 || **value == *v)
            });
            if let Some(k) = found {
                return k as i32;
            }
        } else if let Some(&k) = self.index.get(v) {
            return k;
        }
        let k = self.values.len() as i32;
        self.values.push(v.into());
        self.tags.push(tag(v));
        if self.values.len() > Self::SCAN {
            if self.index.is_empty() {
                self.index = (self.values.iter().cloned()).zip(0..).collect();
            } else {
                self.index.insert(v.into(), k);
            }
        }
        k
    }

    #[inline]
    fn append_value(&mut self, v: &str) {
        let k = self.key(v);
        self.push(k);
    }

    #[inline]
    fn push(&mut self, k: i32) {
        self.keys.push(k);
        if let Some(n) = &mut self.nulls {
            n.append_non_null();
        }
    }

    /// Append a value of an enumeration whose names are all in the dictionary already, in
    /// order (see [`Dict::enumeration`]): no lookup at all.
    #[inline]
    fn append_index(&mut self, index: usize) {
        self.push(index as i32);
    }

    /// A dictionary of all `names` of an enumeration, appended to by index; reset by
    /// [`Dict::finish`] to the same names.
    fn enumeration(names: &[&'static str], n: usize) -> Self {
        let mut d = Self::with_capacity(n);
        d.fixed = names.iter().map(|s| Box::<str>::from(*s)).collect();
        d.values = d.fixed.clone();
        d.tags = d.values.iter().map(|v| tag(v)).collect();
        d
    }

    fn append_option(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.append_value(v),
            None => {
                let nulls = self.nulls.get_or_insert_with(|| {
                    let mut n = NullBufferBuilder::new(self.keys.capacity());
                    n.append_n_non_nulls(self.keys.len());
                    n
                });
                nulls.append_null();
                self.keys.push(0);
            }
        }
    }

    fn finish(&mut self) -> Result<DictionaryArray<Int32Type>, ArrowError> {
        let values = StringArray::from_iter_values(self.values.drain(..));
        self.values.extend(self.fixed.iter().cloned());
        self.tags.truncate(self.fixed.len());
        self.index.clear();
        let capacity = self.keys.capacity();
        let keys = std::mem::replace(&mut self.keys, Vec::with_capacity(capacity));
        let nulls = self.nulls.take().and_then(|mut n| n.finish());
        // A key of a null slot is 0, a valid index when the dictionary has a value; with no
        // value at all every slot is null (an enumeration always has values).
        let keys = Int32Array::new(keys.into(), nulls);
        DictionaryArray::try_new(keys, Arc::new(values))
    }
}

/// A value's first 8 bytes and its length: values of up to 8 bytes are equal when their tags
/// and lengths are; longer values with equal tags are compared in full.
#[inline]
fn tag(v: &str) -> u64 {
    // Shifted into a register: copying into an array and reading it back stalled on the copy.
    let first = v
        .as_bytes()
        .iter()
        .take(8)
        .enumerate()
        .fold(0u64, |t, (i, b)| t | u64::from(*b) << (8 * i));
    first ^ (v.len() as u64).rotate_right(8)
}

/// A non-null primitive column: values pushed to a vector that becomes the array's buffer.
struct Column<T: ArrowPrimitiveType>(Vec<T::Native>);

impl<T: ArrowPrimitiveType> Column<T> {
    fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    fn finish(&mut self) -> PrimitiveArray<T> {
        let capacity = self.0.capacity();
        let values = std::mem::replace(&mut self.0, Vec::with_capacity(capacity));
        PrimitiveArray::new(values.into(), None)
    }
}

// The enumerations' names in declaration order (`as usize` of a variant is its index).
const AUTH_METHODS: [&str; 4] = [
    AuthMethod::None.as_str(),
    AuthMethod::ApiKey.as_str(),
    AuthMethod::Jwt.as_str(),
    AuthMethod::ClientCert.as_str(),
];
const AUTH_RESULTS: [&str; 4] = [
    AuthResult::NotRequired.as_str(),
    AuthResult::Missing.as_str(),
    AuthResult::Ok.as_str(),
    AuthResult::Failed.as_str(),
];
const PROTOCOLS: [&str; 3] = [
    Protocol::Http.as_str(),
    Protocol::Mqtt.as_str(),
    Protocol::Coap.as_str(),
];
const DECISIONS: [&str; 7] = [
    Outcome::Allowed.as_str(),
    Outcome::DeniedAuth.as_str(),
    Outcome::DeniedRbac.as_str(),
    Outcome::Throttled.as_str(),
    Outcome::Quarantined.as_str(),
    Outcome::Invalid.as_str(),
    Outcome::UpstreamError.as_str(),
];

const REASONS: [&str; 11] = [
    Reason::None.as_str(),
    Reason::Auth.as_str(),
    Reason::Rbac.as_str(),
    Reason::Quarantine.as_str(),
    Reason::Throttle.as_str(),
    Reason::RateLimit.as_str(),
    Reason::Overload.as_str(),
    Reason::Invalid.as_str(),
    Reason::Path.as_str(),
    Reason::Route.as_str(),
    Reason::Upstream.as_str(),
];

/// Column builders of a batch of request events ([`request_event_schema`]): append events
/// (owned, borrowed, or JSON payloads) and [`RequestBatchBuilder::finish`] the batch.
pub struct RequestBatchBuilder {
    rows: usize,
    id: StringBuilder,
    gateway: Dict,
    seq: Column<UInt64Type>,
    ts: Column<TimestampNanosecondType>,
    identity: StringBuilder,
    tenant: Dict,
    device_type: Dict,
    auth_method: Dict,
    auth_result: Dict,
    client_ip: StringBuilder,
    protocol: Dict,
    method: Dict,
    route: Dict,
    path: StringBuilder,
    status: Column<UInt16Type>,
    decision: Dict,
    latency: Column<UInt64Type>,
    bytes_in: Column<UInt64Type>,
    bytes_out: Column<UInt64Type>,
    user_agent: StringBuilder,
    tls_version: Dict,
    fingerprint: StringBuilder,
    reason: Dict,
    query: Dict,
    query_hash: Column<UInt32Type>,
}

impl Default for RequestBatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl RequestBatchBuilder {
    /// Builders sized for `n` events.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            rows: 0,
            id: StringBuilder::with_capacity(n, n * 36),
            gateway: Dict::with_capacity(n),
            seq: Column::with_capacity(n),
            ts: Column::with_capacity(n),
            identity: StringBuilder::with_capacity(n, n * 16),
            tenant: Dict::with_capacity(n),
            device_type: Dict::with_capacity(n),
            auth_method: Dict::enumeration(&AUTH_METHODS, n),
            auth_result: Dict::enumeration(&AUTH_RESULTS, n),
            client_ip: StringBuilder::with_capacity(n, n * 12),
            protocol: Dict::enumeration(&PROTOCOLS, n),
            method: Dict::with_capacity(n),
            route: Dict::with_capacity(n),
            path: StringBuilder::with_capacity(n, n * 24),
            status: Column::with_capacity(n),
            decision: Dict::enumeration(&DECISIONS, n),
            latency: Column::with_capacity(n),
            bytes_in: Column::with_capacity(n),
            bytes_out: Column::with_capacity(n),
            user_agent: StringBuilder::with_capacity(n, n * 16),
            tls_version: Dict::with_capacity(n),
            fingerprint: StringBuilder::new(),
            reason: Dict::enumeration(&REASONS, n),
            query: Dict::with_capacity(n),
            query_hash: Column::with_capacity(n),
        }
    }

    /// Events appended since the last [`RequestBatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Decode a payload (JSON or compact) and append it; on error nothing is appended.
    pub fn push_payload(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let e = RequestEventRef::decode(bytes)?;
        self.push_ref(&e);
        Ok(())
    }

    /// Append a borrowed event.
    pub fn push_ref(&mut self, e: &RequestEventRef<'_>) {
        self.rows += 1;
        self.id.append_value(&e.id);
        self.gateway.append_value(&e.gateway);
        self.seq.0.push(e.seq);
        self.ts.0.push(e.ts);
        self.identity.append_value(&e.identity);
        self.tenant.append_value(&e.tenant);
        self.device_type.append_value(&e.device_type);
        self.auth_method.append_index(e.auth.method as usize);
        self.auth_result.append_index(e.auth.result as usize);
        self.client_ip.append_value(&e.client_ip);
        self.protocol.append_index(e.protocol as usize);
        self.method.append_value(&e.method);
        self.route.append_value(&e.route);
        self.path.append_value(&e.path);
        self.status.0.push(e.status);
        self.decision.append_index(e.decision as usize);
        self.latency.0.push(e.latency_us);
        self.bytes_in.0.push(e.bytes_in);
        self.bytes_out.0.push(e.bytes_out);
        self.user_agent.append_option(e.user_agent.as_deref());
        self.tls_version
            .append_option(e.tls.as_ref().map(|t| t.version.as_ref()));
        self.fingerprint.append_option(
            e.tls
                .as_ref()
                .and_then(|t| t.client_cert_fingerprint.as_deref()),
        );
        self.reason.append_index(e.reason as usize);
        self.query.append_value(&e.query);
        self.query_hash.0.push(e.query_hash);
    }

    /// Append an owned event.
    pub fn push(&mut self, e: &RequestEvent) {
        self.push_ref(&RequestEventRef::borrowing(e));
    }

    /// The batch of the events appended so far; the builder is empty again afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let ts: ArrayRef = Arc::new(self.ts.finish());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.gateway.finish()?),
            Arc::new(self.seq.finish()),
            ts,
            Arc::new(self.identity.finish()),
            Arc::new(self.tenant.finish()?),
            Arc::new(self.device_type.finish()?),
            Arc::new(self.auth_method.finish()?),
            Arc::new(self.auth_result.finish()?),
            Arc::new(self.client_ip.finish()),
            Arc::new(self.protocol.finish()?),
            Arc::new(self.method.finish()?),
            Arc::new(self.route.finish()?),
            Arc::new(self.path.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.decision.finish()?),
            Arc::new(self.latency.finish()),
            Arc::new(self.bytes_in.finish()),
            Arc::new(self.bytes_out.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.tls_version.finish()?),
            Arc::new(self.fingerprint.finish()),
            Arc::new(self.reason.finish()?),
            Arc::new(self.query.finish()?),
            Arc::new(self.query_hash.finish()),
        ];
        RecordBatch::try_new(request_event_schema(), columns)
    }
}

#[cfg(test)]
mod tests;
