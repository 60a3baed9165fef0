//! The dashboard process: read the alerts and decisions topics, follow them, serve the API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};
use warden_bus::{Bus, Consumer, Message};
use warden_config::WardenConfig;
use warden_event::audit::AuditLog;
use warden_event::{Alert, Decision, Versioned};

use crate::api::{self, AppState};
use crate::{DashboardError, DashboardState};

/// How often decisions that no longer restrict anything are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long an inactive decision is kept (to shadow late replays of older ones).
const KEEP_INACTIVE_NS: i64 = 3_600 * 1_000_000_000;

/// A running dashboard: both topics read to their end, followers started.
pub struct Dashboard {
    app: AppState,
    /// Ends the live streams when [`Dashboard::serve`] shuts down.
    closing: tokio::sync::watch::Sender<bool>,
    sinks: Arc<crate::sink::Sinks>,
    listen: SocketAddr,
    _tasks: Tasks,
}

/// Background tasks, stopped when the dashboard is dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Dashboard {
    /// Read the alerts and decisions topics from the beginning (each within
    /// `gateway.decisions_bootstrap_timeout_ms`), then keep following both in spawned tasks.
    /// The tasks stop when the dashboard is dropped (or [`Dashboard::serve`] returns).
    pub async fn start(config: &WardenConfig, bus: Arc<dyn Bus>) -> Result<Self, DashboardError> {
        Self::start_with_audit(config, bus, None).await
    }

    /// [`Dashboard::start`], recording console actions and sign-ins in `audit` (the log the
    /// processor of the same process writes its decisions to: one writer per file).
    pub async fn start_with_audit(
        config: &WardenConfig,
        bus: Arc<dyn Bus>,
        audit: Option<Arc<AuditLog>>,
    ) -> Result<Self, DashboardError> {
        if config.dashboard.operators.is_empty() && config.dashboard.oidc.is_none() {
            warn!(
                "No console operators are configured ([[dashboard.operators]] or [dashboard.oidc]): every sign-in is refused."
            );
        }
        // Sinks get what arrives from now on (not the history read at start).
        let sinks = Arc::new(crate::sink::Sinks::start(&config.dashboard).await?);
        let state = Arc::new(DashboardState::new(config.dashboard.max_alerts));
        let timeout = Duration::from_millis(config.gateway.decisions_bootstrap_timeout_ms);
        let topics = &config.bus.topics;

        let (s, mut alerts) = (state.clone(), 0usize);
        let alerts_read = warden_bus::read_to_end(&*bus, &topics.alerts, timeout, |m| {
            if let Some(a) = decode::<Alert>(m) {
                s.apply_alert(a);
                alerts += 1;
            }
        });
        let (s, mut decisions) = (state.clone(), 0usize);
        let decisions_read = warden_bus::read_to_end(&*bus, &topics.decisions, timeout, |m| {
            if let Some(d) = decode::<Decision>(m) {
                s.apply_decision(d);
                decisions += 1;
            }
        });
        let (alerts_reader, decisions_reader) = tokio::join!(alerts_read, decisions_read);
        let bootstrap = |topic: &String| {
            let topic = topic.clone();
            move |source| DashboardError::Bootstrap { topic, source }
        };
        let alerts_reader = alerts_reader.map_err(bootstrap(&topics.alerts))?;
        let decisions_reader = decisions_reader.map_err(bootstrap(&topics.decisions))?;
        info!(
            alerts,
            decisions,
            quarantined = state.active(warden_event::now_ns()).len(),
            "Alerts and decisions loaded."
        );

        let (s, hooks) = (state.clone(), sinks.clone());
        let follow_alerts = follow(alerts_reader, move |m| {
            if let Some(a) = decode::<Alert>(m) {
                debug!(subject = %a.subject, detector = %a.detector, "Alert received.");
                hooks.alert(&a);
                s.apply_alert(a);
            }
        })
        .instrument(info_span!("alerts"));
        let (s, hooks) = (state.clone(), sinks.clone());
        let follow_decisions = follow(decisions_reader, move |m| {
            if let Some(d) = decode::<Decision>(m) {
                debug!(subject = %d.subject, action = ?d.action, "Decision applied.");
                hooks.decision(&d);
                s.apply_decision(d);
            }
        })
        .instrument(info_span!("decisions"));
        let s = state.clone();
        let prune = async move {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            loop {
                every.tick().await;
                s.prune(warden_event::now_ns(), KEEP_INACTIVE_NS);
            }
        };
        // Traffic over time: every request event, read from the start of the topic (events
        // older than the store's window are skipped) in the background, so that a long
        // history never delays the console.
        let (s, events_bus, events_topic) = (state.clone(), bus.clone(), topics.events.clone());
        let follow_events = async move {
            let reader = loop {
                match events_bus.reader(&events_topic).await {
                    Ok(r) => break r,
                    Err(e) => {
                        warn!(error = %e, topic = %events_topic, "Cannot read the events topic (traffic charts stay empty); retrying.");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            };
            follow(reader, move |m| {
                if let Ok(e) = warden_event::decode::<warden_event::RequestEvent>(&m.payload) {
                    s.apply_event(&e);
                }
            })
            .await;
        }
        .instrument(info_span!("events"));
        let tasks = Tasks(vec![
            tokio::spawn(follow_alerts),
            tokio::spawn(follow_decisions),
            tokio::spawn(follow_events),
            tokio::spawn(prune),
        ]);

        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        Ok(Self {
            sinks,
            closing,
            app: AppState {
                closing: closing_rx,
                state,
                producer: bus.producer(),
                decisions_topic: topics.decisions.clone(),
                alerts_topic: topics.alerts.clone(),
                status: None,
                scores: None,
                auth: Arc::new(crate::auth::Auth::new(&config.dashboard, audit.clone())?),
                audit,
            },
            listen: config.dashboard.listen,
            _tasks: tasks,
        })
    }

    /// What the dashboard knows (alerts and decisions), as the API serves it.
    pub fn state(&self) -> &Arc<DashboardState> {
        &self.app.state
    }

    /// The webhooks' names and delivery counters.
    pub fn webhook_stats(&self) -> Vec<(String, Arc<crate::sink::SinkStats>)> {
        self.sink_stats()
            .into_iter()
            .filter(|(kind, _, _)| *kind == crate::sink::SinkKind::Webhook)
            .map(|(_, name, stats)| (name, stats))
            .collect()
    }

    /// Every alert sink's kind, name and delivery counters (webhooks, syslog receivers).
    pub fn sink_stats(&self) -> Vec<(crate::sink::SinkKind, String, Arc<crate::sink::SinkStats>)> {
        self.sinks.stats()
    }

    /// Serve `status()` at `/api/status` and show it on the page (pipeline reload problems).
    pub fn with_status(mut self, status: crate::api::StatusFn) -> Self {
        self.app.status = Some(status);
        self
    }

    /// Chart the detector scores `source` reports on subject pages.
    pub fn with_scores(mut self, source: Arc<dyn crate::ScoreSource>) -> Self {
        self.app.scores = Some(source);
        self
    }

    /// The configured listen address (`dashboard.listen`, by default `127.0.0.1:9400`).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The page and the API, state applied.
    pub fn router(&self) -> Router {
        api::router(self.app.clone())
    }

    /// Serve on `listener` until `shutdown` resolves; the followers stop when this returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        let addr = listener.local_addr()?;
        info!(%addr, url = %format!("http://{addr}/"), "Dashboard listening.");
        let closing = self.closing.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                // Open event streams would hold the graceful shutdown forever.
                closing.send_replace(true);
            })
            .await?;
        info!(%addr, "Dashboard stopped.");
        Ok(())
    }
}

/// Hand every new message of `reader` to `apply`, forever (errors are logged and retried).
async fn follow(mut reader: Box<dyn Consumer>, mut apply: impl FnMut(&Message) + Send) {
    loop {
        match reader.poll(1024, Duration::from_millis(200)).await {
            Ok(msgs) => msgs.iter().for_each(&mut apply),
            Err(e) => {
                warn!(error = %e, "Reading the topic failed; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn decode<T: serde::de::DeserializeOwned + Versioned>(m: &Message) -> Option<T> {
    match warden_event::decode::<T>(&m.payload) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(topic = %m.topic, partition = m.partition, offset = m.offset, error = %e, "Ignoring an unreadable record.");
            None
        }
    }
}
