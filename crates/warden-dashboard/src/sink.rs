//! Alert sinks: signed webhooks and syslog receivers that get each new alert (at or above a
//! severity) and each new decision, for a SIEM or an on-call tool.
//!
//! Every sink has its own bounded queue and delivery task, so a slow or dead receiver delays
//! nothing else; a full queue dead-letters (counts and logs) instead of blocking.
//!
//! - **Webhooks** ([`webhook`]): a notification is `POST`ed as JSON
//!   (`{"type":"alert","alert":{…}}` or `{"type":"decision","decision":{…}}`) with
//!   `X-Warden-Timestamp: UNIX_SECONDS` and `X-Warden-Signature: sha256=HEX`, the HMAC-SHA256 of
//!   `TIMESTAMP.BODY` under the webhook's secret (receivers check it and refuse old timestamps,
//!   against replays). A 2xx answer delivers it; a network error, a timeout, 408, 429 or 5xx is
//!   retried with exponential back-off (0.5 s doubling, at most 30 s) up to `max_attempts`; any
//!   other answer, the last failed attempt, or a full queue dead-letters it.
//! - **Syslog** ([`syslog`]): one RFC 5424 message per notification, its text the same JSON or
//!   CEF, over UDP (a datagram each) or TCP (octet-counted frames, reconnecting with back-off).

pub mod syslog;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;
use warden_config::DashboardConfig;
use warden_event::{Alert, Decision, Severity};

use crate::error::DashboardError;

pub use webhook::signature;

/// Delivery counters of one sink.
#[derive(Debug, Default, Serialize)]
pub struct SinkStats {
    /// Notifications the receiver accepted (webhooks: a 2xx; syslog: written to the socket).
    pub delivered: AtomicU64,
    /// Attempts that failed (each retried while attempts remain).
    pub failed_attempts: AtomicU64,
    /// Notifications given up: permanent refusal, attempts exhausted, or queue full.
    pub dead_lettered: AtomicU64,
}

/// One notification, as sent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Notice {
    Alert { alert: Alert },
    Decision { decision: Decision },
}

/// What kind of sink, as in metrics (`type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Webhook,
    Syslog,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Syslog => "syslog",
        }
    }
}

struct Hook {
    kind: SinkKind,
    name: String,
    min_severity: Severity,
    decisions: bool,
    tx: mpsc::Sender<Notice>,
    stats: Arc<SinkStats>,
}

/// The configured sinks and their delivery tasks (stopped when dropped).
pub struct Sinks {
    hooks: Vec<Hook>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sinks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn severity(name: &str) -> Severity {
    match name {
        "low" => Severity::Low,
        "high" => Severity::High,
        _ => Severity::Medium,
    }
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Low => 0,
        Severity::Medium => 1,
        Severity::High => 2,
    }
}

impl Sinks {
    /// Start a delivery task per webhook and syslog receiver. A webhook secret missing from
    /// the environment, or a syslog address that does not resolve, is an error.
    pub async fn start(config: &DashboardConfig) -> Result<Self, DashboardError> {
        let mut sinks = Self {
            hooks: Vec::new(),
            tasks: Vec::new(),
        };
        for c in &config.webhooks {
            let secret = webhook::secret(c)?;
            let client = webhook::client(c)?;
            let (tx, rx) = mpsc::channel(c.queue);
            let stats = Arc::new(SinkStats::default());
            sinks.tasks.push(tokio::spawn(webhook::deliver(
                c.clone(),
                secret.into_bytes(),
                client,
                rx,
                stats.clone(),
            )));
            sinks.hooks.push(Hook {
                kind: SinkKind::Webhook,
                name: c.name.clone(),
                min_severity: severity(&c.min_severity),
                decisions: c.decisions,
                tx,
                stats,
            });
        }
        for c in &config.syslog {
            let target = syslog::Target::resolve(c).await?;
            let (tx, rx) = mpsc::channel(c.queue);
            let stats = Arc::new(SinkStats::default());
            sinks.tasks.push(tokio::spawn(syslog::deliver(
                c.clone(),
                target,
                rx,
                stats.clone(),
            )));
            sinks.hooks.push(Hook {
                kind: SinkKind::Syslog,
                name: c.name.clone(),
                min_severity: severity(&c.min_severity),
                decisions: c.decisions,
                tx,
                stats,
            });
        }
        Ok(sinks)
    }

    /// Queue a new alert for every sink whose severity floor it reaches.
    pub fn alert(&self, alert: &Alert) {
        for h in &self.hooks {
            if rank(alert.severity) >= rank(h.min_severity) {
                h.offer(Notice::Alert {
                    alert: alert.clone(),
                });
            }
        }
    }

    /// Queue a new decision for every sink that takes decisions.
    pub fn decision(&self, decision: &Decision) {
        for h in self.hooks.iter().filter(|h| h.decisions) {
            h.offer(Notice::Decision {
                decision: decision.clone(),
            });
        }
    }

    /// Each sink's kind, name and counters.
    pub fn stats(&self) -> Vec<(SinkKind, String, Arc<SinkStats>)> {
        self.hooks
            .iter()
            .map(|h| (h.kind, h.name.clone(), h.stats.clone()))
            .collect()
    }
}

impl Hook {
    fn offer(&self, notice: Notice) {
        if self.tx.try_send(notice).is_err() {
            let n = self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(sink = %self.name, kind = self.kind.as_str(), dead_lettered = n, "Sink queue full; notification dead-lettered.");
            }
        }
    }
}
