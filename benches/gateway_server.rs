//! The processes `benches/gateway_load.sh` measures:
//!
//! - `warden-bench-server backend ADDR` — the backend (answers `ok`);
//! - `warden-bench-server gateway ADDR BACKEND` — a Warden gateway in front of it with every
//!   layer on (see `gateway_setup.rs`), 100k live quarantines, events to the embedded bus.
//!
//! Each prints `ready` once it listens, then serves until killed.
//!
//! The gateway runs one single-threaded Tokio runtime per core (`WARDEN_BENCH_THREADS`,
//! default: the number of CPUs), each accepting on its own `SO_REUSEPORT` socket bound to the
//! same address and serving the same gateway (one quarantine set, one set of rate-limit tables,
//! one event queue) — the process model nginx uses, which keeps a request, its proxy call and
//! its upstream connection on one thread. `WARDEN_BENCH_RUNTIME=multi` serves from one
//! work-stealing multi-threaded runtime instead (the `warden` binary's model).

// The server uses only part of the setup shared with the bench.
#[allow(dead_code)]
#[path = "gateway_setup.rs"]
mod setup;

use std::net::SocketAddr;

fn main() {
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
        _ => usage(),
    }
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A listener on `addr` that other threads can bind too (`SO_REUSEPORT`: the kernel spreads
/// new connections over them).
fn reuseport_listener(addr: SocketAddr) -> tokio::net::TcpListener {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.set_nodelay(true).expect("TCP_NODELAY");
    socket.bind(addr).expect("bind gateway");
    socket.listen(4096).expect("listen")
}

/// Serve one gateway from one current-thread runtime per core.
fn gateway_per_core(listen: SocketAddr, backend: SocketAddr) {
    let threads = std::env::var("WARDEN_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let main_rt = current_thread();
    let (router, gw) = main_rt.block_on(async {
        let config = setup::config(listen, backend, dir.path());
        let gw = setup::gateway(&config, 100_000).await;
        (gw.router(), gw)
    });
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    // Bind every socket before announcing `ready`.
    let sockets: Vec<std::net::TcpListener> = (0..threads)
        .map(|_| {
            let _guard = main_rt.enter();
            reuseport_listener(listen).into_std().expect("std listener")
        })
        .collect();
    let mut sockets = sockets.into_iter();
    let first = sockets.next().expect("one socket");
    for s in sockets {
        let app = app.clone();
        std::thread::spawn(move || {
            current_thread().block_on(async move {
                let l = tokio::net::TcpListener::from_std(s).expect("listener");
                axum::serve(l, app).await.expect("serve");
            });
        });
    }
    println!("ready");
    main_rt.block_on(async move {
        // The gateway's background tasks (event publisher, decision follower) run here.
        let _gw = gw;
        let l = tokio::net::TcpListener::from_std(first).expect("listener");
        axum::serve(l, app).await.expect("serve");
    });
}

fn usage() -> ! {
    eprintln!("usage: warden-bench-server backend ADDR | gateway ADDR BACKEND_ADDR");
    std::process::exit(2)
}
