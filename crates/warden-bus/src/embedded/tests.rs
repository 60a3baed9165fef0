use std::time::Duration;

use super::*;

fn spec(name: &str, partitions: i32, compacted: bool) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions,
        compacted,
        retention_ms: None,
    }
}

async fn bus_with(topics: &[TopicSpec], capacity: usize) -> EmbeddedBus {
    let bus = EmbeddedBus::new(EmbeddedConfig {
        partition_capacity: capacity,
        default_partitions: 2,
    });
    bus.ensure_topics(topics).await.expect("topics");
    bus
}

async fn drain(c: &mut Box<dyn Consumer>) -> Vec<Message> {
    let mut all = Vec::new();
    loop {
        let batch = c.poll(100, Duration::from_millis(50)).await.expect("poll");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

#[tokio::test]
async fn unknown_topic_is_reported() {
    let bus = bus_with(&[], 10).await;
    let err = bus
        .producer()
        .send("nope", b"k", b"v")
        .await
        .expect_err("unknown topic");
    assert!(matches!(err, BusError::UnknownTopic(t) if t == "nope"));
}

#[tokio::test]
async fn per_key_order_is_kept() {
    let bus = bus_with(&[spec("t", 4, false)], 1000).await;
    let p = bus.producer();
    for i in 0..100u32 {
        let key = format!("k{}", i % 7);
        p.send("t", key.as_bytes(), &i.to_be_bytes())
            .await
            .expect("send");
    }
    let mut r = bus.reader("t").await.expect("reader");
    let msgs = drain(&mut r).await;
    assert_eq!(msgs.len(), 100);
    let mut last: HashMap<Bytes, u32> = HashMap::new();
    for m in msgs {
        let v = u32::from_be_bytes(m.payload[..4].try_into().expect("4 bytes"));
        let key = m.key.expect("key");
        if let Some(prev) = last.insert(key, v) {
            assert!(prev < v, "order broken for a key");
        }
    }
}

#[tokio::test]
async fn group_members_share_partitions_and_resume_from_commits() {
    let bus = bus_with(&[spec("t", 4, false)], 1000).await;
    let p = bus.producer();
    for i in 0..40u32 {
        p.send("t", format!("k{i}").as_bytes(), b"x")
            .await
            .expect("send");
    }
    let mut a = bus.group_consumer("g", &["t"]).await.expect("a");
    let mut b = bus.group_consumer("g", &["t"]).await.expect("b");
    let ma = drain(&mut a).await;
    let mb = drain(&mut b).await;
    assert_eq!(ma.len() + mb.len(), 40, "each record to exactly one member");
    let pa: std::collections::BTreeSet<i32> = ma.iter().map(|m| m.partition).collect();
    let pb: std::collections::BTreeSet<i32> = mb.iter().map(|m| m.partition).collect();
    assert!(pa.is_disjoint(&pb));
    assert!(!pa.is_empty() && !pb.is_empty());

    // a commits what it read; b does not and leaves: its partitions are read again by a.
    let commits: Vec<Position> = ma.iter().map(Message::next_position).collect();
    a.commit(&commits).await.expect("commit");
    drop(b);
    let again = drain(&mut a).await;
    assert_eq!(
        again.len(),
        mb.len(),
        "uncommitted records are delivered again"
    );
}

#[tokio::test]
async fn compacted_topic_keeps_latest_per_key() {
    let bus = bus_with(&[spec("d", 1, true)], 4).await;
    let p = bus.producer();
    for round in 0..5u8 {
        for k in [b"a", b"b", b"c"] {
            p.send("d", k, &[round]).await.expect("send");
        }
    }
    let mut r = bus.reader("d").await.expect("reader");
    let msgs = drain(&mut r).await;
    let latest: HashMap<Bytes, u8> = msgs
        .iter()
        .map(|m| (m.key.clone().expect("key"), m.payload[0]))
        .collect();
    assert_eq!(latest.len(), 3);
    assert!(latest.values().all(|v| *v == 4));
    assert!(msgs.len() <= 4);
}

#[tokio::test]
async fn full_partition_waits_for_slowest_group() {
    let bus = bus_with(&[spec("t", 1, false)], 3).await;
    let mut c = bus.group_consumer("g", &["t"]).await.expect("c");
    let p = bus.producer();
    for i in 0..3u8 {
        p.send("t", b"k", &[i]).await.expect("send");
    }
    let blocked = tokio::time::timeout(Duration::from_millis(200), p.send("t", b"k", &[3])).await;
    assert!(
        blocked.is_err(),
        "a full partition must not drop unread records"
    );
    let msgs = drain(&mut c).await;
    assert_eq!(msgs.len(), 3);
    c.commit(&[msgs[2].next_position()]).await.expect("commit");
    tokio::time::timeout(Duration::from_secs(2), p.send("t", b"k", &[3]))
        .await
        .expect("space after commit")
        .expect("send");
    assert_eq!(drain(&mut c).await.len(), 1);
}

#[tokio::test]
async fn read_to_end_stops_at_end_offsets() {
    let bus = bus_with(&[spec("d", 3, true)], 100).await;
    let p = bus.producer();
    for i in 0..10u8 {
        p.send("d", &[i], &[i]).await.expect("send");
    }
    let mut seen = 0;
    let _reader = crate::read_to_end(&bus, "d", Duration::from_secs(2), |_| seen += 1)
        .await
        .expect("read");
    assert_eq!(seen, 10);
    let empty = bus_with(&[spec("e", 3, true)], 100).await;
    crate::read_to_end(&empty, "e", Duration::from_millis(100), |_| {})
        .await
        .expect("empty topic is at its end at once");
}
