//! The compact binary form of request events.
//!
//! JSON is the readable, schema-documented form of every wire object, but decoding it is the
//! largest cost of the stream processor's hot path (≈ 2 µs per event, more than features and
//! detectors together at 1 M events/s). Request events can therefore also travel in a compact
//! binary form: one tag byte ([`COMPACT_TAG`]) followed by the event in
//! [postcard](https://docs.rs/postcard) (fields in declaration order, integers as varints,
//! strings length-prefixed, enums as variant indexes, `v` first like in JSON).
//!
//! Payloads are written by `postcard` itself; they are read by [`decode_ref`], a decoder of the
//! same layout specialised to this one type (no serde visitors, strings borrowed; ≈ 250 ns per
//! event where `postcard::from_bytes` took ≈ 350 ns), and a test checks that the two accept, refuse and read exactly
//! the same bytes.
//!
//! Every reader accepts both forms and tells them apart by the first byte: a JSON object starts
//! with `{` or whitespace, never with [`COMPACT_TAG`] (a byte that cannot start UTF-8 text). A
//! topic may therefore hold both (e.g. while gateways are switched from one to the other).

use std::borrow::Cow;

use postcard::Error as E;
use serde::{Deserialize, Serialize};

use crate::{
    AuthInfo, AuthMethod, AuthResult, DecodeError, Outcome, Protocol, Reason, RequestEvent,
    RequestEventRef, TlsInfoRef, readable_version,
};

/// First byte of a compact payload (`0xC1` never occurs in UTF-8 text, so never starts JSON).
pub const COMPACT_TAG: u8 = 0xC1;

/// How gateways write request events on the bus (`bus.event_format`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// Tagged postcard: about a third of the bytes, decoded ≈ 5× faster than JSON.
    #[default]
    Compact,
    /// JSON objects as documented by `schemas/request_event.v2.json`.
    Json,
}

/// Encode a request event in the given form.
pub fn encode_event(event: &RequestEvent, format: EventFormat) -> Vec<u8> {
    match format {
        EventFormat::Json => crate::encode(event),
        EventFormat::Compact => {
            let mut out = Vec::with_capacity(160);
            out.push(COMPACT_TAG);
            // The body always has the current version's layout (every field), so it must say
            // so: an event read from an older object (`v` = 1, its new fields filled in on
            // reading) written with its old `v` would not decode (found by fuzzing).
            // Serialising these plain data types into a vector cannot fail.
            if event.v == crate::SCHEMA_VERSION {
                postcard::to_extend(event, out).unwrap_or_default()
            } else {
                let current = RequestEvent {
                    v: crate::SCHEMA_VERSION,
                    ..event.clone()
                };
                postcard::to_extend(&current, out).unwrap_or_default()
            }
        }
    }
}

/// Decode the body of a compact payload into an owned event.
pub(crate) fn decode_owned(body: &[u8]) -> Result<RequestEvent, DecodeError> {
    decode_ref(body).map(|e| e.to_owned_event())
}

/// Whether a payload is in the compact form.
pub fn is_compact(bytes: &[u8]) -> bool {
    bytes.first() == Some(&COMPACT_TAG)
}

