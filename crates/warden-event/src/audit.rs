//! The audit log: an append-only, hash-chained file (JSON Lines) of the decisions a processor
//! publishes and the actions operators take in the console.
//!
//! Every record is one line:
//!
//! ```text
//! {"v":1,"alg":"sha256","seq":7,"ts":"2026-12-04T15:08:12.123456Z","kind":"operator","prev":"<hex>","payload":{…},"hash":"<hex>"}
//! ```
//!
//! `hash` is the SHA-256 (or, with a key, the HMAC-SHA256) of the line's exact bytes up to
//! `,"hash"` — the record without its hash, as the writer encoded it (fields in this order, no
//! whitespace: that encoding is the canonical one, and verification hashes those same bytes,
//! so no re-encoding can disagree). `prev` is the previous record's `hash`; the first record's
//! is [`GENESIS`]. Editing, deleting, reordering or inserting a record breaks the chain at that
//! record; [`verify`] finds the first break and says which kind it looks like.
//!
//! Without a key anyone who can write the file can recompute the whole chain; with one
//! (`audit.key_file`) they cannot without the key. Neither detects the removal of the newest
//! records: compare [`Summary::head`] with a copy kept elsewhere.

mod log;
mod verify;

pub use log::{AuditError, AuditLog};
pub use verify::{Broken, Summary, Tamper, verify};

use ring::hmac;
use serde::{Deserialize, Serialize};

/// Version of the record format (`v`).
pub const RECORD_VERSION: u32 = 1;

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest record accepted, bytes (a larger payload is refused, a longer line is malformed).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// The shortest key accepted, bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A quarantine, throttle or release the processor published (payload: the decision).
    Decision,
    /// A console action: a release or a manual quarantine (operator, role, reason, decision).
    Operator,
    /// A console sign-in, successful or refused.
    Signin,
    /// Something that happened to the log itself (e.g. a torn last line removed at start).
    Log,
}

/// How records are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alg {
    /// Plain SHA-256: detects accidents and edits by anyone who cannot rewrite the file's tail.
    Sha256,
    /// HMAC-SHA256 with the key of `audit.key_file`.
    HmacSha256,
}

/// The key records are signed with.
#[derive(Clone)]
pub struct AuditKey(hmac::Key);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    /// A key from its bytes: at least [`MIN_KEY_BYTES`].
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key is {} bytes; at least {MIN_KEY_BYTES} are needed",
                bytes.len()
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// The key in `path`: the file's content with surrounding whitespace removed (e.g. 64 hex
    /// digits from `openssl rand -hex 32`; the text itself is the key, not decoded).
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::new(bytes.trim_ascii()).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A record as read back from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub v: u32,
    pub alg: Alg,
    /// 1 for the first record, then one more per record.
    pub seq: u64,
    /// When the record was written, RFC 3339 in UTC.
    pub ts: String,
    pub kind: Kind,
    /// `hash` of the previous record ([`GENESIS`] for the first).
    pub prev: String,
    pub payload: serde_json::Value,
    /// Hex SHA-256 or HMAC-SHA256 of the record without this field.
    pub hash: String,
}

/// The fields hashed, in the order they are written.
#[derive(Serialize)]
struct Unsigned<'a, P: Serialize> {
    v: u32,
    alg: Alg,
    seq: u64,
    ts: &'a str,
    kind: Kind,
    prev: &'a str,
    payload: &'a P,
}

/// The hex digest of `body` with `alg` (`None` when it needs a key and there is none).
pub(crate) fn digest(alg: Alg, key: Option<&AuditKey>, body: &[u8]) -> Option<String> {
    match alg {
        Alg::Sha256 => Some(hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            body,
        ))),
        Alg::HmacSha256 => key.map(|k| hex::encode(hmac::sign(&k.0, body))),
    }
}

/// Encode one record as its line (with the final newline) and return its hash.
pub(crate) fn encode_line<P: Serialize>(
    key: Option<&AuditKey>,
    seq: u64,
    ts: &str,
    kind: Kind,
    prev: &str,
    payload: &P,
) -> Result<(String, String), serde_json::Error> {
    let alg = if key.is_some() {
        Alg::HmacSha256
    } else {
        Alg::Sha256
    };
    let unsigned = Unsigned {
        v: RECORD_VERSION,
        alg,
        seq,
        ts,
        kind,
        prev,
        payload,
    };
    let mut line = serde_json::to_string(&unsigned)?;
    // `{…}` → `{…` then the hash of exactly those bytes.
    line.pop();
    let hash = digest(alg, key, line.as_bytes()).unwrap_or_default();
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}\n");
    Ok((line, hash))
}

/// Why one line is not a well-formed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not a record (JSON, fields, size).
    Malformed(String),
    /// Keyed and no key was given.
    NeedsKey,
    /// The hash does not match the content.
    Hash,
}

/// Parse one line (without its newline) and check its own hash; `key` is needed for keyed
/// records. The chain (`seq`, `prev`) is the caller's.
pub fn check_line(line: &[u8], key: Option<&AuditKey>) -> Result<Record, LineError> {
    if line.len() > MAX_RECORD_BYTES {
        return Err(LineError::Malformed(format!(
            "{} bytes, longer than any record",
            line.len()
        )));
    }
    let record: Record = serde_json::from_slice(line)
        .map_err(|e| LineError::Malformed(format!("not a record: {e}")))?;
    // The hashed bytes end where `,"hash":"<64 hex>"}` begins; a quote inside a JSON string is
    // always escaped, so this suffix can only be the record's own last field.
    let suffix = format!(",\"hash\":\"{}\"}}", record.hash);
    let Some(body) = line.strip_suffix(suffix.as_bytes()) else {
        return Err(LineError::Malformed("`hash` is not the last field".into()));
    };
    if record.hash.len() != 64 {
        return Err(LineError::Malformed("`hash` is not 64 hex digits".into()));
    }
    let Some(expected) = digest(record.alg, key, body) else {
        return Err(LineError::NeedsKey);
    };
    if !same(&expected, &record.hash) {
        return Err(LineError::Hash);
    }
    Ok(record)
}

/// Equal strings, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `ns` nanoseconds since the Unix epoch as RFC 3339 in UTC, to the microsecond
/// (`2026-12-04T15:08:12.123456Z`).
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
