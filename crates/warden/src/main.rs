//! `warden`: the one binary.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc, not the system allocator: a request's many short-lived buffers and futures are
/// allocated and freed on one core, which per-thread heaps serve without locks or glibc's
/// bin consolidation (load bench and figures: docs/BENCHMARKS.md, "Gateway under load").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "IoT API security gateway with streaming anomaly detection"
)]
struct Cli {
    /// Log format on stderr: `text` (colours only on a terminal) or `json` (one object per
    /// line, for log shippers).
    #[arg(long, global = true, env = "WARDEN_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn,warden=info`).
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,warden=info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Gateway + processor + dashboard in one process (embedded bus unless the config says kafka).
    Up(UpArgs),
    /// Run a gateway against Kafka.
    Gateway(GatewayArgs),
    /// Run a stream processor (and the dashboard) against Kafka.
    Processor(ProcessorArgs),
    /// Validate a config and/or pipeline files; prints every problem, exit code 2 if any.
    Check(CheckArgs),
    /// Print the SHA-256 of an API key, as `api_keys[].sha256` expects.
    HashKey { key: String },
    /// Play a scenario (a simulated fleet with labelled attacks) through a gateway, or
    /// accelerated to Parquet; writes the labels for `warden eval`.
    Simulate(commands::simulate::SimulateArgs),
    /// Evaluate simulated runs: their labels joined with the alerts and quarantines produced.
    Eval(commands::eval::EvalArgs),
    /// Archive events from the bus into hourly Parquet files (for `query` and `backtest`).
    Archive(commands::archive::ArchiveArgs),
    /// Replay archived events through a pipeline, or score metric series (a CSV file or a
    /// folder of them) with detectors.
    Backtest(commands::backtest::BacktestArgs),
    /// Fit an ML detector's model (k-means, Gaussian mixture, one-class SVM, isolation
    /// forest) on archived benign traffic and calibrate it for a target false-positive rate.
    Train(commands::train::TrainArgs),
    /// List every detector type with its parameters, defaults and meaning.
    Detectors(commands::detectors::DetectorsArgs),
    /// Run DataFusion SQL over the event archive (table `events`).
    Query(commands::query::QueryArgs),
    /// Print the request events on a Kafka bus as JSON lines (compact or JSON on the bus).
    Events(commands::events::EventsArgs),
    /// Create the topics of a Kafka deployment (events, decisions, alerts, checkpoints) with
    /// their partitions, compaction and retention; print them.
    Topics(commands::topics::TopicsArgs),
    /// Write a demo PKI: device CA, gateway server certificate, device and operator client
    /// certificates, and the registry of those devices (kept if already there).
    Certs(commands::certs::CertsArgs),
    /// Serve the demo backend (what the simulated fleet's routes proxy to).
    Backend(commands::backend::BackendArgs),
    /// Probe a readiness endpoint (`/readyz`); exit code 0 when it answers 2xx.
    Health(commands::health::HealthArgs),
    /// The hash-chained audit log of decisions and console actions (`[audit]`).
    Audit(commands::audit::AuditArgs),
}

#[derive(Args)]
pub struct UpArgs {
    /// Config file (default: built-in demo config).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also archive every event into hourly Parquet files in this directory (for
    /// `warden query` and `warden backtest`).
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Pipeline file (default: pipelines/default.toml, built in).
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Also run a simulated fleet with one device that starts flooding after a warm-up.
    #[arg(long)]
    pub demo: bool,
    /// Devices in the demo fleet (default 300), or in the scenario's fleet with --scenario.
    #[arg(long)]
    pub devices: Option<usize>,
    /// Seconds of normal traffic before the demo flood starts.
    #[arg(long, default_value_t = 30)]
    pub flood_after: u64,
    /// Requests per second of the flooding device.
    #[arg(long, default_value_t = 50.0)]
    pub flood_rate: f64,
    /// Seed of the demo fleet (default 7), or of the scenario's fleet with --scenario.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Register the keys and routes of this scenario's simulated fleet (built-in name or
    /// file), for `warden simulate` with the same --scenario, --seed and --devices/--rate.
    #[arg(long)]
    pub scenario: Option<String>,
    /// With --scenario: size the fleet to this mean request rate (as `warden simulate`).
    #[arg(long, requires = "scenario")]
    pub rate: Option<f64>,
}

