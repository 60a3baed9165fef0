//! API keys, routes and rate limits managed through the admin API: kept in their own JSON file
//! (`admin.keys_file`), written on every change and loaded at start, beside the config file's
//! `api_keys` and `routes`. A key or a route lives in exactly one place — the admin API refuses
//! to add a key whose id or digest the file has, or a route with one of the file's route names,
//! or to remove one of the file's, and a config file naming an API-managed key or route is
//! refused — so neither silently overwrites the other. Limits set through the API replace the
//! file's `[limits]` table whole until they are cleared.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_config::{ApiKeyConfig, LimitsConfig, RouteConfig, WardenConfig};

/// What the admin API manages (the file's content).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Managed {
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsConfig>,
}

/// The file named by `config.admin.keys_file` and what it holds (nothing when it does not
/// exist yet).
pub(crate) fn load(config: &WardenConfig) -> Result<(Option<PathBuf>, Managed), Vec<String>> {
    let Some(file) = config.admin.keys_file.as_deref().map(PathBuf::from) else {
        return Ok((None, Managed::default()));
    };
    let managed = read(&file).map_err(|e| vec![e])?;
    Ok((Some(file), managed))
}

/// The keys file's content (none yet: nothing managed).
pub(crate) fn read(file: &Path) -> Result<Managed, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Managed::default()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", file.display())),
    };
    serde_json::from_str(&text).map_err(|e| format!("`{}`: not a keys file: {e}", file.display()))
}

/// This process's turn to change the keys file: an exclusive advisory lock on `FILE.lock`
/// beside it (gateways sharing the file on one host or a shared volume take turns), held
/// until the returned file is dropped.
pub(crate) fn lock(file: &Path) -> Result<std::fs::File, String> {
    let mut name = file.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let f = options
        .open(&path)
        .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    f.lock()
        .map_err(|e| format!("cannot lock `{}`: {e}", path.display()))?;
    Ok(f)
}

/// Write `managed` to `file` at once (a temporary file, then a rename), owner-only.
pub(crate) fn store(file: &Path, managed: &Managed) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(managed).map_err(|e| e.to_string())?;
    let tmp = file.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| format!("cannot write `{}`: {e}", file.display()))
}

/// The config the gateway serves: the file's, with the API-managed keys and routes added and
/// the API's limits, if set, in place of the file's. A managed key whose id or digest the file
/// also has, or a managed route whose name the file also has, is a problem (the file may not
/// take it over).
pub(crate) fn merge(
    file_config: &WardenConfig,
    managed: &Managed,
    keys_file: Option<&Path>,
) -> Result<WardenConfig, Vec<String>> {
    let mut problems = Vec::new();
    let where_ = || keys_file.map_or_else(String::new, |p| p.display().to_string());
    for r in &managed.routes {
        if file_config.routes.iter().any(|f| f.name == r.name) {
            problems.push(format!(
                "route `{}` of the config file is also managed by the admin API (`{}`); \
                 remove it from one of them",
                r.name,
                where_()
            ));
        }
    }
    for k in &managed.api_keys {
        if let Some(f) = file_config
            .api_keys
            .iter()
            .find(|f| f.id == k.id || f.sha256.eq_ignore_ascii_case(&k.sha256))
        {
            problems.push(format!(
                "api key `{}` of the config file is also managed by the admin API (`{}`, key `{}`); \
                 remove it from one of them",
                f.id,
                keys_file.map_or_else(String::new, |p| p.display().to_string()),
                k.id
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut merged = file_config.clone();
    merged.api_keys.extend(managed.api_keys.iter().cloned());
    merged.routes.extend(managed.routes.iter().cloned());
    if let Some(l) = &managed.limits {
        merged.limits = l.clone();
    }
    Ok(merged)
}
