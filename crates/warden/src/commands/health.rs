//! `warden health`: probe a readiness endpoint and exit 0 when it answers 2xx — the container
//! `HEALTHCHECK` of the slim runtime image, which has no curl.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The endpoint to probe: the metrics listener's `/readyz` (gateway and processor).
    #[arg(long, default_value = "http://127.0.0.1:9464/readyz")]
    pub url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(args.timeout_ms.max(1)))
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("{} is not reachable", args.url))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body = body.trim();
    if !status.is_success() {
        bail!("{}: {status} {body}", args.url);
    }
    println!("{}: {status} {body}", args.url);
    Ok(())
}
