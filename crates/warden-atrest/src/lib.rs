//! Encryption at rest of the gateway's spool and the processor's archive.
//!
//! Keys are 32-byte secrets read from files ([`Key::load`]), each known by a [`KeyId`] (the
//! first 8 bytes of SHA-256 over a label and the key) that is stored in every encrypted
//! segment or file header. A [`Keyring`] holds the current key (for writing) and old keys
//! (for reading only), so rotating is: make the new key current, keep the old one in
//! `old_key_files` until the data written with it has aged out.
//!
//! Nothing is ever encrypted with a key directly: every segment or file carries a fresh
//! 32-byte random salt, and its records or chunks are sealed with ChaCha20-Poly1305 under a
//! sub-key derived by HKDF-SHA256 from the key and that salt ([`Key::subkey`]). Nonces are
//! then a counter within the segment or file (record number, chunk index), never reused under
//! one sub-key, and no nonce bookkeeping across restarts is needed.

mod envelope;
mod key;

pub use envelope::{ENVELOPE_MAGIC, envelope_key_id, is_envelope, open_envelope, seal_envelope};
pub use key::{KEY_LEN, Key, KeyError, KeyId, Keyring, SubKey};

/// Bytes of the authentication tag appended to each sealed record or chunk.
pub const TAG_LEN: usize = 16;
/// Bytes of the random salt of each segment or file.
pub const SALT_LEN: usize = 32;

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error(
        "encrypted with key id {id}, which is not configured (known: {known}); add its key \
         file to at_rest.old_key_files"
    )]
    UnknownKey { id: KeyId, known: String },
    #[error("authentication failed: {0} (tampered, truncated or corrupt)")]
    Corrupt(&'static str),
    #[error("the system random number generator failed")]
    Random,
    #[error("deriving a sub-key failed")]
    Derive,
}

/// Fresh random bytes from the OS.
pub fn random_salt() -> Result<[u8; SALT_LEN], CryptError> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| CryptError::Random)?;
    Ok(salt)
}
