//! The shape of a query string, for events: what an attacker varies (`?page=1`, `?page=2`…)
//! without what a client may hide in it (tokens, e-mail addresses, signatures).
//!
//! [`shape`] keeps the parameter names, in order, each with the *class* of its value:
//! `page=int&sort=str&flag`. A name is kept only if it looks like a name (at most
//! [`MAX_NAME`] characters of `A-Z a-z 0-9 _ - . [ ]`, and not a long run with many digits,
//! which is what a bare token such as `?AKIA0123…` would be); anything else becomes `?`. At
//! most [`MAX_PARAMS`] parameters are listed, then `…+N` says how many more there were.
//!
//! [`hash`] is a keyed 32-bit digest of the whole raw query (names and values): two requests
//! with the same path and different values count as two distinct resources, but no value can
//! be read back. The key (`gateway.query_hash_key`) should be a secret shared by the gateways
//! of a deployment: without it anyone could confirm a guessed value (`page=7`) by hashing it.
//! SHA-256 of key and query is used because it is a PRF under a secret key, unlike fast
//! non-cryptographic hashes; it costs ≈ 0.3 µs for a typical query, and only requests that
//! have a query pay it.

use sha2::{Digest, Sha256};

/// Parameters listed in a shape; more are counted (`…+N`).
pub const MAX_PARAMS: usize = 16;
/// Longest parameter name kept.
pub const MAX_NAME: usize = 32;

/// The class of a parameter value.
pub fn value_class(v: &str) -> &'static str {
    let b = v.as_bytes();
    if b.is_empty() {
        return "empty";
    }
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        return "int";
    }
    if v.parse::<f64>().is_ok_and(f64::is_finite) && b.contains(&b'.') {
        return "num";
    }
    if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
        return "bool";
    }
    let hex = |c: &u8| c.is_ascii_hexdigit();
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => hex(c),
        })
    {
        return "uuid";
    }
    if b.len() >= 8 && b.iter().all(hex) {
        return "hex";
    }
    "str"
}

/// Whether a raw parameter name is recorded as is.
fn plain_name(n: &str) -> bool {
    let b = n.as_bytes();
    let charset = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'[' | b']'));
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    !b.is_empty() && b.len() <= MAX_NAME && charset && !(b.len() >= 16 && digits >= 4)
}

/// The shape of a raw query string (without the `?`): `name=class` per parameter, `&`-joined.
pub fn shape(raw: &str) -> String {
    if raw.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(raw.len().min(64));
    let mut n = 0usize;
    for param in raw.split('&').filter(|p| !p.is_empty()) {
        n += 1;
        if n > MAX_PARAMS {
            continue;
        }
        if n > 1 {
            out.push('&');
        }
        let (name, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        out.push_str(if plain_name(name) { name } else { "?" });
        if let Some(v) = value {
            out.push('=');
            out.push_str(value_class(v));
        }
    }
    if n > MAX_PARAMS {
        out.push_str(&format!("&…+{}", n - MAX_PARAMS));
    }
    out
}

/// A keyed 32-bit digest of a raw query string; 0 for an empty query (never for another).
pub fn hash(key: &[u8], raw: &str) -> u32 {
    if raw.is_empty() {
        return 0;
    }
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(raw.as_bytes());
    let d = h.finalize();
    u32::from_le_bytes([d[0], d[1], d[2], d[3]]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_keep_names_and_classes_never_values() {
        assert_eq!(shape(""), "");
        assert_eq!(shape("page=7"), "page=int");
        assert_eq!(
            shape("page=7&sort=name&dir=-1&x=0.5&ok=TRUE&flag&e="),
            "page=int&sort=str&dir=int&x=num&ok=bool&flag&e=empty"
        );
        assert_eq!(
            shape("id=0f8fad5b-d9cb-469f-a165-70867728950e&sig=deadbeefcafe"),
            "id=uuid&sig=hex"
        );
        let secret = "token=s3cr3t-AKIA0123456789&AKIA0123456789ABCDEF&a%20b=1";
        let s = shape(secret);
        assert_eq!(s, "token=str&?&?=int");
        assert!(!s.contains("s3cr3t") && !s.contains("AKIA"));
    }

    #[test]
    fn long_queries_are_cut_and_counted() {
        let raw: Vec<String> = (0..20).map(|i| format!("p{i}=1")).collect();
        let s = shape(&raw.join("&"));
        assert!(s.ends_with("&p15=int&…+4"), "{s}");
        assert_eq!(s.matches('&').count(), 16);
    }

    #[test]
    fn hashes_tell_values_apart_under_a_key() {
        assert_eq!(hash(b"k", ""), 0);
        assert_ne!(hash(b"k", "page=1"), hash(b"k", "page=2"));
        assert_eq!(hash(b"k", "page=1"), hash(b"k", "page=1"));
        assert_ne!(hash(b"k", "page=1"), hash(b"other", "page=1"));
        assert_ne!(hash(b"k", "a"), 0);
    }
}
