//! Path normalisation before routing and authorization.
//!
//! The gateway matches routes and RBAC rules on the **normal form** of the path: percent-escapes
//! decoded once, no dot segments, no duplicate slashes, no trailing slash, and (when configured)
//! no upper case. A request whose raw path differs from that normal form in a way a backend could
//! resolve differently is **refused** (400), never rewritten into another route: dot segments
//! (`/a/../admin`), encoded dots or separators (`%2e%2e`, `%2F`, `%5C`), double encoding (`%25`),
//! encoded unreserved characters (`%61dmin`), `//`, `\`, control bytes, `;` path parameters
//! (`/api/..;/admin`) unless allowed, upper case where paths are case-insensitive, segments
//! that end in a dot or a space or start with a space (`...`, `%20..`, `admin.`: Windows and
//! trimming backends drop them), and Unicode look-alikes of `.`, `/`, `\\`, `%`, `;`
//! (`%EF%BC%8E`, full-width and leader dots) that NFKC-normalising backends fold.
//! Escapes that must stay escaped (a space, UTF-8, `?`, `#`…) are accepted and decoded for matching.

use warden_config::{PathCase, PathsConfig};

/// Why a raw path was refused (logged; the client only sees `bad_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with `/`")]
    NotAbsolute,
    #[error("control byte or backslash in path")]
    ForbiddenByte,
    #[error("malformed percent-escape")]
    BadEscape,
    #[error("percent-escape of a character that must not be escaped (`/`, `.`, `%`, letters…)")]
    NeedlessEscape,
    #[error("escaped bytes are not UTF-8")]
    NotUtf8,
    #[error("empty segment (`//`)")]
    EmptySegment,
    #[error("dot segment")]
    DotSegment,
    #[error("`;` in path")]
    Semicolon,
    #[error("upper case in a case-insensitive path")]
    UpperCase,
    #[error(
        "segment ending in a dot or a space, or starting with a space (`...`, ` ..`, `admin.`)"
    )]
    DotVariant,
    #[error("a character some backends fold into `.`, `/`, `\\` or `%` (full-width, leaders)")]
    Confusable,
}

/// The normal form of an accepted path: decoded, no trailing slash (except `/` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath(String);

impl NormalPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Segments after the leading `/` (none for `/`).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').skip(1).filter(|s| !s.is_empty())
    }
}

/// Normalise `raw` (the path as sent, without query) or say why it is refused.
pub fn normalise(raw: &str, rules: &PathsConfig) -> Result<NormalPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let v = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(PathError::BadEscape)?;
                if is_unreserved(v) || matches!(v, b'/' | b'\\' | b'%' | b';') || is_control(v) {
                    return Err(PathError::NeedlessEscape);
                }
                decoded.push(v);
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::ForbiddenByte),
            b';' if !rules.allow_semicolons => return Err(PathError::Semicolon),
            b'A'..=b'Z' if rules.case == PathCase::Insensitive => {
                return Err(PathError::UpperCase);
            }
            _ if is_control(b) => return Err(PathError::ForbiddenByte),
            _ => decoded.push(b),
        }
        i += 1;
    }
    let mut path = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    if path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if path != "/" {
        for seg in path[1..].split('/') {
            if seg.is_empty() {
                return Err(PathError::EmptySegment);
            }
            // Servlet containers drop `;params` from a segment: `..;x` is `..` to them.
            let bare = seg.split(';').next().unwrap_or(seg);
            if bare == "." || bare == ".." {
                return Err(PathError::DotSegment);
            }
            // Windows and trimming backends read `...`, ` ..` and `.. ` as `..`, and
            // `admin.` or `admin ` as `admin`: a segment may not end in a dot or a space, nor
            // start with a space.
            if bare.ends_with('.')
                || bare.ends_with(char::is_whitespace)
                || bare.starts_with(char::is_whitespace)
            {
                return Err(PathError::DotVariant);
            }
            if seg.chars().any(is_confusable) {
                return Err(PathError::Confusable);
            }
        }
    }
    Ok(NormalPath(path))
}

