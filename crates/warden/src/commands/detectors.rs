//! `warden detectors`: every detector type with its parameters, defaults and meaning,
//! generated from the config types (their doc comments and serde defaults) and the series
//! defaults of `warden backtest --series`.

use anyhow::bail;
use clap::Args;
use warden_stream::backtest::series::{catalog, render_catalog};

#[derive(Args)]
pub struct DetectorsArgs {
    /// Only these detector types.
    #[arg(value_name = "TYPE")]
    pub types: Vec<String>,
    /// Output: `table` or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
}

pub fn run(args: &DetectorsArgs) -> anyhow::Result<()> {
    let all = catalog();
    for t in &args.types {
        if !all.iter().any(|d| &d.kind == t) {
            let known: Vec<&str> = all.iter().map(|d| d.kind.as_str()).collect();
            bail!("unknown detector type `{t}` (one of: {})", known.join(", "));
        }
    }
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|d| args.types.is_empty() || args.types.contains(&d.kind))
        .collect();
    match args.format.as_str() {
        "table" => print!("{}", render_catalog(&chosen)),
        "json" => println!("{}", serde_json::to_string_pretty(&chosen)?),
        other => bail!("unknown format `{other}` (table, json)"),
    }
    Ok(())
}
