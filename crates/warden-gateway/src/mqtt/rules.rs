//! Topic patterns of the translation rules, the HTTP request a topic becomes, and the topic
//! filters devices may subscribe to.

use warden_config::{MqttPublishRule, PayloadMode};

/// A PUBLISH translated: the request to send through the chain.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Translated {
    pub method: String,
    /// Path and query, percent-encoded.
    pub path_and_query: String,
    pub content_type: String,
    pub payload: PayloadMode,
    /// The event's `route`.
    pub name: String,
}

/// Why a topic is not translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRule {
    /// No rule's pattern matches the topic.
    Unmatched,
    /// A rule matches but names another identity (owner scoping).
    OtherIdentity,
    /// Not a valid topic name (empty, wildcards, NUL).
    Invalid,
}

/// The request `topic`, published by `identity`, becomes under the first rule that matches.
pub(crate) fn translate(
    rules: &[MqttPublishRule],
    topic: &str,
    identity: &str,
) -> Result<Translated, NoRule> {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(NoRule::Invalid);
    }
    let levels: Vec<&str> = topic.split('/').collect();
    let mut owner_refused = false;
    for rule in rules {
        match captures(&rule.topic, &levels, identity) {
            Match::Yes(caps) => {
                let mut path = substitute(&rule.path, &caps, identity, topic);
                if path.is_empty() {
                    path.push('/');
                }
                return Ok(Translated {
                    method: rule.method.clone(),
                    path_and_query: path,
                    content_type: rule.content_type.clone().unwrap_or_else(|| {
                        match rule.payload {
                            PayloadMode::Json => "application/json",
                            PayloadMode::Raw => "application/octet-stream",
                        }
                        .to_string()
                    }),
                    payload: rule.payload,
                    name: rule.name.clone().unwrap_or_else(|| rule.topic.clone()),
                });
            }
            Match::OtherIdentity => owner_refused = true,
            Match::No => {}
        }
    }
    Err(if owner_refused {
        NoRule::OtherIdentity
    } else {
        NoRule::Unmatched
    })
}

enum Match {
    Yes(Vec<(String, String)>),
    OtherIdentity,
    No,
}

fn captures(pattern: &str, levels: &[&str], identity: &str) -> Match {
    let pat: Vec<&str> = pattern.split('/').collect();
    let mut caps = Vec::new();
    let mut other = false;
    for (i, p) in pat.iter().enumerate() {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix("...}")) {
            if levels.len() <= i {
                return Match::No;
            }
            caps.push((name.to_string(), levels[i..].join("/")));
            return if other {
                Match::OtherIdentity
            } else {
                Match::Yes(caps)
            };
        }
        let Some(level) = levels.get(i) else {
            return Match::No;
        };
        match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some("identity") => {
                if level.is_empty() {
                    return Match::No;
                }
                if *level != identity {
                    other = true;
                }
            }
            Some(name) => {
                if level.is_empty() {
                    return Match::No;
                }
                caps.push((name.to_string(), (*level).to_string()));
            }
            None if p == level => {}
            None => return Match::No,
        }
    }
    if pat.len() != levels.len() {
        Match::No
    } else if other {
        Match::OtherIdentity
    } else {
        Match::Yes(caps)
    }
}

