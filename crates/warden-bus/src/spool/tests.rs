use std::path::Path;

use super::*;

fn config(dir: &Path, segment_bytes: u64, max_bytes: u64, overflow: OverflowPolicy) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        max_bytes,
        fsync: FsyncPolicy::Always,
        overflow,
        keys: None,
    }
}

fn append_n(spool: &mut Spool, from: u64, n: u64) {
    let payloads: Vec<(Vec<u8>, Vec<u8>, u64)> = (from..from + n)
        .map(|i| {
            (
                format!("k{}", i % 3).into_bytes(),
                format!("payload-{i}").into_bytes(),
                i,
            )
        })
        .collect();
    let accepted = spool
        .append(
            payloads
                .iter()
                .map(|(k, p, t)| (k.as_slice(), p.as_slice(), *t)),
        )
        .expect("append");
    assert_eq!(accepted as u64, n);
}

fn tags(records: &[SpoolRecord]) -> Vec<u64> {
    records.iter().map(|r| r.tag).collect()
}

#[test]
fn reads_in_order_across_segments_and_acks_delete_segments() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s =
        Spool::open(config(dir.path(), 200, 1 << 20, OverflowPolicy::DropNewest)).expect("open");
    append_n(&mut s, 0, 20);
    let segs = fs::read_dir(dir.path())
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count();
    assert!(segs > 3, "small segments roll: {segs}");
    let first = s.read(7).expect("read");
    assert_eq!(tags(&first), (0..7).collect::<Vec<_>>());
    assert_eq!(first[0].key.as_ref(), b"k0");
    assert_eq!(first[3].payload.as_ref(), b"payload-3");
    let rest = s.read(100).expect("read");
    assert_eq!(tags(&rest), (7..20).collect::<Vec<_>>());
    assert!(s.read(10).expect("read").is_empty());
    s.ack(15).expect("ack");
    assert_eq!(s.pending(), 5);
    let after = fs::read_dir(dir.path()).expect("dir").count();
    assert!(after < segs, "acked segments deleted");
    append_n(&mut s, 20, 2);
    assert_eq!(tags(&s.read(10).expect("read")), vec![20, 21]);
    s.ack(22).expect("ack all");
    drop(s);
    let s =
        Spool::open(config(dir.path(), 200, 1 << 20, OverflowPolicy::DropNewest)).expect("reopen");
    assert_eq!(s.pending(), 0);
    assert_eq!(
        s.max_tag(),
        Some(21),
        "the largest tag survives even with no segment left"
    );
}

#[test]
fn reopening_replays_exactly_the_unacked_records() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let mut s = Spool::open(config(dir.path(), 150, 1 << 20, OverflowPolicy::DropNewest))
            .expect("open");
        append_n(&mut s, 100, 10);
        let _ = s.read(10).expect("read");
        s.ack(4).expect("ack"); // numbers 0..4 = tags 100..104 done
    }
    let mut s =
        Spool::open(config(dir.path(), 150, 1 << 20, OverflowPolicy::DropNewest)).expect("reopen");
    assert_eq!(s.pending(), 6);
    assert_eq!(s.max_tag(), Some(109));
    assert_eq!(
        tags(&s.read(100).expect("read")),
        (104..110).collect::<Vec<_>>()
    );
    // Rewind re-reads unacked records (after failed sends).
    s.rewind().expect("rewind");
    assert_eq!(
        tags(&s.read(100).expect("read")),
        (104..110).collect::<Vec<_>>()
    );
}

#[test]
fn a_torn_tail_is_cut_off_on_open() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let mut s = Spool::open(config(
            dir.path(),
            1 << 20,
            1 << 20,
            OverflowPolicy::DropNewest,
        ))
        .expect("open");
        append_n(&mut s, 0, 5);
    }
    let seg = fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("segment");
    // A crash in the middle of the sixth record: half a header and body.
    let mut f = OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open seg");
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9])
        .expect("write");
    drop(f);
    let mut s = Spool::open(config(
        dir.path(),
        1 << 20,
        1 << 20,
        OverflowPolicy::DropNewest,
    ))
    .expect("reopen");
    assert_eq!(s.stats().corrupt_dropped, 1);
    assert_eq!(
        tags(&s.read(100).expect("read")),
        (0..5).collect::<Vec<_>>()
    );
    append_n(&mut s, 5, 1);
    assert_eq!(
        tags(&s.read(100).expect("read")),
        vec![5],
        "appends continue after the cut"
    );
    // A flipped byte inside a record is caught by the checksum; reading goes on with the
    // next segment.
    drop(s);
    let mut bytes = fs::read(&seg).expect("read seg");
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&seg, bytes).expect("write seg");
    let mut s = Spool::open(config(
        dir.path(),
        1 << 20,
        1 << 20,
        OverflowPolicy::DropNewest,
    ))
    .expect("reopen");
    assert_eq!(tags(&s.read(100).expect("read")), vec![0, 1, 2, 3, 5]);
    assert_eq!(s.stats().corrupt_dropped, 1);
}

#[test]
fn overflow_is_counted_by_policy() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s =
        Spool::open(config(dir.path(), 100, 300, OverflowPolicy::DropNewest)).expect("open");
    let p = vec![b'x'; 40];
    let accepted = s
        .append((0..20).map(|i| (&b"k"[..], p.as_slice(), i)))
        .expect("append");
    assert!(accepted < 20 && accepted > 0);
    assert_eq!(s.stats().dropped, 20 - accepted as u64);
    assert!(s.bytes() <= 300);

    let dir = tempfile::tempdir().expect("dir");
    let mut s =
        Spool::open(config(dir.path(), 100, 300, OverflowPolicy::DropOldest)).expect("open");
    let accepted = s
        .append((0..20).map(|i| (&b"k"[..], p.as_slice(), i)))
        .expect("append");
    assert_eq!(accepted, 20, "drop-oldest always takes the new record");
    assert!(s.stats().dropped > 0);
    assert!(s.bytes() <= 300);
    let got = tags(&s.read(100).expect("read"));
    assert_eq!(got.last(), Some(&19), "newest kept");
    assert_eq!(
        got.len() as u64 + s.stats().dropped,
        20,
        "every record read or counted"
    );
}
