#![allow(clippy::unwrap_used)]

use super::*;

/// 2026-12-04T15:00:00Z.
const T0: i64 = 1_796_396_400_000_000_000;

fn key() -> AuditKey {
    AuditKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
}

/// A log of `n` records in a fresh directory; returns the directory, the path and the lines.
fn log_of(n: u64, key: Option<AuditKey>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, key).unwrap();
    for i in 0..n {
        let kind = if i % 2 == 0 {
            Kind::Decision
        } else {
            Kind::Operator
        };
        let seq = log
            .append_at(
                T0 + i as i64 * 1_000_000,
                kind,
                &serde_json::json!({"n": i, "reason": "x \"quoted\",\"hash\":\"y\"}"}),
            )
            .unwrap();
        assert_eq!(seq, i + 1);
    }
    (dir, path)
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &std::path::Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn broken(path: &std::path::Path, key: Option<&AuditKey>) -> Broken {
    verify(&std::fs::read(path).unwrap(), key).unwrap_err()
}

#[test]
fn rfc3339_formats_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(rfc3339(T0 + 123_456_789), "2026-12-04T15:00:00.123456Z");
    assert_eq!(
        rfc3339(951_782_400_000_000_000),
        "2000-02-29T00:00:00.000000Z"
    );
}

#[test]
fn appends_chain_from_genesis() {
    let (_dir, path) = log_of(3, None);
    let records: Vec<Record> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0].prev, GENESIS);
    assert_eq!(records[0].seq, 1);
    assert_eq!(records[0].ts, "2026-12-04T15:00:00.000000Z");
    assert_eq!(records[1].prev, records[0].hash);
    assert_eq!(records[2].prev, records[1].hash);
    assert_eq!(records[1].kind, Kind::Operator);
    let summary = verify(&std::fs::read(&path).unwrap(), None).unwrap();
    assert_eq!(summary.records, 3);
    assert_eq!(summary.last_seq, 3);
    assert_eq!(summary.head, records[2].hash);
    assert_eq!(
        summary.first_ts.as_deref(),
        Some("2026-12-04T15:00:00.000000Z")
    );
    assert_eq!(
        summary.last_ts.as_deref(),
        Some("2026-12-04T15:00:00.002000Z")
    );
    assert!(!summary.keyed);
}

#[test]
fn empty_log_verifies() {
    let s = verify(b"", None).unwrap();
    assert_eq!((s.records, s.head.as_str()), (0, GENESIS));
}

#[test]
fn reopen_continues_the_chain() {
    let (_dir, path) = log_of(2, Some(key()));
    let log = AuditLog::open(&path, Some(key())).unwrap();
    assert_eq!(log.last_seq(), 2);
    assert_eq!(
        log.append(Kind::Signin, &serde_json::json!({"ok": true}))
            .unwrap(),
        3
    );
    drop(log);
    let s = verify(&std::fs::read(&path).unwrap(), Some(&key())).unwrap();
    assert_eq!((s.records, s.keyed), (3, true));
}

#[test]
fn one_writer_per_file() {
    let (_dir, path) = log_of(1, None);
    let _first = AuditLog::open(&path, None).unwrap();
    let second = AuditLog::open(&path, None).unwrap_err();
    assert!(matches!(second, AuditError::Locked { .. }), "{second}");
}

#[test]
fn edited_field_is_found() {
    let (_dir, path) = log_of(4, None);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"n\":2", "\"n\":9");
    write_lines(&path, &l);
    let b = broken(&path, None);
    assert_eq!(
        (b.seq, b.line, b.tamper, b.sound),
        (3, 3, Tamper::Edited, 2)
    );
    assert!(b.to_string().contains("seq 3"), "{b}");
}

#[test]
fn deleted_line_is_found() {
    let (_dir, path) = log_of(4, None);
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    let b = broken(&path, None);
    assert_eq!((b.seq, b.tamper), (2, Tamper::Deleted));
}

#[test]
fn swapped_lines_are_found() {
    let (_dir, path) = log_of(4, None);
    let mut l = lines(&path);
    l.swap(1, 2);
    write_lines(&path, &l);
    let b = broken(&path, None);
    assert_eq!((b.seq, b.line, b.tamper), (2, 2, Tamper::Reordered));
}

