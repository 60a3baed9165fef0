use super::*;
use crate::{open_envelope, seal_envelope};

fn key(b: u8) -> Key {
    Key::from_bytes([b; KEY_LEN])
}

fn write_key(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    p
}

#[test]
fn key_files_raw_or_hex_and_bad_ones_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("dir");
    let raw = write_key(dir.path(), "raw", &[7u8; 32]);
    let hexed = write_key(
        dir.path(),
        "hex",
        format!("{}\n", hex::encode([7u8; 32])).as_bytes(),
    );
    assert_eq!(
        Key::load(&raw).expect("raw").id(),
        Key::load(&hexed).expect("hex").id()
    );
    let short = write_key(dir.path(), "short", &[1u8; 31]);
    let err = Key::load(&short).expect_err("short").to_string();
    assert!(err.contains("31 bytes") && err.contains("short"), "{err}");
    let bad_hex = write_key(dir.path(), "badhex", "zz".repeat(32).as_bytes());
    assert!(Key::load(&bad_hex).is_err());
    let err = Key::load(&dir.path().join("missing")).expect_err("missing");
    assert!(matches!(err, KeyError::Read { .. }), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Key::load(&raw).expect_err("world readable").to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
    let dup = write_key(dir.path(), "dup", &[7u8; 32]);
    let err = Keyring::load(&hexed, &[dup]).expect_err("duplicate");
    assert!(matches!(err, KeyError::Duplicate { .. }), "{err}");
}

#[test]
fn key_ids_differ_and_do_not_show_the_key() {
    assert_ne!(key(1).id(), key(2).id());
    assert_eq!(key(1).id().to_string().len(), 16);
    assert!(!format!("{:?}", key(1)).contains("1, 1"));
}

#[test]
fn envelopes_round_trip_at_every_chunk_boundary() {
    let ring = Keyring::new(key(1), vec![]);
    for len in [0, 1, 65_535, 65_536, 65_537, 3 * 65_536, 200_000] {
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let sealed = seal_envelope(ring.current(), &plain).expect("seal");
        assert_eq!(open_envelope(&ring, &sealed).expect("open"), plain, "{len}");
    }
}

#[test]
fn tampering_truncation_and_unknown_keys_are_refused() {
    let ring = Keyring::new(key(1), vec![]);
    let plain = vec![42u8; 150_000];
    let sealed = seal_envelope(ring.current(), &plain).expect("seal");
    // Any flipped byte: header (key id, salt, chunk size) or body.
    for at in [9, 20, 50, 60, 70_000, sealed.len() - 1] {
        let mut t = sealed.clone();
        t[at] ^= 1;
        assert!(open_envelope(&ring, &t).is_err(), "flip at {at}");
    }
    // Cut mid-chunk, at a chunk boundary, and down to the header.
    for cut in [
        sealed.len() - 5,
        52 + 65_536 + 16,
        52 + 2 * (65_536 + 16),
        52,
    ] {
        assert!(
            open_envelope(&ring, &sealed[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    // A chunk dropped from the middle.
    let mut dropped = sealed[..52 + 65_552].to_vec();
    dropped.extend_from_slice(&sealed[52 + 2 * 65_552..]);
    assert!(open_envelope(&ring, &dropped).is_err());
    // Another key: the error names the id the file needs.
    let other = Keyring::new(key(2), vec![]);
    let err = open_envelope(&other, &sealed)
        .expect_err("wrong key")
        .to_string();
    assert!(err.contains(&key(1).id().to_string()), "{err}");
}

#[test]
fn rotation_keeps_old_data_readable_until_the_old_key_is_dropped() {
    let a = Keyring::new(key(1), vec![]);
    let old = seal_envelope(a.current(), b"written with A").expect("seal");
    let b = Keyring::new(key(2), vec![key(1)]);
    let new = seal_envelope(b.current(), b"written with B").expect("seal");
    assert_eq!(open_envelope(&b, &old).expect("old"), b"written with A");
    assert_eq!(open_envelope(&b, &new).expect("new"), b"written with B");
    let b_only = Keyring::new(key(2), vec![]);
    let err = open_envelope(&b_only, &old).expect_err("A dropped");
    assert!(matches!(err, CryptError::UnknownKey { id, .. } if id == key(1).id()));
    assert!(open_envelope(&b_only, &new).is_ok());
}
