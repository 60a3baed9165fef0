//! The spool with encryption at rest: records sealed, tampering counted as corruption,
//! rotation, and spools written in clear before encryption was turned on.

use std::sync::Arc;

use warden_atrest::{Key, Keyring};

use std::path::Path;

use super::*;

fn keys(current: u8, old: &[u8]) -> Option<Arc<Keyring>> {
    Some(Arc::new(Keyring::new(
        Key::from_bytes([current; 32]),
        old.iter().map(|b| Key::from_bytes([*b; 32])).collect(),
    )))
}

fn config(dir: &Path, keys: Option<Arc<Keyring>>) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 400,
        max_bytes: 1 << 20,
        fsync: FsyncPolicy::Always,
        overflow: OverflowPolicy::DropNewest,
        keys,
    }
}

fn append(spool: &mut Spool, tags: std::ops::Range<u64>) {
    let recs: Vec<(Vec<u8>, Vec<u8>, u64)> = tags
        .map(|i| {
            (
                b"camera-7".to_vec(),
                format!("secret-identity-{i}").into_bytes(),
                i,
            )
        })
        .collect();
    let n = spool
        .append(
            recs.iter()
                .map(|(k, p, t)| (k.as_slice(), p.as_slice(), *t)),
        )
        .expect("append");
    assert_eq!(n, recs.len());
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn read_all(s: &mut Spool) -> Vec<(u64, Vec<u8>)> {
    s.read(1000)
        .expect("read")
        .into_iter()
        .map(|r| {
            assert_eq!(r.key.as_ref(), b"camera-7");
            (r.tag, r.payload.to_vec())
        })
        .collect()
}

#[test]
fn records_are_sealed_on_disk_and_replay_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("open");
        append(&mut s, 0..20);
        assert_eq!(read_all(&mut s).len(), 20);
        s.ack(5).expect("ack");
    }
    let segs = segments(dir.path());
    assert!(segs.len() > 2, "small segments roll");
    for seg in &segs {
        let bytes = fs::read(seg).expect("read");
        assert!(bytes.starts_with(b"WSPENC01"));
        assert!(!contains(&bytes, b"secret-identity"), "{}", seg.display());
        assert!(!contains(&bytes, b"camera-7"));
    }
    let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("reopen");
    assert_eq!(s.stats().corrupt_dropped, 0);
    let got = read_all(&mut s);
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (5..20).collect::<Vec<_>>()
    );
    assert_eq!(got[0].1, b"secret-identity-5");
    assert_eq!(s.max_tag(), Some(19));
}

#[test]
fn a_record_failing_authentication_is_cut_and_counted_as_corrupt() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("open");
        append(&mut s, 0..20);
    }
    let segs = segments(dir.path());
    // Flip a ciphertext byte in the second segment's last record and fix its CRC, so only
    // the authentication tag can tell.
    let mut bytes = fs::read(&segs[1]).expect("read");
    let mut at = record::SEGMENT_HEADER;
    let mut last = at;
    while at < bytes.len() {
        last = at;
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("len")) as usize;
        at += 8 + len;
    }
    let len = u32::from_le_bytes(bytes[last..last + 4].try_into().expect("len")) as usize;
    bytes[last + 8 + 12] ^= 0x01;
    let crc = crc32fast::hash(&bytes[last + 8..last + 8 + len]);
    bytes[last + 4..last + 8].copy_from_slice(&crc.to_le_bytes());
    fs::write(&segs[1], &bytes).expect("write");
    let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("reopen");
    assert_eq!(s.stats().corrupt_dropped, 1);
    let got: Vec<u64> = read_all(&mut s).into_iter().map(|r| r.0).collect();
    assert_eq!(got.len(), 19, "every record but the tampered one: {got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    // A changed salt in a header: no record of that segment authenticates.
    drop(s);
    let mut bytes = fs::read(&segs[0]).expect("read");
    bytes[20] ^= 0x80;
    fs::write(&segs[0], &bytes).expect("write");
    let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("reopen");
    assert_eq!(s.stats().corrupt_dropped, 1);
    assert!(read_all(&mut s).len() < 19);
}

