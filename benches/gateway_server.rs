//! The processes `benches/gateway_load.sh` measures:
//!
//! - `warden-bench-server backend ADDR` — the backend (answers `ok`);
//! - `warden-bench-server gateway ADDR BACKEND` — a Warden gateway in front of it with every
//!   layer on (see `gateway_setup.rs`), 100k live quarantines, events to the embedded bus.
//!
//! Each prints `ready` once it listens, then serves until killed.

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("backend") => rt.block_on(async {
            setup::backend(addr(1)).await;
            println!("ready");
            std::future::pending::<()>().await;
        }),
        Some("gateway") => rt.block_on(async {
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
        }),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: warden-bench-server backend ADDR | gateway ADDR BACKEND_ADDR");
    std::process::exit(2)
}
