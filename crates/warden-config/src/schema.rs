//! Structural checks against the JSON Schema derived from the config types: every unknown key,
//! wrong type and missing key is reported, not just the first one serde would stop at.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{ConfigError, ConfigErrors};

/// Check `table` against `T`'s schema, then deserialise it.
pub(crate) fn check_and_parse<T: JsonSchema + DeserializeOwned>(
    table: toml::Table,
) -> Result<T, ConfigErrors> {
    let instance = match serde_json::to_value(&table) {
        Ok(v) => v,
        Err(e) => return Err(ConfigError::new("", format!("not representable: {e}")).into()),
    };
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| ConfigError::new("", format!("internal schema error: {e}")))?;
    let mut errors = Vec::new();
    for e in validator.iter_errors(&instance) {
        let at = e.instance_path().to_string();
        // A tagged enum (`type = "..."`) that matches no variant: report the problems against
        // the variant its `type` names, which is what the user meant.
        if let Some(inner) =
            tagged_variant_errors(&schema, &e.schema_path().to_string(), &instance, &at)
        {
            errors.extend(inner);
            continue;
        }
        errors.push(ConfigError::new(pointer_to_key(&at), e.to_string()));
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(dedup(errors)));
    }
    // The schema and serde agree, so this only fails on what a schema cannot express.
    serde_json::from_value(instance).map_err(|e| ConfigError::new("", e.to_string()).into())
}

fn tagged_variant_errors(
    root: &serde_json::Value,
    schema_path: &str,
    instance: &serde_json::Value,
    instance_path: &str,
) -> Option<Vec<ConfigError>> {
    if !schema_path.ends_with("/oneOf") {
        return None;
    }
    let value = instance.pointer(instance_path)?;
    let tag = value.get("type")?.as_str()?;
    let branches = root.pointer(schema_path)?.as_array()?;
    let resolve = |b: &serde_json::Value| -> Option<serde_json::Value> {
        match b.get("$ref").and_then(|r| r.as_str()) {
            Some(r) => root.pointer(r.strip_prefix('#')?).cloned(),
            None => Some(b.clone()),
        }
    };
    let branch = branches.iter().filter_map(resolve).find(|b| {
        b.pointer("/properties/type/const").and_then(|c| c.as_str()) == Some(tag)
            || b.pointer("/properties/type/enum/0")
                .and_then(|c| c.as_str())
                == Some(tag)
    });
    let Some(mut branch) = branch else {
        let known: Vec<String> = branches
            .iter()
            .filter_map(resolve)
            .filter_map(|b| {
                b.pointer("/properties/type/const")
                    .and_then(|c| c.as_str())
                    .map(str::to_owned)
            })
            .collect();
        return Some(vec![ConfigError::new(
            pointer_to_key(&format!("{instance_path}/type")),
            format!("unknown type `{tag}` (one of: {})", known.join(", ")),
        )]);
    };
    if let (Some(obj), Some(defs)) = (branch.as_object_mut(), root.get("$defs")) {
        obj.insert("$defs".into(), defs.clone());
    }
    let validator = jsonschema::validator_for(&branch).ok()?;
    let errs: Vec<ConfigError> = validator
        .iter_errors(value)
        .map(|e| {
            ConfigError::new(
                pointer_to_key(&format!("{instance_path}{}", e.instance_path())),
                e.to_string(),
            )
        })
        .collect();
    Some(errs)
}

fn dedup(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert((e.key.clone(), e.reason.clone())));
    errors
}

/// `/routes/0/upstream` → `routes[0].upstream`.
pub(crate) fn pointer_to_key(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

/// Parse TOML text into a table, reporting the syntax error with its location.
pub(crate) fn parse_toml(text: &str) -> Result<toml::Table, ConfigErrors> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::new("", format!("invalid TOML: {}", e.to_string().trim())).into())
}