#[test]
fn records_cannot_be_swapped_within_a_segment() {
    let dir = tempfile::tempdir().expect("dir");
    let mut c = config(dir.path(), keys(1, &[]));
    c.segment_bytes = 1 << 20;
    {
        let mut s = Spool::open(c.clone()).expect("open");
        append(&mut s, 0..3);
    }
    let seg = &segments(dir.path())[0];
    let bytes = fs::read(seg).expect("read");
    let h = record::SEGMENT_HEADER;
    let len0 = 8 + u32::from_le_bytes(bytes[h..h + 4].try_into().expect("len")) as usize;
    // Records have equal lengths: swap the first two.
    let mut swapped = bytes[..h].to_vec();
    swapped.extend_from_slice(&bytes[h + len0..h + 2 * len0]);
    swapped.extend_from_slice(&bytes[h..h + len0]);
    swapped.extend_from_slice(&bytes[h + 2 * len0..]);
    fs::write(seg, swapped).expect("write");
    let mut s = Spool::open(c).expect("reopen");
    assert_eq!(s.stats().corrupt_dropped, 1);
    assert!(
        read_all(&mut s).is_empty(),
        "nothing out of order is replayed"
    );
}

#[test]
fn unknown_or_missing_keys_refuse_to_open_and_keep_the_segments() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("open");
        append(&mut s, 0..5);
    }
    let before = segments(dir.path());
    let id = Key::from_bytes([1; 32]).id().to_string();
    let err = Spool::open(config(dir.path(), keys(2, &[])))
        .err()
        .expect("wrong key")
        .to_string();
    assert!(err.contains(&id) && err.contains("old_key_files"), "{err}");
    let err = Spool::open(config(dir.path(), None))
        .err()
        .expect("no key")
        .to_string();
    assert!(err.contains(&id) && err.contains("key_file"), "{err}");
    assert_eq!(segments(dir.path()), before, "nothing deleted");
    for seg in &before {
        assert!(fs::metadata(seg).expect("meta").len() > 100);
    }
}

#[test]
fn rotation_reads_old_segments_and_writes_with_the_new_key() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("open A");
        append(&mut s, 0..6);
    }
    {
        // Rotated: B current, A kept for reading.
        let mut s = Spool::open(config(dir.path(), keys(2, &[1]))).expect("open B+A");
        append(&mut s, 6..12);
        let got: Vec<u64> = read_all(&mut s).into_iter().map(|r| r.0).collect();
        assert_eq!(got, (0..12).collect::<Vec<_>>());
        s.ack(6).expect("ack the records written with A");
    }
    // Everything written with A is acknowledged and deleted: A can go.
    let mut s = Spool::open(config(dir.path(), keys(2, &[]))).expect("open B");
    let got: Vec<u64> = read_all(&mut s).into_iter().map(|r| r.0).collect();
    assert_eq!(got, (6..12).collect::<Vec<_>>());
}

#[test]
fn a_spool_written_in_clear_is_replayed_once_encryption_is_on() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let mut s = Spool::open(config(dir.path(), None)).expect("open plain");
        append(&mut s, 0..4);
    }
    let plain = segments(dir.path());
    {
        let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("open sealed");
        assert_eq!(s.stats().plaintext_segments, plain.len() as u64);
        append(&mut s, 4..8);
        let got: Vec<u64> = read_all(&mut s).into_iter().map(|r| r.0).collect();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        s.ack(4).expect("ack");
    }
    for seg in segments(dir.path()) {
        assert!(fs::read(&seg).expect("read").starts_with(b"WSPENC01"));
    }
    let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("reopen");
    let got: Vec<u64> = read_all(&mut s).into_iter().map(|r| r.0).collect();
    assert_eq!(got, (4..8).collect::<Vec<_>>());
}

#[test]
fn a_header_cut_short_or_damaged_is_counted_as_corrupt_and_the_spool_goes_on() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("open");
        append(&mut s, 0..20);
    }
    let segs = segments(dir.path());
    let bytes = fs::read(&segs[0]).expect("read");
    fs::write(&segs[0], &bytes[..20]).expect("truncate");
    // A key id zeroed by a crash is damage (the header's checksum fails), not an unknown key.
    let mut bytes = fs::read(&segs[1]).expect("read");
    bytes[8..16].fill(0);
    fs::write(&segs[1], &bytes).expect("zero");
    let mut s = Spool::open(config(dir.path(), keys(1, &[]))).expect("reopen");
    assert_eq!(s.stats().corrupt_dropped, 2);
    let got: Vec<u64> = read_all(&mut s).into_iter().map(|r| r.0).collect();
    assert!(!got.is_empty() && !got.contains(&0), "{got:?}");
    append(&mut s, 20..21);
    assert_eq!(read_all(&mut s).len(), 1, "appends go on");
}
