//! CoAP devices (RFC 7252 over UDP) through the gateway's security chain.
//!
//! Each request — confirmable or not; GET, POST, PUT, DELETE — carries its device's credential
//! (an API key or a JWT) in a CoAP option (`gateway.coap.credential_option`, 65001 by default:
//! odd, so critical, never silently ignored). It is authenticated and checked against
//! quarantines as an MQTT CONNECT is, matched against `[[gateway.coap.resources]]` (Uri-Path
//! patterns with `{identity}` owner scoping), and sent as an HTTP request through every phase of
//! the HTTP path, evented there with `protocol = "coap"`; the HTTP status comes back as a CoAP
//! response code (a piggybacked ACK for a confirmable request). A confirmable request resent
//! with the same message id (the client did not get the ACK) is answered from a cache of
//! recent responses, never sent to the backend twice (RFC 7252 §4.5). Messages are parsed with
//! `coap-lite`. A GET whose representation does not fit one datagram is answered block-wise
//! (RFC 7959 Block2, stateless: `block.rs`); a larger response to another method is answered
//! 5.02 with a diagnostic. A POST or PUT body larger than a datagram comes in blocks (Block1,
//! `upload.rs`): each block is authenticated and matched, and the reassembled body goes
//! through the chain once, with the last block.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use warden_config::{MqttPublishRule, PayloadMode};
use warden_event::{Outcome, Protocol, Reason};

mod block;
pub(crate) mod dtls;
mod listener;
mod upload;

pub(crate) use listener::{Listener, Reply, serve};

use crate::mqtt::rules::{self, NoRule};
use crate::server::{ConnectRefused, Device, MqttEvent, Origin};

/// Largest response payload (a response must fit one datagram of at most 1280 bytes).
const MAX_PAYLOAD: usize = 1024;
/// The response to `req` with `code` and `payload`: a piggybacked ACK for a confirmable
/// request, a non-confirmable message otherwise.
fn response(req: &Packet, code: ResponseType, payload: &[u8]) -> Packet {
    let mut p = Packet::new();
    if req.header.get_type() == MessageType::Confirmable {
        p.header.set_type(MessageType::Acknowledgement);
        p.header.message_id = req.header.message_id;
    } else {
        p.header.set_type(MessageType::NonConfirmable);
        p.header.message_id = req.header.message_id.wrapping_add(0x8000);
    }
    p.header.code = MessageClass::Response(code);
    p.set_token(req.get_token().to_vec());
    p.payload = payload.to_vec();
    p
}

fn method_name(m: RequestType) -> Option<&'static str> {
    match m {
        RequestType::Get => Some("GET"),
        RequestType::Post => Some("POST"),
        RequestType::Put => Some("PUT"),
        RequestType::Delete => Some("DELETE"),
        _ => None,
    }
}

/// A CoAP Content-Format as an HTTP media type.
fn media_type(format: u16) -> Option<&'static str> {
    Some(match format {
        0 => "text/plain; charset=utf-8",
        40 => "application/link-format",
        41 => "application/xml",
        42 => "application/octet-stream",
        50 => "application/json",
        60 => "application/cbor",
        _ => return None,
    })
}

/// The CoAP response code of an HTTP status for `method`.
fn code_of(status: u16, method: &str) -> ResponseType {
    match status {
        201 => ResponseType::Created,
        200..=299 => match method {
            "GET" => ResponseType::Content,
            "DELETE" => ResponseType::Deleted,
            _ => ResponseType::Changed,
        },
        401 => ResponseType::Unauthorized,
        403 => ResponseType::Forbidden,
        404 | 410 => ResponseType::NotFound,
        405 => ResponseType::MethodNotAllowed,
        413 => ResponseType::RequestEntityTooLarge,
        415 => ResponseType::UnsupportedContentFormat,
        422 => ResponseType::UnprocessableEntity,
        429 => ResponseType::TooManyRequests,
        400..=499 => ResponseType::BadRequest,
        503 => ResponseType::ServiceUnavailable,
        504 => ResponseType::GatewayTimeout,
        _ => ResponseType::BadGateway,
    }
}

/// What a query argument keeps as is: unreserved characters and the sub-delimiters a query
/// may hold, `&` and `+` excepted (RFC 7252 §6.5, RFC 3986 §3.4): an option's `&` stays inside
/// its argument.
const QUERY_ARG: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/')
    .remove(b'?');

/// The request's Uri-Query options as a query string (each option one `&`-separated argument,
/// percent-encoded; `Some(None)` without any), or `None` when one is not UTF-8.
fn query_of(req: &Packet) -> Option<Option<String>> {
    let Some(args) = req.get_option(CoapOption::UriQuery) else {
        return Some(None);
    };
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        let a = std::str::from_utf8(a).ok()?;
        out.push(percent_encoding::utf8_percent_encode(a, QUERY_ARG).to_string());
    }
    Some((!out.is_empty()).then(|| out.join("&")))
}

