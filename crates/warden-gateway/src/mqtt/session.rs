//! One MQTT connection: CONNECT, then packets until DISCONNECT, keep-alive expiry, a
//! quarantine, a take-over, a protocol error or shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hyper_util::server::graceful::Watcher;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;
use warden_config::{ClientIdRule, MqttConfig};
use warden_event::{Outcome, Reason};

use super::MqttHub;
use super::codec::{self, Code, Inbound, Outbound, ReadError, Refusal, Version};

mod live;

use crate::conns::Conn;
use crate::server::{Chain, ConnectRefused, Device, MqttEvent};
use crate::tls::TlsConn;
use live::{Bucket, Live};

/// How often an open session checks whether its device was quarantined.
pub const QUARANTINE_POLL: Duration = Duration::from_millis(200);

/// Commands queued per session (further ones are not delivered).
const COMMAND_QUEUE: usize = 64;

pub(super) struct Session {
    config: Arc<MqttConfig>,
    chain: Chain,
    hub: Arc<MqttHub>,
    peer: SocketAddr,
    tls: Option<TlsConn>,
}

/// Why a session ends (MQTT 5 DISCONNECT reason; 3.1.1 just closes).
enum End {
    /// The client disconnected or the connection dropped.
    Closed,
    /// Close with this reason.
    Disconnect(Code),
    /// Another connection took the client id (and its session) over.
    TakenOver,
}

impl Session {
    pub(super) fn new(
        config: Arc<MqttConfig>,
        chain: Chain,
        hub: Arc<MqttHub>,
        peer: SocketAddr,
        tls: Option<TlsConn>,
    ) -> Self {
        Self {
            config,
            chain,
            hub,
            peer,
            tls,
        }
    }

    fn event(&self, d: Option<&Device>, e: Ev<'_>) {
        self.chain.event(MqttEvent {
            protocol: warden_event::Protocol::Mqtt,
            device: d,
            peer: self.peer,
            tls: self.tls.as_ref(),
            auth: e.auth,
            method: e.method,
            route: e.route,
            path: e.path,
            status: e.status,
            outcome: e.outcome,
            reason: e.reason,
            bytes_in: e.bytes_in,
            started: e.started,
        });
    }

