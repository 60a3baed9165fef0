//! Compiled path patterns and method sets of RBAC rules.

use axum::http::Method;
use warden_config::PathCase;

use crate::path::NormalPath;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    /// `*`: any one segment.
    Any,
    /// `**`: any rest, including nothing (last only).
    Rest,
    /// `{identity}`: the caller's own identity.
    Identity,
    /// `{tenant}`: the caller's own tenant.
    Tenant,
}

/// A path pattern (validated by the config crate before compiling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segs: Vec<Seg>,
    case: PathCase,
}

/// Who is asking, for owner-scoped segments.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// `None` for anonymous callers: `{identity}` never matches them.
    pub identity: Option<&'a str>,
    /// Empty when unknown: `{tenant}` never matches then.
    pub tenant: &'a str,
}

impl Pattern {
    pub fn compile(pattern: &str, case: PathCase) -> Self {
        let segs = pattern
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "*" => Seg::Any,
                "**" => Seg::Rest,
                "{identity}" => Seg::Identity,
                "{tenant}" => Seg::Tenant,
                lit if case == PathCase::Insensitive => Seg::Lit(lit.to_ascii_lowercase()),
                lit => Seg::Lit(lit.to_string()),
            })
            .collect();
        Self { segs, case }
    }

    /// Whether `path` matches, with `{identity}`/`{tenant}` bound to `owner`.
    pub fn matches(&self, path: &NormalPath, owner: Owner<'_>) -> bool {
        let eq = |a: &str, b: &str| match self.case {
            PathCase::Sensitive => a == b,
            PathCase::Insensitive => a.eq_ignore_ascii_case(b),
        };
        let mut segs = path.segments();
        for pat in &self.segs {
            if *pat == Seg::Rest {
                return true;
            }
            let Some(seg) = segs.next() else {
                return false;
            };
            let ok = match pat {
                Seg::Lit(l) => eq(l, seg),
                Seg::Any => true,
                Seg::Identity => owner.identity.is_some_and(|id| eq(id, seg)),
                Seg::Tenant => !owner.tenant.is_empty() && eq(owner.tenant, seg),
                Seg::Rest => true,
            };
            if !ok {
                return false;
            }
        }
        segs.next().is_none()
    }

    /// The pattern with the owner's values substituted (for the admin API).
    pub fn render(&self, owner: Owner<'_>) -> String {
        if self.segs.is_empty() {
            return "/".into();
        }
        let mut out = String::new();
        for s in &self.segs {
            out.push('/');
            match s {
                Seg::Lit(l) => out.push_str(l),
                Seg::Any => out.push('*'),
                Seg::Rest => out.push_str("**"),
                Seg::Identity => out.push_str(owner.identity.unwrap_or("{identity}")),
                Seg::Tenant if !owner.tenant.is_empty() => out.push_str(owner.tenant),
                Seg::Tenant => out.push_str("{tenant}"),
            }
        }
        out
    }
}

/// A set of methods, or any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    Any,
    Set(Vec<Method>),
}

impl Methods {
    pub fn compile(methods: &[String]) -> Self {
        if methods.iter().any(|m| m == "*") {
            return Methods::Any;
        }
        Methods::Set(
            methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
        )
    }

    pub fn contains(&self, m: &Method) -> bool {
        match self {
            Methods::Any => true,
            Methods::Set(s) => s.contains(m),
        }
    }

    pub fn names(&self) -> Vec<String> {
        match self {
            Methods::Any => vec!["*".into()],
            Methods::Set(s) => s.iter().map(|m| m.as_str().to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::normalise;
    use warden_config::PathsConfig;

    fn path(p: &str, case: PathCase) -> NormalPath {
        normalise(
            p,
            &PathsConfig {
                case,
                allow_semicolons: false,
            },
        )
        .expect("normal path")
    }

    const DEV1: Owner<'static> = Owner {
        identity: Some("dev-1"),
        tenant: "acme",
    };

    #[test]
    fn owner_scoped_segments_match_only_the_caller() {
        let p = Pattern::compile("/api/devices/{identity}/telemetry", PathCase::Sensitive);
        let s = PathCase::Sensitive;
        assert!(p.matches(&path("/api/devices/dev-1/telemetry", s), DEV1));
        assert!(!p.matches(&path("/api/devices/dev-2/telemetry", s), DEV1));
        assert!(!p.matches(&path("/api/devices/dev-1/telemetry/x", s), DEV1));
        assert!(!p.matches(&path("/api/devices/dev-1", s), DEV1));
        let anon = Owner {
            identity: None,
            tenant: "",
        };
        assert!(!p.matches(&path("/api/devices/anonymous/telemetry", s), anon));
        let t = Pattern::compile("/t/{tenant}/**", s);
        assert!(t.matches(&path("/t/acme/a/b", s), DEV1));
        assert!(
            t.matches(&path("/t/acme", s), DEV1),
            "** matches nothing too"
        );
        assert!(!t.matches(&path("/t/other/a", s), DEV1));
        assert!(!t.matches(&path("/t/x", s), anon), "no tenant, no match");
    }

    #[test]
    fn wildcards_and_case() {
        let s = PathCase::Sensitive;
        let p = Pattern::compile("/api/*/state", s);
        assert!(p.matches(&path("/api/x/state", s), DEV1));
        assert!(!p.matches(&path("/api/state", s), DEV1));
        assert!(!p.matches(&path("/API/x/state", s), DEV1));
        let ci = Pattern::compile("/API/Admin", PathCase::Insensitive);
        assert!(ci.matches(&path("/api/admin", PathCase::Insensitive), DEV1));
        assert!(Pattern::compile("/", s).matches(&path("/", s), DEV1));
        assert!(!Pattern::compile("/", s).matches(&path("/a", s), DEV1));
        assert_eq!(
            Pattern::compile("/d/{identity}/{tenant}/**", s).render(DEV1),
            "/d/dev-1/acme/**"
        );
    }

    #[test]
    fn method_sets() {
        let m = Methods::compile(&["GET".into(), "POST".into()]);
        assert!(m.contains(&Method::POST) && !m.contains(&Method::DELETE));
        assert!(Methods::compile(&["*".into()]).contains(&Method::PATCH));
    }
}
