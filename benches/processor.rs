//! The stream processor's hot path on the shipped default pipeline: payloads as they come off
//! the bus (compact, the gateways' default `bus.event_format`, or JSON) → decode → Arrow batch → windowed features → every detector, on 1 M
//! events from 10 000 identities. Run with `cargo bench -p warden-benches --bench processor`.
//!
//! Two event-time densities, because the per-key sampling work (every key, every slide) is
//! paid per second of *event time*, not per event:
//! - `1s`: the million events span one second of event time — what a processor sees at
//!   1 M events/s (10 000 identities at 100 requests/s each);
//! - `20s`: the same million over 20 s (50 k events/s of traffic): 20× the sampling per event.
//!
//! After the criterion groups it prints, per variant, the engine's state (bytes per identity)
//! and the best of a few timed passes, then the state of a third, steady-state run (180 s of
//! event time, past the longest window).
//!
//! Each variant is measured from compact and from JSON payloads (decode included) and from
//! ready Arrow batches (features and detectors only). A fresh engine is built in the (unmeasured) setup of each
//! iteration, so key creation is part of the measurement.

// The allocator the `warden` binary runs on (crates/warden/src/main.rs), so the figures are
// what ships; `--features system-alloc` measures the same on glibc's.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use arrow::record_batch::RecordBatch;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use warden_event::{AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, RequestEvent};
use warden_stream::Engine;

const EVENTS: usize = 1_000_000;
const IDENTITIES: usize = 10_000;
const BATCH: usize = 2048;
/// Timed passes per variant for the best-of figure printed after the criterion groups.
const PASSES: usize = 5;
const T0: i64 = 1_767_603_600_000_000_000;

fn pipeline() -> warden_config::PipelineConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/default.toml");
    warden_stream::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// `EVENTS` events over `span_ns` of event time, round-robin over the identities with a
/// per-identity jitter, a few routes and paths, 2 % errors, 1 % failed authentications.
fn events(span_ns: i64) -> Vec<RequestEvent> {
    let routes = ["telemetry", "config", "firmware", "media"];
    let step = span_ns / EVENTS as i64;
    (0..EVENTS)
        .map(|i| {
            let d = i % IDENTITIES;
            let failed = i % 100 == 7;
            RequestEvent {
                v: warden_event::SCHEMA_VERSION,
                id: format!("{i:016x}"),
                gateway: "gw-1".into(),
                seq: i as u64,
                ts: T0 + i as i64 * step,
                identity: if failed {
                    "anonymous".into()
                } else {
                    format!("dev-{d:05}")
                },
                tenant: format!("tenant-{}", d % 8),
                device_type: ["sensor", "camera", "meter", "gateway"][d % 4].into(),
                auth: AuthInfo {
                    method: AuthMethod::ApiKey,
                    result: if failed {
                        AuthResult::Failed
                    } else {
                        AuthResult::Ok
                    },
                },
                client_ip: format!("10.{}.{}.{}", d / 65536, (d / 256) % 256, d % 256),
                protocol: Protocol::Http,
                method: if i % 3 == 0 { "GET" } else { "POST" }.into(),
                route: routes[(i / IDENTITIES) % 4].into(),
                path: format!("/api/v1/{}/dev-{d:05}", routes[(i / IDENTITIES) % 4]),
                status: if failed {
                    401
                } else if i % 50 == 0 {
                    503
                } else {
                    200
                },
                decision: if failed {
                    Outcome::DeniedAuth
                } else {
                    Outcome::Allowed
                },
                latency_us: 800 + (i % 400) as u64,
                bytes_in: 180,
                bytes_out: 60 + (i % 7) as u64 * 10,
                user_agent: Some("acme-fw/2.3.1".into()),
                tls: None,
                reason: warden_event::Reason::None,
                query: String::new(),
                query_hash: 0,
            }
        })
        .collect()
}

/// CPU time of the calling thread, nanoseconds (Linux: `/proc/thread-self/schedstat`), so
/// the per-core figure does not count time the thread spent waiting for a core on a loaded
/// machine.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Minor page faults of this thread so far (`/proc/thread-self/stat`, field 10): memory the
/// kernel had to hand out and zero.
fn thread_minflt() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

fn batches(events: &[RequestEvent]) -> Vec<RecordBatch> {
    events
        .chunks(BATCH)
        .map(|c| warden_event::to_record_batch(c).expect("batch"))
        .collect()
}

fn run_batches(engine: &mut Engine, batches: &[RecordBatch]) -> usize {
    let mut outputs = 0;
    for b in batches {
        let now = warden_event::now_ns();
        outputs += engine.process(b, now).expect("process").len();
    }
    outputs + flush(engine)
}

/// The provisional scoring the last full batches deferred (`source.provisional_every_ms`),
/// done as the processor does when events stop: part of the measured work.
fn flush(engine: &mut Engine) -> usize {
    engine.flush(warden_event::now_ns()).expect("flush").len()
}