    /// Serve the connection until it ends or `shutdown` resolves. `_watcher` is held so
    /// the listener's graceful shutdown waits for the session's DISCONNECT.
    pub(super) async fn run<S>(
        self,
        mut io: S,
        _watcher: Watcher,
        conn: Arc<Conn>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut buf = BytesMut::with_capacity(4096);
        let max = self.config.max_packet_bytes;
        // CONNECT (the accept loop closes the connection at `connect_timeout_ms`).
        let (connect, version) = loop {
            match codec::connect_level(&buf) {
                Ok(Some(level)) => {
                    let version = match level {
                        4 => Version::V4,
                        5 => Version::V5,
                        _ => {
                            debug!(peer = %self.peer, level, "MQTT protocol level refused.");
                            let mut out = BytesMut::new();
                            let _ = codec::write(
                                &refused(Refusal::UnsupportedVersion),
                                Version::V4,
                                &mut out,
                            );
                            let _ = io.write_all(&out).await;
                            return;
                        }
                    };
                    match codec::read(&mut buf, version, max) {
                        Ok(Inbound::Connect(c)) => break (c, version),
                        Ok(_) => return,
                        Err(ReadError::Incomplete) => {}
                        Err(e) => {
                            debug!(peer = %self.peer, error = %e, "MQTT CONNECT unreadable.");
                            return;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "Not MQTT.");
                    return;
                }
            }
            if buf.len() > max {
                return;
            }
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        drop(conn.enter());
        let started = Instant::now();
        let device = match self
            .chain
            .connect(self.peer, self.tls.clone(), connect.password.as_deref())
            .await
        {
            Ok(d) => d,
            Err((why, auth, principal)) => {
                let (refusal, status, outcome, reason) = match why {
                    ConnectRefused::Credentials => (
                        Refusal::BadCredentials,
                        401,
                        Outcome::DeniedAuth,
                        Reason::Auth,
                    ),
                    ConnectRefused::Quarantined => (
                        Refusal::NotAuthorized,
                        403,
                        Outcome::Quarantined,
                        Reason::Quarantine,
                    ),
                };
                let d = principal.map(|p| Device::unverified(p, auth.clone(), self.peer));
                self.event(
                    d.as_ref(),
                    Ev::new(
                        "CONNECT",
                        "mqtt/connect",
                        &connect.client_id,
                        status,
                        outcome,
                        reason,
                        started,
                    )
                    .auth(auth),
                );
                let mut out = BytesMut::new();
                let _ = codec::write(&refused(refusal), version, &mut out);
                let _ = io.write_all(&out).await;
                return;
            }
        };
        let identity = device.principal.identity.clone();
        // The client id is bound to the identity.
        let mut assigned = None;
        let client_id = if connect.client_id.is_empty() {
            if version == Version::V4 && !connect.clean {
                String::new()
            } else {
                assigned = Some(identity.clone());
                identity.clone()
            }
        } else {
            connect.client_id.clone()
        };
        let bound = match self.config.client_id {
            ClientIdRule::Any => !client_id.is_empty(),
            ClientIdRule::Identity => {
                client_id == identity
                    || client_id
                        .strip_prefix(identity.as_str())
                        .is_some_and(|rest| rest.starts_with(':'))
            }
        };
        if !bound {
            self.event(
                Some(&device),
                Ev::new(
                    "CONNECT",
                    "mqtt/connect",
                    &connect.client_id,
                    403,
                    Outcome::DeniedRbac,
                    Reason::Rbac,
                    started,
                ),
            );
            let mut out = BytesMut::new();
            let _ = codec::write(&refused(Refusal::BadClientId), version, &mut out);
            let _ = io.write_all(&out).await;
            return;
        }
        let max_ka = self.config.max_keep_alive_s;
        let keep_alive = if connect.keep_alive == 0 || connect.keep_alive > max_ka {
            max_ka
        } else {
            connect.keep_alive
        };
        // A persistent session outlives the connection for this long (0: not at all).
        let ttl_s = match version {
            Version::V4 if connect.clean => 0,
            Version::V4 => self.config.session_expiry_s,
            Version::V5 => connect
                .session_expiry
                .unwrap_or(0)
                .min(self.config.session_expiry_s),
        };
        let resumed = self.hub.resume(&identity, &client_id, connect.clean);
        let mut out = BytesMut::new();
        let ack = Outbound::ConnAck {
            refusal: None,
            keep_alive: (keep_alive != connect.keep_alive).then_some(keep_alive),
            assigned_id: assigned,
            max_packet: u32::try_from(max).unwrap_or(u32::MAX),
            session_present: resumed.is_some(),
            session_expiry: connect
                .session_expiry
                .filter(|e| *e != ttl_s)
                .map(|_| ttl_s),
        };
        if codec::write(&ack, version, &mut out).is_err() || io.write_all(&out).await.is_err() {
            return;
        }
        self.event(
            Some(&device),
            Ev::new(
                "CONNECT",
                "mqtt/connect",
                &client_id,
                200,
                Outcome::Allowed,
                Reason::None,
                started,
            ),
        );
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (queued, subs) = resumed
            .map(|p| (p.queue, p.subscriptions))
            .unwrap_or_default();
        let subscriptions = Arc::new(Mutex::new(subs));
        let (id, taken) = self
            .hub
            .register(&identity, &client_id, tx, subscriptions.clone());
        if !connect.clean
            && let Some(taken) = taken
        {
            // The session this connection took over goes on here.
            let mut subs = subscriptions.lock();
            if subs.is_empty() {
                *subs = taken;
            }
        }
        let mut live = Live {
            s: &self,
            device,
            version,
            buf,
            subscriptions: subscriptions.clone(),
            keep_alive: Duration::from_millis(u64::from(keep_alive) * 1500),
            messages: Bucket::new(
                self.config.messages_per_s,
                f64::from(self.config.burst_messages),
            ),
            bytes: Bucket::new(
                self.config.bytes_per_s as f64,
                self.config.bytes_per_s as f64,
            ),
            next_pkid: 0,
            conn,
        };
        let end = live.serve(&mut io, rx, queued, shutdown).await;
        self.hub.unregister(&identity, id);
        if ttl_s > 0 && !matches!(end, End::TakenOver) {
            let subs = subscriptions.lock().clone();
            self.hub.park(
                &identity,
                &client_id,
                subs,
                Duration::from_secs(ttl_s.into()),
            );
        }
        let end = match end {
            End::TakenOver => End::Disconnect(Code::Administrative),
            e => e,
        };
        if let End::Disconnect(code) = end {
            let mut out = BytesMut::new();
            if codec::write(&Outbound::Disconnect(code), version, &mut out).is_ok() {
                let _ = io.write_all(&out).await;
            }
        }
        let _ = io.shutdown().await;
    }
}

fn refused(r: Refusal) -> Outbound {
    Outbound::ConnAck {
        refusal: Some(r),
        keep_alive: None,
        assigned_id: None,
        max_packet: 0,
        session_present: false,
        session_expiry: None,
    }
}

/// An event's fields.
struct Ev<'a> {
    method: &'static str,
    route: &'a str,
    path: &'a str,
    status: u16,
    outcome: Outcome,
    reason: Reason,
    bytes_in: u64,
    started: Instant,
    auth: Option<warden_event::AuthInfo>,
}

impl<'a> Ev<'a> {
    fn new(
        method: &'static str,
        route: &'a str,
        path: &'a str,
        status: u16,
        outcome: Outcome,
        reason: Reason,
        started: Instant,
    ) -> Self {
        Self {
            method,
            route,
            path,
            status,
            outcome,
            reason,
            bytes_in: 0,
            started,
            auth: None,
        }
    }

    fn auth(self, auth: warden_event::AuthInfo) -> Self {
        Self {
            auth: Some(auth),
            ..self
        }
    }

    fn bytes(self, n: usize) -> Self {
        Self {
            bytes_in: n as u64,
            ..self
        }
    }
}