async fn handle(
    listener: &Listener,
    peer: SocketAddr,
    tls: Option<crate::tls::TlsConn>,
    method: RequestType,
    req: &Packet,
) -> Packet {
    let (config, chain, uploads) = (&*listener.config, &listener.chain, &*listener.uploads);
    let started = Instant::now();
    let path: String = req
        .get_option(CoapOption::UriPath)
        .map(|segs| {
            segs.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default();
    let event = |device: Option<&Device>, m: &'static str, status, outcome, reason| {
        chain.event(MqttEvent {
            protocol: Protocol::Coap,
            device,
            peer,
            tls: None,
            auth: None,
            method: m,
            route: "coap",
            path: &path,
            status,
            outcome,
            reason,
            bytes_in: req.payload.len() as u64,
            started,
        });
    };
    let Some(m) = method_name(method) else {
        event(None, "FETCH", 405, Outcome::Invalid, Reason::Route);
        return response(req, ResponseType::MethodNotAllowed, b"");
    };
    // Critical options (odd numbers) the gateway does not act on must not be ignored:
    // Proxy-Uri/Proxy-Scheme (no forward proxying), unknown ones. Uri-Query (15) becomes the
    // translated request's query string; Block2 (23) asks for a block of a GET's response,
    // Block1 (27) carries a block of a POST's or PUT's body.
    let known = |n: u16| {
        matches!(
            n,
            1 | 3 | 4 | 5 | 7 | 11 | 12 | 14 | 15 | 17 | 23 | 27 | 60 | 258
        ) || n == config.credential_option
    };
    if req
        .options()
        .any(|(n, _)| !n.is_multiple_of(2) && !known(*n))
    {
        event(None, m, 400, Outcome::Invalid, Reason::Invalid);
        return response(req, ResponseType::BadOption, b"unsupported critical option");
    }
    let Some(query) = query_of(req) else {
        event(None, m, 400, Outcome::Invalid, Reason::Invalid);
        return response(req, ResponseType::BadRequest, b"Uri-Query is not UTF-8");
    };
    let want = match block::requested(req) {
        Ok(b) if b.is_some() && m != "GET" => {
            event(None, m, 400, Outcome::Invalid, Reason::Invalid);
            return response(
                req,
                ResponseType::BadOption,
                b"Block2 is supported on GET only",
            );
        }
        Ok(b) => b,
        Err(why) => {
            event(None, m, 400, Outcome::Invalid, Reason::Invalid);
            return response(req, ResponseType::BadOption, why.as_bytes());
        }
    };
    let up = match upload::requested(req) {
        Ok(Some(_)) if m != "POST" && m != "PUT" => {
            event(None, m, 400, Outcome::Invalid, Reason::Invalid);
            return response(
                req,
                ResponseType::BadOption,
                b"Block1 is for POST and PUT bodies",
            );
        }
        Ok(b) => b,
        Err(why) => {
            event(None, m, 400, Outcome::Invalid, Reason::Invalid);
            return response(req, ResponseType::BadOption, why.as_bytes());
        }
    };
    let credential = req
        .get_first_option(CoapOption::Unknown(config.credential_option))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string);
    let device = match chain.connect(peer, tls, credential.as_deref()).await {
        Ok(d) => d,
        Err((why, auth, principal)) => {
            let d = principal.map(|p| Device::unverified(p, auth.clone(), peer));
            let (code, status, outcome, reason) = match why {
                ConnectRefused::Credentials => (
                    ResponseType::Unauthorized,
                    401,
                    Outcome::DeniedAuth,
                    Reason::Auth,
                ),
                ConnectRefused::Quarantined => (
                    ResponseType::Forbidden,
                    403,
                    Outcome::Quarantined,
                    Reason::Quarantine,
                ),
            };
            chain.event(MqttEvent {
                protocol: Protocol::Coap,
                device: d.as_ref(),
                peer,
                tls: None,
                auth: Some(auth),
                method: m,
                route: "coap",
                path: &path,
                status,
                outcome,
                reason,
                bytes_in: req.payload.len() as u64,
                started,
            });
            return response(req, code, b"");
        }
    };
    let identity = device.principal.identity.clone();
    let rules: Vec<MqttPublishRule> = config
        .resources
        .iter()
        .filter(|r| r.methods.iter().any(|x| x == m))
        .map(|r| MqttPublishRule {
            topic: r.path.clone(),
            method: m.to_string(),
            path: r.to.clone(),
            payload: PayloadMode::Raw,
            content_type: None,
            name: Some(r.name.clone().unwrap_or_else(|| r.path.clone())),
        })
        .collect();
    let t = match rules::translate(&rules, &path, &identity) {
        Ok(t) => t,
        Err(why) => {
            let any_method = config.resources.iter().any(|r| {
                rules::translate(
                    &[MqttPublishRule {
                        topic: r.path.clone(),
                        method: m.to_string(),
                        path: r.to.clone(),
                        payload: PayloadMode::Raw,
                        content_type: None,
                        name: None,
                    }],
                    &path,
                    &identity,
                )
                .is_ok()
            });
            let (code, status, outcome, reason) = match why {
                NoRule::OtherIdentity => (
                    ResponseType::Forbidden,
                    403,
                    Outcome::DeniedRbac,
                    Reason::Rbac,
                ),
                _ if any_method => (
                    ResponseType::MethodNotAllowed,
                    405,
                    Outcome::Invalid,
                    Reason::Route,
                ),
                _ => (ResponseType::NotFound, 404, Outcome::Invalid, Reason::Route),
            };
            event(Some(&device), m, status, outcome, reason);
            return response(req, code, b"");
        }
    };
    let content_type = req
        .get_first_option(CoapOption::ContentFormat)
        .map(|v| v.iter().fold(0u16, |acc, b| (acc << 8) | u16::from(*b)))
        .and_then(media_type);
    let target = match &query {
        Some(q) if t.path_and_query.contains('?') => format!("{}&{q}", t.path_and_query),
        Some(q) => format!("{}?{q}", t.path_and_query),
        None => t.path_and_query.clone(),
    };
    let payload = match up {
        None => req.payload.clone(),
        Some(b) => {
            let size1 = req
                .get_first_option(CoapOption::Size1)
                .filter(|v| v.len() <= 4)
                .map(|v| v.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)));
            let key = (peer, identity.clone(), m, target.clone());
            match uploads.block(key, b, &req.payload, size1) {
                upload::Step::Complete(body) => body,
                upload::Step::Continue => {
                    chain.event(MqttEvent {
                        protocol: Protocol::Coap,
                        device: Some(&device),
                        peer,
                        tls: None,
                        auth: None,
                        method: m,
                        route: &t.name,
                        path: &path,
                        status: 100,
                        outcome: Outcome::Allowed,
                        reason: Reason::None,
                        bytes_in: req.payload.len() as u64,
                        started,
                    });
                    let mut p = response(req, ResponseType::Continue, b"");
                    p.add_option(CoapOption::Block1, b.echo());
                    return p;
                }
                upload::Step::Refuse(code, why) => {
                    let (status, reason) = match code {
                        ResponseType::RequestEntityTooLarge => (413, Reason::Invalid),
                        ResponseType::ServiceUnavailable => (503, Reason::Overload),
                        _ => (400, Reason::Invalid),
                    };
                    event(Some(&device), m, status, Outcome::Invalid, reason);
                    let mut p = response(req, code, why.as_bytes());
                    if code == ResponseType::RequestEntityTooLarge {
                        let (o, v) = upload::size1();
                        p.add_option(o, v);
                    }
                    return p;
                }
            }
        }
    };
    let (status, body) = chain
        .request(
            &device,
            m,
            &target,
            content_type.or((m != "GET" && m != "DELETE").then_some("application/octet-stream")),
            Bytes::from(payload),
            Origin {
                protocol: Protocol::Coap,
                rule: t.name,
                topic: path.clone(),
            },
            if m == "GET" {
                block::MAX_BODY
            } else {
                MAX_PAYLOAD
            },
        )
        .await;
    let mut resp = answer(req, status, body, want, m);
    if let Some(b) = up {
        resp.add_option(CoapOption::Block1, b.echo());
    }
    resp
}

/// The response to `req` (method `m`) from the chain's `status` and `body`: in blocks when a
/// GET's body is larger than a datagram or `want` asks for one.
fn answer(
    req: &Packet,
    status: u16,
    body: Option<Bytes>,
    want: Option<block::Block>,
    m: &str,
) -> Packet {
    match body {
        // The body of a success is the resource (in blocks when it is larger than a
        // datagram); an error's (the gateway's JSON) is not sent over the air.
        Some(body) if (200..300).contains(&status) => match block::cut(&body, want, MAX_PAYLOAD) {
            Ok(None) => response(req, code_of(status, m), &body),
            Ok(Some((range, options))) => {
                let mut p = response(req, code_of(status, m), &body[range]);
                for (option, value) in options {
                    p.add_option(option, value);
                }
                p
            }
            Err(why) => response(req, ResponseType::BadOption, why.as_bytes()),
        },
        Some(_) => response(req, code_of(status, m), b""),
        None if m == "GET" => response(
            req,
            ResponseType::BadGateway,
            b"response larger than the largest representation served block-wise",
        ),
        None => response(
            req,
            ResponseType::BadGateway,
            b"response too large for one datagram (block-wise transfer is for GET)",
        ),
    }
}
