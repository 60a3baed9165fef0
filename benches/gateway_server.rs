//! The processes `benches/gateway_load.sh` measures:
//!
//! - `warden-bench-server backend ADDR` — the backend (answers `ok`);
//! - `warden-bench-server gateway ADDR BACKEND` — a Warden gateway in front of it with every
//!   layer on (see `gateway_setup.rs`), 100k live quarantines, events to the embedded bus;
//! - `warden-bench-server proxy ADDR BACKEND` — the floor under the gateway: the same stack
//!   (hyper-util's connection builder and an axum router, the gateway's per-thread upstream
//!   pool, one runtime per core) forwarding every request as it is, with no layer, no event
//!   and no header handling.
//!
//! Each prints `ready` once it listens, then serves until killed. `WARDEN_BENCH_LOG=1` installs
//! the `warden` binary's log subscriber and default filter first.
//!
//! The gateway runs one single-threaded Tokio runtime per core (`WARDEN_BENCH_THREADS`,
//! default: the number of CPUs), all accepting on the same listening socket and serving the
//! same gateway (one quarantine set, one set of rate-limit tables, one event queue) — the
//! process model nginx uses, which keeps a request, its proxy call and its upstream
//! connection on one thread; it is what the `warden` binary runs (`gateway.workers`).
//! `WARDEN_BENCH_RUNTIME=multi` serves from one work-stealing multi-threaded runtime
//! instead.

// The server uses only part of the setup shared with the bench.
#[allow(dead_code)]
#[path = "gateway_setup.rs"]
mod setup;

use std::net::SocketAddr;

// As the `warden` binary (`crates/warden/src/main.rs`); `--features system-alloc` builds the
// same server on glibc's allocator, to measure the difference.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `WARDEN_BENCH_LOG=1`: log as the `warden` binary does (its subscriber and default filter),
    // so the request span and the log filter are paid as in production.
    if std::env::var("WARDEN_BENCH_LOG").as_deref() == Ok("1") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,warden=info"))
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = |i: usize| -> SocketAddr {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match args.first().map(String::as_str) {
        Some("backend") => multi_thread().block_on(async {
            setup::backend(addr(1)).await;
            println!("ready");
            std::future::pending::<()>().await;
        }),
        Some("gateway") => {
            let per_core = std::env::var("WARDEN_BENCH_RUNTIME").as_deref() != Ok("multi");
            if per_core {
                gateway_per_core(addr(1), addr(2));
            } else {
                multi_thread().block_on(async {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let config = setup::config(addr(1), addr(2), dir.path());
                    let gw = setup::gateway(&config, 100_000).await;
                    let listener = tokio::net::TcpListener::bind(config.gateway.listen)
                        .await
                        .expect("bind gateway");
                    println!("ready");
                    gw.serve(listener, std::future::pending())
                        .await
                        .expect("serve");
                });
            }
        }
        Some("proxy") => plain_proxy(addr(1), addr(2)),
        _ => usage(),
    }
}

/// A plain reverse proxy on the gateway's stack, served like the gateway: one single-threaded
/// runtime per CPU, all accepting on one listener, connections served by hyper-util's HTTP/1 +
/// HTTP/2 builder through an axum router, upstream calls on the gateway's own per-thread
/// connection pool (`warden_gateway::upstream`).
fn plain_proxy(listen: SocketAddr, backend: SocketAddr) {
    use axum::extract::Request;
    use axum::http::uri::Authority;
    use axum::http::{HeaderValue, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    async fn forward(backend: Authority, host: HeaderValue, req: Request) -> Response {
        let (mut parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let Ok(uri) = target.parse::<Uri>() else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        parts.uri = uri;
        parts.headers.insert(header::HOST, host);
        match warden_gateway::upstream::send(&backend, None, Request::from_parts(parts, body)).await
        {
            Ok(resp) => resp,
            Err(_) => StatusCode::BAD_GATEWAY.into_response(),
        }
    }
    let authority: Authority = backend.to_string().parse().expect("authority");
    let host = HeaderValue::from_str(authority.as_str()).expect("host");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let listener = std::net::TcpListener::bind(listen).expect("bind proxy");
    listener.set_nonblocking(true).expect("non-blocking");
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let listener = listener.try_clone().expect("listener");
            let (authority, host) = (authority.clone(), host.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let app = axum::Router::new().fallback(move |req: Request| {
                        forward(authority.clone(), host.clone(), req)
                    });
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = tcp.set_nodelay(true);
                        let service = TowerToHyperService::new(app.clone());
                        tokio::spawn(async move {
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(tcp), service)
                                    .await;
                        });
                    }
                });
            })
        })
        .collect();
    println!("ready");
    for w in workers {
        let _ = w.join();
    }
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Serve the gateway the way the `warden` binary does (`gateway.workers`): one
/// single-threaded runtime per serving thread (`WARDEN_BENCH_THREADS`, default: one per CPU)
/// accepting on the same listener, background tasks on the main runtime.
fn gateway_per_core(listen: SocketAddr, backend: SocketAddr) {
    let threads = std::env::var("WARDEN_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    multi_thread().block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = setup::config(listen, backend, dir.path());
        let gw = setup::gateway(&config, 100_000).await;
        let listener = std::net::TcpListener::bind(config.gateway.listen).expect("bind gateway");
        listener.set_nonblocking(true).expect("non-blocking");
        println!("ready");
        gw.serve_on_threads(listener, None, threads, std::future::pending())
            .await
            .expect("serve");
    });
}

fn usage() -> ! {
    eprintln!(
        "usage: warden-bench-server backend ADDR | gateway ADDR BACKEND_ADDR | proxy ADDR BACKEND_ADDR"
    );
    std::process::exit(2)
}
