//! A connected session: its packets, the commands sent to it, its limits.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;
use warden_config::PayloadMode;
use warden_event::{Outcome, Reason};

use super::super::Command;
use super::super::codec::{self, Code, Inbound, Outbound, ReadError, Version};
use super::super::parked::Queued;
use super::super::rules::{self, NoRule};
use super::{End, Ev, QUARANTINE_POLL, Session};
use crate::conns::Conn;
use crate::server::{Device, Origin};

/// A token bucket per connection (messages and payload bytes).
pub(super) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn new(rate: f64, burst: f64) -> Self {
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

/// A connected session.
pub(super) struct Live<'s> {
    pub(super) s: &'s Session,
    pub(super) device: Device,
    pub(super) version: Version,
    pub(super) buf: BytesMut,
    pub(super) subscriptions: Arc<Mutex<Vec<(String, u8)>>>,
    pub(super) keep_alive: Duration,
    pub(super) messages: Bucket,
    pub(super) bytes: Bucket,
    pub(super) next_pkid: u16,
    pub(super) conn: Arc<Conn>,
}

impl Live<'_> {
    async fn write<S: AsyncWrite + Unpin>(&self, io: &mut S, p: &Outbound) -> bool {
        let mut out = BytesMut::new();
        codec::write(p, self.version, &mut out).is_ok() && io.write_all(&out).await.is_ok()
    }

    /// Send a command to the device (a packet id of its own at QoS 1).
    async fn command<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        topic: String,
        qos: u8,
        payload: Bytes,
    ) -> bool {
        let pkid = if qos == 0 {
            0
        } else {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            self.next_pkid
        };
        self.write(
            io,
            &Outbound::Publish {
                topic,
                qos,
                pkid,
                payload,
            },
        )
        .await
    }

    pub(super) async fn serve<S>(
        &mut self,
        io: &mut S,
        mut rx: mpsc::Receiver<Command>,
        queued: VecDeque<Queued>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Commands kept for a resumed session while its device was away.
        for q in queued {
            if !self.command(io, q.topic, q.qos, q.payload).await {
                return End::Closed;
            }
        }
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
                        if !self.command(io, topic, qos, payload).await {
                            return End::Closed;
                        }
                    }
                    Some(Command::TakenOver) => return End::TakenOver,
                    None => return End::Disconnect(Code::Administrative),
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
