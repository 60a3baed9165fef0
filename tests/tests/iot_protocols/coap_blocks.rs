//! CoAP block-wise transfers (RFC 7959): large responses (Block2) and request bodies
//! (Block1).

use super::*;

/// A GET whose response is larger than a datagram comes block-wise (RFC 7959 Block2):
/// libcoap's client reassembles it by itself; from raw datagrams, every block carries the
/// same ETag and the total size, a smaller block size asked for is honoured, each block
/// request goes through the chain to the backend again, and a block past the end, BERT, and
/// Block2 on a POST are refused with 4.02.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_large_responses_come_block_wise() -> anyhow::Result<()> {
    use coap_lite::{CoapOption, Packet};
    let client = coap_client()?;
    let rig = Rig::start(None).await?;
    let base = format!("coap://127.0.0.1:{}", rig.coap.port());
    let key_opt = format!("65001,{KEY_1}");
    let before = rig.seen.lock().len();
    let args: Vec<String> = ["-O", &key_opt]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{base}/devices/dev-1/big")])
        .collect();
    let out = run(client, args).await?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "x".repeat(4000),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reached = rig.seen.lock().len() - before;
    assert!(
        reached >= 4,
        "each of the four blocks was a request through the chain: {reached}"
    );

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let key = KEY_1.as_bytes();
    let get = |id: u16, block: Option<&[u8]>| {
        let mut extra: Vec<(u16, &[u8])> = vec![(65001, key)];
        if let Some(b) = block {
            extra.push((23, b));
        }
        coap_request(true, id, 1, &["devices", "dev-1", "big"], &extra, b"")
    };
    let exchange = |datagram: Vec<u8>| {
        let sock = &sock;
        async move { coap_packet(sock, rig.coap, &datagram).await }
    };
    let opt = |p: &Packet, o: CoapOption| p.get_first_option(o).cloned().unwrap_or_default();
    let mut body = Vec::new();
    let mut etags = Vec::new();
    for num in 0u8..4 {
        // NUM, M = 0, SZX 6 (1024 bytes); block 0 also without asking.
        let (n, p) = exchange(get(
            200 + u16::from(num),
            (num > 0).then_some(&[(num << 4) | 6][..]),
        ))
        .await?;
        assert!(n <= 1280, "a block fits a datagram: {n}");
        assert_eq!(p.header.code.to_string(), "2.05");
        let more = num < 3;
        assert_eq!(
            opt(&p, CoapOption::Block2),
            vec![(num << 4) | (u8::from(more) << 3) | 6],
            "block {num}"
        );
        assert_eq!(opt(&p, CoapOption::Size2), 4000u16.to_be_bytes().to_vec());
        etags.push(opt(&p, CoapOption::ETag));
        body.extend_from_slice(&p.payload);
    }
    assert_eq!(body, "x".repeat(4000).into_bytes());
    assert!(etags.iter().all(|e| e.len() == 8 && *e == etags[0]));
    // 64-byte blocks when asked: NUM 5, SZX 2.
    let (_, p) = exchange(get(210, Some(&[(5 << 4) | 2]))).await?;
    assert_eq!(p.payload.len(), 64);
    assert_eq!(opt(&p, CoapOption::Block2), vec![(5 << 4) | 8 | 2]);
    for (datagram, what) in [
        (get(211, Some(&[(9 << 4) | 6])), "a block past the end"),
        (get(212, Some(&[0x07])), "BERT"),
        (
            coap_request(
                true,
                213,
                2,
                &["devices", "dev-1", "telemetry"],
                &[(65001, key), (23, &[0x06])],
                b"{}",
            ),
            "Block2 on a POST",
        ),
    ] {
        let (_, p) = exchange(datagram).await?;
        assert_eq!(p.header.code.to_string(), "4.02", "{what}");
    }
    Ok(())
}

