//! Request bodies in blocks (RFC 7959 Block1) for POST and PUT: a device sends a body larger
//! than a datagram block by block; every block is authenticated, quarantine-checked and
//! matched against the resources like any request (and evented), each but the last is
//! answered 2.31 Continue, and the last sends the reassembled body through the whole chain as
//! one request. Blocks come in order (RFC 7959 §2.5, atomic): a block that does not continue
//! the body is answered 4.08 Request Entity Incomplete, a body past [`MAX_BODY`] 4.13 with
//! Size1. A client may change the block size midway (the block number then counts in the new
//! size, so its offset must still be where the body ends).
//!
//! The gateway keeps the partial bodies, so they are bounded: at most [`MAX_UPLOADS`] at once
//! and [`MAX_BYTES`] in all (a new upload beyond them is refused with 5.03), each forgotten
//! after [`IDLE`] without a block. An upload is keyed by the peer's address, the device's
//! identity, the method and the URI: another device, or the same device from elsewhere, cannot
//! add to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, Packet, ResponseType};
use parking_lot::Mutex;

use super::block::{MAX_BODY, uint};

/// Partial bodies kept at once, at most.
pub(super) const MAX_UPLOADS: usize = 1024;
/// Bytes of partial bodies kept at once, at most.
pub(super) const MAX_BYTES: usize = 32 << 20;
/// A partial body is forgotten after this long without a block.
pub(super) const IDLE: Duration = Duration::from_secs(60);

/// A request's Block1 option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block1 {
    pub num: u32,
    pub more: bool,
    /// Block size in bytes, 16 to 1024.
    pub size: usize,
}

impl Block1 {
    /// The option value that acknowledges this block (the same NUM, M and SZX).
    pub(super) fn echo(self) -> Vec<u8> {
        let szx = self.size.trailing_zeros().saturating_sub(4);
        uint((self.num << 4) | (u32::from(self.more) << 3) | szx)
    }
}

/// The request's Block1 option: `Ok(None)` when it has none.
pub(super) fn requested(req: &Packet) -> Result<Option<Block1>, &'static str> {
    let Some(v) = req.get_first_option(CoapOption::Block1) else {
        return Ok(None);
    };
    if v.len() > 3 {
        return Err("Block1 longer than 3 bytes");
    }
    let n = v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
    let szx = n & 7;
    if szx == 7 {
        return Err("BERT blocks are not supported");
    }
    Ok(Some(Block1 {
        num: n >> 4,
        more: n & 8 != 0,
        size: 16 << szx,
    }))
}

/// Who an upload belongs to: peer, identity, method and URI (path and query).
pub(super) type Key = (SocketAddr, String, &'static str, String);

struct Upload {
    body: Vec<u8>,
    touched: Instant,
}

/// What to do with a block.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Kept: answer 2.31 Continue.
    Continue,
    /// The last block: the whole body.
    Complete(Vec<u8>),
    /// Refused with this code and diagnostic (and Size1, the largest body, for 4.13).
    Refuse(ResponseType, &'static str),
}

/// The partial bodies of the uploads in progress.
#[derive(Default)]
pub(super) struct Uploads {
    map: Mutex<HashMap<Key, Upload>>,
}

impl Uploads {
    /// Take block `b` of upload `key` with its `payload`; `size1` is the body's announced
    /// size, when the request has one.
    pub(super) fn block(&self, key: Key, b: Block1, payload: &[u8], size1: Option<u64>) -> Step {
        if b.more && payload.len() != b.size {
            return Step::Refuse(
                ResponseType::BadRequest,
                "a block that is not the last must be of its block size",
            );
        }
        if payload.len() > b.size {
            return Step::Refuse(ResponseType::BadRequest, "a block larger than its size");
        }
        if size1.is_some_and(|s| s > MAX_BODY as u64) {
            return Step::Refuse(ResponseType::RequestEntityTooLarge, "body too large");
        }
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, u| now.duration_since(u.touched) < IDLE);
        let offset = usize::try_from(b.num)
            .ok()
            .and_then(|n| n.checked_mul(b.size));
        let held: usize = map.values().map(|u| u.body.len()).sum();
        if b.num == 0 {
            map.remove(&key);
            if !b.more {
                return Step::Complete(payload.to_vec());
            }
            if map.len() >= MAX_UPLOADS || held + payload.len() > MAX_BYTES {
                return Step::Refuse(
                    ResponseType::ServiceUnavailable,
                    "too many block-wise uploads in progress",
                );
            }
            map.insert(
                key,
                Upload {
                    body: payload.to_vec(),
                    touched: now,
                },
            );
            return Step::Continue;
        }
        let Some(upload) = map.get_mut(&key) else {
            return Step::Refuse(
                ResponseType::RequestEntityIncomplete,
                "no upload in progress for this block",
            );
        };
        if offset != Some(upload.body.len()) {
            map.remove(&key);
            return Step::Refuse(ResponseType::RequestEntityIncomplete, "block out of order");
        }
        if upload.body.len() + payload.len() > MAX_BODY {
            map.remove(&key);
            return Step::Refuse(ResponseType::RequestEntityTooLarge, "body too large");
        }
        if b.more && held + payload.len() > MAX_BYTES {
            map.remove(&key);
            return Step::Refuse(
                ResponseType::ServiceUnavailable,
                "too many block-wise uploads in progress",
            );
        }
        upload.body.extend_from_slice(payload);
        upload.touched = now;
        if b.more {
            return Step::Continue;
        }
        let body = map.remove(&key).map(|u| u.body).unwrap_or_default();
        Step::Complete(body)
    }
}

