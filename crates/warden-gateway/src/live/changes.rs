//! The settings the admin API manages — keys, routes and limits kept in `admin.keys_file` —
//! listed, changed (one writer at a time across gateways sharing the file) and re-read when
//! another writer changed the file.

use warden_config::{ApiKeyConfig, LimitsConfig, RouteConfig, WardenConfig};

use super::managed::{self, Managed};
use super::{
    Books, KeyChangeError, LiveConfig, LiveReport, log_refused, merge_managed, refused, stamp,
};
use tracing::info;

impl LiveConfig {
    /// Keys as the admin API lists them: id, identity and who manages it (no digests).
    pub fn keys(&self) -> Vec<serde_json::Value> {
        let books = self.inner.books.lock();
        let row = |k: &ApiKeyConfig, by: &str| {
            serde_json::json!({
                "id": k.id, "identity": k.identity, "tenant": k.tenant,
                "device_type": k.device_type, "roles": k.roles,
                "not_before": k.not_before, "expires_at": k.expires_at, "managed_by": by,
            })
        };
        books
            .file_config
            .api_keys
            .iter()
            .map(|k| row(k, "config_file"))
            .chain(books.managed.api_keys.iter().map(|k| row(k, "admin_api")))
            .collect()
    }

    /// Add an API-managed key: validated with the config, written to `admin.keys_file`, then
    /// applied. Blocking: writes the file.
    pub fn add_key(&self, key: ApiKeyConfig) -> Result<LiveReport, KeyChangeError> {
        self.modify(|file, managed| {
            if file
                .api_keys
                .iter()
                .any(|f| f.id == key.id || f.sha256.eq_ignore_ascii_case(&key.sha256))
            {
                return Err(KeyChangeError::FileManaged);
            }
            managed.api_keys.push(key);
            Ok(())
        })
    }

    /// Disable (remove) an API-managed key. Blocking: writes the file.
    pub fn remove_key(&self, id: &str) -> Result<LiveReport, KeyChangeError> {
        self.modify(|file, managed| {
            if file.api_keys.iter().any(|f| f.id == id) {
                return Err(KeyChangeError::FileManaged);
            }
            if !managed.api_keys.iter().any(|k| k.id == id) {
                return Err(KeyChangeError::NotFound);
            }
            managed.api_keys.retain(|k| k.id != id);
            Ok(())
        })
    }

