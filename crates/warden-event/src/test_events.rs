//! Events covering every field's variants, for the codecs' tests.

use crate::{
    ANONYMOUS, AuthInfo, AuthMethod, AuthResult, Outcome, Protocol, Reason, RequestEvent,
    SCHEMA_VERSION, TlsInfo,
};

/// Event `i`: its fields cycle through every enum variant, optional fields present and absent,
/// and strings with JSON escapes and non-ASCII.
pub(crate) fn event(i: u64) -> RequestEvent {
    RequestEvent {
        v: SCHEMA_VERSION,
        id: format!("{i:016x}"),
        gateway: "gw-1".into(),
        seq: i,
        ts: 1_767_603_600_000_000_000 + i as i64,
        identity: if i.is_multiple_of(5) {
            ANONYMOUS.into()
        } else {
            format!("dev-{i}")
        },
        tenant: format!("tenant-{}", i % 3),
        device_type: "camera".into(),
        auth: AuthInfo {
            method: [
                AuthMethod::None,
                AuthMethod::ApiKey,
                AuthMethod::Jwt,
                AuthMethod::ClientCert,
            ][i as usize % 4],
            result: [
                AuthResult::NotRequired,
                AuthResult::Missing,
                AuthResult::Ok,
                AuthResult::Failed,
            ][i as usize % 4],
        },
        client_ip: format!("10.0.0.{}", i % 250),
        protocol: [Protocol::Http, Protocol::Mqtt, Protocol::Coap][i as usize % 3],
        method: "GET".into(),
        route: "telemetry".into(),
        // Escapes and non-ASCII: these strings cannot be borrowed.
        path: if i.is_multiple_of(2) {
            format!("/api/v1/telemetry/\"quoted\"\\{i}\n")
        } else {
            format!("/api/v1/capteur-é/{i}")
        },
        status: 200 + (i % 4) as u16 * 100,
        decision: Outcome::ALL[i as usize % Outcome::ALL.len()],
        latency_us: 800 + i,
        bytes_in: 100,
        bytes_out: 2000 + i,
        user_agent: (!i.is_multiple_of(3)).then(|| "acme-fw/2.3.1".to_string()),
        tls: (i.is_multiple_of(2)).then(|| TlsInfo {
            version: "TLSv1.3".into(),
            client_cert_fingerprint: i.is_multiple_of(4).then(|| format!("sha256:{i:x}")),
        }),
        reason: Reason::ALL[i as usize % Reason::ALL.len()],
        query: if i.is_multiple_of(3) {
            String::new()
        } else {
            format!("page=int&q{}=str", i % 7)
        },
        query_hash: if i.is_multiple_of(3) {
            0
        } else {
            (i as u32).wrapping_mul(2_654_435_761) | 1
        },
    }
}