#[test]
fn inserted_copy_is_found() {
    let (_dir, path) = log_of(4, None);
    let mut l = lines(&path);
    l.insert(2, l[0].clone());
    write_lines(&path, &l);
    let b = broken(&path, None);
    assert_eq!((b.seq, b.line, b.tamper), (3, 3, Tamper::Inserted));
}

#[test]
fn forged_insertion_is_found() {
    // A record forged with a valid hash, linked to the one before it: the next genuine
    // record no longer follows.
    let (_dir, path) = log_of(4, None);
    let mut l = lines(&path);
    let before: Record = serde_json::from_str(&l[1]).unwrap();
    let (forged, _) = encode_line(
        None,
        3,
        "2026-12-04T15:00:00.001500Z",
        Kind::Operator,
        &before.hash,
        &serde_json::json!({"forged": true}),
    )
    .unwrap();
    l.insert(2, forged.trim_end().to_string());
    write_lines(&path, &l);
    let b = broken(&path, None);
    assert_eq!((b.seq, b.line, b.tamper), (4, 4, Tamper::Inserted));
}

#[test]
fn replaced_record_breaks_the_link() {
    let (_dir, path) = log_of(3, None);
    let mut l = lines(&path);
    let (forged, _) = encode_line(
        None,
        2,
        "2026-12-04T15:00:00.001000Z",
        Kind::Operator,
        GENESIS,
        &serde_json::json!({}),
    )
    .unwrap();
    l[1] = forged.trim_end().to_string();
    write_lines(&path, &l);
    let b = broken(&path, None);
    assert_eq!((b.seq, b.tamper), (2, Tamper::Relinked));
}

#[test]
fn truncated_tail_is_found() {
    let (_dir, path) = log_of(3, None);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
    let b = broken(&path, None);
    assert_eq!(
        (b.seq, b.line, b.tamper, b.sound),
        (3, 3, Tamper::TruncatedTail, 2)
    );
}

#[test]
fn wrong_or_missing_key_is_found() {
    let (_dir, path) = log_of(2, Some(key()));
    let other = AuditKey::new(&[7u8; 32]).unwrap();
    assert_eq!(broken(&path, Some(&other)).tamper, Tamper::WrongKey);
    assert_eq!(broken(&path, None).tamper, Tamper::Key);
    assert!(AuditLog::open(&path, Some(other)).is_err());
    assert!(AuditLog::open(&path, None).is_err());
}

#[test]
fn unkeyed_log_checked_with_a_key_fails() {
    // An attacker without the key rewrote the chain with plain hashes.
    let (_dir, path) = log_of(2, None);
    assert_eq!(broken(&path, Some(&key())).tamper, Tamper::Key);
}

#[test]
fn short_key_is_refused() {
    assert!(AuditKey::new(b"short").is_err());
}

#[test]
fn torn_tail_is_cut_and_recorded_on_open() {
    let (dir, path) = log_of(3, None);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
    let log = AuditLog::open(&path, None).unwrap();
    assert_eq!(
        log.last_seq(),
        3,
        "record 3 was torn; the recovery note is 3"
    );
    log.append(Kind::Decision, &serde_json::json!({})).unwrap();
    drop(log);
    let s = verify(&std::fs::read(&path).unwrap(), None).unwrap();
    assert_eq!(s.records, 4);
    let note: Record = serde_json::from_str(&lines(&path)[2]).unwrap();
    assert_eq!(note.kind, Kind::Log);
    assert_eq!(note.payload["event"], "torn_tail_removed");
    let saved = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".torn-")
        })
        .count();
    assert_eq!(saved, 1);
}

#[test]
fn tampered_last_record_refuses_the_open() {
    let (_dir, path) = log_of(3, None);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"n\":2", "\"n\":7");
    write_lines(&path, &l);
    let e = AuditLog::open(&path, None).unwrap_err();
    assert!(matches!(e, AuditError::Tail { .. }), "{e}");
}

#[test]
fn garbage_never_panics() {
    for input in [
        &b"\n"[..],
        b"{}\n",
        b"not json\n",
        b"{\"hash\":\"\"}\n",
        &[0xff, 0xfe, b'\n'],
        b"\n\n\n",
        b"{",
    ] {
        assert!(verify(input, None).is_err(), "{input:?}");
    }
}
