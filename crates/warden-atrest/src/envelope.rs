//! Whole-file envelopes (the archive's `.parquet.enc` files): a header, then the plaintext in
//! 64 KiB chunks, each sealed on its own.
//!
//! Layout: `magic "WDNENC01" (8) | key id (8) | salt (32) | chunk size u32 LE (4)`, then
//! chunks of `chunk size + 16` bytes (the last one shorter, possibly holding no plaintext at
//! all). Chunk `i` is sealed with nonce `i` under the file's sub-key, and its AAD is the whole
//! header followed by a final-chunk flag byte: reordered chunks fail (nonce), a file cut at a
//! chunk boundary fails (its new last chunk was sealed as not final), and changing the header
//! (key id, salt, chunk size) fails every chunk.

use crate::{CryptError, Key, KeyId, Keyring, SALT_LEN, TAG_LEN, random_salt};

/// First bytes of an envelope.
pub const ENVELOPE_MAGIC: &[u8; 8] = b"WDNENC01";
const HEADER_LEN: usize = 8 + 8 + SALT_LEN + 4;
const CHUNK: usize = 64 * 1024;
const INFO: &[u8] = b"warden archive file v1";

/// Whether `data` starts like an envelope.
pub fn is_envelope(data: &[u8]) -> bool {
    data.starts_with(ENVELOPE_MAGIC)
}

/// Encrypt a whole file's contents with `key`.
pub fn seal_envelope(key: &Key, plain: &[u8]) -> Result<Vec<u8>, CryptError> {
    let salt = random_salt()?;
    let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + (plain.len() / CHUNK + 1) * 17);
    out.extend_from_slice(ENVELOPE_MAGIC);
    out.extend_from_slice(&key.id().0);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&(CHUNK as u32).to_le_bytes());
    let sub = key.subkey(&salt, INFO)?;
    let mut aad = out.clone();
    aad.push(0);
    let n_chunks = plain.len().div_ceil(CHUNK).max(1);
    for i in 0..n_chunks {
        let chunk = &plain[(i * CHUNK).min(plain.len())..((i + 1) * CHUNK).min(plain.len())];
        if let Some(flag) = aad.last_mut() {
            *flag = u8::from(i + 1 == n_chunks);
        }
        out.extend_from_slice(&sub.seal(i as u64, &aad, chunk)?);
    }
    Ok(out)
}

/// The key id an envelope was written with (`None`: not an envelope).
pub fn envelope_key_id(data: &[u8]) -> Option<KeyId> {
    if !is_envelope(data) || data.len() < HEADER_LEN {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&data[8..16]);
    Some(KeyId(id))
}

/// Decrypt and authenticate a whole envelope with the key its header names.
pub fn open_envelope(keys: &Keyring, data: &[u8]) -> Result<Vec<u8>, CryptError> {
    let id = envelope_key_id(data).ok_or(CryptError::Corrupt("no envelope header"))?;
    let key = keys.get(id)?;
    let (header, body) = data.split_at(HEADER_LEN);
    let salt = &header[16..16 + SALT_LEN];
    let chunk = u32::from_le_bytes([header[48], header[49], header[50], header[51]]) as usize;
    if !(1..=16 * 1024 * 1024).contains(&chunk) {
        return Err(CryptError::Corrupt("bad chunk size"));
    }
    let sub = key.subkey(salt, INFO)?;
    let mut aad = header.to_vec();
    aad.push(0);
    let sealed = chunk + TAG_LEN;
    // An empty body is a truncated file (even empty plaintext has one sealed chunk).
    let n_chunks = body.len().div_ceil(sealed).max(1);
    let mut out = Vec::with_capacity(body.len());
    for i in 0..n_chunks {
        let part = &body[(i * sealed).min(body.len())..((i + 1) * sealed).min(body.len())];
        if let Some(flag) = aad.last_mut() {
            *flag = u8::from(i + 1 == n_chunks);
        }
        let plain = sub
            .open(i as u64, &aad, part)
            .ok_or(CryptError::Corrupt("chunk does not authenticate"))?;
        out.extend_from_slice(&plain);
    }
    Ok(out)
}
