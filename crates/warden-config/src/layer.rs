//! Layering: built-in defaults, then a file, then environment overrides.

use toml::{Table, Value};

/// Deep-merge `top` into `base`: tables merge key by key, anything else is replaced.
pub(crate) fn merge(base: &mut Table, top: Table) {
    for (k, v) in top {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(t)) => merge(b, t),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Overrides from environment variables named `{prefix}SECTION__KEY` (e.g.
/// `WARDEN__GATEWAY__LISTEN=0.0.0.0:8080`, `WARDEN__BUS__KIND=kafka`). Values are read as
/// TOML values when they parse as one (numbers, booleans, arrays), else as strings.
pub fn env_overrides(prefix: &str, vars: impl IntoIterator<Item = (String, String)>) -> Table {
    let mut out = Table::new();
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix(prefix) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            continue;
        }
        let value = parse_scalar(&raw);
        let mut table = &mut out;
        for k in &keys[..keys.len() - 1] {
            let entry = table
                .entry(k.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            match entry {
                Value::Table(t) => table = t,
                _ => unreachable!("just made a table"),
            }
        }
        if let Some(last) = keys.last() {
            table.insert(last.clone(), value);
        }
    }
    out
}

fn parse_scalar(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}
