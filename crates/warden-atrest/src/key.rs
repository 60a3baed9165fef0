//! Keys, key ids, key files and the keyring.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use crate::{CryptError, TAG_LEN};

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
const ID_LABEL: &[u8] = b"warden at-rest key id v1\0";

/// Identifies a key without revealing it: the first 8 bytes of SHA-256(label ‖ key), shown
/// as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Problems with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "key file {path}: {reason} (expected 32 random bytes, or 64 hex digits; e.g. \
         `openssl rand -hex 32 > {path}`)"
    )]
    Format { path: PathBuf, reason: String },
    #[error("key file {path}: readable by group or others (mode {mode:o}); `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path}: same key as another configured key file (id {id})")]
    Duplicate { path: PathBuf, id: KeyId },
}

/// A 32-byte secret key and its id.
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    bytes: [u8; KEY_LEN],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(ID_LABEL);
        ctx.update(&bytes);
        let digest = ctx.finish();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest.as_ref()[..8]);
        Self {
            id: KeyId(id),
            bytes,
        }
    }

    /// Read a key file: exactly 32 bytes (raw), or 64 hex digits (surrounding whitespace
    /// allowed). On Unix the file must not be readable by group or others.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let _ = meta;
        let raw = std::fs::read(path).map_err(read)?;
        Self::parse(&raw).map_err(|reason| KeyError::Format {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// A key from a key file's contents (see [`Key::load`]).
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        if let Ok(bytes) = <[u8; KEY_LEN]>::try_from(raw)
            && !raw.iter().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(Self::from_bytes(bytes));
        }
        let text = std::str::from_utf8(raw)
            .map_err(|_| format!("{} bytes, neither 32 raw bytes nor hex", raw.len()))?
            .trim();
        if text.len() != 2 * KEY_LEN {
            return Err(format!(
                "{} bytes, neither 32 raw bytes nor 64 hex digits",
                raw.len()
            ));
        }
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("not hex: {e}"))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The sub-key of one segment or file: HKDF-SHA256 of this key with the segment's salt,
    /// `info` naming the use (so a spool segment key never equals an archive file key).
    pub fn subkey(&self, salt: &[u8], info: &'static [u8]) -> Result<SubKey, CryptError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.bytes);
        let info = [info];
        let okm = prk
            .expand(&info, &aead::CHACHA20_POLY1305)
            .map_err(|_| CryptError::Derive)?;
        Ok(SubKey(LessSafeKey::new(UnboundKey::from(okm))))
    }
}

/// The ChaCha20-Poly1305 key of one segment or file. Nonce = 4 zero bytes ‖ counter (u64 LE).
pub struct SubKey(LessSafeKey);

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

impl SubKey {
    /// Encrypt `plain` with nonce `counter` (unique within this sub-key) and `aad`; returns
    /// ciphertext ‖ tag.
    pub fn seal(&self, counter: u64, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptError> {
        let mut buf = Vec::with_capacity(plain.len() + TAG_LEN);
        buf.extend_from_slice(plain);
        self.0
            .seal_in_place_append_tag(nonce(counter), Aad::from(aad), &mut buf)
            .map_err(|_| CryptError::Corrupt("record too large to seal"))?;
        Ok(buf)
    }

    /// Decrypt and authenticate ciphertext ‖ tag; `None` if anything does not match.
    pub fn open(&self, counter: u64, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let mut buf = sealed.to_vec();
        let len = self
            .0
            .open_in_place(nonce(counter), Aad::from(aad), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

/// The current key (writes) and old keys (reads only).
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Key,
    old: Vec<Key>,
}

impl Keyring {
    pub fn new(current: Key, old: Vec<Key>) -> Self {
        Self { current, old }
    }

    /// Load the current key file and the old ones; a key given twice is refused (it would
    /// hide a rotation mistake).
    pub fn load(current: &Path, old: &[PathBuf]) -> Result<Self, KeyError> {
        let current = Key::load(current)?;
        let mut keys: Vec<Key> = Vec::with_capacity(old.len());
        for path in old {
            let k = Key::load(path)?;
            if k.id == current.id || keys.iter().any(|o| o.id == k.id) {
                return Err(KeyError::Duplicate {
                    path: path.clone(),
                    id: k.id,
                });
            }
            keys.push(k);
        }
        Ok(Self { current, old: keys })
    }

    /// The key new data is written with.
    pub fn current(&self) -> &Key {
        &self.current
    }

    /// The key with this id (current or old).
    pub fn get(&self, id: KeyId) -> Result<&Key, CryptError> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| CryptError::UnknownKey {
                id,
                known: self.ids(),
            })
    }

    /// The ids of every key, current first, comma-separated.
    pub fn ids(&self) -> String {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|k| k.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests;
