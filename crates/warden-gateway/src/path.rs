//! Raw path checks. The gateway routes on the path exactly as sent; anything that a backend
//! could decode or normalise into a different path is refused rather than rewritten, so a
//! route prefix can never be bypassed (`/a/../admin`, `%2e%2e`, `//admin`, `%2F`, `\`).

/// Whether the raw path (without query) is in the normal form the gateway accepts.
pub fn is_normal(path: &str) -> bool {
    if !path.starts_with('/') || path.contains("//") || path.contains('\\') {
        return false;
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return false;
    }
    // Percent-escapes of separators, dots, backslash, NUL and `%` itself decode into
    // something else downstream; other escapes (spaces, unicode) are fine.
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = path.get(i + 1..i + 3).unwrap_or("");
                let Ok(v) = u8::from_str_radix(hex, 16) else {
                    return false;
                };
                if matches!(v, b'/' | b'.' | b'\\' | 0 | b'%') || v < 0x20 {
                    return false;
                }
                i += 3;
            }
            b if b < 0x20 || b == 0x7f => return false,
            _ => i += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::is_normal;

    #[test]
    fn normal_paths_pass() {
        for p in [
            "/",
            "/api/telemetry",
            "/devices/d-1/state",
            "/a%20b",
            "/file.json",
            "/v1/x..y",
        ] {
            assert!(is_normal(p), "{p}");
        }
    }

    #[test]
    fn tricks_are_refused() {
        for p in [
            "/a/../admin",
            "/a/./b",
            "/..",
            "//admin",
            "/api//x",
            "/%2e%2e/admin",
            "/%2E%2E/admin",
            "/api%2Fadmin",
            "/api%2fadmin",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/a%zz",
            "/a%",
            "/a%252e",
            "api",
        ] {
            assert!(!is_normal(p), "{p}");
        }
    }
}
