//! Criterion benches of the gateway's request path.
//!
//! `full_stack/*` drive the real router in-process (every phase: request id, shedding,
//! header limits, path normalisation, route, API-key identity, quarantine lookup among 100k
//! live quarantines, three rate limits, RBAC with owner scoping, content-type and JSON Schema
//! validation, event emission to the embedded bus), and for `allowed` the proxy to a backend on
//! loopback; `direct_backend` is that same backend call without the gateway. The other groups
//! time one layer each; `quarantine` also with a writer thread applying decisions at full
//! speed, to show lookups do not stall behind updates.

#[path = "gateway_setup.rs"]
mod setup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tower::ServiceExt;
use warden_config::{PathCase, PathsConfig, RbacPolicy};
use warden_event::SubjectKind;
use warden_gateway::QuarantineSet;
use warden_gateway::path::normalise;
use warden_gateway::ratelimit::{LimitKey, ManualClock, RateLimits};
use warden_gateway::rbac::{Caller, Policy};

fn request(path: &str, body: &'static str) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("x-api-key", setup::KEY)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body))
        .expect("request");
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn full_stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (router, backend) = rt.block_on(async {
        let backend = setup::backend("127.0.0.1:0".parse().expect("addr")).await;
        let config = setup::config("127.0.0.1:0".parse().expect("addr"), backend, dir.path());
        let gw = setup::gateway(&config, 100_000).await;
        (gw.router(), backend)
    });
    let mut g = c.benchmark_group("full_stack");
    g.throughput(Throughput::Elements(1));
    for (name, path, body, want) in [
        ("allowed", setup::PATH, setup::BODY, 200),
        (
            "denied_rbac",
            "/api/devices/dev-2/telemetry",
            setup::BODY,
            403,
        ),
        ("schema_invalid", setup::PATH, r#"{"t":"hot"}"#, 400),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || request(path, body),
                |req| {
                    let router = router.clone();
                    async move {
                        let resp = router.oneshot(req).await.expect("infallible");
                        assert_eq!(resp.status(), want);
                        // Finish the body: that is when the event is emitted.
                        axum::body::to_bytes(resp.into_body(), 1 << 16)
                            .await
                            .expect("body")
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    let client = hyper_client();
    g.bench_function("direct_backend", |b| {
        b.to_async(&rt).iter_batched(
            || {
                Request::builder()
                    .method(Method::POST)
                    .uri(format!("http://{backend}{}", setup::PATH))
                    .header("content-type", "application/json")
                    .body(Body::from(setup::BODY))
                    .expect("request")
            },
            |req| {
                let client = client.clone();
                async move {
                    let resp = client.request(req).await.expect("backend");
                    axum::body::to_bytes(Body::new(resp.into_body()), 1 << 16)
                        .await
                        .expect("body")
                }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

type Client =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

fn hyper_client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

fn layers(c: &mut Criterion) {
    let mut g = c.benchmark_group("layer");
    g.throughput(Throughput::Elements(1));
    let paths = PathsConfig {
        case: PathCase::Sensitive,
        allow_semicolons: false,
    };
    g.bench_function("path_normalise", |b| {
        b.iter(|| normalise(std::hint::black_box("/api/devices/dev-1/telemetry"), &paths))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup::config(
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:1".parse().expect("addr"),
        dir.path(),
    );
    let policy_text = std::fs::read_to_string(dir.path().join("rbac.toml")).expect("policy file");
    let policy = Policy::compile(
        &RbacPolicy::from_toml(&policy_text).expect("policy"),
        PathCase::Sensitive,
    );
    let path = normalise(setup::PATH, &paths).expect("path");
    let caller = Caller {
        identity: Some("dev-1"),
        tenant: "acme",
        device_type: "temperature_sensor",
        roles: &[],
    };
    g.bench_function("rbac_evaluate", |b| {
        b.iter(|| policy.evaluate(&caller, &Method::POST, &path).allowed())
    });

    let clock = Arc::new(ManualClock::default());
    let limits = RateLimits::new(&config.limits, clock.clone());
    let ids: Vec<String> = (0..10_000).map(|i| format!("dev-{i}")).collect();
    let mut i = 0usize;
    g.bench_function("rate_limit_3_limits_10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            clock.set(i as u64 * 1_000);
            limits
                .check(&LimitKey {
                    identity: Some(&ids[i]),
                    tenant: "acme",
                    device_type: "temperature_sensor",
                    route: "devices",
                    ip: [127, 0, 0, 1].into(),
                    throttled: None,
                })
                .is_ok()
        })
    });
    g.finish();
}

fn quarantine(c: &mut Criterion) {
    let set = Arc::new(QuarantineSet::new());
    let now = warden_event::now_ns();
    for i in 0..100_000 {
        set.apply(&setup::quarantine(&format!("other-{i}"), now));
    }
    let mut g = c.benchmark_group("quarantine_100k");
    g.throughput(Throughput::Elements(1));
    let subjects = [
        (SubjectKind::Ip, "127.0.0.1"),
        (SubjectKind::Identity, "dev-1"),
        (SubjectKind::ApiKey, "k-dev-1"),
        (SubjectKind::Tenant, "acme"),
    ];
    g.bench_function("check_4_subjects", |b| {
        b.iter(|| set.check(now, std::hint::black_box(&subjects)))
    });
    // The same lookups while another thread applies decisions as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (set, stop) = (set.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                set.apply(&setup::quarantine(
                    &format!("other-{}", n % 200_000),
                    now + n as i64,
                ));
                n += 1;
            }
            n
        })
    };
    g.bench_function("check_4_subjects_with_writer", |b| {
        b.iter(|| set.check(now, std::hint::black_box(&subjects)))
    });
    stop.store(true, Ordering::Relaxed);
    let applied = writer.join().expect("writer");
    println!("writer applied {applied} decisions meanwhile");
    let mut n = 0u64;
    g.bench_function("apply", |b| {
        b.iter_batched(
            || {
                n += 1;
                setup::quarantine(&format!("new-{}", n % 200_000), now + n as i64)
            },
            |d| set.apply(&d),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, full_stack, layers, quarantine);
criterion_main!(benches);