#[derive(Args)]
pub struct PartArgs {
    /// Config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (sets bus.kind = "kafka").
    #[arg(long, env = "WARDEN_BROKERS")]
    pub brokers: Option<String>,
}

#[derive(Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub part: PartArgs,
    /// Also register the keys, certificates and routes of this scenario's simulated fleet
    /// (built-in name or file), for `warden simulate` with the same --scenario, --seed and
    /// --devices/--rate: a gateway for demos and rehearsals, never for real devices.
    #[arg(long, requires = "scenario_upstream")]
    pub scenario: Option<String>,
    /// With --scenario: the simulated backend the fleet's routes proxy to (`host:port`).
    #[arg(long, requires = "scenario")]
    pub scenario_upstream: Option<String>,
    /// With --scenario: the fleet's seed.
    #[arg(long, requires = "scenario")]
    pub seed: Option<u64>,
    /// With --scenario: devices in the fleet.
    #[arg(long, requires = "scenario")]
    pub devices: Option<usize>,
    /// With --scenario: size the fleet to this mean request rate.
    #[arg(long, requires = "scenario", conflicts_with = "devices")]
    pub rate: Option<f64>,
}

#[derive(Args)]
pub struct ProcessorArgs {
    #[command(flatten)]
    pub part: PartArgs,
    /// Pipeline file (default: the built-in default pipeline).
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Do not serve the dashboard.
    #[arg(long)]
    pub no_dashboard: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Pipeline files to check (repeatable).
    #[arg(long)]
    pub pipeline: Vec<PathBuf>,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (every client connection holds a
/// descriptor; distributions often start services with 1024) and report it: the gateway
/// derives its connection cap from it.
fn raise_nofile_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => tracing::info!(
            before = before.unwrap_or(0),
            now,
            "File-descriptor limit (RLIMIT_NOFILE) raised."
        ),
        Err(e) => tracing::warn!(
            error = %e,
            limit = before.unwrap_or(0),
            "Cannot raise the file-descriptor limit (RLIMIT_NOFILE)."
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    if let Command::Check(args) = &cli.command {
        return commands::check::run(args);
    }
    if let Command::Detectors(args) = &cli.command {
        return match commands::detectors::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Certs(args) = &cli.command {
        return match commands::certs::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Audit(args) = &cli.command {
        return commands::audit::run(args);
    }
    if let Command::HashKey { key } = &cli.command {
        println!("{}", warden_config::hash_api_key(key));
        return ExitCode::SUCCESS;
    }
    raise_nofile_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => commands::up::run(args).await,
            Command::Gateway(args) => commands::parts::gateway(args).await,
            Command::Processor(args) => commands::parts::processor(args).await,
            Command::Simulate(args) => commands::simulate::run(args).await,
            Command::Eval(args) => return commands::eval::run(args).await,
            Command::Archive(args) => commands::archive::run(args).await,
            Command::Backtest(args) => commands::backtest::run(args).await,
            Command::Train(args) => commands::train::run(args).await,
            Command::Query(args) => commands::query::run(args).await,
            Command::Events(args) => commands::events::run(args).await,
            Command::Topics(args) => commands::topics::run(args).await,
            Command::Health(args) => commands::health::run(args).await,
            Command::Backend(args) => commands::backend::run(args).await,
            Command::Check(_)
            | Command::HashKey { .. }
            | Command::Detectors(_)
            | Command::Audit(_)
            | Command::Certs(_) => Ok(()),
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
