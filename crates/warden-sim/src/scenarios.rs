//! The scenario files of `tests/scenarios/`, built in so `warden simulate --scenario NAME`
//! works anywhere.

use std::path::Path;

use warden_config::{ConfigError, ConfigErrors};

use crate::ScenarioConfig;

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        /// `(name, TOML)` of every built-in scenario.
        pub const BUILTIN_SCENARIOS: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../../tests/scenarios/", $name, ".toml")))),*
        ];
    };
}

builtin!(
    "benign",
    "botnet_flood",
    "device_flood",
    "credential_stuffing",
    "enumeration",
    "slow_scraping",
    "exfiltration",
    "drift",
    "token_replay",
    "firmware_probe",
);

/// The built-in scenario `name`, parsed and validated.
pub fn builtin_scenario(name: &str) -> Option<Result<ScenarioConfig, ConfigErrors>> {
    BUILTIN_SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| {
            ScenarioConfig::from_toml(text).map_err(|mut e| {
                for err in &mut e.0 {
                    err.file
                        .get_or_insert_with(|| format!("<built-in {n}>").into());
                }
                e
            })
        })
}

/// A scenario by file path (anything with a `/` or ending in `.toml`) or built-in name.
pub fn resolve_scenario(name_or_path: &str) -> Result<ScenarioConfig, ConfigErrors> {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        return ScenarioConfig::load(Path::new(name_or_path));
    }
    builtin_scenario(name_or_path).unwrap_or_else(|| {
        let names: Vec<&str> = BUILTIN_SCENARIOS.iter().map(|(n, _)| *n).collect();
        Err(ConfigError::new(
            "",
            format!(
                "no scenario `{name_or_path}`: give a file path or one of {}",
                names.join(", ")
            ),
        )
        .into())
    })
}
