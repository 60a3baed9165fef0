//! One MQTT connection: CONNECT, then packets until DISCONNECT, keep-alive expiry, a
//! quarantine, a take-over, a protocol error or shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hyper_util::server::graceful::Watcher;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;
use warden_config::{ClientIdRule, MqttConfig, PayloadMode};
use warden_event::{Outcome, Reason};

use super::codec::{self, Code, Inbound, Outbound, ReadError, Refusal, Version};
use super::rules::{self, NoRule};
use super::{Command, MqttHub};
use crate::conns::Conn;
use crate::server::{Chain, ConnectRefused, Device, MqttEvent, Origin};
use crate::tls::TlsConn;

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
}

/// A token bucket per connection (messages and payload bytes).
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn take(&mut self, n: f64) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// What a backend status means for the device.
fn code_of(status: u16) -> Code {
    match status {
        200..=299 => Code::Success,
        401 | 403 => Code::NotAuthorized,
        404 | 405 => Code::TopicInvalid,
        429 => Code::Quota,
        400 | 413 | 415 | 422 => Code::PayloadInvalid,
        _ => Code::Unspecified,
    }
}

/// The body of a translated message under `mode`.
fn body(mode: PayloadMode, topic: &str, qos: u8, retain: bool, payload: Bytes) -> Bytes {
    match mode {
        PayloadMode::Raw => payload,
        PayloadMode::Json => {
            let mut doc = serde_json::json!({ "topic": topic, "qos": qos, "retain": retain });
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) {
                doc["payload"] = v;
            } else if let Ok(s) = std::str::from_utf8(&payload) {
                doc["payload"] = serde_json::Value::String(s.to_string());
            } else {
                use base64::Engine;
                doc["payload_base64"] = serde_json::Value::String(
                    base64::engine::general_purpose::STANDARD.encode(&payload),
                );
            }
            Bytes::from(doc.to_string())
        }
    }
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
        let mut out = BytesMut::new();
        let ack = Outbound::ConnAck {
            refusal: None,
            keep_alive: (keep_alive != connect.keep_alive).then_some(keep_alive),
            assigned_id: assigned,
            max_packet: u32::try_from(max).unwrap_or(u32::MAX),
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
        let subscriptions = Arc::new(Mutex::new(Vec::new()));
        let id = self
            .hub
            .register(&identity, &client_id, tx, subscriptions.clone());
        let mut live = Live {
            s: &self,
            device,
            version,
            buf,
            subscriptions,
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
        let end = live.serve(&mut io, rx, shutdown).await;
        self.hub.unregister(&identity, id);
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

/// A connected session.
struct Live<'s> {
    s: &'s Session,
    device: Device,
    version: Version,
    buf: BytesMut,
    subscriptions: Arc<Mutex<Vec<(String, u8)>>>,
    keep_alive: Duration,
    messages: Bucket,
    bytes: Bucket,
    next_pkid: u16,
    conn: Arc<Conn>,
}

impl Live<'_> {
    async fn write<S: AsyncWrite + Unpin>(&self, io: &mut S, p: &Outbound) -> bool {
        let mut out = BytesMut::new();
        codec::write(p, self.version, &mut out).is_ok() && io.write_all(&out).await.is_ok()
    }

    async fn serve<S>(
        &mut self,
        io: &mut S,
        mut rx: mpsc::Receiver<Command>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut poll = tokio::time::interval(QUARANTINE_POLL);
        let mut last_packet = Instant::now();
        tokio::pin!(shutdown);
        loop {
            // Every complete packet in the buffer first.
            loop {
                match codec::read(&mut self.buf, self.version, self.s.config.max_packet_bytes) {
                    Ok(p) => {
                        last_packet = Instant::now();
                        drop(self.conn.enter());
                        if let Some(end) = self.packet(io, p).await {
                            return end;
                        }
                    }
                    Err(ReadError::Incomplete) => break,
                    Err(ReadError::TooLarge) => return End::Disconnect(Code::TooLarge),
                    Err(e) => {
                        debug!(peer = %self.s.peer, error = %e, "Malformed MQTT packet.");
                        return End::Disconnect(Code::ProtocolError);
                    }
                }
            }
            if self.buf.len() > self.s.config.max_packet_bytes.saturating_add(8) {
                return End::Disconnect(Code::TooLarge);
            }
            let deadline = tokio::time::Instant::from_std(last_packet + self.keep_alive);
            tokio::select! {
                r = io.read_buf(&mut self.buf) => match r {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(_) => {}
                },
                cmd = rx.recv() => match cmd {
                    Some(Command::Publish { topic, qos, payload }) => {
                        let pkid = if qos == 0 { 0 } else {
                            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
                            self.next_pkid
                        };
                        if !self.write(io, &Outbound::Publish { topic, qos, pkid, payload }).await {
                            return End::Closed;
                        }
                    }
                    Some(Command::TakenOver) | None => return End::Disconnect(Code::Administrative),
                },
                _ = poll.tick() => {
                    if self.s.chain.quarantined(&self.device) {
                        debug!(identity = %self.device.principal.identity, "Quarantined MQTT session disconnected.");
                        return End::Disconnect(Code::Administrative);
                    }
                }
                () = tokio::time::sleep_until(deadline) => return End::Disconnect(Code::KeepAliveTimeout),
                () = &mut shutdown => return End::Disconnect(Code::ShuttingDown),
            }
        }
    }

    /// Handle one packet; `Some` ends the session.
    async fn packet<S>(&mut self, io: &mut S, p: Inbound) -> Option<End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match p {
            Inbound::Publish {
                topic,
                qos,
                pkid,
                retain,
                payload,
            } => self.publish(io, topic, qos, pkid, retain, payload).await,
            Inbound::Subscribe { pkid, filters } => {
                let started = Instant::now();
                let identity = self.device.principal.identity.clone();
                let codes: Vec<Result<u8, Code>> = filters
                    .iter()
                    .map(|(f, q)| {
                        if rules::may_subscribe(&self.s.config.subscribe, f, &identity) {
                            Ok((*q).min(1))
                        } else {
                            Err(Code::NotAuthorized)
                        }
                    })
                    .collect();
                {
                    let mut subs = self.subscriptions.lock();
                    for ((f, _), c) in filters.iter().zip(&codes) {
                        if let Ok(q) = c {
                            subs.retain(|(g, _)| g != f);
                            subs.push((f.clone(), *q));
                        }
                    }
                }
                let refused = codes.iter().any(Result::is_err);
                let path = filters
                    .iter()
                    .map(|(f, _)| f.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let (status, outcome, reason) = if refused {
                    (403, Outcome::DeniedRbac, Reason::Rbac)
                } else {
                    (200, Outcome::Allowed, Reason::None)
                };
                self.s.event(
                    Some(&self.device),
                    Ev::new(
                        "SUBSCRIBE",
                        "mqtt/subscribe",
                        &path,
                        status,
                        outcome,
                        reason,
                        started,
                    ),
                );
                (!self.write(io, &Outbound::SubAck { pkid, codes }).await).then_some(End::Closed)
            }
            Inbound::Unsubscribe { pkid, filters } => {
                self.subscriptions
                    .lock()
                    .retain(|(g, _)| !filters.contains(g));
                let count = filters.len();
                (!self.write(io, &Outbound::UnsubAck { pkid, count }).await).then_some(End::Closed)
            }
            Inbound::PingReq => (!self.write(io, &Outbound::PingResp).await).then_some(End::Closed),
            Inbound::PubAck => None,
            Inbound::Disconnect => Some(End::Closed),
            Inbound::Connect(_) => Some(End::Disconnect(Code::ProtocolError)),
            Inbound::Unexpected(what) => {
                debug!(peer = %self.s.peer, what, "MQTT packet not supported.");
                Some(End::Disconnect(if what == "QoS 2" {
                    Code::QosNotSupported
                } else {
                    Code::ProtocolError
                }))
            }
        }
    }

    async fn publish<S>(
        &mut self,
        io: &mut S,
        topic: String,
        qos: u8,
        pkid: u16,
        retain: bool,
        payload: Bytes,
    ) -> Option<End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if qos > 1 {
            return Some(End::Disconnect(Code::QosNotSupported));
        }
        let started = Instant::now();
        let size = payload.len();
        let ack = |code| Outbound::PubAck { pkid, code };
        // The connection's own limits first: a flood is refused before any translation.
        if !self.messages.take(1.0) || !self.bytes.take(size as f64) {
            self.s.event(
                Some(&self.device),
                Ev::new(
                    "PUBLISH",
                    "mqtt/publish",
                    &topic,
                    429,
                    Outcome::Throttled,
                    Reason::RateLimit,
                    started,
                )
                .bytes(size),
            );
            return (qos == 1 && !self.write(io, &ack(Code::Quota)).await).then_some(End::Closed);
        }
        let identity = self.device.principal.identity.clone();
        let t = match rules::translate(&self.s.config.publish, &topic, &identity) {
            Ok(t) => t,
            Err(why) => {
                let (status, outcome, reason, code) = match why {
                    NoRule::OtherIdentity => {
                        (403, Outcome::DeniedRbac, Reason::Rbac, Code::NotAuthorized)
                    }
                    NoRule::Unmatched => (404, Outcome::Invalid, Reason::Route, Code::TopicInvalid),
                    NoRule::Invalid => (400, Outcome::Invalid, Reason::Invalid, Code::TopicInvalid),
                };
                self.s.event(
                    Some(&self.device),
                    Ev::new(
                        "PUBLISH",
                        "mqtt/publish",
                        &topic,
                        status,
                        outcome,
                        reason,
                        started,
                    )
                    .bytes(size),
                );
                return (qos == 1 && !self.write(io, &ack(code)).await).then_some(End::Closed);
            }
        };
        let body = body(t.payload, &topic, qos, retain, payload);
        let (status, _) = self
            .s
            .chain
            .request(
                &self.device,
                &t.method,
                &t.path_and_query,
                Some(&t.content_type),
                body,
                Origin {
                    protocol: warden_event::Protocol::Mqtt,
                    rule: t.name,
                    topic,
                },
                0,
            )
            .await;
        let code = code_of(status);
        if code == Code::NotAuthorized && self.s.chain.quarantined(&self.device) {
            return Some(End::Disconnect(Code::Administrative));
        }
        if qos == 1 {
            if code == Code::Unspecified && self.version == Version::V4 {
                // 3.1.1 has no negative acknowledgement: the message was not accepted, so it
                // is not acknowledged, and the connection closes for the client to resend it.
                return Some(End::Closed);
            }
            if !self.write(io, &ack(code)).await {
                return Some(End::Closed);
            }
        }
        None
    }
}