/// Percent-encode a value for a path: everything but unreserved characters (RFC 3986), and
/// `/` too unless `keep_slash`.
fn encode(v: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn substitute(template: &str, caps: &[(String, String)], identity: &str, topic: &str) -> String {
    let mut out = String::with_capacity(template.len() + topic.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        let value = match name {
            "identity" => Some(encode(identity, false)),
            "topic" => Some(encode(topic, false)),
            _ => {
                let (bare, many) = match name.strip_suffix("...") {
                    Some(n) => (n, true),
                    None => (name, false),
                };
                caps.iter().find(|(n, _)| n == bare).map(|(_, v)| {
                    // A multi-level capture keeps its `/`, but never as a dot segment.
                    if many {
                        v.split('/')
                            .map(|s| match s {
                                "." | ".." => s.replace('.', "%2E"),
                                s => encode(s, false),
                            })
                            .collect::<Vec<_>>()
                            .join("/")
                    } else {
                        match v.as_str() {
                            "." | ".." => v.replace('.', "%2E"),
                            v => encode(v, false),
                        }
                    }
                })
            }
        };
        match value {
            Some(v) => out.push_str(&v),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether `identity` may subscribe to `filter` under the `allowed` filters: `filter` must
/// select a subset of what one allowed filter selects, `{identity}` standing for `identity`.
pub(crate) fn may_subscribe(allowed: &[String], filter: &str, identity: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') || filter.starts_with("$share/") {
        return false;
    }
    let req: Vec<&str> = filter.split('/').collect();
    allowed.iter().any(|a| {
        let pat: Vec<&str> = a.split('/').collect();
        covers(&pat, &req, identity)
    })
}

fn covers(pat: &[&str], req: &[&str], identity: &str) -> bool {
    for (i, p) in pat.iter().enumerate() {
        if *p == "#" {
            return true;
        }
        let Some(r) = req.get(i) else {
            return false;
        };
        let ok = match *p {
            "+" => *r != "#",
            "{identity}" => *r == identity,
            lit => *r == lit,
        };
        if !ok {
            return false;
        }
    }
    pat.len() == req.len()
}

/// Whether `topic` matches the subscription `filter` (MQTT rules for `+` and `#`).
pub(crate) fn matches(topic: &str, filter: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match t.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

/// Read `bytes` as a session reads a connection after CONNECT (MQTT 5 when `v5`, else
/// 3.1.1), packet by packet until one is incomplete or refused, translating each PUBLISH of
/// identity `dev-1` with the rules `devices/{identity}/telemetry` → `/api/{identity}/t` and
/// `devices/{identity}/files/{rest...}` → `/api/{identity}/files/{rest...}`: the packets read
/// and the paths (for the fuzz target and the property tests).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_stream(bytes: &[u8], v5: bool) -> (usize, Vec<String>) {
    use super::codec::{self, Inbound, Version};
    let rule = |topic: &str, path: &str| MqttPublishRule {
        topic: topic.into(),
        method: "POST".into(),
        path: path.into(),
        payload: PayloadMode::Raw,
        content_type: None,
        name: None,
    };
    let rules = [
        rule("devices/{identity}/telemetry", "/api/{identity}/t"),
        rule(
            "devices/{identity}/files/{rest...}",
            "/api/{identity}/files/{rest...}",
        ),
    ];
    let version = if v5 { Version::V5 } else { Version::V4 };
    let mut buf = bytes::BytesMut::from(bytes);
    let (mut packets, mut paths) = (0, Vec::new());
    loop {
        let before = buf.len();
        match codec::read(&mut buf, version, 64 * 1024) {
            Ok(p) => {
                assert!(
                    buf.len() < before,
                    "a packet was read without consuming bytes"
                );
                packets += 1;
                if let Inbound::Publish { topic, .. } = p
                    && let Ok(t) = translate(&rules, &topic, "dev-1")
                {
                    paths.push(t.path_and_query);
                }
            }
            Err(_) => return (packets, paths),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(topic: &str, path: &str) -> MqttPublishRule {
        MqttPublishRule {
            topic: topic.into(),
            method: "POST".into(),
            path: path.into(),
            payload: PayloadMode::Raw,
            content_type: None,
            name: None,
        }
    }

    #[test]
    fn topics_translate_with_owner_scoping() {
        let rules = [
            rule(
                "devices/{identity}/telemetry",
                "/api/v1/telemetry/{identity}",
            ),
            rule(
                "devices/{identity}/files/{rest...}",
                "/api/v1/files/{rest...}",
            ),
            rule("fleet/{site}/{kind}", "/api/v1/sites/{site}?kind={kind}"),
        ];
        let t = translate(&rules, "devices/dev-1/telemetry", "dev-1").expect("translated");
        assert_eq!(t.path_and_query, "/api/v1/telemetry/dev-1");
        assert_eq!(t.name, "devices/{identity}/telemetry");
        assert_eq!(
            translate(&rules, "devices/dev-2/telemetry", "dev-1"),
            Err(NoRule::OtherIdentity)
        );
        assert_eq!(
            translate(&rules, "devices/dev-1/other", "dev-1"),
            Err(NoRule::Unmatched)
        );
        assert_eq!(
            translate(&rules, "devices/+/telemetry", "dev-1"),
            Err(NoRule::Invalid)
        );
        let t = translate(&rules, "devices/dev-1/files/a/b c", "dev-1").expect("translated");
        assert_eq!(t.path_and_query, "/api/v1/files/a/b%20c");
        let t = translate(&rules, "devices/dev-1/files/../../admin", "dev-1").expect("translated");
        assert_eq!(t.path_and_query, "/api/v1/files/%2E%2E/%2E%2E/admin");
        let t = translate(&rules, "fleet/../x", "dev-1").expect("translated");
        assert_eq!(t.path_and_query, "/api/v1/sites/%2E%2E?kind=x");
        let t = translate(&rules, "fleet/a?b=1/x/y", "dev-1");
        assert_eq!(t, Err(NoRule::Unmatched));
        let t = translate(&rules, "fleet/a?b=1&c/x", "dev-1").expect("translated");
        assert_eq!(t.path_and_query, "/api/v1/sites/a%3Fb%3D1%26c?kind=x");
        // An identity with a `/` can never match a single level.
        assert_eq!(
            translate(&rules, "devices/a/b/telemetry", "a/b"),
            Err(NoRule::Unmatched)
        );
    }

    proptest::proptest! {
        /// Any bytes: no panic, progress, and translated paths stay under their route.
        #[test]
        fn any_stream_reads_safely(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), v5 in proptest::bool::ANY) {
            let (_, paths) = read_stream(&bytes, v5);
            for p in paths {
                proptest::prop_assert!(p.starts_with("/api/dev-1/"), "{}", p);
                proptest::prop_assert!(!p.split(['/', '?']).any(|s| s == ".." || s == "."), "{}", p);
            }
        }

        /// Topics built from hostile levels never climb out of the route.
        #[test]
        fn hostile_topics_stay_under_the_route(levels in proptest::collection::vec("[./%?#+a-z\\\\]{0,4}", 1..6)) {
            let topic = format!("devices/dev-1/files/{}", levels.join("/"));
            let mut stream = bytes::BytesMut::new();
            let p = rumqttc::mqttbytes::v4::Publish::new(topic, rumqttc::mqttbytes::QoS::AtMostOnce, "x");
            if rumqttc::mqttbytes::v4::Packet::Publish(p).write(&mut stream, usize::MAX).is_ok() {
                let (_, paths) = read_stream(&stream, false);
                for p in paths {
                    proptest::prop_assert!(!p.split(['/', '?']).any(|s| s == ".." || s == "."), "{}", p);
                }
            }
        }
    }

    #[test]
    fn subscriptions_are_scoped_to_the_owner() {
        let allowed = vec!["devices/{identity}/commands/#".to_string()];
        assert!(may_subscribe(&allowed, "devices/dev-1/commands/#", "dev-1"));
        assert!(may_subscribe(
            &allowed,
            "devices/dev-1/commands/reboot",
            "dev-1"
        ));
        assert!(may_subscribe(&allowed, "devices/dev-1/commands/+", "dev-1"));
        assert!(!may_subscribe(
            &allowed,
            "devices/dev-2/commands/#",
            "dev-1"
        ));
        assert!(!may_subscribe(&allowed, "devices/+/commands/#", "dev-1"));
        assert!(!may_subscribe(&allowed, "#", "dev-1"));
        assert!(!may_subscribe(
            &allowed,
            "$share/g/devices/dev-1/commands/#",
            "dev-1"
        ));
        assert!(matches(
            "devices/dev-1/commands/reboot",
            "devices/dev-1/commands/#"
        ));
        assert!(matches("a/b", "a/+"));
        assert!(!matches("a/b/c", "a/+"));
    }
}