/// The processor's decode path: each payload (compact or JSON) straight into the batch's Arrow
/// builders ([`warden_event::RequestBatchBuilder`], strings borrowed from the payload).
fn run_payloads(engine: &mut Engine, payloads: &[Vec<u8>]) -> usize {
    let mut outputs = 0;
    let mut builder = warden_event::RequestBatchBuilder::with_capacity(BATCH);
    for chunk in payloads.chunks(BATCH) {
        for p in chunk {
            // Undecodable payloads are skipped, as the processor does.
            let _ = builder.push_payload(p);
        }
        let b = builder.finish().expect("batch");
        outputs += engine
            .process(&b, warden_event::now_ns())
            .expect("process")
            .len();
    }
    outputs + flush(engine)
}

/// The extra figures' paths (see [`wanted`]).
const PATHS: [&str; 9] = [
    "arrow",
    "compact",
    "compact_every_touched",
    "arrow_every_batch",
    "compact_every_batch",
    "json",
    "json_owned",
    "compact_decode",
    "json_decode",
];

/// Payloads into batches, nothing else: the decoding share of [`run_payloads`].
fn decode_only(payloads: &[Vec<u8>]) -> usize {
    let mut rows = 0;
    let mut builder = warden_event::RequestBatchBuilder::with_capacity(BATCH);
    for chunk in payloads.chunks(BATCH) {
        for p in chunk {
            let _ = builder.push_payload(p);
        }
        rows += black_box(builder.finish().expect("batch")).num_rows();
    }
    rows
}

/// The decode path before `RequestBatchBuilder`: owned [`RequestEvent`]s
/// (`warden_event::decode`), then `to_record_batch`.
fn run_json_owned(engine: &mut Engine, payloads: &[Vec<u8>]) -> usize {
    let mut outputs = 0;
    let mut decoded = Vec::with_capacity(BATCH);
    for chunk in payloads.chunks(BATCH) {
        decoded.clear();
        for p in chunk {
            if let Ok(e) = warden_event::decode::<RequestEvent>(p) {
                decoded.push(e);
            }
        }
        let b = warden_event::to_record_batch(&decoded).expect("batch");
        outputs += engine
            .process(&b, warden_event::now_ns())
            .expect("process")
            .len();
    }
    outputs + flush(engine)
}

/// The machine's load averages (1, 5, 15 min), to print beside the figures.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Whether a variant's extra figures are wanted: `PROCESSOR_BENCH_ONLY` (a comma-separated
/// list of labels such as `1s,180s`, or paths such as `arrow`, `compact`: [`PATHS`]) narrows them
/// down, e.g. to profile one of them; unset, all are printed.
fn wanted(label: &str) -> bool {
    match std::env::var("PROCESSOR_BENCH_ONLY") {
        Ok(only) if !only.is_empty() => only.split(',').any(|o| o == label),
        _ => true,
    }
}

fn wanted_path(path: &str) -> bool {
    match std::env::var("PROCESSOR_BENCH_ONLY") {
        Ok(only) if only.split(',').any(|o| PATHS.contains(&o)) => {
            only.split(',').any(|o| o == path)
        }
        _ => true,
    }
}

