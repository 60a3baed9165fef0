//! Start and stop a set of components sharing one bus.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;
use warden_bus::{Bus, EmbeddedBus, EmbeddedConfig, KafkaBus, KafkaConfig, TopicSpec};
use warden_config::{BusKind, PipelineConfig, WardenConfig};
use warden_event::audit::{AuditKey, AuditLog};
use warden_gateway::{EmitStats, Gateway, QuarantineSet};
use warden_stream::{Processor, ProcessorStats};

/// The bus a config asks for.
pub fn make_bus(config: &WardenConfig) -> anyhow::Result<Arc<dyn Bus>> {
    Ok(match config.bus.kind {
        BusKind::Embedded => Arc::new(EmbeddedBus::new(EmbeddedConfig {
            default_partitions: config.bus.partitions,
            ..EmbeddedConfig::default()
        })),
        BusKind::Kafka => {
            let mut k = KafkaConfig::new(config.bus.brokers.clone());
            k.client_id = format!("warden-{}", config.gateway.id);
            k.create_topics = config.bus.create_topics;
            k.replication_factor = config.bus.replication_factor;
            k.extra = config.bus.kafka.clone();
            Arc::new(KafkaBus::connect(k).context("connecting to Kafka")?)
        }
    })
}

/// Open the audit log `[audit]` names, with its key if it has one.
fn open_audit(config: &warden_config::AuditConfig) -> anyhow::Result<Arc<AuditLog>> {
    let key = match &config.key_file {
        Some(k) => Some(
            AuditKey::from_file(Path::new(k))
                .map_err(|e| anyhow::anyhow!("audit.key_file: {e}"))?,
        ),
        None => None,
    };
    let log = AuditLog::open(Path::new(&config.path), key).context("opening the audit log")?;
    info!(path = %config.path, records = log.last_seq(), keyed = config.key_file.is_some(), "Audit log open.");
    Ok(Arc::new(log))
}

/// Create (or check) Warden's three topics.
pub async fn ensure_topics(bus: &dyn Bus, config: &WardenConfig) -> anyhow::Result<()> {
    bus.ensure_topics(&topic_specs(config))
        .await
        .context("creating or checking topics")
}

/// The topics a deployment uses, as Warden creates them: events and alerts with the
/// configured retention, decisions compacted (all with `bus.partitions` partitions), and the
/// processors' checkpoints (compacted, one partition).
pub fn topic_specs(config: &WardenConfig) -> Vec<TopicSpec> {
    let t = &config.bus.topics;
    let n = config.bus.partitions;
    let hours = |h: u32| (h > 0).then(|| i64::from(h) * 3_600_000);
    vec![
        TopicSpec {
            name: t.events.clone(),
            partitions: n,
            compacted: false,
            retention_ms: hours(config.bus.events_retention_hours),
        },
        TopicSpec {
            name: t.decisions.clone(),
            partitions: n,
            compacted: true,
            retention_ms: None,
        },
        TopicSpec {
            name: t.alerts.clone(),
            partitions: n,
            compacted: false,
            retention_ms: hours(config.bus.alerts_retention_hours),
        },
        TopicSpec {
            name: warden_stream::checkpoint::checkpoint_topic(&t.events),
            partitions: 1,
            compacted: true,
            retention_ms: None,
        },
    ]
}

/// Which components to run.
#[derive(Debug, Clone, Default)]
pub struct StackParts {
    pub gateway: bool,
    /// The pipeline the processor runs (`None`: no processor).
    pub processor: Option<PipelineConfig>,
    pub dashboard: bool,
}

/// Optional wiring of [`Stack::start_with`].
#[derive(Debug, Clone, Default)]
pub struct StackExtras {
    /// The file the processor's pipeline came from: watched and hot-reloaded when it changes
    /// (an invalid change is refused and reported; the running pipeline stays).
    pub pipeline_file: Option<std::path::PathBuf>,
    /// Archive every event into Parquet (its own consumer group).
    pub archive: Option<warden_stream::archive::ArchiveConfig>,
    /// The config file the gateway reloads its live settings from (routes, API keys, limits,
    /// validation) when it changes and on SIGHUP.
    pub config_source: Option<ConfigSource>,
}

