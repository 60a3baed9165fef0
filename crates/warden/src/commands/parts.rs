//! `warden gateway` and `warden processor`: the parts on their own, against Kafka.

use warden::{Stack, StackExtras, StackParts, ensure_topics, make_bus};

use super::common::{config_source, load_config, load_pipeline, run_until_signal};
use super::sim_setup::{self, SimChoice};
use crate::{GatewayArgs, ProcessorArgs};

pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.part.config.as_deref(), args.part.brokers.clone())?;
    // The live settings reload from the file, unless a simulated fleet was added to them.
    let config_source = match (&args.part.config, &args.scenario_upstream) {
        (Some(path), None) => Some(config_source(path, args.part.brokers.clone(), |_| {})),
        _ => None,
    };
    if let (Some(scenario), Some(upstream)) = (&args.scenario, &args.scenario_upstream) {
        let choice = SimChoice {
            scenario: scenario.clone(),
            seed: args.seed,
            devices: args.devices,
            rate: args.rate,
            duration_s: None,
        };
        let (s, seed) = sim_setup::resolve(&choice)?;
        let fleet = warden_sim::Fleet::new(&s, seed);
        fleet
            .configure(&mut config, upstream)
            .map_err(|e| anyhow::anyhow!("simulated fleet: {e}"))?;
        println!("{}", sim_setup::describe(&s, &fleet, seed));
        println!(
            "simulate: warden simulate {} --gateway http://<this gateway>",
            sim_setup::flags(&choice, seed)
        );
    }
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    let stack = Stack::start_with(
        bus,
        &config,
        StackParts {
            gateway: true,
            ..StackParts::default()
        },
        StackExtras {
            config_source,
            ..StackExtras::default()
        },
    )
    .await?;
    stack.announce();
    run_until_signal(stack).await
}

pub async fn processor(args: ProcessorArgs) -> anyhow::Result<()> {
    let config = load_config(args.part.config.as_deref(), args.part.brokers)?;
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    let bus = make_bus(&config)?;
    ensure_topics(&*bus, &config).await?;
    let stack = Stack::start_with(
        bus,
        &config,
        StackParts {
            gateway: false,
            processor: Some(pipeline),
            dashboard: !args.no_dashboard,
        },
        StackExtras {
            pipeline_file: args.pipeline.clone(),
            archive: None,
            config_source: None,
        },
    )
    .await?;
    stack.announce();
    run_until_signal(stack).await
}