/// Decode the body of a compact payload (after the tag), borrowing its strings: the whole body,
/// a known schema version.
pub fn decode_ref(body: &[u8]) -> Result<RequestEventRef<'_>, DecodeError> {
    let mut r = Reader(body);
    let mut e = RequestEventRef {
        v: r.u32()?,
        id: r.str()?,
        gateway: r.str()?,
        seq: r.u64()?,
        ts: r.i64()?,
        identity: r.str()?,
        tenant: r.str()?,
        device_type: r.str()?,
        auth: AuthInfo {
            method: match r.u32()? {
                0 => AuthMethod::None,
                1 => AuthMethod::ApiKey,
                2 => AuthMethod::Jwt,
                3 => AuthMethod::ClientCert,
                _ => return Err(E::DeserializeBadEnum.into()),
            },
            result: match r.u32()? {
                0 => AuthResult::NotRequired,
                1 => AuthResult::Missing,
                2 => AuthResult::Ok,
                3 => AuthResult::Failed,
                _ => return Err(E::DeserializeBadEnum.into()),
            },
        },
        client_ip: r.str()?,
        protocol: match r.u32()? {
            0 => Protocol::Http,
            1 => Protocol::Mqtt,
            2 => Protocol::Coap,
            _ => return Err(E::DeserializeBadEnum.into()),
        },
        method: r.str()?,
        route: r.str()?,
        path: r.str()?,
        status: r.u16()?,
        decision: *Outcome::ALL
            .get(r.u32()? as usize)
            .ok_or(E::DeserializeBadEnum)?,
        latency_us: r.u64()?,
        bytes_in: r.u64()?,
        bytes_out: r.u64()?,
        user_agent: if r.some()? { Some(r.str()?) } else { None },
        tls: if r.some()? {
            Some(TlsInfoRef {
                version: r.str()?,
                client_cert_fingerprint: if r.some()? { Some(r.str()?) } else { None },
            })
        } else {
            None
        },
        reason: Reason::None,
        query: Cow::Borrowed(""),
        query_hash: 0,
    };
    if !readable_version(e.v) {
        return Err(DecodeError::Version { found: e.v });
    }
    if e.v >= 2 {
        e.reason = *Reason::ALL
            .get(r.u32()? as usize)
            .ok_or(E::DeserializeBadEnum)?;
        e.query = r.str()?;
        e.query_hash = r.u32()?;
    } else {
        e.reason = Reason::infer(e.decision, e.status);
    }
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes { count: r.0.len() });
    }
    Ok(e)
}

/// Reads postcard's encoding of primitives, with its checks (`postcard::de::Deserializer`).
///
/// Every method is inlined into [`decode_ref`]: called, each returned its `Result` through
/// memory, and reading it back stalled on the store (≈ 40 % of the decoder's time).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A LEB128 varint of at most `max_len` bytes whose last byte carries at most
    /// `max_last` (the bits left of a `bits`-bit integer).
    #[inline(always)]
    fn varint(&mut self, max_len: usize, max_last: u8) -> Result<u64, E> {
        let mut out = 0u64;
        for i in 0..max_len {
            let (&b, rest) = self.0.split_first().ok_or(E::DeserializeUnexpectedEnd)?;
            self.0 = rest;
            out |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i == max_len - 1 && b > max_last {
                    return Err(E::DeserializeBadVarint);
                }
                return Ok(out);
            }
        }
        Err(E::DeserializeBadVarint)
    }

    #[inline(always)]
    fn u16(&mut self) -> Result<u16, E> {
        self.varint(3, 0b11).map(|v| v as u16)
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, E> {
        self.varint(5, 0b1111).map(|v| v as u32)
    }

    #[inline(always)]
    fn u64(&mut self) -> Result<u64, E> {
        self.varint(10, 0b1)
    }

    /// Zigzag-encoded.
    #[inline(always)]
    fn i64(&mut self) -> Result<i64, E> {
        let n = self.u64()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    #[inline(always)]
    fn str(&mut self) -> Result<Cow<'a, str>, E> {
        let len = usize::try_from(self.u64()?).map_err(|_| E::DeserializeBadVarint)?;
        if len > self.0.len() {
            return Err(E::DeserializeUnexpectedEnd);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s)
            .map(Cow::Borrowed)
            .map_err(|_| E::DeserializeBadUtf8)
    }

    /// An `Option`'s tag.
    #[inline(always)]
    fn some(&mut self) -> Result<bool, E> {
        let (&b, rest) = self.0.split_first().ok_or(E::DeserializeUnexpectedEnd)?;
        self.0 = rest;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::DeserializeBadOption),
        }
    }
}

#[cfg(test)]
mod tests;
