//! MQTT through the chain: rumqttc 3.1.1 and 5.0 on the plain listener, mosquitto clients
//! over TLS with a client certificate.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_messages_go_through_the_whole_chain_to_the_backend() -> anyhow::Result<()> {
    let rig = Rig::start(None).await?;

    // MQTT 3.1.1: QoS 1 to the device's own telemetry topic reaches the backend as the rule
    // says, with the exact payload, without the device's key, and is acknowledged.
    let mut o = rumqttc::MqttOptions::new("dev-1", "127.0.0.1", rig.mqtt.port());
    o.set_credentials("dev-1", KEY_1);
    let (c4, mut el4) = rumqttc::AsyncClient::new(o, 16);
    let payload = br#"{"t":21.5}"#.to_vec();
    c4.publish(
        "devices/dev-1/telemetry",
        rumqttc::QoS::AtLeastOnce,
        false,
        payload.clone(),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), el4.poll())
            .await
            .context("no PUBACK (3.1.1)")??;
        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = ev {
            break;
        }
    }
    {
        let seen = rig.seen.lock();
        let s = seen.first().context("backend saw nothing")?;
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/api/devices/dev-1/telemetry");
        assert_eq!(s.body, payload);
        assert_eq!(s.content_type, "application/json");
        assert!(
            !s.api_key,
            "the device's API key must not reach the backend"
        );
    }
    c4.disconnect().await?;

    // MQTT 5: another device's topic, a topic RBAC does not allow, an unknown topic: refused
    // with reason codes, and the backend sees none of them.
    let (c5, mut rx) = v5_client(rig.mqtt, "dev-1:probe", KEY_1).await;
    next(&mut rx, Duration::from_secs(10), |p| match p {
        Ok(P5::ConnAck(a)) if a.code == ConnectReturnCode::Success => Some(()),
        _ => None,
    })
    .await
    .context("CONNACK")?;
    let before = rig.seen.lock().len();
    for (topic, want) in [
        ("devices/dev-2/telemetry", PubAckReason::NotAuthorized),
        ("devices/dev-1/status", PubAckReason::NotAuthorized),
        ("devices/dev-1/unknown", PubAckReason::TopicNameInvalid),
        ("devices/dev-1/fail", PubAckReason::UnspecifiedError),
    ] {
        c5.publish(topic, Q5::AtLeastOnce, false, b"x".to_vec())
            .await?;
        let got = next(&mut rx, Duration::from_secs(10), |p| match p {
            Ok(P5::PubAck(a)) => Some(a.reason),
            _ => None,
        })
        .await?;
        assert_eq!(got, want, "PUBACK for {topic}");
    }
    let after: Vec<String> = rig.seen.lock()[before..]
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        after,
        vec!["/api/devices/dev-1/fail".to_string()],
        "only the allowed topic reached the backend"
    );

    // Commands downstream: an allowed subscription is granted, another device's refused; the
    // admin API delivers to the subscribed session.
    c5.subscribe("devices/dev-1/commands/#", Q5::AtLeastOnce)
        .await?;
    c5.subscribe("devices/dev-2/commands/#", Q5::AtLeastOnce)
        .await?;
    let mut codes = Vec::new();
    for _ in 0..2 {
        codes.push(
            next(&mut rx, Duration::from_secs(10), |p| match p {
                Ok(P5::SubAck(a)) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await?,
        );
    }
    assert_eq!(
        codes[0],
        vec![SubscribeReasonCode::Success(Q5::AtLeastOnce)]
    );
    assert_eq!(codes[1], vec![SubscribeReasonCode::NotAuthorized]);
    let (status, body) = rig
        .admin(
            reqwest::Method::POST,
            "/admin/mqtt/publish",
            serde_json::json!({"identity": "dev-1", "topic": "devices/dev-1/commands/reboot", "payload": "now", "qos": 1}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let cmd = next(&mut rx, Duration::from_secs(10), |p| match p {
        Ok(P5::Publish(p)) => Some((p.topic.clone(), p.payload.clone())),
        _ => None,
    })
    .await?;
    assert_eq!(&cmd.0[..], b"devices/dev-1/commands/reboot");
    assert_eq!(&cmd.1[..], b"now");

    // The connection's message limit: a burst past it is refused with `quota exceeded`.
    let mut quota = 0;
    for _ in 0..40 {
        c5.publish(
            "devices/dev-1/telemetry",
            Q5::AtLeastOnce,
            false,
            b"{}".to_vec(),
        )
        .await?;
    }
    for _ in 0..40 {
        let r = next(&mut rx, Duration::from_secs(10), |p| match p {
            Ok(P5::PubAck(a)) => Some(a.reason),
            _ => None,
        })
        .await?;
        if r == PubAckReason::QuotaExceeded {
            quota += 1;
        }
    }
    assert!(
        quota >= 10,
        "a burst of 40 against a burst allowance of 20: {quota} refused"
    );

    // Wrong key, and a client id naming another device: refused at CONNECT.
    let (_bad, mut brx) = v5_client(rig.mqtt, "dev-1", "not-a-key").await;
    let e = next(&mut brx, Duration::from_secs(10), |p| match p {
        Ok(P5::ConnAck(a)) => Some(format!("{:?}", a.code)),
        Err(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert!(e.contains("BadUserNamePassword"), "{e}");
    let (_spoof, mut srx) = v5_client(rig.mqtt, "dev-2", KEY_1).await;
    let e = next(&mut srx, Duration::from_secs(10), |p| match p {
        Ok(P5::ConnAck(a)) => Some(format!("{:?}", a.code)),
        Err(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert!(e.contains("ClientIdentifierNotValid"), "{e}");

    // Quarantine: the open session is disconnected at once, a reconnect is refused.
    let (status, body) = rig
        .admin(
            reqwest::Method::POST,
            "/admin/quarantines",
            serde_json::json!({"subject": {"kind": "identity", "value": "dev-1"}, "ttl_s": 60}),
        )
        .await?;
    assert!(status < 300, "{status} {body}");
    let t0 = Instant::now();
    let why = next(&mut rx, Duration::from_secs(5), |p| match p {
        Ok(P5::Disconnect(d)) => Some(format!("{:?}", d.reason_code)),
        Err(e) => Some(e.clone()),
        _ => None,
    })
    .await
    .context("the quarantined session stayed open")?;
    assert!(why.contains("AdministrativeAction"), "{why}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "disconnected after {:?}",
        t0.elapsed()
    );
    let (_again, mut arx) = v5_client(rig.mqtt, "dev-1", KEY_1).await;
    let e = next(&mut arx, Duration::from_secs(10), |p| match p {
        Ok(P5::ConnAck(a)) => Some(format!("{:?}", a.code)),
        Err(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert!(e.contains("NotAuthorized"), "{e}");

    // Events: every CONNECT, PUBLISH and SUBSCRIBE, as MQTT, attributed.
    let events = rig.events().await?;
    let mqtt: Vec<&RequestEvent> = events
        .iter()
        .filter(|e| e.protocol == Protocol::Mqtt)
        .collect();
    let find = |method: &str, path: &str, outcome: Outcome| {
        mqtt.iter()
            .any(|e| e.method == method && e.path == path && e.decision == outcome)
    };
    assert!(find("CONNECT", "dev-1", Outcome::Allowed));
    assert!(find("POST", "devices/dev-1/telemetry", Outcome::Allowed));
    assert!(
        mqtt.iter().any(|e| e.path == "devices/dev-1/telemetry"
            && e.route == "devices/{identity}/telemetry"
            && e.identity == "dev-1"
            && e.bytes_in == payload.len() as u64),
        "a translated message is evented with its rule as the route"
    );
    assert!(find(
        "PUBLISH",
        "devices/dev-2/telemetry",
        Outcome::DeniedRbac
    ));
    assert!(find("POST", "devices/dev-1/status", Outcome::DeniedRbac));
    assert!(find(
        "PUBLISH",
        "devices/dev-1/telemetry",
        Outcome::Throttled
    ));
    assert!(find(
        "SUBSCRIBE",
        "devices/dev-2/commands/#",
        Outcome::DeniedRbac
    ));
    assert!(find("CONNECT", "dev-1", Outcome::Quarantined));
    assert!(
        mqtt.iter()
            .any(|e| e.method == "CONNECT" && e.decision == Outcome::DeniedAuth)
    );
    Ok(())
}

/// Debian's mosquitto clients, over TLS with a client certificate and no password: the
/// certificate is the identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_over_tls_with_a_client_certificate() -> anyhow::Result<()> {
    for bin in ["mosquitto_pub", "mosquitto_sub"] {
        if std::process::Command::new(bin)
            .arg("--help")
            .output()
            .is_err()
        {
            bail!(
                "`{bin}` is not installed (Debian package mosquitto-clients; tests/run.sh installs it)"
            );
        }
    }
    let ca = Ca::new("mqtt test CA")?;
    let server = ca.server()?;
    let device = ca.device(
        &format!("{DEVICE_URI}dev-1"),
        "dev-1",
        7,
        days(-1),
        days(30),
    )?;
    let rig = Rig::start(Some((&ca, &server))).await?;
    let mqtts = rig.mqtts.context("TLS listener")?;
    let dir = tempfile::tempdir()?;
    let (ca_f, cert_f, key_f) = device_pki_files(dir.path(), &ca, &device)?;
    let port = mqtts.port().to_string();
    let tls_args: Vec<String> = [
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca_f,
        "--cert",
        &cert_f,
        "--key",
        &key_f,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // A subscriber for commands, then a command through the admin API.
    let mut sub = std::process::Command::new("mosquitto_sub");
    sub.args(&tls_args)
        .args([
            "-i",
            "dev-1:cmd",
            "-V",
            "mqttv5",
            "-t",
            "devices/dev-1/commands/#",
            "-C",
            "1",
            "-W",
            "15",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let sub = sub.spawn()?;
    let sub = tokio::task::spawn_blocking(move || sub.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = rig
            .admin(
                reqwest::Method::POST,
                "/admin/mqtt/publish",
                serde_json::json!({"identity": "dev-1", "topic": "devices/dev-1/commands/ping", "payload": "hello"}),
            )
            .await?;
        if status == 200 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the subscriber never connected (admin publish answered {status})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(20), sub).await???;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // QoS 1 publish, MQTT 3.1.1 and 5.0: delivered to the backend.
    for (version, body) in [("mqttv311", "{\"v\":311}"), ("mqttv5", "{\"v\":5}")] {
        let mut args = tls_args.clone();
        args.extend(
            [
                "-i",
                "dev-1",
                "-V",
                version,
                "-q",
                "1",
                "-t",
                "devices/dev-1/telemetry",
                "-m",
                body,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let out = run("mosquitto_pub", args).await?;
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            rig.seen
                .lock()
                .iter()
                .any(|s| s.body == body.as_bytes() && s.path == "/api/devices/dev-1/telemetry"),
            "{version}: the backend did not get the message"
        );
    }

    // Without a certificate or password: refused.
    let args = [
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca_f,
        "-i",
        "dev-1",
        "-q",
        "1",
        "-t",
        "devices/dev-1/telemetry",
        "-m",
        "x",
    ];
    let out = run(
        "mosquitto_pub",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await?;
    assert!(!out.status.success(), "an anonymous client was accepted");
    // Plain listener, wrong password: refused.
    let plain = rig.mqtt.port().to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &plain,
        "-i",
        "dev-1",
        "-u",
        "dev-1",
        "-P",
        "wrong",
        "-q",
        "1",
        "-t",
        "devices/dev-1/telemetry",
        "-m",
        "x",
    ];
    let out = run(
        "mosquitto_pub",
        args.iter().map(|s| s.to_string()).collect(),
    )
    .await?;
    assert!(!out.status.success(), "a wrong password was accepted");
    let n = rig.seen.lock().iter().filter(|s| s.body == b"x").count();
    assert_eq!(n, 0, "refused clients reached the backend");

    let events = rig.events().await?;
    assert!(events.iter().any(|e| e.protocol == Protocol::Mqtt
        && e.identity == "dev-1"
        && e.tls.as_ref().is_some_and(
            |t| t.client_cert_fingerprint.as_deref() == Some(device.fingerprint().as_str())
        )));
    Ok(())
}
