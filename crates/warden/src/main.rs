//! `warden`: the one binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use warden::demo::{default_pipeline, demo_config};
use warden::{Stack, StackParts, ensure_topics, make_bus};
use warden_config::{BusKind, PipelineConfig, WardenConfig};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "IoT API security gateway with streaming anomaly detection"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Gateway + processor + dashboard in one process (embedded bus unless the config says kafka).
    Up(UpArgs),
    /// Run a gateway against Kafka.
    Gateway(PartArgs),
    /// Run a stream processor (and the dashboard) against Kafka.
    Processor(ProcessorArgs),
    /// Validate a config and/or pipeline files; prints every problem, exit code 2 if any.
    Check(CheckArgs),
    /// Print the SHA-256 of an API key, as `api_keys[].sha256` expects.
    HashKey { key: String },
}

#[derive(Args)]
struct UpArgs {
    /// Config file (default: built-in demo config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pipeline file (default: pipelines/default.toml, built in).
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Also run a simulated fleet with one device that starts flooding after a warm-up.
    #[arg(long)]
    demo: bool,
    /// Devices in the demo fleet.
    #[arg(long, default_value_t = 300)]
    devices: usize,
    /// Seconds of normal traffic before the demo flood starts.
    #[arg(long, default_value_t = 30)]
    flood_after: u64,
    /// Requests per second of the flooding device.
    #[arg(long, default_value_t = 50.0)]
    flood_rate: f64,
    /// Seed of the demo fleet.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Args)]
struct PartArgs {
    /// Config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (sets bus.kind = "kafka").
    #[arg(long, env = "WARDEN_BROKERS")]
    brokers: Option<String>,
}

#[derive(Args)]
struct ProcessorArgs {
    #[command(flatten)]
    part: PartArgs,
    /// Pipeline file (default: the built-in default pipeline).
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Do not serve the dashboard.
    #[arg(long)]
    no_dashboard: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pipeline files to check (repeatable).
    #[arg(long)]
    pipeline: Vec<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,warden=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Check(args) = &cli.command {
        return check(args);
    }
    if let Command::HashKey { key } = &cli.command {
        println!("{}", warden_config::hash_api_key(key));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(args).await,
            Command::Gateway(args) => gateway(args).await,
            Command::Processor(args) => processor(args).await,
            Command::Check(_) | Command::HashKey { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let mut problems = 0;
    if args.config.is_none() && args.pipeline.is_empty() {
        eprintln!("nothing to check: pass --config FILE and/or --pipeline FILE");
        return ExitCode::from(2);
    }
    if let Some(path) = &args.config {
        match WardenConfig::load(Some(path)) {
            Ok(_) => println!("{}: ok", path.display()),
            Err(errs) => {
                problems += errs.0.len();
                for e in errs.0 {
                    println!("{e}");
                }
            }
        }
    }
    for path in &args.pipeline {
        match PipelineConfig::load(path) {
            Ok(_) => println!("{}: ok", path.display()),
            Err(errs) => {
                problems += errs.0.len();
                for e in errs.0 {
                    println!("{e}");
                }
            }
        }
    }
    if problems > 0 {
        println!("{problems} problem(s)");
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn load_config(
    path: Option<&std::path::Path>,
    brokers: Option<String>,
) -> anyhow::Result<WardenConfig> {
    let mut config = WardenConfig::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(b) = brokers {
        config.bus.kind = BusKind::Kafka;
        config.bus.brokers = b;
    }
    Ok(config)
}

fn load_pipeline(path: Option<&std::path::Path>) -> anyhow::Result<PipelineConfig> {
    match path {
        Some(p) => PipelineConfig::load(p).map_err(|e| anyhow::anyhow!("{e}")),
        None => default_pipeline(),
    }
}

async fn run_until_signal(mut stack: Stack) -> anyhow::Result<()> {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shutting down…");
            stack.stop().await
        }
        e = stack.wait_failure() => Err(e),
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    let base = load_config(args.config.as_deref(), None)?;
    let devices = warden_sim::demo_keys(args.devices.max(2), args.seed);
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo upstream")?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(warden_sim::demo_upstream(upstream));
    // The demo's route and device keys are added to the built-in config, and to a given
    // config when `--demo` asks for the fleet.
    let config = if args.config.is_none() || args.demo {
        demo_config(base, upstream_addr, &devices)?
    } else {
        base
    };
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    let stack = Stack::start(
        bus,
        &config,
        StackParts {
            gateway: true,
            processor: Some(pipeline),
            dashboard: true,
        },
    )
    .await?;
    println!("Warden is up ({:?} bus).", config.bus.kind);
    stack.announce();
    println!("demo upstream http://{upstream_addr}/");
    if let Some(d) = devices.first() {
        println!(
            "try: curl -i -X POST -H 'X-Api-Key: {}' http://{}/api/devices/{}/telemetry -d '{{\"t\":21.5}}'",
            d.key,
            stack
                .gateway_addr
                .map(|a| a.to_string())
                .unwrap_or_default(),
            d.identity
        );
    }
    if args.demo {
        let gateway = format!("http://{}", stack.gateway_addr.context("gateway address")?);
        start_demo_fleet(gateway, devices, &args);
    }
    run_until_signal(stack).await
}

fn start_demo_fleet(gateway: String, devices: Vec<warden_sim::DemoDevice>, args: &UpArgs) {
    let flooder = devices.len() / 2;
    println!(
        "demo: {} devices reporting every ~5 s; {} starts flooding at {} req/s after {} s",
        devices.len(),
        devices[flooder].identity,
        args.flood_rate,
        args.flood_after
    );
    let config = warden_sim::FleetConfig {
        gateway,
        devices,
        period: Duration::from_secs(5),
        seed: args.seed,
        flood: Some(warden_sim::FloodConfig {
            device: flooder,
            start_after: Duration::from_secs(args.flood_after),
            rate_per_s: args.flood_rate,
        }),
    };
    let stats = Arc::new(warden_sim::FleetStats::default());
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let s = stats.clone();
    tokio::spawn(async move {
        let _keep = _stop_tx;
        warden_sim::run_fleet(config, s, stop_rx).await
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tick.tick().await;
            println!("demo: {}", stats.summary());
        }
    });
}

async fn gateway(args: PartArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), args.brokers)?;
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    let stack = Stack::start(
        bus,
        &config,
        StackParts {
            gateway: true,
            ..StackParts::default()
        },
    )
    .await?;
    stack.announce();
    run_until_signal(stack).await
}

async fn processor(args: ProcessorArgs) -> anyhow::Result<()> {
    let config = load_config(args.part.config.as_deref(), args.part.brokers)?;
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    let stack = Stack::start(
        bus,
        &config,
        StackParts {
            gateway: false,
            processor: Some(pipeline),
            dashboard: !args.no_dashboard,
        },
    )
    .await?;
    stack.announce();
    run_until_signal(stack).await
}
