//! The CoAP listeners' shared state and datagram loop: deduplication of confirmable requests
//! (RFC 7252 §4.5), the in-flight bound, and where responses go (the plain socket or a DTLS
//! session).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet, ResponseType};
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tracing::{debug, info};
use warden_config::CoapConfig;

use super::{handle, response, upload};
use crate::server::Chain;

/// How long a confirmable request's response is kept for retransmissions (RFC 7252
/// EXCHANGE_LIFETIME).
const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Responses kept for deduplication, at most.
const DEDUP_MAX: usize = 65_536;

/// Recent exchanges by (peer, message id): `None` while being answered.
#[derive(Default)]
struct Exchanges {
    map: HashMap<(SocketAddr, u16), Option<Vec<u8>>>,
    order: VecDeque<(Instant, SocketAddr, u16)>,
}

impl Exchanges {
    fn expire(&mut self, now: Instant) {
        while let Some((at, peer, id)) = self.order.front().copied() {
            if now.duration_since(at) < EXCHANGE_LIFETIME && self.order.len() <= DEDUP_MAX {
                break;
            }
            self.order.pop_front();
            self.map.remove(&(peer, id));
        }
    }
}

/// Where the responses to a peer go: the plain listener's socket, or the peer's DTLS
/// connection.
#[derive(Clone)]
pub(crate) enum Reply {
    Udp(Arc<UdpSocket>),
    Dtls(Arc<dyn webrtc_util::Conn + Send + Sync>),
}

impl Reply {
    async fn send(&self, bytes: &[u8], peer: SocketAddr) {
        let sent = match self {
            Reply::Udp(s) => s.send_to(bytes, peer).await.map(drop),
            Reply::Dtls(c) => c.send(bytes).await.map(drop).map_err(std::io::Error::other),
        };
        if let Err(e) = sent {
            debug!(%peer, error = %e, "CoAP send failed.");
        }
    }
}

/// What every CoAP datagram of a listener shares: its config, the chain, the cache of recent
/// exchanges, the partial uploads and the in-flight bound.
#[derive(Clone)]
pub(crate) struct Listener {
    pub(super) config: Arc<CoapConfig>,
    pub(super) chain: Chain,
    exchanges: Arc<Mutex<Exchanges>>,
    pub(super) uploads: Arc<upload::Uploads>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Listener {
    pub(crate) fn new(config: Arc<CoapConfig>, chain: Chain) -> Self {
        let permits = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
        Self {
            config,
            chain,
            exchanges: Arc::new(Mutex::new(Exchanges::default())),
            uploads: Arc::new(upload::Uploads::default()),
            permits,
        }
    }

    /// Answer one datagram from `peer` (over DTLS, `tls` carries its client certificate).
    pub(crate) async fn datagram(
        &self,
        datagram: &[u8],
        peer: SocketAddr,
        reply: Reply,
        tls: Option<crate::tls::TlsConn>,
    ) {
        let n = datagram.len();
        let packet = match Packet::from_bytes(datagram) {
            Ok(p) => p,
            Err(e) => {
                debug!(%peer, error = ?e, "Malformed CoAP message.");
                // A malformed confirmable message is rejected with a Reset (RFC 7252 §4.2).
                if n >= 4 && datagram[0] >> 6 == 1 && (datagram[0] >> 4) & 3 == 0 {
                    let mut rst = Packet::new();
                    rst.header.set_type(MessageType::Reset);
                    rst.header.message_id = u16::from_be_bytes([datagram[2], datagram[3]]);
                    rst.header.code = MessageClass::Empty;
                    if let Ok(b) = rst.to_bytes() {
                        reply.send(&b, peer).await;
                    }
                }
                return;
            }
        };
        let MessageClass::Request(method) = packet.header.code else {
            // ACKs and Resets from clients, empty pings (answered with a Reset).
            if packet.header.get_type() == MessageType::Confirmable
                && packet.header.code == MessageClass::Empty
            {
                let mut rst = Packet::new();
                rst.header.set_type(MessageType::Reset);
                rst.header.message_id = packet.header.message_id;
                rst.header.code = MessageClass::Empty;
                if let Ok(b) = rst.to_bytes() {
                    reply.send(&b, peer).await;
                }
            }
            return;
        };
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        let key = (peer, packet.header.message_id);
        // A retransmission: the cached response, or nothing while it is being answered.
        let seen = {
            let mut ex = self.exchanges.lock();
            ex.expire(Instant::now());
            match ex.map.get(&key) {
                Some(cached) => Some(cached.clone()),
                None => {
                    ex.map.insert(key, None);
                    ex.order.push_back((Instant::now(), peer, key.1));
                    None
                }
            }
        };
        match seen {
            Some(Some(resp)) => {
                reply.send(&resp, peer).await;
                return;
            }
            Some(None) => return,
            None => {}
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let resp = response(&packet, ResponseType::ServiceUnavailable, b"busy");
            finish(&reply, &self.exchanges, key, resp, confirmable).await;
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let resp = handle(&me, peer, tls, method, &packet).await;
            finish(&reply, &me.exchanges, key, resp, confirmable).await;
            drop(permit);
        });
    }
}

/// Serve CoAP on `socket` until `shutdown`.
pub(crate) async fn serve(
    listener: Listener,
    socket: UdpSocket,
    shutdown: impl std::future::Future<Output = ()>,
) {
    info!(addr = ?socket.local_addr().ok(), "CoAP listener started.");
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 1500];
    tokio::pin!(shutdown);
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "CoAP receive failed.");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        listener
            .datagram(&buf[..n], peer, Reply::Udp(socket.clone()), None)
            .await;
    }
}

/// Send `resp` and keep it for retransmissions of a confirmable request.
async fn finish(
    reply: &Reply,
    exchanges: &Mutex<Exchanges>,
    key: (SocketAddr, u16),
    resp: Packet,
    confirmable: bool,
) {
    let Ok(bytes) = resp.to_bytes() else {
        exchanges.lock().map.remove(&key);
        return;
    };
    if confirmable {
        if let Some(slot) = exchanges.lock().map.get_mut(&key) {
            *slot = Some(bytes.clone());
        }
    } else {
        exchanges.lock().map.remove(&key);
    }
    reply.send(&bytes, key.0).await;
}
