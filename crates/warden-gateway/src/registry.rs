//! The device registry: identities with their tenant, device type, roles, allowed credentials
//! and status, loaded from a TOML file and swapped atomically when the file changes. A change
//! that does not validate is refused as a whole (every problem logged) and the previous
//! registry stays in force; requests in flight keep the snapshot they started with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use warden_config::{
    CredentialKind, IdentityStatus, RegistryConfig, RegistryEntry, RegistryFile, UnknownIdentity,
};

/// What the registry says about an identity authenticated with some credential.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Registered and allowed: use these attributes.
    Registered(Arc<RegistryEntry>),
    /// Not registered, and unknown identities are allowed.
    Unregistered,
    /// Refused, and why (for the log).
    Refused(&'static str),
}

/// A loaded registry, swapped on reload.
pub struct Registry {
    file: PathBuf,
    unknown: UnknownIdentity,
    /// Read by every request without a lock; replaced whole by a reload.
    current: ArcSwap<HashMap<String, Arc<RegistryEntry>>>,
}

impl Registry {
    /// Load the registry file; every problem is returned.
    pub fn load(config: &RegistryConfig) -> Result<Self, Vec<String>> {
        let map = read(&config.file)?;
        Ok(Self {
            file: config.file.clone(),
            unknown: config.unknown,
            current: ArcSwap::from_pointee(map),
        })
    }

    /// Re-read the file; on any problem the current registry is kept.
    pub fn reload(&self) -> Result<String, Vec<String>> {
        let map = read(&self.file)?;
        let n = map.len();
        self.current.store(Arc::new(map));
        Ok(format!("{n} identities"))
    }

    /// Registered identities.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// May `identity` authenticate with `method`?
    pub fn admit(&self, identity: &str, method: CredentialKind) -> Admission {
        let entry = self.current.load().get(identity).cloned();
        match entry {
            None if self.unknown == UnknownIdentity::Allow => Admission::Unregistered,
            None => Admission::Refused("identity not in the registry"),
            Some(e) if e.status == IdentityStatus::Disabled => {
                Admission::Refused("identity disabled in the registry")
            }
            Some(e) if !e.auth_methods.contains(&method) => {
                Admission::Refused("credential kind not allowed for this identity")
            }
            Some(e) => Admission::Registered(e),
        }
    }
}

fn read(path: &std::path::Path) -> Result<HashMap<String, Arc<RegistryEntry>>, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read `{}`: {e}", path.display())])?;
    let file = RegistryFile::from_toml(&text).map_err(|errs| {
        errs.0
            .into_iter()
            .map(|e| {
                let key = if e.key.is_empty() {
                    "(document)".into()
                } else {
                    e.key
                };
                format!("`{}`: {key}: {}", path.display(), e.reason)
            })
            .collect::<Vec<_>>()
    })?;
    Ok(file
        .identity
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
        [[identity]]
        id = "d1"
        tenant = "acme"
        roles = ["writer"]
        auth_methods = ["api_key"]
        [[identity]]
        id = "d2"
        auth_methods = ["jwt", "client_cert"]
        status = "disabled"
    "#;

    #[test]
    fn admits_by_status_and_method_and_keeps_the_old_registry_on_a_bad_change() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("registry.toml");
        std::fs::write(&file, ONE).expect("write");
        let r = Registry::load(&RegistryConfig {
            file: file.clone(),
            unknown: UnknownIdentity::Deny,
        })
        .expect("load");
        assert!(
            matches!(r.admit("d1", CredentialKind::ApiKey), Admission::Registered(e) if e.tenant == "acme")
        );
        assert_eq!(
            r.admit("d1", CredentialKind::Jwt),
            Admission::Refused("credential kind not allowed for this identity")
        );
        assert_eq!(
            r.admit("d2", CredentialKind::Jwt),
            Admission::Refused("identity disabled in the registry")
        );
        assert_eq!(
            r.admit("nobody", CredentialKind::ApiKey),
            Admission::Refused("identity not in the registry")
        );

        std::fs::write(&file, "[[identity]]\nid = \"\"\nauth_methods = []\n").expect("write");
        let problems = r.reload().expect_err("invalid");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("identity[0].id"), "{problems:?}");
        assert!(
            matches!(
                r.admit("d1", CredentialKind::ApiKey),
                Admission::Registered(_)
            ),
            "old kept"
        );

        std::fs::write(&file, ONE.replace("status = \"disabled\"", "")).expect("write");
        r.reload().expect("valid");
        assert!(matches!(
            r.admit("d2", CredentialKind::Jwt),
            Admission::Registered(_)
        ));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn unknown_identities_can_be_allowed() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("registry.toml");
        std::fs::write(&file, ONE).expect("write");
        let r = Registry::load(&RegistryConfig {
            file,
            unknown: UnknownIdentity::Allow,
        })
        .expect("load");
        assert_eq!(
            r.admit("nobody", CredentialKind::Jwt),
            Admission::Unregistered
        );
        assert!(
            matches!(r.admit("d2", CredentialKind::Jwt), Admission::Refused(_)),
            "registered rules still apply"
        );
    }
}