    /// Routes as the admin API lists them: each with who manages it and its upstream's health
    /// now (`down`: by the active health checks; `ejected`: requests refused at once, by them
    /// or after failures in a row).
    pub fn routes(&self) -> Vec<serde_json::Value> {
        let books = self.inner.books.lock();
        let health = self.upstream_health();
        let row = |r: &RouteConfig, by: &str| {
            let mut v = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("managed_by".into(), by.into());
                if let Some(h) = health.iter().find(|h| h.route == r.name) {
                    o.insert(
                        "upstream_health".into(),
                        serde_json::json!({
                            "checked": h.checked, "down": h.down, "ejected": h.ejected,
                        }),
                    );
                }
            }
            v
        };
        books
            .file_config
            .routes
            .iter()
            .map(|r| row(r, "config_file"))
            .chain(books.managed.routes.iter().map(|r| row(r, "admin_api")))
            .collect()
    }

    /// Add an API-managed route: validated with the whole config (prefixes, upstream, TLS,
    /// limits naming it…), written to `admin.keys_file`, then served. Blocking: writes the
    /// file.
    pub fn add_route(&self, route: RouteConfig) -> Result<LiveReport, KeyChangeError> {
        self.modify(|file, managed| {
            if file.routes.iter().any(|f| f.name == route.name) {
                return Err(KeyChangeError::FileManaged);
            }
            if managed.routes.iter().any(|r| r.name == route.name) {
                return Err(KeyChangeError::Refused(vec![format!(
                    "route `{}` exists: delete it first",
                    route.name
                )]));
            }
            managed.routes.push(route);
            Ok(())
        })
    }

    /// Remove an API-managed route. Blocking: writes the file.
    pub fn remove_route(&self, name: &str) -> Result<LiveReport, KeyChangeError> {
        self.modify(|file, managed| {
            if file.routes.iter().any(|f| f.name == name) {
                return Err(KeyChangeError::FileManaged);
            }
            if !managed.routes.iter().any(|r| r.name == name) {
                return Err(KeyChangeError::NotFound);
            }
            managed.routes.retain(|r| r.name != name);
            Ok(())
        })
    }

    /// The rate limits serving now, and whether the admin API set them (`admin_api`) or the
    /// config file did.
    pub fn limits(&self) -> (LimitsConfig, &'static str) {
        let books = self.inner.books.lock();
        match &books.managed.limits {
            Some(l) => (l.clone(), "admin_api"),
            None => (books.file_config.limits.clone(), "config_file"),
        }
    }

    /// Replace the limits (`Some`: the whole `[limits]` table, in place of the file's until
    /// cleared; `None`: back to the file's). Blocking: writes the file.
    pub fn set_limits(&self, limits: Option<LimitsConfig>) -> Result<LiveReport, KeyChangeError> {
        self.modify(|_, managed| {
            managed.limits = limits;
            Ok(())
        })
    }

    /// Change the API-managed settings with `change` (given the config file's settings and
    /// the managed ones to edit), validate the result with the config, write it to the keys
    /// file and serve it — or refuse it whole. Gateways sharing the keys file take turns (an
    /// exclusive lock on `FILE.lock`), and each starts from the file as it is now, so a change
    /// another gateway made is kept, not overwritten.
    fn modify(
        &self,
        change: impl FnOnce(&WardenConfig, &mut Managed) -> Result<(), KeyChangeError>,
    ) -> Result<LiveReport, KeyChangeError> {
        let mut books = self.inner.books.lock();
        let Some(keys_file) = books.keys_file.clone() else {
            let mut scratch = books.managed.clone();
            change(&books.file_config, &mut scratch)?;
            return Err(KeyChangeError::NoKeysFile);
        };
        let _turn = managed::lock(&keys_file).map_err(|e| KeyChangeError::Refused(vec![e]))?;
        if let Some(r) = self.refresh_managed(&mut books)
            && !r.problems.is_empty()
        {
            return Err(KeyChangeError::Refused(r.problems));
        }
        let mut managed = books.managed.clone();
        change(&books.file_config, &mut managed)?;
        let merged = merge_managed(&books.file_config, &managed, Some(&keys_file))
            .map_err(KeyChangeError::Refused)?;
        let persist = || managed::store(&keys_file, &managed);
        let report = self.swap_in(merged, persist);
        if !report.problems.is_empty() {
            return Err(KeyChangeError::Refused(report.problems));
        }
        books.managed = managed;
        books.keys_stamp = stamp(&keys_file);
        Ok(report)
    }

    /// Read the keys file again when it changed since this gateway last read or wrote it
    /// (another gateway sharing it, or an operator, changed it) and serve what it holds now,
    /// or refuse it whole (what serves stays). `None`: unchanged, or no keys file.
    pub(super) fn refresh_managed(&self, books: &mut Books) -> Option<LiveReport> {
        let file = books.keys_file.clone()?;
        let now = stamp(&file);
        if now == books.keys_stamp {
            return None;
        }
        books.keys_stamp = now;
        let report = match managed::read(&file) {
            Ok(managed) => match merge_managed(&books.file_config, &managed, Some(&file)) {
                Ok(merged) => {
                    let report = self.swap_in(merged, || Ok(()));
                    if report.problems.is_empty() {
                        books.managed = managed;
                        info!(file = %file.display(), generation = report.generation, "Keys file changed; its keys, routes and limits applied.");
                    }
                    report
                }
                Err(problems) => refused(self.generation(), problems),
            },
            Err(e) => refused(self.generation(), vec![e]),
        };
        if !report.problems.is_empty() {
            log_refused(&report);
        }
        Some(report)
    }
}