/// RFC 3986 unreserved: escaping them is never needed, and normalisers decode them.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters that Unicode compatibility normalisation (NFKC, as some frameworks and
/// filesystems apply it) turns into `.`, `/`, `\\`, `%` or `;`, or that render as dots.
fn is_confusable(c: char) -> bool {
    matches!(
        c,
        '\u{FF0E}' // full-width full stop
            | '\u{FF0F}' // full-width solidus
            | '\u{FF3C}' // full-width reverse solidus
            | '\u{FF05}' // full-width percent
            | '\u{FF1B}' // full-width semicolon
            | '\u{FE52}' // small full stop
            | '\u{FE68}' // small reverse solidus
            | '\u{FE6A}' // small percent
            | '\u{2024}' // one dot leader
            | '\u{2025}' // two dot leader
            | '\u{2026}' // horizontal ellipsis
            | '\u{2215}' // division slash
            | '\u{2044}' // fraction slash
            | '\u{29F5}' // reverse solidus operator
            | '\u{3002}' // ideographic full stop
            | '\u{FF61}' // half-width ideographic full stop
    )
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(case: PathCase, allow_semicolons: bool) -> PathsConfig {
        PathsConfig {
            case,
            allow_semicolons,
        }
    }

    fn norm(p: &str) -> Result<String, PathError> {
        normalise(p, &rules(PathCase::Sensitive, false)).map(|n| n.0)
    }

    #[test]
    fn normal_paths_pass_and_decode_once() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/telemetry", "/api/telemetry"),
            ("/devices/d-1/state/", "/devices/d-1/state"),
            ("/a%20b", "/a b"),
            ("/caf%C3%A9", "/café"),
            ("/q%3Fx", "/q?x"),
            ("/file.json", "/file.json"),
            ("/v1/x..y", "/v1/x..y"),
            ("/API/Mixed", "/API/Mixed"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn tricks_are_refused_with_their_reason() {
        use PathError::*;
        for (raw, why) in [
            ("/a/../admin", DotSegment),
            ("/a/./b", DotSegment),
            ("/..", DotSegment),
            ("/api/..;/admin", Semicolon),
            ("//admin", EmptySegment),
            ("/api//x", EmptySegment),
            ("/%2e%2e/admin", NeedlessEscape),
            ("/%2E%2E/admin", NeedlessEscape),
            ("/api%2Fadmin", NeedlessEscape),
            ("/api%2fadmin", NeedlessEscape),
            ("/%61dmin", NeedlessEscape),
            ("/a%5cb", NeedlessEscape),
            ("/a%252e", NeedlessEscape),
            ("/a%00", NeedlessEscape),
            ("/a%0a", NeedlessEscape),
            ("/a\\b", ForbiddenByte),
            ("/a%zz", BadEscape),
            ("/a%", BadEscape),
            ("/a%c3", NotUtf8),
            ("api", NotAbsolute),
            ("/api/%EF%BC%8E%EF%BC%8E/admin", Confusable),
            ("/api/a%EF%BC%8Fb", Confusable),
            ("/api/%E2%80%A5/admin", Confusable),
            ("/api/%E2%80%A6", Confusable),
            ("/api/%20../admin", DotVariant),
            ("/api/..%20/admin", DotVariant),
            ("/api/.../admin", DotVariant),
            ("/api/..../admin", DotVariant),
            ("/api/. ./admin", DotVariant),
            ("/api/admin./x", DotVariant),
            ("/api/admin%20/x", DotVariant),
            ("/api/%20admin/x", DotVariant),
        ] {
            assert_eq!(norm(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn case_and_semicolon_rules_follow_the_config() {
        let ci = rules(PathCase::Insensitive, false);
        assert_eq!(
            normalise("/API/admin", &ci),
            Err(PathError::UpperCase),
            "mixed case refused where matching is case-insensitive"
        );
        assert_eq!(
            normalise("/api/%C3%A9", &ci).map(|n| n.0),
            Ok("/api/é".into()),
            "hex digits of escapes are not path letters"
        );
        let semi = rules(PathCase::Sensitive, true);
        assert_eq!(
            normalise("/a;v=1/b", &semi).map(|n| n.0),
            Ok("/a;v=1/b".into())
        );
        assert_eq!(
            normalise("/api/..;x/admin", &semi),
            Err(PathError::DotSegment)
        );
    }

    #[test]
    fn segments_skip_the_root() {
        let n = normalise("/a/b%20c", &rules(PathCase::Sensitive, false)).expect("normal");
        assert_eq!(n.segments().collect::<Vec<_>>(), ["a", "b c"]);
        let root = normalise("/", &rules(PathCase::Sensitive, false)).expect("normal");
        assert_eq!(root.segments().count(), 0);
    }
}
