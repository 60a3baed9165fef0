//! `warden up`: everything in one process, optionally with the demo fleet.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use warden::demo::demo_config;
use warden::{Stack, StackExtras, StackParts, ensure_topics, make_bus};

use super::common::{config_source, load_config, load_pipeline, run_until_signal};
use super::sim_setup::{self, SimChoice};
use crate::UpArgs;

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    let base = load_config(args.config.as_deref(), None)?;
    let demo_seed = args.seed.unwrap_or(7);
    let devices = warden_sim::demo_keys(args.devices.unwrap_or(300).max(2), demo_seed);
    // `--scenario`: the simulated fleet `warden simulate` will send, resolved the same way.
    let sim = match &args.scenario {
        Some(scenario) => {
            let choice = SimChoice {
                scenario: scenario.clone(),
                seed: args.seed,
                devices: args.devices,
                rate: args.rate,
                duration_s: None,
            };
            let (s, seed) = sim_setup::resolve(&choice)?;
            let fleet = warden_sim::Fleet::new(&s, seed);
            Some((choice, s, seed, fleet))
        }
        None => None,
    };
    // The demo upstream and keys exist only for the demo: the built-in config, `--demo`, or a
    // simulated fleet (`--scenario`). A real config without them starts what it names, nothing
    // more.
    let demo = args.config.is_none() || args.demo;
    let upstream_addr = if demo || sim.is_some() {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the demo upstream")?;
        let addr = upstream.local_addr()?;
        tokio::spawn(warden_sim::demo_upstream(upstream));
        Some(addr)
    } else {
        None
    };
    // The demo's route and device keys are added to the built-in config, and to a given
    // config when `--demo` asks for the fleet.
    let mut config = match upstream_addr {
        Some(addr) if demo => demo_config(base, addr, &devices)?,
        _ => base,
    };
    if let (Some((_, _, _, fleet)), Some(addr)) = (&sim, upstream_addr) {
        fleet
            .configure(&mut config, addr)
            .map_err(|e| anyhow::anyhow!("simulated fleet: {e}"))?;
    }
    // Without configured operators, this run makes a one-time one and prints its token.
    let console_token = if config.dashboard.operators.is_empty() {
        Some(
            warden_dashboard::one_time_operator(&mut config.dashboard, "admin")
                .context("making a console token")?,
        )
    } else {
        None
    };
    // A real config's live settings reload from its file (on change and SIGHUP); the demo's
    // and a simulated fleet's are made at start, so those runs do not reload.
    let config_source = match (&args.config, demo || sim.is_some()) {
        (Some(path), false) => {
            // The one-time console operator is this run's, not the file's.
            let operators = config.dashboard.operators.clone();
            Some(config_source(path, None, move |c| {
                if c.dashboard.operators.is_empty() {
                    c.dashboard.operators.clone_from(&operators);
                }
            }))
        }
        _ => None,
    };
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    let archive = args
        .archive
        .clone()
        .map(|dir| {
            let c = warden_stream::archive::ArchiveConfig::new(dir);
            c.validate().map(|()| c).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .transpose()?;
    let stack = Stack::start_with(
        bus,
        &config,
        StackParts {
            gateway: true,
            processor: Some(pipeline),
            dashboard: true,
        },
        StackExtras {
            pipeline_file: args.pipeline.clone(),
            archive,
            config_source,
        },
    )
    .await?;
    println!("Warden is up ({:?} bus).", config.bus.kind);
    stack.announce();
    if let (Some(token), Some(a)) = (&console_token, stack.dashboard_addr) {
        println!(
            "console    token {token} (sign in at http://{a}/login; scripts: Authorization: Bearer)"
        );
    }
    if let (true, Some(addr)) = (demo, upstream_addr) {
        println!("demo upstream http://{addr}/");
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
    } else {
        print!("{}", describe_config(&config));
        if let Some(path) = &args.config
            && stack.live.is_some()
            && !demo
            && sim.is_none()
        {
            println!(
                "config     {} (routes, keys, limits, validation reload on change and SIGHUP)",
                path.display()
            );
        }
    }
    if let Some((choice, s, seed, fleet)) = &sim {
        println!("{}", sim_setup::describe(s, fleet, *seed));
        let tls = stack
            .gateway_tls_addr
            .map(|a| format!(" --gateway-tls https://{a}"))
            .unwrap_or_default();
        println!(
            "simulate: warden simulate {} --gateway http://{}{tls}",
            sim_setup::flags(choice, *seed),
            stack
                .gateway_addr
                .map(|a| a.to_string())
                .unwrap_or_default()
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
        seed: args.seed.unwrap_or(7),
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

/// What a real config loaded: its routes, identity sources and where its files are, so an
/// operator sees at start what the gateway will serve.
fn describe_config(config: &warden_config::WardenConfig) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "routes     {}", config.routes.len());
    for r in &config.routes {
        let _ = writeln!(
            out,
            "  {} {} -> {} (auth {:?}{})",
            r.name,
            r.prefix,
            r.upstream,
            r.auth,
            if r.require_mtls { ", mTLS" } else { "" }
        );
    }
    let mut sources = vec![format!("{} API keys", config.api_keys.len())];
    if let Some(reg) = &config.identity.registry {
        sources.push(format!("registry {}", reg.file.display()));
    }
    if let Some(jwt) = &config.identity.jwt {
        match (&jwt.jwks_file, &jwt.jwks_url) {
            (Some(f), _) => sources.push(format!("JWT (JWKS {})", f.display())),
            (None, Some(u)) => sources.push(format!("JWT (JWKS {u})")),
            (None, None) => sources.push("JWT (shared secret)".into()),
        }
    }
    if let Some(tls) = &config.gateway.tls
        && tls.client_auth.is_some()
    {
        sources.push("client certificates".into());
    }
    let _ = writeln!(out, "identity   {}", sources.join(", "));
    out
}
