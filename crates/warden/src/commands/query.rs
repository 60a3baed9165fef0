//! `warden query "SQL"`: DataFusion SQL over the event archive (table `events`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use warden_stream::query::{Format, query, render};

#[derive(Args)]
pub struct QueryArgs {
    /// The query, e.g. `select identity, count(*) from events where decision <> 'allowed'
    /// group by identity order by 2 desc limit 10`.
    pub sql: String,
    /// Archive directory (as written by `warden archive`).
    #[arg(long, default_value = "archive")]
    pub archive: PathBuf,
    /// Config whose `[at_rest]` keys decrypt a sealed archive (encryption at rest; also
    /// read from `WARDEN__AT_REST__*` variables).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output: `table`, `csv` or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let format: Format = args
        .format
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    super::common::use_archive_keys(args.config.as_deref())?;
    let batches = query(&args.archive, &args.sql)
        .await
        .with_context(|| format!("querying {}", args.archive.display()))?;
    let text = render(&batches, format)?;
    println!("{}", text.trim_end());
    Ok(())
}
