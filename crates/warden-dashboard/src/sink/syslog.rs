//! Syslog receivers: one RFC 5424 message per notification,
//! `<PRI>1 TIMESTAMP HOSTNAME warden PROCID MSGID - TEXT`, with `MSGID` `alert` or `decision`,
//! no structured data (Warden has no enterprise number to name an SD-ID with), and `TEXT` the
//! webhook's JSON body or a CEF record. Over UDP each message is a datagram (RFC 5426); over
//! TCP it is framed by octet counting (`LEN SP MSG`, RFC 6587) on a connection kept open and
//! re-established when the receiver closed it (checked before each write) or a write fails (with
//! back-off). TCP without acknowledgements cannot tell a message written into a connection the
//! receiver closed at that very moment from a delivered one: such a message counts delivered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use warden_config::{SyslogConfig, SyslogFormat};
use warden_event::{Action, Severity};

use super::{Notice, SinkStats};
use crate::error::DashboardError;

/// Where a receiver listens.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    tcp: bool,
    addr: SocketAddr,
}

impl Target {
    /// Resolve `c.url` (`udp://HOST:PORT` or `tcp://HOST:PORT`), once, at start.
    pub async fn resolve(c: &SyslogConfig) -> Result<Self, DashboardError> {
        let bad = |why: String| DashboardError::Config(format!("syslog {}: {why}", c.name));
        let (tcp, host) = match (c.url.strip_prefix("tcp://"), c.url.strip_prefix("udp://")) {
            (Some(h), _) => (true, h),
            (None, Some(h)) => (false, h),
            _ => return Err(bad(format!("{} is not udp:// or tcp://", c.url))),
        };
        let addr = tokio::net::lookup_host(host)
            .await
            .map_err(|e| bad(format!("resolving {host}: {e}")))?
            .next()
            .ok_or_else(|| bad(format!("{host} has no address")))?;
        Ok(Self { tcp, addr })
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of a Unix time in nanoseconds (RFC 3339, as RFC 5424 wants).
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// The syslog severity of a notification (RFC 5424: 2 critical, 4 warning, 5 notice).
fn syslog_severity(n: &Notice) -> u8 {
    match n {
        Notice::Alert { alert } => match alert.severity {
            Severity::High => 2,
            Severity::Medium => 4,
            Severity::Low => 5,
        },
        Notice::Decision { decision } if decision.action == Action::Release => 5,
        Notice::Decision { .. } => 4,
    }
}

/// Printable US-ASCII without spaces, at most `max` bytes (`-` when empty), for a header field.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() { "-".into() } else { f }
}

/// The HOSTNAME field: the configured one, else `$HOSTNAME`, else `-`.
pub(crate) fn hostname(c: &SyslogConfig) -> String {
    let name = c
        .hostname
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    header_field(&name, 255)
}

/// One RFC 5424 message (without transport framing).
pub(crate) fn message(c: &SyslogConfig, host: &str, n: &Notice) -> Vec<u8> {
    let pri = u16::from(c.facility) * 8 + u16::from(syslog_severity(n));
    let (msgid, ts) = match n {
        Notice::Alert { alert } => ("alert", alert.ts),
        Notice::Decision { decision } => ("decision", decision.decided_at),
    };
    let text = match c.format {
        SyslogFormat::Json => serde_json::to_string(n).unwrap_or_default(),
        SyslogFormat::Cef => cef(n),
    };
    format!(
        "<{pri}>1 {} {host} warden {} {msgid} - {text}",
        rfc3339(ts),
        std::process::id()
    )
    .into_bytes()
}

/// A CEF header field: `\` and `|` escaped.
fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

/// A CEF extension value: `\`, `=` and line breaks escaped.
fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// `CEF:0|Warden|Warden|VERSION|ID|NAME|SEVERITY|EXTENSIONS` (severity 0–10).
pub(crate) fn cef(n: &Notice) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let action = |a: Option<Action>| {
        a.map_or("none".to_string(), |a| {
            serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        })
    };
    let (id, name, sev, subject, mut ext) = match n {
        Notice::Alert { alert } => {
            let sev = match alert.severity {
                Severity::High => 8,
                Severity::Medium => 5,
                Severity::Low => 3,
            };
            let ext = vec![
                ("rt", (alert.ts / 1_000_000).to_string()),
                ("act", action(alert.action)),
                ("externalId", alert.id.clone()),
                ("cs2Label", "pipeline".into()),
                ("cs2", alert.pipeline.clone()),
                ("cn1Label", "score".into()),
                ("cn1", format!("{:.3}", alert.score)),
                ("msg", alert.message.clone()),
            ];
            (
                format!("alert:{}", alert.detector),
                format!("{} alert", alert.detector),
                sev,
                &alert.subject,
                ext,
            )
        }
        Notice::Decision { decision } => {
            let act = action(Some(decision.action));
            let sev = match decision.action {
                Action::Quarantine => 8,
                Action::Release => 3,
                _ => 6,
            };
            let ext = vec![
                ("rt", (decision.decided_at / 1_000_000).to_string()),
                ("act", act.clone()),
                ("externalId", decision.id.clone()),
                ("cs2Label", "detector".into()),
                ("cs2", decision.detector.clone()),
                ("msg", decision.reason.clone()),
            ];
            (
                format!("decision:{act}"),
                format!("{act} decision"),
                sev,
                &decision.subject,
                ext,
            )
        }
    };
    ext.push(("cs1Label", "subject".into()));
    ext.push(("cs1", subject.to_string()));
    match subject.kind {
        warden_event::SubjectKind::Ip => ext.push(("src", subject.value.clone())),
        warden_event::SubjectKind::Identity => ext.push(("suser", subject.value.clone())),
        _ => {}
    }
    let ext: Vec<String> = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", cef_value(v)))
        .collect();
    format!(
        "CEF:0|Warden|Warden|{}|{}|{}|{sev}|{}",
        cef_header(version),
        cef_header(&id),
        cef_header(&name),
        ext.join(" ")
    )
}