/// A config file and how to read it again (the same layers and overrides as at start).
#[derive(Clone)]
pub struct ConfigSource {
    pub file: std::path::PathBuf,
    pub loader: warden_gateway::ConfigLoader,
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Running components. Dropping it without [`Stack::stop`] aborts them.
pub struct Stack {
    pub gateway_addr: Option<SocketAddr>,
    /// The gateway's TLS listener, when `gateway.tls` is configured.
    pub gateway_tls_addr: Option<SocketAddr>,
    /// The gateway's MQTT listeners (`gateway.mqtt.listen`, `gateway.mqtt.tls_listen`).
    pub mqtt_addr: Option<SocketAddr>,
    pub mqtt_tls_addr: Option<SocketAddr>,
    /// The gateway's CoAP listener (`gateway.coap.listen`, UDP).
    pub coap_addr: Option<SocketAddr>,
    /// The gateway's CoAP-over-DTLS listener (`gateway.coap.dtls_listen`, UDP).
    pub coaps_addr: Option<SocketAddr>,
    /// Reload and inspect the gateway's identity sources.
    pub identity: Option<warden_gateway::IdentityHandle>,
    /// The gateway's live settings (routes, API keys, limits, validation).
    pub live: Option<warden_gateway::LiveConfig>,
    /// The gateway's admin API listener, when `admin.listen` is configured.
    pub admin_addr: Option<SocketAddr>,
    /// The admin API serves HTTPS (`[admin.tls]`).
    pub admin_tls: bool,
    pub dashboard_addr: Option<SocketAddr>,
    /// The Prometheus metrics listener, when `metrics.listen` is configured.
    pub metrics_addr: Option<SocketAddr>,
    pub quarantine: Option<Arc<QuarantineSet>>,
    pub emit_stats: Option<Arc<EmitStats>>,
    /// The gateway's client-connection counters (admitted, evicted, refused, timed out).
    pub conn_stats: Option<Arc<warden_gateway::ConnStats>>,
    pub processor_stats: Option<Arc<ProcessorStats>>,
    stop: watch::Sender<bool>,
    /// Stops the event consumers (processor, archive), once the producers have drained.
    stop_consumers: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

/// Tasks that consume events: stopped after everything that produces them.
const CONSUMERS: [&str; 2] = ["processor", "archive"];

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Stack {
    /// Start the parts on `bus` (topics must exist). Listeners bind the config's addresses
    /// (port 0 picks a free port; the bound addresses are in the returned stack). The gateway
    /// opens its listener only after it has loaded every live decision.
    pub async fn start(
        bus: Arc<dyn Bus>,
        config: &WardenConfig,
        parts: StackParts,
    ) -> anyhow::Result<Self> {
        Self::start_with(bus, config, parts, StackExtras::default()).await
    }

    /// [`Stack::start`] with optional wiring (pipeline hot reload, event archive).
    pub async fn start_with(
        bus: Arc<dyn Bus>,
        config: &WardenConfig,
        parts: StackParts,
        extras: StackExtras,
    ) -> anyhow::Result<Self> {
        let (stop, rx) = watch::channel(false);
        let (stop_consumers, consumers_rx) = watch::channel(false);
        let mut stack = Stack {
            gateway_addr: None,
            gateway_tls_addr: None,
            mqtt_addr: None,
            mqtt_tls_addr: None,
            coap_addr: None,
            coaps_addr: None,
            identity: None,
            live: None,
            admin_addr: None,
            admin_tls: false,
            dashboard_addr: None,
            metrics_addr: None,
            quarantine: None,
            emit_stats: None,
            conn_stats: None,
            processor_stats: None,
            stop,
            stop_consumers,
            tasks: Vec::new(),
        };
        let pipeline_name = parts
            .processor
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        // One writer for the processor and the console of this process (one per file).
        let audit = match &config.audit {
            Some(a) if parts.processor.is_some() || parts.dashboard || parts.gateway => {
                Some(open_audit(a)?)
            }
            _ => None,
        };
        if let Some(pipeline) = parts.processor {
            let mut processor = Processor::new(pipeline, config.bus.topics.clone())
                .map_err(|e| anyhow::anyhow!("pipeline: {e}"))?;
            if let Some(log) = &audit {
                processor = processor.with_audit(log.clone());
            }
            if let Some(path) = extras.pipeline_file {
                processor = processor.with_reload(path, std::time::Duration::from_secs(1));
            }
            stack.processor_stats = Some(processor.stats());
            let bus = bus.clone();
            let shutdown = stopped(consumers_rx.clone());
            stack.tasks.push((
                "processor",
                tokio::spawn(
                    async move { processor.run(bus, shutdown).await.context("processor") },
                ),
            ));
        }
        if let Some(archive) = extras.archive {
            let keys = config
                .at_rest
                .write_keyring()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .map(Arc::new);
            let archiver =
                warden_stream::archive::Archiver::new(archive, config.bus.topics.events.clone())
                    .with_keys(keys);
            let bus = bus.clone();
            let shutdown = stopped(consumers_rx.clone());
            stack.tasks.push((
                "archive",
                tokio::spawn(async move { archiver.run(bus, shutdown).await.context("archive") }),
            ));
        }
        let mut sink_stats = None;
        if parts.dashboard {
            let mut dashboard =
                warden_dashboard::Dashboard::start_with_audit(config, bus.clone(), audit.clone())
                    .await
                    .context("starting the dashboard")?;
            // The processor in this process reports its pipeline (and refused reloads) there.
            if let Some(stats) = stack.processor_stats.clone() {
                dashboard = dashboard
                    .with_scores(Arc::new(ProcessorScores(stats.scores.clone())))
                    .with_status(Arc::new(move || processor_health(&stats)));
            }
            let listener = TcpListener::bind(config.dashboard.listen)
                .await
                .with_context(|| format!("binding the dashboard to {}", config.dashboard.listen))?;
            stack.dashboard_addr = Some(listener.local_addr()?);
            sink_stats = Some(dashboard.sink_stats());
            let shutdown = stopped(rx.clone());
            stack.tasks.push((
                "dashboard",
                tokio::spawn(async move {
                    dashboard
                        .serve(listener, shutdown)
                        .await
                        .context("dashboard")
                }),
            ));
        }
        let mut tls_stats = Vec::new();
        if parts.gateway {
            let mut gateway = Gateway::start(config, bus.clone())
                .await
                .context("starting the gateway")?;
            if let Some(source) = extras.config_source {
                gateway.watch_config(
                    source.file.clone(),
                    source.loader,
                    std::time::Duration::from_millis(config.identity.reload_interval_ms),
                );
                let live = gateway.live().clone();
                stack.tasks.push((
                    "sighup",
                    tokio::spawn(reload_on_sighup(live, source.file, stopped(rx.clone()))),
                ));
            }
            stack.live = Some(gateway.live().clone());
            if let Some(log) = &audit {
                gateway.admin().record_in(log.clone());
            }
            stack.quarantine = Some(gateway.quarantine().clone());
            stack.emit_stats = Some(gateway.emitter().stats().clone());
            stack.conn_stats = Some(gateway.conn_stats());
            let listener = TcpListener::bind(config.gateway.listen)
                .await
                .with_context(|| format!("binding the gateway to {}", config.gateway.listen))?;
            stack.gateway_addr = Some(listener.local_addr()?);
            stack.identity = Some(gateway.identity().clone());
            tls_stats.extend(gateway.identity().tls_stats().map(|s| ("gateway", s)));
            tls_stats.extend(gateway.admin().tls_stats().map(|s| ("admin", s)));
            stack.admin_tls = gateway.admin().is_tls();
            let tls_listener = match &config.gateway.tls {
                Some(tls) => {
                    let l = TcpListener::bind(tls.listen).await.with_context(|| {
                        format!("binding the gateway's TLS listener to {}", tls.listen)
                    })?;
                    stack.gateway_tls_addr = Some(l.local_addr()?);
                    Some(l)
                }
                None => None,
            };
            if let Some(addr) = config.admin.listen {
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the admin API to {addr}"))?;
                stack.admin_addr = Some(l.local_addr()?);
                let admin = gateway.admin().clone();
                let shutdown = stopped(rx.clone());
                stack.tasks.push((
                    "admin",
                    tokio::spawn(
                        async move { admin.serve(l, shutdown).await.context("admin API") },
                    ),
                ));
            }
            let mqtt = &config.gateway.mqtt;
            if mqtt.enabled() {
                let plain = match mqtt.listen {
                    Some(a) => Some(
                        TcpListener::bind(a)
                            .await
                            .with_context(|| format!("binding the MQTT listener to {a}"))?,
                    ),
                    None => None,
                };
                let tls = match mqtt.tls_listen {
                    Some(a) => Some(
                        TcpListener::bind(a)
                            .await
                            .with_context(|| format!("binding the MQTT TLS listener to {a}"))?,
                    ),
                    None => None,
                };
                stack.mqtt_addr = plain.as_ref().map(|l| l.local_addr()).transpose()?;
                stack.mqtt_tls_addr = tls.as_ref().map(|l| l.local_addr()).transpose()?;
                let server = gateway.mqtt();
                let shutdown = stopped(rx.clone());
                stack.tasks.push((
                    "mqtt",
                    tokio::spawn(async move {
                        server.serve(plain, tls, shutdown).await.context("MQTT")
                    }),
                ));
            }
            if let Some(a) = config.gateway.coap.listen {
                let socket = tokio::net::UdpSocket::bind(a)
                    .await
                    .with_context(|| format!("binding the CoAP listener to {a}"))?;
                stack.coap_addr = Some(socket.local_addr()?);
                let server = gateway.coap(&config.gateway.coap);
                let shutdown = stopped(rx.clone());
                stack.tasks.push((
                    "coap",
                    tokio::spawn(async move {
                        server.serve(socket, shutdown).await;
                        Ok(())
                    }),
                ));
            }
            if let Some(a) = config.gateway.coap.dtls_listen {
                let dtls = gateway
                    .coap(&config.gateway.coap)
                    .bind_dtls(a)
                    .await
                    .with_context(|| format!("binding the CoAP DTLS listener to {a}"))?;
                stack.coaps_addr = Some(dtls.local_addr());
                let shutdown = stopped(rx.clone());
                stack.tasks.push((
                    "coaps",
                    tokio::spawn(async move {
                        dtls.serve(shutdown).await;
                        Ok(())
                    }),
                ));
            }
            let shutdown = stopped(rx.clone());
            let threads = match config.gateway.workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            };
            let listener = listener.into_std()?;
            let tls_listener = tls_listener.map(|l| l.into_std()).transpose()?;
            stack.tasks.push((
                "gateway",
                tokio::spawn(async move {
                    gateway
                        .serve_on_threads(listener, tls_listener, threads, shutdown)
                        .await
                        .context("gateway")
                }),
            ));
        }
        if let Some(addr) = config.metrics.listen {
            let listener = crate::metrics::bind(addr)
                .await
                .with_context(|| format!("binding metrics to {addr}"))?;
            stack.metrics_addr = Some(listener.local_addr()?);
            let sources = crate::metrics::Sources {
                gateway: stack
                    .emit_stats
                    .clone()
                    .map(|s| (config.gateway.id.clone(), s)),
                processor: stack.processor_stats.clone().map(|s| (pipeline_name, s)),
                tls: tls_stats.clone(),
                quarantine: stack.quarantine.clone(),
                limiters: stack.live.clone(),
                sinks: sink_stats,
            };
            let mut shutdown = rx.clone();
            stack.tasks.push((
                "metrics",
                tokio::spawn(async move {
                    tokio::select! {
                        r = crate::metrics::serve(listener, sources) => r.context("metrics"),
                        _ = shutdown.wait_for(|s| *s) => Ok(()),
                    }
                }),
            ));
        }
        Ok(stack)
    }

