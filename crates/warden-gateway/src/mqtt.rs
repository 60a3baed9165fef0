//! MQTT devices (3.1.1 and 5.0) through the gateway's security chain.
//!
//! The gateway terminates MQTT itself — it is not a broker: a CONNECT is authenticated like a
//! request (client certificate on the TLS listener; the password as an API key or a JWT),
//! the client id is bound to the identity, and every PUBLISH is translated by the configured
//! rules (`[[gateway.mqtt.publish]]`: topic pattern → method, path, body) into an HTTP request
//! that goes through every phase of the HTTP path — identity again, quarantine, rate limits,
//! RBAC on the translated path, validation — to the route's backend, and is evented like any
//! request (`protocol = "mqtt"`, the rule as the route, the topic as the path). A QoS 1
//! message is acknowledged only once the backend answered 2xx; refusals get MQTT 5 reason
//! codes. Commands go the other way through the admin API
//! (`POST /admin/mqtt/publish`) to devices subscribed to an allowed filter
//! (`gateway.mqtt.subscribe`). A device whose identity, key, tenant or address is quarantined
//! is disconnected within [`QUARANTINE_POLL`] and refused on reconnect.
//!
//! Packets are read and written with rumqttc's codec ([`codec`]). A persistent session
//! (3.1.1 `clean_session = false`, or an MQTT 5 session expiry interval) keeps its
//! subscriptions and the QoS 1 commands sent while its device was away, for
//! `session_expiry_s` ([`parked`]); a clean one keeps nothing.

pub(crate) mod codec;
mod parked;
pub(crate) mod rules;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, info};
use warden_config::MqttConfig;

use crate::server::Chain;

pub use session::QUARANTINE_POLL;

/// A command to one connected session.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        topic: String,
        qos: u8,
        payload: Bytes,
    },
    /// Another connection took the client id over.
    TakenOver,
}

/// One connected session, as the hub knows it.
struct Handle {
    conn: u64,
    client_id: String,
    tx: mpsc::Sender<Command>,
    subscriptions: Arc<Mutex<Vec<(String, u8)>>>,
}

/// The connected MQTT sessions of a gateway, by identity: commands to devices, session
/// take-over by client id, and counts for the admin API.
#[derive(Default)]
pub struct MqttHub {
    sessions: Mutex<HashMap<String, Vec<Handle>>>,
    next: AtomicU64,
    /// Disconnected persistent sessions.
    parked: Mutex<parked::ParkedSessions>,
    /// `max_queued_messages` and `max_connections` (sessions kept) of the listener's config.
    max_queued: AtomicUsize,
    max_parked: AtomicUsize,
}

/// What [`MqttHub::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// Sessions of the identity connected.
    pub sessions: usize,
    /// Sessions subscribed to the topic that got the message.
    pub delivered: usize,
    /// Disconnected persistent sessions subscribed to it (QoS 1) that will get it when their
    /// device reconnects.
    pub queued: usize,
}

