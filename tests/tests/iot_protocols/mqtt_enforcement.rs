//! MQTT devices flooding and walking topics, detected and quarantined end to end.

use super::*;

/// One MQTT device of the end-to-end test: QoS 0 messages on `topics` (one after another)
/// every `period`, at `flood` per second instead from `flood_after`; reports when its session
/// ended (the gateway disconnected it) and whether a reconnect was refused.
async fn mqtt_device(
    addr: SocketAddr,
    identity: String,
    key: String,
    topics: Vec<String>,
    period: Duration,
    flood: Option<(Duration, f64)>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Duration>> {
    let mut o = rumqttc::MqttOptions::new(identity.clone(), addr.ip().to_string(), addr.port());
    o.set_credentials(identity.clone(), key);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(1000);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10_000);
    let started = Instant::now();
    let ended = Arc::new(Mutex::new(None::<Duration>));
    let e = ended.clone();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(_) => {}
                Err(_) => {
                    *e.lock() = Some(started.elapsed());
                    return;
                }
            }
        }
    });
    let mut i = 0usize;
    while !*stop.borrow() && ended.lock().is_none() {
        let topic = &topics[i % topics.len()];
        i += 1;
        let _ = client.try_publish(
            topic.as_str(),
            rumqttc::QoS::AtMostOnce,
            false,
            br#"{"t":20.5}"#.to_vec(),
        );
        let wait = match flood {
            Some((after, rate)) if started.elapsed() >= after => {
                Duration::from_secs_f64(1.0 / rate)
            }
            _ => period,
        };
        tokio::time::sleep(wait).await;
    }
    let _ = client.disconnect().await;
    let ended = *ended.lock();
    Ok(ended)
}

/// The whole loop over MQTT: devices publish through the gateway, the processor (the shipped
/// default pipeline, shorter warm-up) judges their events like any others, and a device that
/// floods, and one that walks other devices' topics, are quarantined and disconnected while
/// the rest keep their sessions; a device reconnecting again and again raises a
/// `reconnect_storm` alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_floods_and_topic_enumeration_are_quarantined_end_to_end() -> anyhow::Result<()> {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let up = upstream.local_addr()?;
    tokio::spawn(warden_sim::demo_upstream(upstream));
    let devices = warden_sim::demo_keys(24, 5);
    let mut base = WardenConfig::default();
    base.gateway.mqtt = warden_config::MqttConfig {
        listen: Some("127.0.0.1:0".parse()?),
        messages_per_s: 1000.0,
        burst_messages: 1000,
        publish: vec![warden_config::MqttPublishRule {
            topic: "devices/{identity}/telemetry".into(),
            method: "POST".into(),
            path: "/api/devices/{identity}/telemetry".into(),
            payload: warden_config::PayloadMode::Raw,
            content_type: Some("application/json".into()),
            name: None,
        }],
        ..Default::default()
    };
    let config = warden_tests::e2e::config(&base, "gw-mqtt-e2e", up, &devices);
    let bus = warden::make_bus(&config)?;
    warden::ensure_topics(&*bus, &config).await?;
    let stack = warden::Stack::start(
        bus.clone(),
        &config,
        warden::StackParts {
            gateway: true,
            processor: Some(warden_tests::e2e::fast_pipeline()?),
            dashboard: false,
        },
    )
    .await?;
    let mqtt = stack.mqtt_addr.context("MQTT listener")?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let own = |d: &warden_sim::DemoDevice| vec![format!("devices/{}/telemetry", d.identity)];
    let mut tasks = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        if i == 2 {
            // The flapping device, below.
            tasks.push(tokio::spawn(async { anyhow::Ok(None) }));
            continue;
        }
        let (topics, flood) = match i {
            // Floods at 100 messages/s after 10 s.
            0 => (own(d), Some((Duration::from_secs(10), 100.0))),
            // Walks the other devices' telemetry topics at 10/s after 10 s.
            1 => (
                devices
                    .iter()
                    .map(|o| format!("devices/{}/telemetry", o.identity))
                    .chain((0..200).map(|n| format!("devices/sensor-{:04}/telemetry", 1000 + n)))
                    .collect(),
                Some((Duration::from_secs(10), 10.0)),
            ),
            _ => (own(d), None),
        };
        tasks.push(tokio::spawn(mqtt_device(
            mqtt,
            d.identity.clone(),
            d.key.clone(),
            topics,
            Duration::from_millis(500),
            flood,
            stop.clone(),
        )));
    }
    // A flapping device: connects, and disconnects, every 400 ms for 25 s.
    let flapper = devices[2].clone();
    let flapping = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut accepted = 0usize;
        while t0.elapsed() < Duration::from_secs(25) {
            let mut o = rumqttc::MqttOptions::new(
                flapper.identity.clone(),
                mqtt.ip().to_string(),
                mqtt.port(),
            );
            o.set_credentials(flapper.identity.clone(), flapper.key.clone());
            let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
            if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) =
                tokio::time::timeout(Duration::from_secs(5), el.poll()).await
            {
                accepted += 1;
            }
            let _ = c.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        accepted
    });
    // Until both attackers are disconnected (at most 60 s), then a little longer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && tasks.iter().take(2).any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let accepted = flapping.await?;
    let _ = stop_tx.send(true);
    let mut ended = Vec::new();
    for t in tasks {
        ended.push(t.await??);
    }
    let mut storms = Vec::new();
    warden_bus::read_to_end(
        &*bus,
        &config.bus.topics.alerts,
        Duration::from_secs(10),
        |m| {
            if let Ok(a) = warden_event::decode::<warden_event::Alert>(&m.payload)
                && a.detector == "reconnect_storm"
            {
                storms.push(a.subject.value);
            }
        },
    )
    .await?;
    let q = stack.quarantine.clone().context("quarantine set")?;
    let live: Vec<String> = q
        .active(warden_event::now_ns())
        .into_iter()
        .map(|s| s.value)
        .collect();
    stack.stop().await?;
    let flooder = ended[0].context("the flooding device was never disconnected")?;
    assert!(
        flooder > Duration::from_secs(10),
        "disconnected before it flooded: {flooder:?}"
    );
    assert!(
        ended[1].is_some(),
        "the topic-walking device was never disconnected"
    );
    for (i, e) in ended.iter().enumerate().skip(3) {
        assert!(
            e.is_none(),
            "normal device {i} was disconnected after {e:?}"
        );
    }
    assert!(
        accepted > 40,
        "the flapping device connected {accepted} times"
    );
    assert_eq!(
        storms.first(),
        Some(&devices[2].identity),
        "reconnect_storm alerts: {storms:?}"
    );
    assert!(
        live.contains(&devices[0].identity),
        "flooder not quarantined: {live:?}"
    );
    assert!(
        live.contains(&devices[1].identity),
        "enumerator not quarantined: {live:?}"
    );
    for d in &devices[2..] {
        assert!(!live.contains(&d.identity), "{} quarantined", d.identity);
    }
    Ok(())
}