    /// Print where everything listens.
    pub fn announce(&self) {
        if let Some(a) = self.gateway_addr {
            info!(%a, "Gateway listening.");
            println!("gateway    http://{a}/");
        }
        if let Some(a) = self.gateway_tls_addr {
            info!(%a, "Gateway TLS listening.");
            println!("gateway    https://{a}/");
        }
        if let Some(a) = self.mqtt_addr {
            println!("mqtt       mqtt://{a}");
        }
        if let Some(a) = self.mqtt_tls_addr {
            println!("mqtt       mqtts://{a}");
        }
        if let Some(a) = self.coap_addr {
            println!("coap       coap://{a}");
        }
        if let Some(a) = self.coaps_addr {
            println!("coaps      coaps://{a}");
        }
        if let Some(a) = self.admin_addr {
            info!(%a, "Admin API listening.");
            let scheme = if self.admin_tls { "https" } else { "http" };
            println!("admin      {scheme}://{a}/admin/");
        }
        if let Some(a) = self.dashboard_addr {
            info!(%a, "Dashboard listening.");
            println!("dashboard  http://{a}/");
        }
        if let Some(a) = self.metrics_addr {
            println!("metrics    http://{a}/metrics");
        }
        if self.processor_stats.is_some() {
            println!("processor  running");
        }
    }

