//! CoAP through the chain: libcoap's client and raw datagrams.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_requests_go_through_the_whole_chain_to_the_backend() -> anyhow::Result<()> {
    let client = coap_client()?;
    let rig = Rig::start(None).await?;
    let base = format!("coap://127.0.0.1:{}", rig.coap.port());
    let key_opt = format!("65001,{KEY_1}");

    // libcoap's client: a confirmable POST with the key in the credential option reaches the
    // backend with its exact payload and content type; a non-confirmable GET returns the
    // backend's body.
    let args: Vec<String> = [
        "-m",
        "post",
        "-O",
        &key_opt,
        "-t",
        "json",
        "-e",
        "{\"t\":7}",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("{base}/devices/dev-1/telemetry")])
    .collect();
    let out = run(client, args).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let seen = rig.seen.lock();
        let s = seen
            .iter()
            .find(|s| s.path == "/api/devices/dev-1/telemetry")
            .context("the backend did not get the POST")?;
        assert_eq!(s.method, "POST");
        assert_eq!(s.body, b"{\"t\":7}");
        assert_eq!(s.content_type, "application/json");
        assert!(!s.api_key, "the device's key must not reach the backend");
    }
    let args: Vec<String> = ["-N", "-O", &key_opt]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{base}/devices/dev-1/config")])
        .collect();
    let out = run(client, args).await?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "seen /api/devices/dev-1/config",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Uri-Query options become the backend request's query string.
    let args: Vec<String> = ["-N", "-O", &key_opt]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{base}/devices/dev-1/config?since=5&unit=C")])
        .collect();
    let out = run(client, args).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rig.seen
            .lock()
            .iter()
            .any(|s| s.path == "/api/devices/dev-1/config?since=5&unit=C"),
        "the query reached the backend: {:?}",
        rig.seen
            .lock()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );

    // Raw datagrams, from the attacker's side.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let key = KEY_1.as_bytes();
    // An argument's own `&`, `#` and spaces stay inside it (percent-encoded): no parameter
    // can be smuggled into the backend's query.
    let (code, ..) = coap_exchange(
        &sock,
        rig.coap,
        &coap_request(
            true,
            20,
            1,
            &["devices", "dev-1", "config"],
            &[(65001, key), (15, b"a=b&admin=1#x y")],
            b"",
        ),
    )
    .await?;
    assert_eq!(code, "2.05");
    assert!(
        rig.seen
            .lock()
            .iter()
            .any(|s| s.path == "/api/devices/dev-1/config?a=b%26admin=1%23x%20y"),
        "{:?}",
        rig.seen
            .lock()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
    // A query that is not UTF-8 is refused before anything else.
    let (code, ..) = coap_exchange(
        &sock,
        rig.coap,
        &coap_request(
            true,
            21,
            1,
            &["devices", "dev-1", "config"],
            &[(65001, key), (15, &[0xff, 0xfe])],
            b"",
        ),
    )
    .await?;
    assert_eq!(code, "4.00");
    let before = rig.seen.lock().len();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            coap_request(true, 1, 2, &["devices", "dev-1", "telemetry"], &[], b"x"),
            "4.01",
            "no credential",
        ),
        (
            coap_request(
                true,
                2,
                2,
                &["devices", "dev-1", "telemetry"],
                &[(65001, b"wrong-key")],
                b"x",
            ),
            "4.01",
            "wrong key",
        ),
        (
            coap_request(
                true,
                3,
                2,
                &["devices", "dev-2", "telemetry"],
                &[(65001, key)],
                b"x",
            ),
            "4.03",
            "another device's resource",
        ),
        (
            coap_request(
                true,
                4,
                2,
                &["devices", "dev-1", "nothing", "here"],
                &[(65001, key)],
                b"x",
            ),
            "4.04",
            "no resource",
        ),
        (
            coap_request(
                true,
                5,
                2,
                &["devices", "dev-1", "config"],
                &[(65001, key)],
                b"x",
            ),
            "4.05",
            "method not allowed on the resource",
        ),
        (
            coap_request(
                true,
                6,
                1,
                &["devices", "dev-1", "secrets"],
                &[(65001, key)],
                b"",
            ),
            "4.03",
            "RBAC refuses the translated path",
        ),
        (
            coap_request(
                true,
                7,
                3,
                &["devices", "dev-1", "telemetry"],
                &[(65001, key), (27, &[0x0e])],
                b"x",
            ),
            "4.00",
            "a Block1 block that says more follows must be full",
        ),
        (
            coap_request(
                true,
                8,
                1,
                &["devices", "dev-1", "big"],
                &[(65001, key)],
                b"",
            ),
            "2.05",
            "a response larger than a datagram: its first block",
        ),
        (
            coap_request(
                true,
                9,
                1,
                &["devices", "..", "config"],
                &[(65001, key)],
                b"",
            ),
            "4.03",
            "a dot segment for the identity",
        ),
    ];
    for (datagram, want, what) in &cases {
        let (code, ty, _, id) = coap_exchange(&sock, rig.coap, datagram).await?;
        assert_eq!(&code, want, "{what}");
        assert_eq!(
            ty,
            coap_lite::MessageType::Acknowledgement,
            "{what}: a piggybacked ACK"
        );
        assert_eq!(id, u16::from_be_bytes([datagram[2], datagram[3]]), "{what}");
    }
    let reached: Vec<String> = rig.seen.lock()[before..]
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        reached,
        vec!["/api/devices/dev-1/big".to_string()],
        "only the allowed GET reached the backend"
    );

    // A confirmable request resent with the same message id is answered again from the cache,
    // and reaches the backend once.
    let post = coap_request(
        true,
        100,
        2,
        &["devices", "dev-1", "telemetry"],
        &[(65001, key)],
        b"once",
    );
    let first = coap_exchange(&sock, rig.coap, &post).await?;
    let second = coap_exchange(&sock, rig.coap, &post).await?;
    assert_eq!(first.0, "2.04");
    assert_eq!(first, second);
    let n = rig.seen.lock().iter().filter(|s| s.body == b"once").count();
    assert_eq!(n, 1, "a retransmission reached the backend again");

    // A malformed confirmable datagram (token length 15, reserved) gets a Reset.
    let (_, ty, _, _) = coap_exchange(
        &sock,
        rig.coap,
        &[
            0x4f, 0x02, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ],
    )
    .await?;
    assert_eq!(ty, coap_lite::MessageType::Reset);

    // Quarantine: refused with 4.03, nothing forwarded.
    let (status, body) = rig
        .admin(
            reqwest::Method::POST,
            "/admin/quarantines",
            serde_json::json!({"subject": {"kind": "identity", "value": "dev-1"}, "ttl_s": 60}),
        )
        .await?;
    assert!(status < 300, "{status} {body}");
    let (code, ..) = coap_exchange(
        &sock,
        rig.coap,
        &coap_request(
            true,
            200,
            2,
            &["devices", "dev-1", "telemetry"],
            &[(65001, key)],
            b"after",
        ),
    )
    .await?;
    assert_eq!(code, "4.03");
    assert_eq!(
        rig.seen
            .lock()
            .iter()
            .filter(|s| s.body == b"after")
            .count(),
        0
    );

    let events = rig.events().await?;
    let coap: Vec<&RequestEvent> = events
        .iter()
        .filter(|e| e.protocol == Protocol::Coap)
        .collect();
    assert!(coap.iter().any(|e| e.route == "coap-telemetry"
        && e.path == "devices/dev-1/telemetry"
        && e.identity == "dev-1"
        && e.decision == Outcome::Allowed));
    assert!(coap.iter().any(|e| e.decision == Outcome::DeniedAuth));
    assert!(
        coap.iter()
            .any(|e| e.decision == Outcome::Quarantined && e.identity == "dev-1")
    );
    assert!(
        coap.iter()
            .any(|e| e.path == "devices/dev-2/telemetry" && e.decision == Outcome::DeniedRbac)
    );
    Ok(())
}
