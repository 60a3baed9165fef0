//! `warden gateway` and `warden processor`: the parts on their own, against Kafka.

use warden::{Stack, StackExtras, StackParts, ensure_topics, make_bus};

use super::common::{load_config, load_pipeline, run_until_signal};
use crate::{PartArgs, ProcessorArgs};

pub async fn gateway(args: PartArgs) -> anyhow::Result<()> {
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
        },
    )
    .await?;
    stack.announce();
    run_until_signal(stack).await
}