impl MqttHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The persistent-session bounds of the listener's config.
    fn configure(&self, config: &MqttConfig) {
        self.max_queued
            .store(config.max_queued_messages, Ordering::Relaxed);
        self.max_parked
            .store(config.max_connections, Ordering::Relaxed);
    }

    /// A connecting client's session: with `clean`, whatever was kept is dropped; otherwise
    /// the parked session of its client id, if any.
    fn resume(&self, identity: &str, client_id: &str, clean: bool) -> Option<parked::Parked> {
        let kept = self.parked.lock().take(identity, client_id, Instant::now());
        if clean { None } else { kept }
    }

    /// Keep a disconnected persistent session for `ttl`.
    fn park(
        &self,
        identity: &str,
        client_id: &str,
        subscriptions: Vec<(String, u8)>,
        ttl: Duration,
    ) {
        let kept = self.parked.lock().park(
            identity,
            client_id,
            parked::Parked {
                subscriptions,
                ..parked::Parked::default()
            },
            ttl,
            self.max_parked.load(Ordering::Relaxed),
            Instant::now(),
        );
        if !kept {
            debug!(
                identity,
                client_id, "MQTT session not kept: too many parked sessions."
            );
        }
    }

    /// Register a session; a session of the same identity with the same client id is told it
    /// was taken over (MQTT: a client id has one session), and its subscriptions are returned.
    fn register(
        &self,
        identity: &str,
        client_id: &str,
        tx: mpsc::Sender<Command>,
        subscriptions: Arc<Mutex<Vec<(String, u8)>>>,
    ) -> (u64, Option<Vec<(String, u8)>>) {
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        let mut s = self.sessions.lock();
        let list = s.entry(identity.to_string()).or_default();
        let mut taken = None;
        list.retain(|h| {
            if h.client_id == client_id {
                let _ = h.tx.try_send(Command::TakenOver);
                taken = Some(h.subscriptions.lock().clone());
                false
            } else {
                true
            }
        });
        list.push(Handle {
            conn,
            client_id: client_id.to_string(),
            tx,
            subscriptions,
        });
        (conn, taken)
    }

    fn unregister(&self, identity: &str, conn: u64) {
        let mut s = self.sessions.lock();
        if let Some(list) = s.get_mut(identity) {
            list.retain(|h| h.conn != conn);
            if list.is_empty() {
                s.remove(identity);
            }
        }
    }

    /// Send `payload` on `topic` to every session of `identity` subscribed to it (at the
    /// lower of `qos` and the subscription's QoS), and queue it (QoS 1) for its disconnected
    /// persistent sessions subscribed to it. Connected sessions whose queue is full miss it.
    pub fn publish(&self, identity: &str, topic: &str, qos: u8, payload: Bytes) -> Delivery {
        let queued = self.parked.lock().queue(
            identity,
            topic,
            qos,
            &payload,
            self.max_queued.load(Ordering::Relaxed),
            Instant::now(),
        );
        let s = self.sessions.lock();
        let Some(list) = s.get(identity) else {
            return Delivery {
                sessions: 0,
                delivered: 0,
                queued,
            };
        };
        let mut delivered = 0;
        for h in list {
            let granted = h
                .subscriptions
                .lock()
                .iter()
                .filter(|(f, _)| rules::matches(topic, f))
                .map(|(_, q)| *q)
                .max();
            if let Some(q) = granted
                && h.tx
                    .try_send(Command::Publish {
                        topic: topic.to_string(),
                        qos: q.min(qos),
                        payload: payload.clone(),
                    })
                    .is_ok()
            {
                delivered += 1;
            }
        }
        Delivery {
            sessions: list.len(),
            delivered,
            queued,
        }
    }

    /// Connected sessions.
    pub fn connected(&self) -> usize {
        self.sessions.lock().values().map(Vec::len).sum()
    }

    /// Disconnected persistent sessions kept (expired ones forgotten first).
    pub fn parked(&self) -> usize {
        let mut p = self.parked.lock();
        p.expire(Instant::now());
        p.len()
    }
}

/// Serve MQTT on the configured listeners until `shutdown`.
pub(crate) async fn serve(
    config: Arc<MqttConfig>,
    chain: Chain,
    hub: Arc<MqttHub>,
    plain: Option<TcpListener>,
    tls: Option<TcpListener>,
    shutdown: futures::future::Shared<impl std::future::Future<Output = ()> + Send + 'static>,
) {
    // The MQTT listeners' own connection caps: connections live for hours, so the HTTP
    // listener's idle deadline does not apply (keep-alive does, in the session).
    let limits = crate::conns::Limits {
        first_request: Duration::from_millis(config.connect_timeout_ms),
        idle: Duration::from_secs(u64::from(config.max_keep_alive_s) * 2 + 30),
        header_read: Duration::from_millis(config.connect_timeout_ms),
        h2_keepalive_interval: None,
        h2_keepalive_timeout: Duration::from_secs(20),
        max_per_ip: config.max_connections_per_ip,
        max_total: config.max_connections,
    };
    let tracker = crate::conns::Tracker::new(limits);
    hub.configure(&config);
    let mut tasks = Vec::new();
    if let Some(l) = plain {
        info!(addr = ?l.local_addr().ok(), "MQTT listener started.");
        let (config, chain, hub, tracker, stop) = (
            config.clone(),
            chain.clone(),
            hub.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(crate::tls::accept_loop(
            l,
            shutdown.clone(),
            "MQTT",
            tracker,
            move |tcp, peer, watcher, conn| {
                let s =
                    session::Session::new(config.clone(), chain.clone(), hub.clone(), peer, None);
                let stop = stop.clone();
                async move { s.run(tcp, watcher, conn, stop).await }
            },
        )));
    }
    if let (Some(l), Some(rt)) = (tls, chain.tls()) {
        info!(addr = ?l.local_addr().ok(), "MQTT TLS listener started.");
        let (config, chain, hub) = (config.clone(), chain.clone(), hub.clone());
        let sink = chain.handshake_sink();
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(crate::tls::accept_loop(
            l,
            shutdown.clone(),
            "MQTT TLS",
            tracker,
            move |tcp, peer, watcher, conn| {
                let (config, chain, hub, rt, sink, stop) = (
                    config.clone(),
                    chain.clone(),
                    hub.clone(),
                    rt.clone(),
                    sink.clone(),
                    stop.clone(),
                );
                async move {
                    match crate::tls::handshake(&rt, tcp, peer, &sink).await {
                        Some((stream, info)) => {
                            session::Session::new(config, chain, hub, peer, Some(info))
                                .run(stream, watcher, conn, stop)
                                .await;
                        }
                        None => debug!(%peer, "MQTT TLS handshake failed."),
                    }
                }
            },
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}
