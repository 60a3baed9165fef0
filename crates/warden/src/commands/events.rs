//! `warden events`: print the request events on the bus as JSON lines, whichever form the
//! gateways wrote them in (`bus.event_format`: compact or JSON) — the readable view of a topic
//! that generic Kafka tools show as binary.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use warden::make_bus;
use warden_bus::Message;
use warden_event::RequestEvent;

use super::common::load_config;

#[derive(Args)]
pub struct EventsArgs {
    /// Config file (bus and topics).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (sets bus.kind = "kafka").
    #[arg(long, env = "WARDEN_BROKERS")]
    pub brokers: Option<String>,
    /// Stop after printing this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Keep printing new events (otherwise stop at the topic's end as of the start).
    #[arg(long)]
    pub follow: bool,
}

/// Prints events until the limit; unreadable payloads are reported on stderr and skipped.
struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    printed: u64,
    limit: u64,
    error: Option<std::io::Error>,
}

impl Printer {
    fn done(&self) -> bool {
        self.printed >= self.limit || self.error.is_some()
    }

    fn print(&mut self, m: &Message) {
        if self.done() {
            return;
        }
        match warden_event::decode::<RequestEvent>(&m.payload) {
            Ok(e) => {
                let line = serde_json::to_string(&e).unwrap_or_default();
                if let Err(err) = writeln!(self.out, "{line}") {
                    self.error = Some(err);
                }
                self.printed += 1;
            }
            Err(err) => eprintln!(
                "partition {} offset {}: unreadable event: {err}",
                m.partition, m.offset
            ),
        }
    }
}

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref(), args.brokers)?;
    let bus = make_bus(&config)?;
    anyhow::ensure!(
        bus.durable(),
        "`warden events` reads the events topic of a Kafka bus: pass --brokers or a config \
         with bus.kind = \"kafka\" (the embedded bus lives inside its own process)"
    );
    let topic = &config.bus.topics.events;
    let mut p = Printer {
        out: std::io::BufWriter::new(std::io::stdout()),
        printed: 0,
        limit: args.limit.unwrap_or(u64::MAX),
        error: None,
    };
    let mut reader =
        warden_bus::read_to_end(&*bus, topic, Duration::from_secs(120), |m| p.print(m))
            .await
            .with_context(|| format!("reading {topic}"))?;
    while args.follow && !p.done() {
        p.out.flush()?;
        for m in reader.poll(1024, Duration::from_millis(500)).await? {
            p.print(&m);
        }
    }
    if let Some(e) = p.error {
        // A closed pipe (`| head`) ends the listing; anything else is an error.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
        return Ok(());
    }
    match p.out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
