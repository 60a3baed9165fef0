//! Walk a whole log and find the first place its chain breaks.

use std::collections::HashMap;

use super::{Alg, AuditKey, GENESIS, LineError, check_line};

/// What a sound log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    /// `ts` of the first and the last record.
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    /// `seq` of the last record (0 when empty).
    pub last_seq: u64,
    /// `hash` of the last record ([`GENESIS`] when empty): keep a copy elsewhere to detect
    /// the removal of the newest records, which the chain alone cannot.
    pub head: String,
    /// Whether the records are keyed (HMAC).
    pub keyed: bool,
}

/// The kind of damage found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// The record's content does not match its hash, or it is not a record at all.
    Edited,
    /// Records are missing before this one.
    Deleted,
    /// Records are out of order.
    Reordered,
    /// A record that does not belong here (a copy, or a forged one).
    Inserted,
    /// The record does not chain from the one before it (`prev`): one of the two was replaced.
    Relinked,
    /// The file ends in the middle of a record.
    TruncatedTail,
    /// The first keyed record does not match with the key given: wrong key (or edited).
    WrongKey,
    /// The records are keyed and no key was given, or unkeyed records in a keyed log (the
    /// chain was rewritten without the key).
    Key,
}

impl Tamper {
    fn name(self) -> &'static str {
        match self {
            Tamper::Edited => "edited record",
            Tamper::Deleted => "deleted record",
            Tamper::Reordered => "reordered records",
            Tamper::Inserted => "inserted record",
            Tamper::Relinked => "broken link",
            Tamper::TruncatedTail => "truncated tail",
            Tamper::WrongKey => "wrong key",
            Tamper::Key => "key",
        }
    }
}

/// The first break in a log's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The sequence number expected where the chain breaks.
    pub seq: u64,
    /// Line of the file (1-based).
    pub line: usize,
    pub tamper: Tamper,
    pub detail: String,
    /// The records before the break, sound.
    pub sound: u64,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain broken at seq {} (line {}): {}: {}",
            self.seq,
            self.line,
            self.tamper.name(),
            self.detail
        )
    }
}

impl std::error::Error for Broken {}

/// Check every record of a log's content: each hash, each link, each sequence number, and that
/// the file ends with a whole record. `key` must be given for a keyed log, and then every
/// record must be keyed.
pub fn verify(content: &[u8], key: Option<&AuditKey>) -> Result<Summary, Broken> {
    let (complete, tail) = match content.iter().rposition(|b| *b == b'\n') {
        Some(end) => (&content[..end], &content[end + 1..]),
        None => (&content[..0], content),
    };
    let lines: Vec<&[u8]> = if complete.is_empty() && content.first() != Some(&b'\n') {
        Vec::new()
    } else {
        complete.split(|b| *b == b'\n').collect()
    };
    let parsed: Vec<_> = lines.iter().map(|l| check_line(l, key)).collect();
    // Where each sequence number appears (the first time), to tell reordering from deletion.
    let mut position: HashMap<u64, usize> = HashMap::new();
    for (i, r) in parsed.iter().enumerate() {
        if let Ok(r) = r {
            position.entry(r.seq).or_insert(i);
        }
    }
    let mut summary = Summary {
        records: 0,
        first_ts: None,
        last_ts: None,
        last_seq: 0,
        head: GENESIS.to_string(),
        keyed: false,
    };
    for (i, result) in parsed.into_iter().enumerate() {
        let expected = summary.last_seq + 1;
        let broken = |tamper, detail: String| Broken {
            seq: expected,
            line: i + 1,
            tamper,
            detail,
            sound: summary.records,
        };
        let record = match result {
            Ok(r) => r,
            Err(LineError::Malformed(why)) => return Err(broken(Tamper::Edited, why)),
            Err(LineError::NeedsKey) => {
                return Err(broken(
                    Tamper::Key,
                    "the record is keyed (HMAC-SHA256): give the key file".into(),
                ));
            }
            Err(LineError::Hash) if key.is_some() && summary.records == 0 => {
                return Err(broken(
                    Tamper::WrongKey,
                    "the first record's HMAC does not match: wrong key (or the record was edited)"
                        .into(),
                ));
            }
            Err(LineError::Hash) => {
                return Err(broken(
                    Tamper::Edited,
                    "its content does not match its hash".into(),
                ));
            }
        };
        if key.is_some() && record.alg != Alg::HmacSha256 {
            return Err(broken(
                Tamper::Key,
                "the record is not keyed, in a log checked with a key: the chain was rewritten"
                    .into(),
            ));
        }
        if record.seq > expected {
            return Err(match position.get(&expected) {
                Some(at) => broken(
                    Tamper::Reordered,
                    format!(
                        "found seq {} here; seq {expected} is on line {}",
                        record.seq,
                        at + 1
                    ),
                ),
                None => broken(
                    Tamper::Deleted,
                    format!(
                        "found seq {}: {} record(s) from seq {expected} are missing",
                        record.seq,
                        record.seq - expected
                    ),
                ),
            });
        }
        if record.seq < expected {
            return Err(broken(
                Tamper::Inserted,
                format!(
                    "found seq {} after seq {}: a copy or a forged record",
                    record.seq, summary.last_seq
                ),
            ));
        }
        if record.prev != summary.head {
            return Err(broken(
                Tamper::Relinked,
                format!(
                    "its prev does not match seq {}'s hash: this record or the one before it was replaced",
                    summary.last_seq
                ),
            ));
        }
        summary.keyed = record.alg == Alg::HmacSha256;
        summary.records += 1;
        summary.last_seq = record.seq;
        summary.head = record.hash;
        if summary.first_ts.is_none() {
            summary.first_ts = Some(record.ts.clone());
        }
        summary.last_ts = Some(record.ts);
    }
    if !tail.is_empty() {
        return Err(Broken {
            seq: summary.last_seq + 1,
            line: lines.len() + 1,
            tamper: Tamper::TruncatedTail,
            detail: format!(
                "the file ends with {} bytes that are not a whole record (no final newline)",
                tail.len()
            ),
            sound: summary.records,
        });
    }
    Ok(summary)
}
