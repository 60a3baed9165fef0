//! API keys managed through the admin API: kept in their own JSON file (`admin.keys_file`),
//! written on every change and loaded at start, beside the config file's `api_keys`. A key
//! lives in exactly one place — the admin API refuses to add a key whose id or digest the file
//! has, or to remove one of the file's keys, and a config file naming an API-managed key is
//! refused — so neither silently overwrites the other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_config::{ApiKeyConfig, WardenConfig};

/// The keys file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    api_keys: Vec<ApiKeyConfig>,
}

/// The file named by `config.admin.keys_file` and the keys in it (none when it does not exist
/// yet).
pub(crate) fn load(
    config: &WardenConfig,
) -> Result<(Option<PathBuf>, Vec<ApiKeyConfig>), Vec<String>> {
    let Some(file) = config.admin.keys_file.as_deref().map(PathBuf::from) else {
        return Ok((None, Vec::new()));
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Some(file), Vec::new())),
        Err(e) => return Err(vec![format!("cannot read `{}`: {e}", file.display())]),
    };
    let parsed: KeysFile = serde_json::from_str(&text)
        .map_err(|e| vec![format!("`{}`: not a keys file: {e}", file.display())])?;
    Ok((Some(file), parsed.api_keys))
}

/// Write `keys` to `file` at once (a temporary file, then a rename), owner-only.
pub(crate) fn store(file: &Path, keys: &[ApiKeyConfig]) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(&KeysFile {
        api_keys: keys.to_vec(),
    })
    .map_err(|e| e.to_string())?;
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

/// The config the gateway serves: the file's, with the API-managed keys added. A managed key
/// whose id or digest the file also has is a problem (the file may not take it over).
pub(crate) fn merge(
    file_config: &WardenConfig,
    managed: &[ApiKeyConfig],
    keys_file: Option<&Path>,
) -> Result<WardenConfig, Vec<String>> {
    let mut problems = Vec::new();
    for k in managed {
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
    merged.api_keys.extend(managed.iter().cloned());
    Ok(merged)
}