/// A POST body larger than a datagram goes up block-wise (RFC 7959 Block1): libcoap's client
/// sends it in 256-byte blocks, each but the last answered 2.31 and evented; the backend gets
/// the whole body once. From raw datagrams: a block out of order is 4.08, another device
/// cannot continue an upload (4.08), a body announced past 1 MiB is 4.13 with Size1, Block1
/// on a GET is 4.02, and an upload through to its last block answers with that block's
/// Block1 option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_large_request_bodies_go_up_block_wise() -> anyhow::Result<()> {
    use coap_lite::{CoapOption, Packet};
    let client = coap_client()?;
    let rig = Rig::start(None).await?;
    let base = format!("coap://127.0.0.1:{}", rig.coap.port());
    let key_opt = format!("65001,{KEY_1}");
    let body: String = (0..3000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("body.bin");
    std::fs::write(&file, &body)?;
    let args: Vec<String> = ["-m", "post", "-b", "256", "-O", &key_opt, "-f"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            file.display().to_string(),
            format!("{base}/devices/dev-1/telemetry"),
        ])
        .collect();
    let out = run(client, args).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let seen = rig.seen.lock();
        let posts: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.path == "/api/devices/dev-1/telemetry")
            .collect();
        assert_eq!(posts.len(), 1, "one request to the backend: {posts:?}");
        assert_eq!(posts[0].body, body.as_bytes(), "the whole body, in order");
    }
    let events = rig.events().await?;
    let coap: Vec<&RequestEvent> = events
        .iter()
        .filter(|e| e.protocol == Protocol::Coap && e.path == "devices/dev-1/telemetry")
        .collect();
    let continued = coap.iter().filter(|e| e.status == 100).count();
    assert_eq!(continued, 11, "blocks 0 to 10 answered 2.31 and evented");
    let done: Vec<_> = coap.iter().filter(|e| e.status == 200).collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].bytes_in, 3000);
    assert_eq!(done[0].route, "coap-telemetry");

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let exchange = |datagram: Vec<u8>| {
        let sock = &sock;
        async move { Ok::<_, anyhow::Error>(coap_packet(sock, rig.coap, &datagram).await?.1) }
    };
    let post = |id: u16, key: &str, block: &[u8], extra: &[(u16, &[u8])], payload: &[u8]| {
        let mut opts: Vec<(u16, &[u8])> = vec![(65001, key.as_bytes()), (27, block)];
        opts.extend_from_slice(extra);
        coap_request(
            true,
            id,
            2,
            &["devices", "dev-1", "telemetry"],
            &opts,
            payload,
        )
    };
    let code = |p: &Packet| p.header.code.to_string();
    let block16 = [b'z'; 16];
    // Block 0 of 16 bytes (NUM 0, M, SZX 0): 2.31 with the same Block1.
    let p = exchange(post(300, KEY_1, &[0x08], &[], &block16)).await?;
    assert_eq!(code(&p), "2.31");
    assert_eq!(p.get_first_option(CoapOption::Block1), Some(&vec![0x08]));
    // Another device cannot continue dev-1's upload (nor may it write dev-1's resource).
    let p = exchange(post(301, KEY_2, &[0x18], &[], &block16)).await?;
    assert_ne!(code(&p), "2.31", "another device continued the upload");
    // Out of order: block 2 after block 0.
    let p = exchange(post(302, KEY_1, &[0x28], &[], &block16)).await?;
    assert_eq!(code(&p), "4.08");
    // The upload was dropped: block 1 finds nothing.
    let p = exchange(post(303, KEY_1, &[0x10], &[], b"end")).await?;
    assert_eq!(code(&p), "4.08");
    // Again, in order, to the last block: its response carries its Block1.
    assert_eq!(
        code(&exchange(post(304, KEY_1, &[0x08], &[], &block16)).await?),
        "2.31"
    );
    let p = exchange(post(305, KEY_1, &[0x10], &[], b"end")).await?;
    assert_eq!(code(&p), "2.04");
    assert_eq!(p.get_first_option(CoapOption::Block1), Some(&vec![0x10]));
    assert!(
        rig.seen
            .lock()
            .iter()
            .any(|s| s.body == [&block16[..], b"end"].concat()),
        "the raw upload reached the backend whole"
    );
    // Announced past the largest body: 4.13 with Size1.
    let huge = (2u32 << 20).to_be_bytes();
    let p = exchange(post(306, KEY_1, &[0x08], &[(60, &huge)], &block16)).await?;
    assert_eq!(code(&p), "4.13");
    assert_eq!(
        p.get_first_option(CoapOption::Size1),
        Some(&(1u32 << 20).to_be_bytes()[1..].to_vec())
    );
    // Block1 on a GET.
    let get = coap_request(
        true,
        307,
        1,
        &["devices", "dev-1", "config"],
        &[(65001, KEY_1.as_bytes()), (27, &[0x08])],
        b"",
    );
    assert_eq!(code(&exchange(get).await?), "4.02");
    Ok(())
}
