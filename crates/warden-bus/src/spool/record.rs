//! The on-disk formats of the spool: records (plain or sealed), the encrypted segment header
//! and the ack cursor file.
//!
//! Plain record: `len: u32 | crc32(body): u32 | body`, body = `number: u64 | tag: u64 |
//! key_len: u16 | key | payload`.
//!
//! Encrypted segment: a header `magic "WSPENC01" | key id (8) | salt (32) | crc32 of those
//! (4)`, then sealed
//! records `len: u32 | crc32(rest): u32 | number: u64 | ChaCha20-Poly1305(body without its
//! number) + tag`, sealed under the segment's sub-key (HKDF of the key and the salt) with the
//! record number as nonce and `len | number` as AAD. The number is in clear (it is the nonce)
//! and must be the next one of the segment, so records cannot be reordered, replayed from
//! another position or have their framing changed without failing authentication. A header
//! whose checksum fails (torn, zeroed by a crash, bit rot) is corruption, cut and counted; a
//! sound header naming a key that is not configured refuses the spool instead. The magic
//! read as a plain length is far above [`MAX_RECORD`], so the two formats never mix up.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;
use warden_atrest::{KeyId, Keyring, SALT_LEN, SubKey, TAG_LEN};

use super::{MAX_RECORD, SpoolError, SpoolRecord, io_err};

pub(super) const HEADER: usize = 8;
pub(super) const BODY_FIXED: usize = 8 + 8 + 2;
/// Extra bytes of a sealed record over a plain one: the tag.
pub(super) const SEALED_EXTRA: usize = TAG_LEN;
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"WSPENC01";
pub(super) const SEGMENT_HEADER: usize = 8 + 8 + SALT_LEN + 4;
const INFO: &[u8] = b"warden spool segment v1";

/// How a segment's records are stored.
#[derive(Clone)]
pub(super) struct SegmentFormat {
    /// `None`: plain records; else the segment's sub-key.
    pub cipher: Option<Arc<SubKey>>,
    /// Where records start (after the header).
    pub data_start: u64,
}

/// A new encrypted segment's header and sub-key.
pub(super) fn new_segment_header(keys: &Keyring) -> Result<(Vec<u8>, SubKey), SpoolError> {
    let salt = warden_atrest::random_salt()?;
    let key = keys.current();
    let mut header = Vec::with_capacity(SEGMENT_HEADER);
    header.extend_from_slice(SEGMENT_MAGIC);
    header.extend_from_slice(&key.id().0);
    header.extend_from_slice(&salt);
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    Ok((header, key.subkey(&salt, INFO)?))
}