/// An open transport to the receiver.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

async fn connect(target: Target) -> std::io::Result<Conn> {
    if target.tcp {
        let s = TcpStream::connect(target.addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn::Tcp(s))
    } else {
        let local: SocketAddr = if target.addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(local).await?;
        s.connect(target.addr).await?;
        Ok(Conn::Udp(s))
    }
}

/// Whether the receiver closed a TCP connection (it never sends anything, so a readable end
/// of stream means closed). Writing into such a connection would look delivered.
fn closed_by_peer(conn: &Conn) -> bool {
    match conn {
        Conn::Udp(_) => false,
        Conn::Tcp(s) => match s.try_read(&mut [0u8; 64]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        },
    }
}

async fn send(conn: &mut Conn, msg: &[u8]) -> std::io::Result<()> {
    match conn {
        Conn::Udp(s) => s.send(msg).await.map(|_| ()),
        Conn::Tcp(s) => {
            let mut frame = format!("{} ", msg.len()).into_bytes();
            frame.extend_from_slice(msg);
            s.write_all(&frame).await
        }
    }
}

/// Deliver every queued notification to `target`, retrying failed attempts with back-off.
pub(super) async fn deliver(
    config: SyslogConfig,
    target: Target,
    mut rx: mpsc::Receiver<Notice>,
    stats: Arc<SinkStats>,
) {
    let host = hostname(&config);
    let timeout = Duration::from_millis(config.timeout_ms);
    let mut conn: Option<Conn> = None;
    while let Some(notice) = rx.recv().await {
        let msg = message(&config, &host, &notice);
        let mut backoff = Duration::from_millis(500);
        for attempt in 1..=config.max_attempts {
            let sent = tokio::time::timeout(timeout, async {
                if conn.as_ref().is_some_and(closed_by_peer) {
                    debug!(sink = %config.name, "Syslog receiver closed the connection; reconnecting.");
                    conn = None;
                }
                if conn.is_none() {
                    conn = Some(connect(target).await?);
                }
                match conn.as_mut() {
                    Some(c) => send(c, &msg).await,
                    None => Err(std::io::ErrorKind::NotConnected.into()),
                }
            })
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            match sent {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(sink = %config.name, attempt, "Syslog message sent.");
                    break;
                }
                Err(e) => {
                    conn = None;
                    stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    if attempt == config.max_attempts {
                        stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        warn!(sink = %config.name, attempt, error = %e, "Syslog message not delivered; dead-lettered.");
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T23:59:59.123456Z (a leap day).
        assert_eq!(
            rfc3339(1_709_251_199_123_456_789),
            "2024-02-29T23:59:59.123456Z"
        );
        assert_eq!(rfc3339(-1_000), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn cef_escapes_its_separators() {
        assert_eq!(cef_header(r"a|b\c"), r"a\|b\\c");
        assert_eq!(cef_value("x=1\ny\\"), r"x\=1\ny\\");
        assert_eq!(header_field("my host\u{e9}", 255), "myhost");
        assert_eq!(header_field(" ", 255), "-");
    }
}
