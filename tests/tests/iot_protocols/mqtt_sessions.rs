//! Persistent MQTT sessions: a 3.1.1 client with `clean_session = false` (and an MQTT 5 one
//! with a session expiry interval) gets its subscriptions back when it reconnects, and the
//! QoS 1 commands sent while it was away; a clean session gets nothing back.

use super::*;

/// Connect `client_id` (3.1.1) with `clean`; returns the client, its event loop and the
/// CONNACK's `session_present`.
async fn connect_v4(
    rig: &Rig,
    client_id: &str,
    clean: bool,
) -> anyhow::Result<(rumqttc::AsyncClient, rumqttc::EventLoop, bool)> {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", rig.mqtt.port());
    o.set_credentials("dev-1", KEY_1);
    o.set_clean_session(clean);
    let (c, mut el) = rumqttc::AsyncClient::new(o, 16);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), el.poll())
            .await
            .context("no CONNACK")??;
        if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) = ev {
            return Ok((c, el, a.session_present));
        }
    }
}

/// The next incoming packet matching `want`, within 10 s.
async fn incoming<T>(
    el: &mut rumqttc::EventLoop,
    mut want: impl FnMut(&rumqttc::Packet) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), el.poll())
            .await
            .context("nothing expected")??;
        if let rumqttc::Event::Incoming(p) = ev
            && let Some(t) = want(&p)
        {
            return Ok(t);
        }
    }
}

/// Disconnect cleanly and let the gateway see it.
async fn leave(c: rumqttc::AsyncClient, mut el: rumqttc::EventLoop) {
    let _ = c.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while el.poll().await.is_ok() {}
    })
    .await;
}

/// Send a command through the admin API; its status and body.
async fn command(rig: &Rig, payload: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    rig.admin(
        reqwest::Method::POST,
        "/admin/mqtt/publish",
        serde_json::json!({"identity": "dev-1", "topic": "devices/dev-1/commands/reboot", "payload": payload, "qos": 1}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_sessions_keep_subscriptions_and_commands_for_an_absent_device()
-> anyhow::Result<()> {
    let rig = Rig::start(None).await?;
    let id = "dev-1:persist";
    let (c, mut el, present) = connect_v4(&rig, id, false).await?;
    assert!(!present, "nothing kept yet");
    c.subscribe("devices/dev-1/commands/#", rumqttc::QoS::AtLeastOnce)
        .await?;
    incoming(&mut el, |p| {
        matches!(p, rumqttc::Packet::SubAck(_)).then_some(())
    })
    .await?;
    leave(c, el).await;

    // Away: a QoS 1 command is kept for it (202, queued), not lost.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = command(&rig, "later").await?;
        if status == 202 {
            break body;
        }
        if Instant::now() > deadline {
            bail!("the command was never queued: {status} {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["queued"], 1, "{body}");
    assert_eq!(body["delivered"], 0, "{body}");

    // Back with clean_session = false: the session is there, the command comes without a
    // new SUBSCRIBE, and the subscription still works for the next one.
    let (c, mut el, present) = connect_v4(&rig, id, false).await?;
    assert!(present, "session present");
    let p = incoming(&mut el, |p| match p {
        rumqttc::Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(p.topic, "devices/dev-1/commands/reboot");
    assert_eq!(&p.payload[..], b"later");
    let (status, _) = command(&rig, "now").await?;
    assert_eq!(status, 200);
    let p = incoming(&mut el, |p| match p {
        rumqttc::Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(&p.payload[..], b"now");
    leave(c, el).await;

    // A clean session drops what was kept: nothing present, nothing queued any more.
    let (c, el, present) = connect_v4(&rig, id, true).await?;
    assert!(!present, "a clean session starts empty");
    leave(c, el).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = command(&rig, "lost").await?;
    assert_eq!(status, 404, "{body}");

    // MQTT 5: a session expiry interval keeps the session the same way; none keeps nothing.
    for (expiry, kept) in [(Some(600u32), true), (None, false)] {
        let mut o = rumqttc::v5::MqttOptions::new("dev-1:v5", "127.0.0.1", rig.mqtt.port());
        o.set_credentials("ignored", KEY_1);
        o.set_clean_start(false);
        o.set_session_expiry_interval(expiry);
        let (c5, mut el5) = rumqttc::v5::AsyncClient::new(o.clone(), 16);
        c5.subscribe("devices/dev-1/commands/#", Q5::AtLeastOnce)
            .await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ev = tokio::time::timeout_at(deadline.into(), el5.poll())
                .await
                .context("no SUBACK (5.0)")??;
            if let rumqttc::v5::Event::Incoming(P5::SubAck(_)) = ev {
                break;
            }
        }
        let _ = c5.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while el5.poll().await.is_ok() {}
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, body) = command(&rig, "v5").await?;
        assert_eq!(status, if kept { 202 } else { 404 }, "{expiry:?}: {body}");
        let (_c5, mut el5) = rumqttc::v5::AsyncClient::new(o, 16);
        let deadline = Instant::now() + Duration::from_secs(10);
        let present = loop {
            let ev = tokio::time::timeout_at(deadline.into(), el5.poll())
                .await
                .context("no CONNACK (5.0)")??;
            if let rumqttc::v5::Event::Incoming(P5::ConnAck(a)) = ev {
                break a.session_present;
            }
        };
        assert_eq!(present, kept, "{expiry:?}");
    }
    Ok(())
}