/// The format of a segment from its first bytes. An encrypted segment needs its key: without
/// keys, or with an unknown key id, this is an error (never a reason to delete the segment).
pub(super) fn segment_format(
    path: &Path,
    r: &mut impl Read,
    keys: Option<&Keyring>,
) -> Result<SegmentFormat, SpoolError> {
    let mut head = [0u8; SEGMENT_HEADER];
    let mut filled = 0;
    while filled < head.len() {
        match r.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    let plain = SegmentFormat {
        cipher: None,
        data_start: 0,
    };
    // A header cut short (torn while the segment was created, or truncated later) or damaged
    // is read as plain records, which it is not: the segment is cut there and counted as
    // corrupt (never refused for a key id that is only garbage).
    let body = SEGMENT_HEADER - 4;
    if filled < SEGMENT_HEADER
        || &head[..8] != SEGMENT_MAGIC
        || crc32fast::hash(&head[..body]).to_le_bytes() != head[body..]
    {
        return Ok(plain);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&head[8..16]);
    let id = KeyId(id);
    let Some(keys) = keys else {
        return Err(SpoolError::Encrypted {
            path: path.to_path_buf(),
            id,
        });
    };
    let key = keys.get(id).map_err(|source| SpoolError::Crypt {
        path: path.to_path_buf(),
        source,
    })?;
    let sub = key.subkey(&head[16..body], INFO)?;
    Ok(SegmentFormat {
        cipher: Some(Arc::new(sub)),
        data_start: SEGMENT_HEADER as u64,
    })
}

/// One record's bytes as written to a segment of this format.
pub(super) fn encode(
    cipher: Option<&SubKey>,
    number: u64,
    tag: u64,
    key: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, SpoolError> {
    let body_len = BODY_FIXED + key.len() + payload.len();
    let mut out = Vec::with_capacity(HEADER + body_len + SEALED_EXTRA);
    let mut body = Vec::with_capacity(body_len);
    body.extend_from_slice(&number.to_le_bytes());
    body.extend_from_slice(&tag.to_le_bytes());
    body.extend_from_slice(&(key.len() as u16).to_le_bytes());
    body.extend_from_slice(key);
    body.extend_from_slice(payload);
    if let Some(cipher) = cipher {
        let len = (body_len + SEALED_EXTRA) as u32;
        let aad = aad(len, number);
        let sealed = cipher.seal(number, &aad, &body[8..])?;
        body.truncate(8);
        body.extend_from_slice(&sealed);
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn aad(len: u32, number: u64) -> [u8; 12] {
    let mut a = [0u8; 12];
    a[..4].copy_from_slice(&len.to_le_bytes());
    a[4..].copy_from_slice(&number.to_le_bytes());
    a
}

/// Read one record; `None` at a clean end or a torn, corrupt or (encrypted) unauthentic
/// record. `expected` is the number the next record of an encrypted segment must have.
pub(super) fn read_record(
    r: &mut impl Read,
    cipher: Option<&SubKey>,
    expected: u64,
) -> io::Result<Option<(SpoolRecord, u64)>> {
    let mut header = [0u8; HEADER];
    if !read_full(r, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let extra = if cipher.is_some() { SEALED_EXTRA } else { 0 };
    if !(BODY_FIXED + extra..=MAX_RECORD + extra).contains(&len) {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    if !read_full(r, &mut body)? || crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    let number = u64::from_le_bytes(body[0..8].try_into().unwrap_or([0; 8]));
    if let Some(cipher) = cipher {
        if number != expected {
            return Ok(None);
        }
        let Some(plain) = cipher.open(number, &aad(len as u32, number), &body[8..]) else {
            return Ok(None);
        };
        body.truncate(8);
        body.extend_from_slice(&plain);
    }
    let tag = u64::from_le_bytes(body[8..16].try_into().unwrap_or([0; 8]));
    let key_len = u16::from_le_bytes([body[16], body[17]]) as usize;
    if BODY_FIXED + key_len > body.len() {
        return Ok(None);
    }
    let body = Bytes::from(body);
    Ok(Some((
        SpoolRecord {
            number,
            tag,
            key: body.slice(BODY_FIXED..BODY_FIXED + key_len),
            payload: body.slice(BODY_FIXED + key_len..),
        },
        (HEADER + len) as u64,
    )))
}

/// Fill `buf`; false on EOF before the first byte or mid-buffer (a torn record).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What a scan of a segment found.
pub(super) struct Scan {
    pub format: SegmentFormat,
    pub count: u64,
    /// Header and valid records.
    pub valid_bytes: u64,
    pub max_tag: Option<u64>,
    pub file_len: u64,
}

/// The valid records of the segment whose first record is `first`.
pub(super) fn scan(path: &Path, first: u64, keys: Option<&Keyring>) -> Result<Scan, SpoolError> {
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut r = io::BufReader::new(file);
    let format = segment_format(path, &mut r, keys)?;
    if format.cipher.is_none() {
        // A plain segment: read again from its start.
        r = io::BufReader::new(File::open(path).map_err(io_err(path))?);
    }
    let (mut count, mut bytes, mut max_tag) = (0u64, format.data_start, None::<u64>);
    while let Some((rec, n)) =
        read_record(&mut r, format.cipher.as_deref(), first + count).map_err(io_err(path))?
    {
        count += 1;
        bytes += n;
        max_tag = Some(max_tag.map_or(rec.tag, |m| m.max(rec.tag)));
    }
    Ok(Scan {
        format,
        count,
        valid_bytes: bytes,
        max_tag,
        file_len,
    })
}

/// The cursor file: acknowledged-below number and the largest tag ever appended (so tags keep
/// growing across restarts even when every segment was acknowledged and deleted).
pub(super) fn read_acked(dir: &Path) -> Result<(u64, Option<u64>), SpoolError> {
    let path = dir.join("acked");
    match std::fs::read(&path) {
        Ok(b) if b.len() == 21 => {
            let (data, crc) = b.split_at(17);
            let crc: [u8; 4] = crc.try_into().unwrap_or([0; 4]);
            if crc32fast::hash(data) == u32::from_le_bytes(crc) {
                let n = u64::from_le_bytes(data[0..8].try_into().unwrap_or([0; 8]));
                let tag = u64::from_le_bytes(data[8..16].try_into().unwrap_or([0; 8]));
                return Ok((n, (data[16] == 1).then_some(tag)));
            }
            warn!(path = %path.display(), "Spool ack cursor is corrupt; replaying from the start.");
            Ok((0, None))
        }
        Ok(_) => Ok((0, None)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((0, None)),
        Err(e) => Err(io_err(&path)(e)),
    }
}

pub(super) fn write_acked(dir: &Path, n: u64, max_tag: Option<u64>) -> Result<(), SpoolError> {
    let tmp = dir.join("acked.tmp");
    let path = dir.join("acked");
    let mut b = n.to_le_bytes().to_vec();
    b.extend_from_slice(&max_tag.unwrap_or(0).to_le_bytes());
    b.push(u8::from(max_tag.is_some()));
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(&tmp, &b).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}