    /// Wait until a component fails; returns its error.
    pub async fn wait_failure(&mut self) -> anyhow::Error {
        if self.tasks.is_empty() {
            std::future::pending::<()>().await;
        }
        let (res, idx) = first_finished(&mut self.tasks).await;
        let (name, _) = self.tasks.remove(idx);
        match res {
            Ok(Ok(())) => anyhow::anyhow!("{name} stopped"),
            Ok(Err(e)) => e,
            Err(e) => anyhow::anyhow!("{name} panicked: {e}"),
        }
    }

    /// Stop every component gracefully (the gateway drains its events to the bus).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // Producers first: the gateway answers its in-flight requests and publishes their
        // events; only then do the processor and the archive stop (the archive reads what is
        // left on the bus and closes its file), so no completed request's event is lost.
        let _ = self.stop.send(true);
        let (consumers, producers): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tasks)
            .into_iter()
            .partition(|(name, _)| CONSUMERS.contains(name));
        for (name, task) in producers {
            task.await.with_context(|| format!("{name} task"))??;
        }
        let _ = self.stop_consumers.send(true);
        for (name, task) in consumers {
            task.await.with_context(|| format!("{name} task"))??;
        }
        Ok(())
    }
}

/// Reload the live settings from the config file on every SIGHUP until `shutdown` (where
/// SIGHUP does not exist, only the file watch reloads).
async fn reload_on_sighup(
    live: warden_gateway::LiveConfig,
    file: std::path::PathBuf,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                got = hup.recv() => {
                    if got.is_none() {
                        return Ok(());
                    }
                    info!(file = %file.display(), "SIGHUP: reloading the config file.");
                    // The reload logs what it applied, or every problem of a refused change.
                    let l = live.clone();
                    tokio::task::spawn_blocking(move || l.reload()).await?;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (live, file);
        shutdown.await;
        Ok(())
    }
}

