//! MQTT 3.1.1 and 5.0 packets as the listener needs them, read and written with rumqttc's
//! codecs (`rumqttc::mqttbytes::v4`, `rumqttc::v5::mqttbytes::v5`): one version-neutral view,
//! so the session logic is written once.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// The protocol version a connection speaks (from its CONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V4,
    V5,
}

/// A CONNECT (the username is not read: the password is the credential; a will message is
/// never published, as the gateway is no broker).
#[derive(Debug, Clone)]
pub(crate) struct Connect {
    pub client_id: String,
    pub keep_alive: u16,
    pub clean: bool,
    pub password: Option<String>,
    /// MQTT 5's session expiry interval, seconds (3.1.1: none).
    pub session_expiry: Option<u32>,
}

/// A packet from a client.
#[derive(Debug)]
pub(crate) enum Inbound {
    Connect(Connect),
    Publish {
        topic: String,
        qos: u8,
        pkid: u16,
        retain: bool,
        payload: Bytes,
    },
    PubAck,
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect,
    /// A packet a client may not send to a server (CONNACK, SUBACK…) or one the gateway does
    /// not support (QoS 2 flow, AUTH): a protocol error.
    Unexpected(&'static str),
}

/// Why a read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// More bytes needed.
    Incomplete,
    TooLarge,
    /// Not a packet (a clear message for the log).
    Malformed(String),
    /// A CONNECT of a protocol level the gateway does not speak.
    UnsupportedVersion(u8),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Incomplete => f.write_str("incomplete packet"),
            ReadError::TooLarge => f.write_str("packet too large"),
            ReadError::Malformed(why) => write!(f, "malformed packet: {why}"),
            ReadError::UnsupportedVersion(l) => write!(f, "protocol level {l} not supported"),
        }
    }
}

/// The protocol level of a CONNECT at the start of `buf` (`None`: not enough bytes yet).
pub(crate) fn connect_level(buf: &[u8]) -> Result<Option<u8>, ReadError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] >> 4 != 1 {
        return Err(ReadError::Malformed(
            "the first packet is not CONNECT".into(),
        ));
    }
    // Remaining length: 1 to 4 bytes, 7 bits each.
    let mut i = 1;
    loop {
        let Some(b) = buf.get(i) else {
            return Ok(None);
        };
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err(ReadError::Malformed("bad remaining length".into()));
        }
    }
    // Protocol name (length-prefixed), then the level.
    let Some(len) = buf.get(i..i + 2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let at = i + 2 + len;
    match buf.get(at) {
        Some(level) => Ok(Some(*level)),
        None => Ok(None),
    }
}

/// Read the next packet from `buf` (consumed only when complete).
pub(crate) fn read(buf: &mut BytesMut, version: Version, max: usize) -> Result<Inbound, ReadError> {
    match version {
        Version::V4 => read_v4(buf, max),
        Version::V5 => read_v5(buf, max),
    }
}

fn read_v4(buf: &mut BytesMut, max: usize) -> Result<Inbound, ReadError> {
    use rumqttc::mqttbytes::Error as E;
    let p = match v4::Packet::read(buf, max) {
        Ok(p) => p,
        Err(E::InsufficientBytes(_)) => return Err(ReadError::Incomplete),
        Err(E::PayloadSizeLimitExceeded(_)) => return Err(ReadError::TooLarge),
        Err(E::InvalidProtocolLevel(l)) => return Err(ReadError::UnsupportedVersion(l)),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    };
    Ok(match p {
        v4::Packet::Connect(c) => Inbound::Connect(Connect {
            client_id: c.client_id,
            keep_alive: c.keep_alive,
            clean: c.clean_session,
            password: c.login.map(|l| l.password),
            session_expiry: None,
        }),
        v4::Packet::Publish(p) => Inbound::Publish {
            topic: p.topic,
            qos: p.qos as u8,
            pkid: p.pkid,
            retain: p.retain,
            payload: p.payload,
        },
        v4::Packet::PubAck(_) => Inbound::PubAck,
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, f.qos as u8))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect,
        v4::Packet::PubRec(_) | v4::Packet::PubRel(_) | v4::Packet::PubComp(_) => {
            Inbound::Unexpected("QoS 2")
        }
        _ => Inbound::Unexpected("a server-to-client packet"),
    })
}

