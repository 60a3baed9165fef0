//! Block-wise transfer of GET responses (RFC 7959, Block2), stateless: a representation larger
//! than one datagram is answered in blocks of at most [`super::MAX_PAYLOAD`] bytes (or the
//! smaller size the client asks for), each block request going through the whole chain again
//! (authenticated, limited, evented, sent to the backend) and the block cut from that answer.
//! Every block carries the representation's ETag (the first 8 bytes of its SHA-256), so a
//! client sees a representation that changed between its blocks, and Size2 (its length).
//! RFC 7959 §2.4 lets a server regenerate the representation for each block; the gateway keeps
//! nothing between requests, so a device cannot make it hold state. Only GET: a block of the
//! response to a POST or PUT would need the request run again, which is not safe. Request
//! bodies in blocks (Block1) are `upload.rs`; BERT is not supported.

use std::ops::Range;

use coap_lite::{CoapOption, Packet};
use sha2::{Digest, Sha256};

/// Largest representation served block-wise.
pub(super) const MAX_BODY: usize = 1 << 20;

/// A block a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    pub num: u32,
    /// Block size in bytes, 16 to 1024.
    pub size: usize,
}

/// The request's Block2 option: `Ok(None)` when it has none.
pub(super) fn requested(req: &Packet) -> Result<Option<Block>, &'static str> {
    let Some(v) = req.get_first_option(CoapOption::Block2) else {
        return Ok(None);
    };
    if v.len() > 3 {
        return Err("Block2 longer than 3 bytes");
    }
    let n = v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
    let szx = n & 7;
    if szx == 7 {
        return Err("BERT blocks are not supported");
    }
    Ok(Some(Block {
        num: n >> 4,
        size: 16 << szx,
    }))
}

/// A CoAP uint option value: big-endian without leading zero bytes (0 is empty).
pub(super) fn uint(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

/// Block2 option value for block `num` of `size` bytes, `more` after it.
fn encode(num: u32, more: bool, size: usize) -> Vec<u8> {
    let szx = size.trailing_zeros().saturating_sub(4);
    uint((num << 4) | (u32::from(more) << 3) | szx)
}

/// The part of the body a response carries, and the options that say which.
pub(super) type Cut = (Range<usize>, Vec<(CoapOption, Vec<u8>)>);

/// The part of `body` to answer with, and the options saying which: `Ok(None)` when it fits
/// one datagram and no block was asked for (a plain response). `max` is the largest payload.
pub(super) fn cut(
    body: &[u8],
    want: Option<Block>,
    max: usize,
) -> Result<Option<Cut>, &'static str> {
    if want.is_none() && body.len() <= max {
        return Ok(None);
    }
    let size = want.map_or(max, |b| b.size.min(max));
    let num = want.map_or(0, |b| b.num);
    let start = usize::try_from(num)
        .ok()
        .and_then(|n| n.checked_mul(size))
        .ok_or("block out of range")?;
    if start >= body.len() && num > 0 {
        return Err("block out of range");
    }
    let start = start.min(body.len());
    let end = start.saturating_add(size).min(body.len());
    let more = end < body.len();
    let etag = Sha256::digest(body)[..8].to_vec();
    let total = u32::try_from(body.len()).unwrap_or(u32::MAX);
    Ok(Some((
        start..end,
        vec![
            (CoapOption::ETag, etag),
            (CoapOption::Block2, encode(num, more, size)),
            (CoapOption::Size2, uint(total)),
        ],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_block(v: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.add_option(CoapOption::Block2, v.to_vec());
        p
    }

    #[test]
    fn block2_values_round_trip_and_bad_ones_are_refused() {
        assert_eq!(requested(&Packet::new()), Ok(None));
        // NUM 2, SZX 6 (1024).
        assert_eq!(
            requested(&with_block(&[0x26])),
            Ok(Some(Block { num: 2, size: 1024 }))
        );
        // An empty value is block 0 of 16 bytes.
        assert_eq!(
            requested(&with_block(&[])),
            Ok(Some(Block { num: 0, size: 16 }))
        );
        assert!(requested(&with_block(&[0x07])).is_err(), "BERT");
        assert!(requested(&with_block(&[1, 2, 3, 4])).is_err());
        assert_eq!(encode(0, false, 16), Vec::<u8>::new());
        assert_eq!(encode(2, true, 1024), vec![0x2e]);
        assert_eq!(encode(300, false, 64), vec![0x12, 0xc2]);
    }

    #[test]
    fn bodies_are_cut_into_blocks_with_their_etag_and_size() {
        let body: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(cut(&body[..1000], None, 1024), Ok(None), "fits: plain");
        let mut joined = Vec::new();
        let mut etags = Vec::new();
        for num in 0..3 {
            let (range, opts) = cut(&body, Some(Block { num, size: 1024 }), 1024)
                .expect("in range")
                .expect("blocks");
            joined.extend_from_slice(&body[range]);
            etags.push(opts[0].1.clone());
            assert_eq!(opts[1].1, encode(num, num < 2, 1024));
            assert_eq!(opts[2].1, uint(2500));
        }
        assert_eq!(joined, body);
        assert!(etags.windows(2).all(|w| w[0] == w[1]) && etags[0].len() == 8);
        // No Block2 asked but too large: block 0 of the largest size.
        let (range, _) = cut(&body, None, 1024).expect("ok").expect("blocks");
        assert_eq!(range, 0..1024);
        // A smaller size asked for is honoured, a larger one capped.
        let (range, _) = cut(&body, Some(Block { num: 3, size: 64 }), 1024)
            .expect("ok")
            .expect("blocks");
        assert_eq!(range, 192..256);
        assert!(cut(&body, Some(Block { num: 3, size: 1024 }), 1024).is_err());
        assert!(
            cut(
                &body,
                Some(Block {
                    num: u32::MAX >> 4,
                    size: 1024
                }),
                1024
            )
            .is_err()
        );
        // An empty representation asked for block 0 is an empty last block.
        let (range, _) = cut(&[], Some(Block { num: 0, size: 64 }), 1024)
            .expect("ok")
            .expect("blocks");
        assert_eq!(range, 0..0);
    }
}
