//! The spool reader on damaged segments: a spool of known records is written, its segment
//! files are damaged the ways a crash or a bad disk damages them (bursts of flipped bits,
//! truncation, a torn partial record or zeros at the end), then it is reopened and read.
//!
//! Properties: opening never fails or panics; every record read back is exactly one that was
//! written (number, tag, key, payload), unacknowledged, in increasing order — never garbage;
//! a damaged segment is detected and counted (`corrupt_dropped`); an undamaged spool replays
//! every unacknowledged record; and a second open finds nothing left to cut.
//!
//! Half the inputs (first byte ≥ 128) use an encrypted spool (encryption at rest): the same
//! properties hold, a record failing authentication (or a damaged segment header) counting as
//! corrupt.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use warden_atrest::{Key, Keyring};
use warden_bus::spool::{FsyncPolicy, OverflowPolicy, Spool, SpoolConfig, SpoolRecord};

/// Bytes of an encrypted segment's header (magic, key id, salt, crc32).
const SEALED_HEADER: usize = 52;

fn config(dir: &Path, segment_bytes: u64, sealed: bool) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        max_bytes: 1 << 30,
        fsync: FsyncPolicy::Never,
        overflow: OverflowPolicy::DropNewest,
        keys: sealed.then(|| Arc::new(Keyring::new(Key::from_bytes([7; 32]), Vec::new()))),
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("k{}", i % 3).into_bytes()
}

fn payload(i: u64) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; (i * 7 % 50) as usize]
}

/// Record `i` as the spool lays it out: `len | crc32(body) | body`, body = `number | tag |
/// key_len | key | payload` (see crates/warden-bus/src/spool.rs).
fn encoded(i: u64) -> Vec<u8> {
    let (k, p) = (key(i), payload(i));
    let mut body = Vec::new();
    body.extend_from_slice(&i.to_le_bytes());
    body.extend_from_slice(&i.to_le_bytes());
    body.extend_from_slice(&(k.len() as u16).to_le_bytes());
    body.extend_from_slice(&k);
    body.extend_from_slice(&p);
    let mut out = Vec::new();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Offsets where records start or end in a segment file.
fn boundaries(bytes: &[u8], sealed: bool) -> Vec<usize> {
    let mut at = vec![0];
    let mut i = 0;
    if sealed {
        at.push(SEALED_HEADER);
        i = SEALED_HEADER;
    }
    while i + 4 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        i += 8 + len as usize;
        at.push(i);
    }
    at
}

fn read_all(spool: &mut Spool) -> Vec<SpoolRecord> {
    let mut out = Vec::new();
    loop {
        let batch = spool.read(64).expect("read");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let n = 1 + u64::from(data[0] % 40);
    let segment_bytes = 64 + u64::from(data[1]) * 4;
    let acked = u64::from(data[2]) % (n + 1);
    let sealed = data[0] >= 128;
    // In memory where the machine has it: the spool's files, not the disk, are under test.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    let dir = dir.expect("tempdir");
    {
        let mut spool = Spool::open(config(dir.path(), segment_bytes, sealed)).expect("open");
        let recs: Vec<(Vec<u8>, Vec<u8>, u64)> = (0..n).map(|i| (key(i), payload(i), i)).collect();
        let accepted = spool
            .append(
                recs.iter()
                    .map(|(k, p, t)| (k.as_slice(), p.as_slice(), *t)),
            )
            .expect("append");
        assert_eq!(accepted as u64, n);
        spool.ack(acked).expect("ack");
    }
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    if segs.is_empty() {
        return;
    }
    let originals: Vec<Vec<u8>> = segs
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let mut files = originals.clone();
    for op in data[3..].chunks_exact(5) {
        let f = &mut files[usize::from(op[1]) % segs.len()];
        let at = usize::from(u16::from_le_bytes([op[2], op[3]]));
        match op[0] % 4 {
            // A burst of up to 4 flipped bytes (CRC-32 detects every burst of ≤ 32 bits).
            0 => {
                for (j, mask) in [op[4], op[4].rotate_left(3), op[4] ^ 0x5a, 1]
                    .iter()
                    .enumerate()
                {
                    if j <= usize::from(op[4] % 4)
                        && let Some(b) = f.get_mut(at + j)
                    {
                        *b ^= mask;
                    }
                }
            }
            1 => f.truncate(at.min(f.len())),
            // A torn write: part of the next record, never all of it.
            2 => {
                let next = encoded(n);
                f.extend_from_slice(&next[..usize::from(op[4]) % next.len()]);
            }
            _ => f.extend(std::iter::repeat_n(0u8, usize::from(op[4]))),
        }
    }
    let mut damaged = 0;
    for ((path, orig), new) in segs.iter().zip(&originals).zip(&files) {
        let clean_cut = orig.starts_with(new) && boundaries(orig, sealed).contains(&new.len());
        if !clean_cut {
            damaged += 1;
        }
        std::fs::write(path, new).expect("write");
    }

    let mut spool =
        Spool::open(config(dir.path(), segment_bytes, sealed)).expect("open a damaged spool");
    let cut = spool.stats().corrupt_dropped;
    let got = read_all(&mut spool);
    let mut last = None;
    for r in &got {
        assert!(
            r.number < n && r.number >= acked,
            "record {} replayed",
            r.number
        );
        assert!(
            last < Some(r.number),
            "out of order: {last:?} then {}",
            r.number
        );
        last = Some(r.number);
        assert_eq!(r.tag, r.number);
        assert_eq!(&r.key[..], key(r.number), "garbage key");
        assert_eq!(&r.payload[..], payload(r.number), "garbage payload");
    }
    assert!(cut <= segs.len() as u64);
    if damaged > 0 {
        assert!(cut >= 1, "{damaged} damaged segment(s) not detected");
    }
    if files == originals {
        assert_eq!(
            got.len() as u64,
            n - acked,
            "an undamaged spool lost records"
        );
        assert_eq!(cut, 0);
    }
    drop(spool);
    let mut again = Spool::open(config(dir.path(), segment_bytes, sealed)).expect("reopen");
    assert_eq!(
        again.stats().corrupt_dropped,
        0,
        "the cut was not persisted"
    );
    let numbers: Vec<u64> = read_all(&mut again).iter().map(|r| r.number).collect();
    assert_eq!(numbers, got.iter().map(|r| r.number).collect::<Vec<_>>());
});
