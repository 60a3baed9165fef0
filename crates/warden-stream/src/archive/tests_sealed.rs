//! The archive with encryption at rest: sealed files, read back only with their key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warden_atrest::{Key, Keyring};

use super::tests::{HOUR, T0, count, event};
use super::*;
use crate::query::session_with;

fn keys(current: u8, old: &[u8]) -> Keyring {
    Keyring::new(
        Key::from_bytes([current; 32]),
        old.iter().map(|b| Key::from_bytes([*b; 32])).collect(),
    )
}

/// Write events `from..to` (200 ms apart from half past T0's hour) into the archive.
fn write(dir: &Path, keys: Option<Keyring>, from: u64, to: u64) -> Vec<PathBuf> {
    let mut w = ArchiveWriter::new(dir.to_path_buf(), 64 * 1024)
        .expect("writer")
        .with_keys(keys.map(Arc::new));
    let events: Vec<_> = (from..to)
        .map(|i| event(i, T0 + HOUR / 2 + i as i64 * 200_000_000))
        .collect();
    for chunk in events.chunks(1000) {
        w.write(&warden_event::to_record_batch(chunk).expect("batch"))
            .expect("write");
    }
    w.close_all().expect("close");
    w.closed_files().to_vec()
}

async fn count_all(dir: &Path, keys: Option<&Keyring>) -> Result<i64, String> {
    let ctx = session_with(dir, keys).await.map_err(|e| e.to_string())?;
    let df = ctx
        .sql("select count(*) from events")
        .await
        .map_err(|e| e.to_string())?;
    let b = df.collect().await.map_err(|e| e.to_string())?;
    Ok(count(&b))
}

#[tokio::test]
async fn sealed_files_hold_no_plaintext_and_query_like_plain_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let k = keys(1, &[]);
    let files = write(dir.path(), Some(k.clone()), 0, 20_000);
    assert!(files.len() >= 2);
    for f in &files {
        assert!(
            f.to_string_lossy().ends_with(".parquet.enc"),
            "{}",
            f.display()
        );
        let bytes = std::fs::read(f).expect("read");
        assert!(bytes.starts_with(warden_atrest::ENVELOPE_MAGIC));
        assert!(
            !bytes.windows(5).any(|w| w == b"dev-3"),
            "identity in clear"
        );
        assert!(
            !bytes.windows(4).any(|w| w == b"PAR1"),
            "Parquet footer in clear"
        );
    }
    assert_eq!(count_all(dir.path(), Some(&k)).await, Ok(20_000));
    let ctx = session_with(dir.path(), Some(&k)).await.expect("session");
    let b = ctx
        .sql("select count(*) from events where hour = '2026-01-05T10'")
        .await
        .expect("sql")
        .collect()
        .await
        .expect("collect");
    assert_eq!(
        count(&b),
        11_000,
        "hour partitions still prune (10:00 to 10:36:40)"
    );
    // Files written in clear before encryption was on are read alongside.
    write(dir.path(), None, 20_000, 21_000);
    assert_eq!(count_all(dir.path(), Some(&k)).await, Ok(21_000));
}

#[tokio::test]
async fn without_the_key_the_archive_is_refused_naming_the_key_id() {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), Some(keys(1, &[])), 0, 2_000);
    let id = Key::from_bytes([1; 32]).id().to_string();
    let err = count_all(dir.path(), None).await.expect_err("no key");
    assert!(err.contains(&id) && err.contains("key_file"), "{err}");
    let err = count_all(dir.path(), Some(&keys(2, &[])))
        .await
        .expect_err("wrong key");
    assert!(err.contains(&id), "{err}");
}

#[tokio::test]
async fn tampered_or_truncated_files_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let k = keys(1, &[]);
    let files = write(dir.path(), Some(k.clone()), 0, 2_000);
    let f = &files[0];
    let good = std::fs::read(f).expect("read");
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    std::fs::write(f, &flipped).expect("write");
    let err = count_all(dir.path(), Some(&k)).await.expect_err("tampered");
    assert!(err.contains("authentic") && err.contains("part-"), "{err}");
    std::fs::write(f, &good[..good.len() - 100]).expect("write");
    let err = count_all(dir.path(), Some(&k))
        .await
        .expect_err("truncated");
    assert!(err.contains("authentic"), "{err}");
    std::fs::write(f, &good).expect("write");
    assert_eq!(count_all(dir.path(), Some(&k)).await, Ok(2_000));
}

#[tokio::test]
async fn rotation_reads_both_keys_until_the_old_one_is_dropped() {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), Some(keys(1, &[])), 0, 1_000);
    write(dir.path(), Some(keys(2, &[1])), 1_000, 3_000);
    assert_eq!(count_all(dir.path(), Some(&keys(2, &[1]))).await, Ok(3_000));
    let a = Key::from_bytes([1; 32]).id().to_string();
    let err = count_all(dir.path(), Some(&keys(2, &[])))
        .await
        .expect_err("A dropped");
    assert!(err.contains(&a) && err.contains("old_key_files"), "{err}");
}
