//! The publisher keeps a continuous window of sends in flight: one slow acknowledgement holds
//! back only its own event, never the next batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use warden_bus::{BusError, Producer};
use warden_event::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, EventFormat, Outcome, Protocol, Reason,
    RequestEvent,
};

use super::{Emitter, EventTopic};

/// Acknowledges every record at once, except the first, which waits for `release`.
struct OneSlow {
    sent: std::sync::atomic::AtomicU64,
    release: Semaphore,
}

#[async_trait]
impl Producer for OneSlow {
    async fn send(&self, _topic: &str, _key: &[u8], _payload: &[u8]) -> Result<(), BusError> {
        if self.sent.fetch_add(1, Ordering::Relaxed) == 0 {
            let _ = self.release.acquire().await;
        }
        Ok(())
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

fn event(i: usize) -> RequestEvent {
    RequestEvent {
        v: warden_event::SCHEMA_VERSION,
        id: format!("e-{i}"),
        gateway: "gw".into(),
        seq: 0,
        ts: 0,
        identity: ANONYMOUS.into(),
        tenant: String::new(),
        device_type: String::new(),
        auth: AuthInfo {
            method: AuthMethod::None,
            result: AuthResult::NotRequired,
        },
        client_ip: "127.0.0.1".into(),
        protocol: Protocol::Http,
        method: "GET".into(),
        route: "r".into(),
        path: "/".into(),
        status: 200,
        decision: Outcome::Allowed,
        latency_us: 0,
        bytes_in: 0,
        bytes_out: 0,
        user_agent: None,
        tls: None,
        reason: Reason::None,
        query: String::new(),
        query_hash: 0,
    }
}

#[tokio::test]
async fn a_slow_acknowledgement_does_not_hold_back_later_events() {
    let producer = Arc::new(OneSlow {
        sent: Default::default(),
        release: Semaphore::new(0),
    });
    let topic = EventTopic {
        name: "events".into(),
        format: EventFormat::Compact,
    };
    let (emitter, task) = Emitter::start(producer.clone(), topic, 4096, None);
    for i in 0..2000 {
        emitter.emit(event(i));
    }
    let stats = emitter.stats().clone();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while stats.published.load(Ordering::Relaxed) < 1999 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "only {} of 1999 events published while the first one waits",
        stats.published.load(Ordering::Relaxed)
    );
    producer.release.add_permits(1);
    drop(emitter);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert_eq!(stats.published.load(Ordering::Relaxed), 2000);
}
