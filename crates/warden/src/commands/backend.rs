//! `warden backend`: the demo upstream on its own (the backend of the compose deployment and
//! of the simulator's scenarios): device telemetry and config routes, a versioned API, 200 for
//! anything else under `/api`, 404 elsewhere.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;

use super::common::shutdown_signal;

#[derive(Args, Debug)]
pub struct BackendArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5678")]
    pub listen: SocketAddr,
}

pub async fn run(args: BackendArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the backend to {}", args.listen))?;
    println!("backend    http://{}/", listener.local_addr()?);
    tokio::select! {
        r = warden_sim::demo_upstream(listener) => r.context("backend"),
        name = shutdown_signal() => {
            eprintln!("{name}: shutting down…");
            Ok(())
        }
    }
}