/// The Size1 option of a 4.13: the largest body accepted.
pub(super) fn size1() -> (CoapOption, Vec<u8>) {
    (
        CoapOption::Size1,
        uint(u32::try_from(MAX_BODY).unwrap_or(u32::MAX)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(peer: u16, who: &str) -> Key {
        (
            SocketAddr::from(([127, 0, 0, 1], peer)),
            who.to_string(),
            "POST",
            "devices/a/telemetry".to_string(),
        )
    }

    fn b(num: u32, more: bool, size: usize) -> Block1 {
        Block1 { num, more, size }
    }

    #[test]
    fn block1_values_parse_and_echo() {
        let mut p = Packet::new();
        assert_eq!(requested(&p), Ok(None));
        p.add_option(CoapOption::Block1, vec![0x2e]);
        assert_eq!(requested(&p), Ok(Some(b(2, true, 1024))));
        assert_eq!(b(2, true, 1024).echo(), vec![0x2e]);
        assert_eq!(b(300, false, 64).echo(), vec![0x12, 0xc2]);
        let mut bert = Packet::new();
        bert.add_option(CoapOption::Block1, vec![0x0f]);
        assert!(requested(&bert).is_err());
    }

    #[test]
    fn blocks_in_order_make_the_body_and_others_are_refused() {
        let u = Uploads::default();
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        assert_eq!(
            u.block(key(1, "a"), b(0, true, 128), &data[..128], None),
            Step::Continue
        );
        // Another device, or another address, cannot add to it.
        assert!(matches!(
            u.block(key(1, "b"), b(1, true, 128), &data[128..256], None),
            Step::Refuse(ResponseType::RequestEntityIncomplete, _)
        ));
        assert!(matches!(
            u.block(key(2, "a"), b(1, true, 128), &data[128..256], None),
            Step::Refuse(ResponseType::RequestEntityIncomplete, _)
        ));
        // The client switches to 64-byte blocks: block 4 of 64 is at 256... not yet: 2 of 64
        // would be at 128, where the body ends.
        assert_eq!(
            u.block(key(1, "a"), b(2, true, 64), &data[128..192], None),
            Step::Continue
        );
        assert_eq!(
            u.block(key(1, "a"), b(3, true, 64), &data[192..256], None),
            Step::Continue
        );
        assert_eq!(
            u.block(key(1, "a"), b(4, false, 64), &data[256..], None),
            Step::Complete(data.clone())
        );
        // Done: a late block finds nothing.
        assert!(matches!(
            u.block(key(1, "a"), b(5, false, 64), b"x", None),
            Step::Refuse(ResponseType::RequestEntityIncomplete, _)
        ));
        // Out of order: refused and the upload dropped.
        assert_eq!(
            u.block(key(1, "a"), b(0, true, 16), &data[..16], None),
            Step::Continue
        );
        assert!(matches!(
            u.block(key(1, "a"), b(2, true, 16), &data[32..48], None),
            Step::Refuse(ResponseType::RequestEntityIncomplete, _)
        ));
        assert!(matches!(
            u.block(key(1, "a"), b(1, false, 16), &data[16..32], None),
            Step::Refuse(ResponseType::RequestEntityIncomplete, _)
        ));
        // A short block that says more follows.
        assert!(matches!(
            u.block(key(1, "a"), b(0, true, 64), &data[..10], None),
            Step::Refuse(ResponseType::BadRequest, _)
        ));
        // A single last block is the whole body.
        assert_eq!(
            u.block(key(1, "a"), b(0, false, 64), &data[..10], None),
            Step::Complete(data[..10].to_vec())
        );
    }

    #[test]
    fn bodies_and_uploads_are_bounded() {
        let u = Uploads::default();
        let block = vec![7u8; 1024];
        assert!(matches!(
            u.block(
                key(1, "a"),
                b(0, true, 1024),
                &block,
                Some(MAX_BODY as u64 + 1)
            ),
            Step::Refuse(ResponseType::RequestEntityTooLarge, _)
        ));
        let blocks = (MAX_BODY / 1024) as u32;
        for num in 0..blocks {
            assert_eq!(
                u.block(key(1, "a"), b(num, true, 1024), &block, None),
                Step::Continue
            );
        }
        assert!(matches!(
            u.block(key(1, "a"), b(blocks, false, 1024), &block, None),
            Step::Refuse(ResponseType::RequestEntityTooLarge, _)
        ));
        for i in 0..MAX_UPLOADS {
            let k = (
                SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 5683)),
                "a".to_string(),
                "PUT",
                "x".to_string(),
            );
            assert_eq!(
                u.block(k, b(0, true, 16), &block[..16], None),
                Step::Continue
            );
        }
        assert!(matches!(
            u.block(key(9, "z"), b(0, true, 16), &block[..16], None),
            Step::Refuse(ResponseType::ServiceUnavailable, _)
        ));
    }
}