fn read_v5(buf: &mut BytesMut, max: usize) -> Result<Inbound, ReadError> {
    use rumqttc::v5::mqttbytes::Error as E;
    let p = match v5::Packet::read(buf, Some(u32::try_from(max).unwrap_or(u32::MAX))) {
        Ok(p) => p,
        Err(E::InsufficientBytes(_)) => return Err(ReadError::Incomplete),
        Err(E::PayloadSizeLimitExceeded { .. }) => return Err(ReadError::TooLarge),
        Err(E::InvalidProtocolLevel(l)) => return Err(ReadError::UnsupportedVersion(l)),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    };
    Ok(match p {
        v5::Packet::Connect(c, _will, login) => Inbound::Connect(Connect {
            client_id: c.client_id,
            keep_alive: c.keep_alive,
            clean: c.clean_start,
            password: login.map(|l| l.password),
            session_expiry: c.properties.and_then(|p| p.session_expiry_interval),
        }),
        v5::Packet::Publish(p) => {
            if p.properties
                .as_ref()
                .is_some_and(|p| p.topic_alias.is_some())
            {
                // CONNACK grants no topic aliases.
                return Ok(Inbound::Unexpected("a topic alias"));
            }
            match String::from_utf8(p.topic.to_vec()) {
                Ok(topic) => Inbound::Publish {
                    topic,
                    qos: p.qos as u8,
                    pkid: p.pkid,
                    retain: p.retain,
                    payload: p.payload,
                },
                Err(_) => return Err(ReadError::Malformed("topic is not UTF-8".into())),
            }
        }
        v5::Packet::PubAck(_) => Inbound::PubAck,
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, f.qos as u8))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(_) => Inbound::Disconnect,
        v5::Packet::PubRec(_) | v5::Packet::PubRel(_) | v5::Packet::PubComp(_) => {
            Inbound::Unexpected("QoS 2")
        }
        v5::Packet::Auth(_) => Inbound::Unexpected("enhanced authentication (AUTH)"),
        _ => Inbound::Unexpected("a server-to-client packet"),
    })
}

/// Why a CONNECT is refused (mapped to each version's CONNACK code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadCredentials,
    NotAuthorized,
    BadClientId,
    UnsupportedVersion,
}

/// The outcome of a PUBLISH, SUBSCRIBE filter or session, mapped to each version's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    Success,
    NotAuthorized,
    TopicInvalid,
    Quota,
    PayloadInvalid,
    TooLarge,
    Unspecified,
    /// DISCONNECT only.
    Administrative,
    KeepAliveTimeout,
    ProtocolError,
    ShuttingDown,
    QosNotSupported,
}

/// A packet to a client.
pub(crate) enum Outbound {
    ConnAck {
        refusal: Option<Refusal>,
        /// MQTT 5: the keep-alive the server grants, and an assigned client id.
        keep_alive: Option<u16>,
        assigned_id: Option<String>,
        max_packet: u32,
        /// A persistent session was resumed.
        session_present: bool,
        /// MQTT 5: the session expiry the server grants, when it differs from the asked.
        session_expiry: Option<u32>,
    },
    PubAck {
        pkid: u16,
        code: Code,
    },
    SubAck {
        pkid: u16,
        /// Granted QoS, or the refusal.
        codes: Vec<Result<u8, Code>>,
    },
    UnsubAck {
        pkid: u16,
        count: usize,
    },
    PingResp,
    Publish {
        topic: String,
        qos: u8,
        pkid: u16,
        payload: Bytes,
    },
    /// MQTT 5 only (3.1.1 servers close without a packet).
    Disconnect(Code),
}

/// Encode `p` for `version` into `out`. Packets that do not exist in `version` write nothing.
pub(crate) fn write(p: &Outbound, version: Version, out: &mut BytesMut) -> Result<(), String> {
    match version {
        Version::V4 => write_v4(p, out),
        Version::V5 => write_v5(p, out),
    }
}

fn qos4(q: u8) -> rumqttc::mqttbytes::QoS {
    match q {
        0 => rumqttc::mqttbytes::QoS::AtMostOnce,
        _ => rumqttc::mqttbytes::QoS::AtLeastOnce,
    }
}

fn qos5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        _ => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    }
}