fn bench(c: &mut Criterion) {
    let pipeline = pipeline();
    // The same pipeline scoring touched keys after every batch even under backlog (the
    // behaviour before `source.provisional_every_ms`), for comparison.
    let mut every_batch = pipeline.clone();
    every_batch.source.provisional_every_ms = 0;
    every_batch.source.provisional_min_events = 1;
    // Coalesced, but scoring every touched key, even one with a single new event (the
    // behaviour before `source.provisional_min_events`).
    let mut every_touched = pipeline.clone();
    every_touched.source.provisional_min_events = 1;
    let mut group = c.benchmark_group("processor");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(40));
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (label, span_s) in [("1s", 1i64), ("20s", 20)] {
        if !wanted(label) {
            continue;
        }
        let events = events(span_s * 1_000_000_000);
        let encode = |format| -> Vec<Vec<u8>> {
            events
                .iter()
                .map(|e| warden_event::encode_event(e, format))
                .collect()
        };
        let payloads = encode(warden_event::EventFormat::Json);
        let compact = encode(warden_event::EventFormat::Compact);
        let batches = batches(&events);
        drop(events);
        group.bench_function(format!("compact_to_decisions_{label}"), |b| {
            b.iter_batched(
                || Engine::new(&pipeline).expect("engine"),
                |mut engine| black_box(run_payloads(&mut engine, &compact)),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("json_to_decisions_{label}"), |b| {
            b.iter_batched(
                || Engine::new(&pipeline).expect("engine"),
                |mut engine| black_box(run_payloads(&mut engine, &payloads)),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("arrow_to_decisions_{label}"), |b| {
            b.iter_batched(
                || Engine::new(&pipeline).expect("engine"),
                |mut engine| black_box(run_batches(&mut engine, &batches)),
                BatchSize::PerIteration,
            )
        });
        // State after one pass, and the best of a few timed passes (robust to other load on
        // a shared machine), for docs/BENCHMARKS.md.
        let mut engine = Engine::new(&pipeline).expect("engine");
        run_batches(&mut engine, &batches);
        let s = engine.stats();
        eprintln!(
            "{label}: state {} bytes for {:?} keys ({:.0} bytes per identity); {} complete samples, {} provisional, {} alerts",
            engine.state_bytes(),
            engine.keys(),
            engine.state_bytes() as f64 / IDENTITIES as f64,
            s.samples,
            s.provisional,
            s.alerts
        );
        type Run<'a> = &'a dyn Fn(&mut Engine) -> usize;
        let (p, e, t) = (&pipeline, &every_batch, &every_touched);
        let paths: [(&str, &str, &warden_config::PipelineConfig, Run); 9] = [
            ("arrow", "arrow→decisions", p, &|e| {
                run_batches(e, &batches)
            }),
            ("compact", "compact→decisions", p, &|e| {
                run_payloads(e, &compact)
            }),
            (
                "compact_every_touched",
                "compact→decisions, every touched key scored",
                t,
                &|e| run_payloads(e, &compact),
            ),
            (
                "arrow_every_batch",
                "arrow→decisions, scored every batch",
                e,
                &|e| run_batches(e, &batches),
            ),
            (
                "compact_every_batch",
                "compact→decisions, scored every batch",
                e,
                &|e| run_payloads(e, &compact),
            ),
            ("json", "json→decisions", p, &|e| {
                run_payloads(e, &payloads)
            }),
            (
                "json_owned",
                "json→decisions (owned RequestEvent, before)",
                p,
                &|e| run_json_owned(e, &payloads),
            ),
            // Decoding and batch building alone (no engine), for the split.
            ("compact_decode", "compact→batches only", p, &|_| {
                decode_only(&compact)
            }),
            ("json_decode", "json→batches only", p, &|_| {
                decode_only(&payloads)
            }),
        ];
        let paths: Vec<_> = paths.into_iter().filter(|p| wanted_path(p.0)).collect();
        // (wall seconds, CPU seconds of this thread) of the best pass per path; the paths'
        // passes are interleaved so that a burst of other load hits them alike.
        let mut best = vec![(f64::INFINITY, f64::INFINITY, u64::MAX); paths.len()];
        // And every pass's CPU time, for the median.
        let mut cpus = vec![Vec::with_capacity(PASSES); paths.len()];
        for _ in 0..PASSES {
            for (((_, _, pipeline, run), b), all) in
                paths.iter().zip(best.iter_mut()).zip(&mut cpus)
            {
                let mut engine = Engine::new(pipeline).expect("engine");
                let (t, cpu, flt) = (std::time::Instant::now(), thread_cpu_ns(), thread_minflt());
                black_box(run(&mut engine));
                let cpu = thread_cpu_ns().zip(cpu).map(|(b, a)| (b - a) as f64 / 1e9);
                let flt = thread_minflt().zip(flt).map(|(b, a)| b - a);
                all.extend(cpu);
                *b = (
                    b.0.min(t.elapsed().as_secs_f64()),
                    b.1.min(cpu.unwrap_or(f64::NAN)),
                    b.2.min(flt.unwrap_or(u64::MAX)),
                );
            }
        }
        for (((_, path, _, _), (wall, cpu, flt)), mut all) in paths.iter().zip(best).zip(cpus) {
            all.sort_by(f64::total_cmp);
            let median = all.get(all.len() / 2).copied().unwrap_or(f64::NAN);
            eprintln!(
                "{label}: {path}, best of {PASSES} passes: wall {:.0} ms ({:.0} events/s), CPU {:.0} ms ({:.0} events/s per core), {flt} page faults; median pass CPU {:.0} ms ({:.0} events/s per core); load average {}",
                wall * 1e3,
                EVENTS as f64 / wall,
                cpu * 1e3,
                EVENTS as f64 / cpu,
                median * 1e3,
                EVENTS as f64 / median,
                loadavg()
            );
        }
    }
    group.finish();
    if !wanted("180s") {
        return;
    }
    // Steady state: the same million events over 180 s of event time (each identity about
    // one request per 1.8 s), past the longest window (2 min), so every window holds its
    // full set of buckets. Memory only (one pass, not timed by criterion).
    let events = events(180 * 1_000_000_000);
    let batches = batches(&events);
    drop(events);
    let mut engine = Engine::new(&pipeline).expect("engine");
    let cpu = thread_cpu_ns();
    run_batches(&mut engine, &batches);
    let secs = thread_cpu_ns()
        .zip(cpu)
        .map_or(f64::NAN, |(b, a)| (b - a) as f64 / 1e9);
    eprintln!(
        "180s (steady state): state {} bytes for {:?} keys ({:.0} bytes per identity); {} complete samples, {} provisional; one pass: CPU {:.0} ms ({:.0} events/s per core); load average {}",
        engine.state_bytes(),
        engine.keys(),
        engine.state_bytes() as f64 / IDENTITIES as f64,
        engine.stats().samples,
        engine.stats().provisional,
        secs * 1e3,
        EVENTS as f64 / secs,
        loadavg()
    );
    for (name, window, detectors) in engine.state_breakdown() {
        eprintln!(
            "180s state of window {name}: {:.0} bytes per identity in buckets and caches, {:.0} in detectors",
            window as f64 / IDENTITIES as f64,
            detectors as f64 / IDENTITIES as f64
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
