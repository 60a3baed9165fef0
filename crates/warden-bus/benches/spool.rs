//! Spool write and replay throughput: the gateway's event path while Kafka is away (append)
//! and when it is back (read + ack). Records are 400-byte payloads (a typical encoded event).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use warden_bus::spool::{FsyncPolicy, OverflowPolicy, Spool, SpoolConfig};

const RECORDS: u64 = 20_000;

fn config(dir: &std::path::Path, fsync: FsyncPolicy) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 64 << 20,
        max_bytes: 1 << 30,
        fsync,
        overflow: OverflowPolicy::DropNewest,
        keys: None,
    }
}

fn bench(c: &mut Criterion) {
    let payload = vec![b'e'; 400];
    let key = b"sensor-0001".to_vec();
    let mut g = c.benchmark_group("spool");
    g.throughput(Throughput::Elements(RECORDS));
    g.sample_size(10);
    for (name, fsync) in [
        (
            "append_fsync_100ms",
            FsyncPolicy::Interval(std::time::Duration::from_millis(100)),
        ),
        ("append_fsync_always_per_1024", FsyncPolicy::Always),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || tempfile::tempdir().expect("dir"),
                |dir| {
                    let mut s = Spool::open(config(dir.path(), fsync)).expect("open");
                    for chunk in 0..RECORDS / 1024 + 1 {
                        let n = 1024.min(RECORDS.saturating_sub(chunk * 1024));
                        s.append(
                            (0..n).map(|i| (key.as_slice(), payload.as_slice(), chunk * 1024 + i)),
                        )
                        .expect("append");
                    }
                    black_box(s.pending());
                    dir
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.bench_function("replay_read_and_ack", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("dir");
                let mut s = Spool::open(config(dir.path(), FsyncPolicy::Never)).expect("open");
                s.append((0..RECORDS).map(|i| (key.as_slice(), payload.as_slice(), i)))
                    .expect("append");
                drop(s);
                dir
            },
            |dir| {
                let mut s = Spool::open(config(dir.path(), FsyncPolicy::Never)).expect("reopen");
                let mut n = 0;
                loop {
                    let batch = s.read(4096).expect("read");
                    let Some(last) = batch.last() else { break };
                    n += batch.len();
                    s.ack(last.number + 1).expect("ack");
                }
                assert_eq!(n as u64, RECORDS);
                dir
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