type TaskResult = Result<anyhow::Result<()>, tokio::task::JoinError>;

async fn first_finished(
    tasks: &mut [(&'static str, JoinHandle<anyhow::Result<()>>)],
) -> (TaskResult, usize) {
    std::future::poll_fn(|cx| {
        for (i, (_, t)) in tasks.iter_mut().enumerate() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(t).poll(cx) {
                return std::task::Poll::Ready((r, i));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, t) in &self.tasks {
            t.abort();
        }
    }
}

/// The processor's health as the console shows it: the pipeline (and its last reload or
/// refused change), throughput, lag, bus reachability, state and the models it serves.
fn processor_health(stats: &warden_stream::ProcessorStats) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let reached = stats.bus_reached_at.load(Relaxed);
    let pipeline = stats.pipeline_status();
    let started = stats.started_at.load(Relaxed);
    let needs_ms = pipeline.warmup.first().map_or(0, |w| w.needs_ms);
    let running_ms = (started > 0).then(|| {
        u64::try_from(warden_event::now_ns())
            .unwrap_or(0)
            .saturating_sub(started)
            / 1_000_000
    });
    let restored = stats.restores.load(Relaxed);
    // Keys that appear later warm up on their own; this is the processor's (and the keys
    // it started with).
    let state = match running_ms {
        None => "not started".to_string(),
        Some(_) if needs_ms == 0 => "no warm-up needed".to_string(),
        Some(_) if restored > 0 => "baselines restored from checkpoints".to_string(),
        Some(ms) if ms >= needs_ms => "warm".to_string(),
        Some(ms) => format!("warming up, {} s left", (needs_ms - ms).div_ceil(1_000)),
    };
    serde_json::json!({
        "warmup": {
            "state": state,
            "needs_ms": needs_ms,
            "running_ms": running_ms,
            "restored_partitions": restored,
        },
        "pipeline": pipeline,
        "processor": {
            "events_total": stats.events.load(Relaxed),
            "events_per_second": stats.events_per_second.load(Relaxed),
            "consumer_lag": stats.lag_total.load(Relaxed),
            "lag_by_partition": stats.lag_by_partition(),
            "assigned_partitions": stats.assigned_partitions.load(Relaxed),
            "state_bytes": stats.state_bytes.load(Relaxed),
            "late_events": stats.late_events.load(Relaxed),
            "bus_last_answered_ns": (reached > 0).then_some(reached),
        },
        "models": stats
            .model_scores
            .lock()
            .iter()
            .map(|m| m.describe())
            .collect::<Vec<_>>(),
    })
}

/// The processor's score board, as the console reads it.
struct ProcessorScores(Arc<warden_stream::ScoreBoard>);

impl warden_dashboard::ScoreSource for ProcessorScores {
    fn watch(&self, subject: &warden_event::Subject) {
        self.0.watch(subject.kind, &subject.value);
    }

    fn series(&self, subject: &warden_event::Subject) -> Vec<warden_dashboard::ScoreLine> {
        self.0
            .series(subject.kind, &subject.value)
            .into_iter()
            .map(|s| warden_dashboard::ScoreLine {
                label: format!("{}/{}", s.window, s.detector),
                points: s.points,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn processor_health_reports_throughput_lag_bus_and_models() {
        let stats = warden_stream::ProcessorStats::default();
        let h = super::processor_health(&stats);
        assert_eq!(
            h["processor"]["bus_last_answered_ns"],
            serde_json::Value::Null
        );
        assert_eq!(h["models"], serde_json::json!([]));
        stats.events_per_second.store(1200, Relaxed);
        stats.lag_total.store(7, Relaxed);
        stats.bus_reached_at.store(42, Relaxed);
        stats.pipeline.lock().name = "default".into();
        let h = super::processor_health(&stats);
        assert_eq!(h["processor"]["events_per_second"], 1200, "{h}");
        assert_eq!(h["processor"]["consumer_lag"], 7, "{h}");
        assert_eq!(h["processor"]["bus_last_answered_ns"], 42, "{h}");
        assert_eq!(h["pipeline"]["name"], "default", "{h}");
        assert_eq!(h["warmup"]["state"], "not started", "{h}");
        stats
            .started_at
            .store(u64::try_from(warden_event::now_ns()).unwrap_or(0), Relaxed);
        stats.pipeline.lock().warmup = vec![warden_stream::DetectorWarmup {
            detector: "burst".into(),
            window: "identity_1s".into(),
            needs_ms: 60_000,
        }];
        let h = super::processor_health(&stats);
        let state = h["warmup"]["state"].as_str().unwrap_or_default();
        assert!(state.starts_with("warming up, "), "{h}");
        stats.restores.store(1, Relaxed);
        let h = super::processor_health(&stats);
        assert_eq!(
            h["warmup"]["state"], "baselines restored from checkpoints",
            "{h}"
        );
    }
}