fn write_v4(p: &Outbound, out: &mut BytesMut) -> Result<(), String> {
    use v4::ConnectReturnCode as R;
    let packet = match p {
        Outbound::ConnAck {
            refusal,
            session_present,
            ..
        } => v4::Packet::ConnAck(v4::ConnAck::new(
            match refusal {
                None => R::Success,
                Some(Refusal::BadCredentials) => R::BadUserNamePassword,
                Some(Refusal::NotAuthorized) => R::NotAuthorized,
                Some(Refusal::BadClientId) => R::BadClientId,
                Some(Refusal::UnsupportedVersion) => R::RefusedProtocolVersion,
            },
            *session_present && refusal.is_none(),
        )),
        // 3.1.1 has no negative acknowledgement: a refused message is acknowledged (and
        // dropped), as brokers do for ACL refusals, so the client does not resend it forever.
        Outbound::PubAck { pkid, .. } => v4::Packet::PubAck(v4::PubAck::new(*pkid)),
        Outbound::SubAck { pkid, codes } => v4::Packet::SubAck(v4::SubAck::new(
            *pkid,
            codes
                .iter()
                .map(|c| match c {
                    Ok(q) => v4::SubscribeReasonCode::Success(qos4(*q)),
                    Err(_) => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Outbound::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(*pkid)),
        Outbound::PingResp => v4::Packet::PingResp,
        Outbound::Publish {
            topic,
            qos,
            pkid,
            payload,
        } => {
            let mut p = v4::Publish::from_bytes(topic.clone(), qos4(*qos), payload.clone());
            p.pkid = *pkid;
            v4::Packet::Publish(p)
        }
        Outbound::Disconnect(_) => return Ok(()),
    };
    packet
        .write(out, usize::MAX)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn write_v5(p: &Outbound, out: &mut BytesMut) -> Result<(), String> {
    use v5::ConnectReturnCode as R;
    let packet = match p {
        Outbound::ConnAck {
            refusal,
            keep_alive,
            assigned_id,
            max_packet,
            session_present,
            session_expiry,
        } => v5::Packet::ConnAck(v5::ConnAck {
            session_present: *session_present && refusal.is_none(),
            code: match refusal {
                None => R::Success,
                Some(Refusal::BadCredentials) => R::BadUserNamePassword,
                Some(Refusal::NotAuthorized) => R::NotAuthorized,
                Some(Refusal::BadClientId) => R::ClientIdentifierNotValid,
                Some(Refusal::UnsupportedVersion) => R::UnsupportedProtocolVersion,
            },
            properties: refusal.is_none().then(|| v5::ConnAckProperties {
                session_expiry_interval: *session_expiry,
                receive_max: None,
                max_qos: Some(1),
                retain_available: Some(0),
                max_packet_size: Some(*max_packet),
                assigned_client_identifier: assigned_id.clone(),
                topic_alias_max: None,
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive: *keep_alive,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        }),
        Outbound::PubAck { pkid, code } => {
            let mut a = v5::PubAck::new(*pkid, None);
            a.reason = match code {
                Code::Success => v5::PubAckReason::Success,
                Code::NotAuthorized => v5::PubAckReason::NotAuthorized,
                Code::TopicInvalid => v5::PubAckReason::TopicNameInvalid,
                Code::Quota => v5::PubAckReason::QuotaExceeded,
                Code::PayloadInvalid | Code::TooLarge => v5::PubAckReason::PayloadFormatInvalid,
                _ => v5::PubAckReason::UnspecifiedError,
            };
            v5::Packet::PubAck(a)
        }
        Outbound::SubAck { pkid, codes } => v5::Packet::SubAck(v5::SubAck {
            pkid: *pkid,
            return_codes: codes
                .iter()
                .map(|c| match c {
                    Ok(q) => v5::SubscribeReasonCode::Success(qos5(*q)),
                    Err(Code::NotAuthorized) => v5::SubscribeReasonCode::NotAuthorized,
                    Err(Code::TopicInvalid) => v5::SubscribeReasonCode::TopicFilterInvalid,
                    Err(Code::Quota) => v5::SubscribeReasonCode::QuotaExceeded,
                    Err(_) => v5::SubscribeReasonCode::Unspecified,
                })
                .collect(),
            properties: None,
        }),
        Outbound::UnsubAck { pkid, count } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid: *pkid,
            reasons: vec![v5::UnsubAckReason::Success; *count],
            properties: None,
        }),
        Outbound::PingResp => v5::Packet::PingResp(v5::PingResp),
        Outbound::Publish {
            topic,
            qos,
            pkid,
            payload,
        } => {
            let mut p = v5::Publish::new(topic.clone(), qos5(*qos), payload.clone(), None);
            p.pkid = *pkid;
            v5::Packet::Publish(p)
        }
        Outbound::Disconnect(code) => {
            use v5::DisconnectReasonCode as D;
            let reason = match code {
                Code::Success => D::NormalDisconnection,
                Code::NotAuthorized => D::NotAuthorized,
                Code::TopicInvalid => D::TopicNameInvalid,
                Code::Quota => D::QuotaExceeded,
                Code::PayloadInvalid => D::PayloadFormatInvalid,
                Code::TooLarge => D::PacketTooLarge,
                Code::Administrative => D::AdministrativeAction,
                Code::KeepAliveTimeout => D::KeepAliveTimeout,
                Code::ProtocolError => D::ProtocolError,
                Code::ShuttingDown => D::ServerShuttingDown,
                Code::QosNotSupported => D::QoSNotSupported,
                Code::Unspecified => D::UnspecifiedError,
            };
            // With a reason string: some clients (rumqttc 0.25) cannot read a DISCONNECT
            // whose properties are omitted, which MQTT 5 allows.
            v5::Packet::Disconnect(v5::Disconnect {
                reason_code: reason,
                properties: Some(v5::DisconnectProperties {
                    session_expiry_interval: None,
                    reason_string: Some(format!("{reason:?}")),
                    user_properties: Vec::new(),
                    server_reference: None,
                }),
            })
        }
    };
    packet
        .write(out, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
